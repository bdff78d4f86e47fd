"""The DMA API of the modelled kernel: mapping, scatterlists, swiotlb, dma-debug checks."""
