"""What an SMMU model takes from the SoC description, stated once for v2 and v3."""

from __future__ import annotations

from socmem.soc.schema import Iommu


def smmu_args_from_soc(iommu: Iommu) -> dict[str, object]:
    """Constructor arguments of :class:`SmmuV2` / :class:`SmmuV3` from the SoC's ``Iommu``:
    the page sizes its granules allow (``arm_lpae_restrict_pgsizes``), IAS/OAS, walk
    coherency and the TLB sizes."""
    bitmap = 0
    for size in iommu.page_sizes:
        bitmap |= size
    return {
        "ias": iommu.ias,
        "oas": iommu.oas,
        "pgsize_bitmap": bitmap,
        "coherent_walk": iommu.coherent_walk,
        "iotlb_entries": iommu.tlb.iotlb_entries,
        "utlb_entries": iommu.tlb.utlb_entries,
        "walk_cache_entries": iommu.tlb.walk_cache_entries,
    }
