"""What the Linux kernel does on top of the hardware: mm, IOMMU, DMA, dma-buf."""
