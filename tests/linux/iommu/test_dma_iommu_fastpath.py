"""The scattered-page fast paths of iommu_dma_map_sg / iommu_map_sg give exactly what the
general paths give (page tables, IOVAs and DMA segments)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import socmem.linux.iommu.dma_iommu as dma_iommu
import socmem.linux.iommu.iommu as iommu
from socmem.hw.smmu.v3 import SmmuV3
from socmem.linux.dma.scatterlist import ScatterlistEntry
from socmem.linux.dma.types import DMA_BIDIRECTIONAL
from socmem.linux.iommu.dma_iommu import iommu_dma_init_domain, iommu_dma_map_sg
from socmem.linux.iommu.iommu import ArmSmmuV3Driver, IommuDevice, iommu_probe_device


def _device(max_seg: int, boundary: int) -> IommuDevice:
    smmu = SmmuV3("smmu", "9050000.smmuv3")
    dev = IommuDevice(
        "dev0", [(0x10, 0)], dma_mask=(1 << 40) - 1,
        max_segment_size=max_seg, seg_boundary_mask=boundary,
    )  # fmt: skip
    iommu_probe_device(dev, ArmSmmuV3Driver(smmu))
    iommu_dma_init_domain(dev.group.domain)  # type: ignore[union-attr]
    return dev


def _map(pages: list[int], max_seg: int, boundary: int, fast: bool, monkeypatch) -> list:  # type: ignore[no-untyped-def]
    dev = _device(max_seg, boundary)
    if not fast:
        monkeypatch.setattr(dma_iommu, "_uniform_pages", lambda *a: False)
        monkeypatch.setattr(iommu, "_scattered_granules", lambda *a: None)
    sg = [ScatterlistEntry(page=p, length=4096) for p in pages]
    n = iommu_dma_map_sg(dev, sg, len(sg), DMA_BIDIRECTIONAL)
    monkeypatch.undo()
    dom = dev.group.domain  # type: ignore[union-attr]
    phys = [dom.ops.iova_to_phys(sg[0].dma_address + i * 4096) for i in range(len(pages))]
    return [n, [(s.offset, s.length, s.dma_address, s.dma_length) for s in sg], phys]


@settings(max_examples=40, deadline=None)
@given(
    pfns=st.lists(st.integers(0x80000, 0x801FF), min_size=1, max_size=300, unique=True),
    max_seg=st.sampled_from([4096, 8192, 65536, 3 * 4096, 1 << 20, (1 << 32) - 1]),
    boundary=st.sampled_from([0xFFFF, 0xFFFFF, 0xFFFF_FFFF, (1 << 64) - 1]),
)
def test_fast_path_equals_general_path(pfns: list[int], max_seg: int, boundary: int) -> None:
    from _pytest.monkeypatch import MonkeyPatch

    mp = MonkeyPatch()
    try:
        assert _map(pfns, max_seg, boundary, True, mp) == _map(pfns, max_seg, boundary, False, mp)
    finally:
        mp.undo()
