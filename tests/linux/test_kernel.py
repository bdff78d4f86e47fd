"""Kernel model I end to end: boot an SoC, map through the DMA API, DMA through the SMMU."""

from __future__ import annotations

import errno

import pytest

from socmem.errors import KernelError
from socmem.linux.dma import mapping as dma
from socmem.linux.dma.scatterlist import sg_alloc_table_from_pages_segment
from socmem.linux.dma.types import (
    DMA_BIDIRECTIONAL,
    DMA_BIT_MASK,
    DMA_FROM_DEVICE,
    DMA_TO_DEVICE,
)
from socmem.linux.kernel import Kernel
from socmem.soc.loader import load_soc

NV12_4K = 3840 * 2160 * 3 // 2  # 12,441,600 bytes
PAGES = -(-NV12_4K // 4096)  # 3038


@pytest.fixture(scope="module")
def ref() -> Kernel:
    return Kernel.boot(load_soc("reference-mobile"))


def scattered_pages(k: Kernel, n: int) -> list[int]:
    """n order-0 pages, every other one, so that none are physically contiguous."""
    pages = [k.mem.alloc_pages(0) for _ in range(2 * n)]
    assert all(p is not None for p in pages)
    keep = pages[::2]
    for p in pages[1::2]:
        k.mem.free_pages(p, 0)  # type: ignore[arg-type]
    return keep  # type: ignore[return-value]


def test_boot_reference_mobile() -> None:
    k = Kernel.boot(load_soc("reference-mobile"))
    assert set(k.devices) == {m.name for m in k.soc.masters if m.enabled}
    assert all(d.uses_iommu_dma for d in k.devices.values())
    assert "Reserved memory: created CMA memory pool at 0x00000000e0000000, size 512 MiB" in k.log
    assert k.mem.default_cma is not None
    assert k.swiotlb is not None  # DRAM above 4 GiB: arm64 sets up the default pool
    assert k.device("cam0").dma_mask == DMA_BIT_MASK(40)
    with pytest.raises(KeyError, match="no enabled master 'nope'"):
        k.device("nope")


def test_frame_maps_and_the_camera_writes_through_the_smmu() -> None:
    k = Kernel.boot(load_soc("reference-mobile"))
    cam = k.device("cam0")
    pages = scattered_pages(k, PAGES)
    sgt = sg_alloc_table_from_pages_segment(pages, 0, NV12_4K, cam.max_segment_size)
    assert sgt.orig_nents == PAGES  # nothing contiguous to merge
    assert dma.dma_map_sgtable(cam, sgt, DMA_FROM_DEVICE) == 0
    assert sgt.nents == 1  # dma-iommu gives one contiguous IOVA range
    iova = sgt.sgl[0].dma_address
    assert sgt.sgl[0].dma_length == NV12_4K
    for i in (0, 1, 1000, PAGES - 1):
        assert k.device_dma(cam, iova + i * 4096 + 0x40, is_write=True) == pages[i] * 4096 + 0x40
    dma.dma_unmap_sgtable(cam, sgt, DMA_FROM_DEVICE)
    assert not k.findings.of_kind("dma-debug")
    # strict mode: the IOTLB was invalidated, so a late DMA faults and touches nothing
    assert k.device_dma(cam, iova + 0x40, is_write=True) is None
    smmu = k.smmu_of(cam)
    smmu.evtq_thread()  # type: ignore[union-attr]
    lines = smmu.log  # type: ignore[union-attr]
    at = next(i for i, line in enumerate(lines) if line.endswith("event 0x10 received:"))
    assert lines[at + 1].endswith(f"\t0x{0x800:08x}00000010")  # stream 0x800, F_TRANSLATION
    assert k.findings.of_kind("smmu")


def test_dma_debug_catches_wrong_unmap_size(ref: Kernel) -> None:
    cam = ref.device("cam1")
    page = ref.mem.alloc_pages(0)
    assert page is not None
    addr = dma.dma_map_page_attrs(cam, page * 4096, 0, 4096, DMA_TO_DEVICE)
    assert dma.dma_mapping_error(cam, addr) == 0
    before = len(ref.findings.of_kind("dma-debug"))
    dma.dma_unmap_page_attrs(cam, addr, 8192, DMA_TO_DEVICE)
    new = ref.findings.of_kind("dma-debug")[before:]
    assert [f.kind for f in new] == ["dma-debug.unmap-wrong-size"]
    assert "device driver frees DMA memory with different size" in new[0].message
    assert "[map size=4096 bytes] [unmap size=8192 bytes]" in new[0].message


def test_invalid_direction_is_the_kernels_bug_on(ref: Kernel) -> None:
    with pytest.raises(KernelError) as info:
        dma.dma_map_page_attrs(ref.device("isp"), 0x9000_0000, 0, 4096, 7)
    assert info.value.errno == errno.EINVAL


def test_no_iommu_soc_bounces_high_pages_through_swiotlb() -> None:
    k = Kernel.boot(load_soc("nommu-imx8m"))
    csi = k.device("csi1")
    assert not csi.uses_iommu_dma
    high = None
    while high is None or high * 4096 < 0x1_0000_0000:  # take pages until one lies above 4 GiB
        high = k.mem.alloc_pages(0)
        assert high is not None
    addr = dma.dma_map_page_attrs(csi, high * 4096, 0, 4096, DMA_FROM_DEVICE)
    assert dma.dma_mapping_error(csi, addr) == 0
    assert addr < 0x1_0000_0000
    assert k.swiotlb is not None and k.swiotlb.mem_used() >= 2  # two 2 KiB slots
    dma.dma_unmap_page_attrs(csi, addr, 4096, DMA_FROM_DEVICE)
    assert k.swiotlb.mem_used() == 0
    assert not k.findings.of_kind("dma-debug")


def test_coherent_allocations(ref: Kernel) -> None:
    disp = ref.device("display")  # 32-bit mask behind the SMMU
    buf = dma.dma_alloc_coherent(disp, 1 << 20)
    assert buf is not None and buf.dma_handle + buf.size <= 1 << 32
    assert ref.device_dma(disp, buf.dma_handle + 0x1234, is_write=False) == buf.pages[1] + 0x234
    dma.dma_free_coherent(disp, buf)
    k = Kernel.boot(load_soc("nommu-imx8m"))
    vpu = k.device("vpu")
    buf2 = dma.dma_alloc_coherent(vpu, 4 << 20)
    assert buf2 is not None
    cma = k.mem.default_cma
    assert cma is not None and cma.used() == (4 << 20) // 4096  # from the default CMA
    assert buf2.dma_handle == buf2.phys  # identity dma-ranges on i.MX8M
    dma.dma_free_coherent(vpu, buf2)
    assert cma.used() == 0


def test_masks() -> None:
    k = Kernel.boot(load_soc("nommu-imx8m"))
    gpu = k.device("gpu")
    assert dma.dma_set_mask_and_coherent(gpu, DMA_BIT_MASK(24)) == -errno.EIO  # DRAM at 1 GiB
    assert dma.dma_set_mask_and_coherent(gpu, DMA_BIT_MASK(32)) == 0
    ref = Kernel.boot(load_soc("reference-mobile"))
    assert dma.dma_set_mask_and_coherent(ref.device("venc"), DMA_BIT_MASK(24)) == 0
    assert ref.device("venc").iommu.dma_mask == DMA_BIT_MASK(24)  # type: ignore[union-attr]


def test_non_coherent_sync_is_maintenance_and_coherent_is_not(ref: Kernel) -> None:
    for name, expect in (("isp", True), ("npu", False)):
        dev = ref.device(name)
        pages = scattered_pages(ref, 4)
        sgt = sg_alloc_table_from_pages_segment(pages, 0, 4 * 4096, dev.max_segment_size)
        assert dma.dma_map_sgtable(dev, sgt, DMA_BIDIRECTIONAL) == 0
        before = dev.stats.get("sync_for_cpu_bytes", 0)
        dma.dma_sync_sgtable_for_cpu(dev, sgt, DMA_BIDIRECTIONAL)
        synced = dev.stats.get("sync_for_cpu_bytes", 0) - before
        assert (synced == 4 * 4096) is expect
        dma.dma_unmap_sgtable(dev, sgt, DMA_BIDIRECTIONAL)


def test_strict_versus_lazy_invalidation_counts() -> None:
    counts = {}
    for mode in ("strict", "lazy"):
        k = Kernel.boot(load_soc("reference-mobile"), invalidation=mode)
        cam = k.device("cam2")
        page = k.mem.alloc_pages(0)
        assert page is not None
        smmu = k.smmu_of(cam)
        base = smmu.tlbi_commands  # type: ignore[union-attr]
        for _ in range(100):
            a = dma.dma_map_page_attrs(cam, page * 4096, 0, 4096, DMA_TO_DEVICE)
            dma.dma_unmap_page_attrs(cam, a, 4096, DMA_TO_DEVICE)
        counts[mode] = smmu.tlbi_commands - base  # type: ignore[union-attr]
    assert counts["strict"] == 100
    assert counts["lazy"] == 0  # queued: fewer than 256 entries and no 10 ms timeout yet


def test_unbind_with_mappings_held_is_reported() -> None:
    k = Kernel.boot(load_soc("reference-mobile"))
    dev = k.device("dma0")
    page = k.mem.alloc_pages(0)
    assert page is not None
    dma.dma_map_page_attrs(dev, page * 4096, 0, 4096, DMA_TO_DEVICE)
    assert k.dma_debug is not None
    k.dma_debug.dma_debug_device_change(dev)
    (f,) = k.findings.of_kind("dma-debug.unbind-pending-dma")
    assert "has pending DMA allocations while released from device [count=1]" in f.message


def test_swiotlb_pool_never_lands_in_a_cma_area() -> None:
    # memblock places the default swiotlb pool below 4 GiB, outside /reserved-memory: the
    # CMA area's pages are free to the buddy allocator (MIGRATE_CMA) but not to memblock
    for name in ("reference-mobile", "midrange-lpddr4x", "nommu-imx8m"):
        k = Kernel.boot(load_soc(name))
        assert k.swiotlb is not None
        lo, hi = k.swiotlb.start, k.swiotlb.start + (k.swiotlb.nslabs << 11)
        for cma in k.mem.cma_areas.values():
            c_lo, c_hi = cma.base_pfn << 12, (cma.base_pfn + cma.count) << 12
            assert hi <= c_lo or lo >= c_hi, name
        cma = k.mem.default_cma
        assert cma is not None and cma.cma_alloc(cma.count, 0) is not None  # all of it usable
