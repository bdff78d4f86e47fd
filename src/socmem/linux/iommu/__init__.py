"""The kernel IOMMU layer: io-pgtable, IOVA allocator, dma-iommu."""
