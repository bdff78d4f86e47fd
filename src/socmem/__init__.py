"""socmem: a workbench for the memory architecture of a Linux SoC.

DMA, IOMMU/SMMU, cache coherency, dma-buf and dma-fence, and zero-copy buffer sharing
between camera, ISP, video codec, NPU, display and user space.  See DESIGN.md.
"""

__version__ = "0.1.0"
