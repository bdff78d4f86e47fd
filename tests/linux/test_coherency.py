"""Cache coherency on a booted kernel: the DMA API's maintenance through the arch_sync
hooks, streaming ownership, and the checks, on reference-mobile (SMMU, dma-iommu) and
nommu-imx8m (dma-direct)."""

from __future__ import annotations

import pytest

from socmem.linux.coherency import CoherencyTracker, track_coherency
from socmem.linux.device import Device
from socmem.linux.dma import mapping as dma
from socmem.linux.dma.scatterlist import SgTable, sg_alloc_table_from_pages_segment
from socmem.linux.dma.types import (
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_TO_DEVICE,
)
from socmem.linux.kernel import Kernel
from socmem.linux.mm.buddy import ZONE_DMA
from socmem.soc.loader import load_soc

PAGE = 4096


@pytest.fixture
def ref() -> tuple[Kernel, CoherencyTracker]:
    k = Kernel.boot(load_soc("reference-mobile"))
    return k, track_coherency(k)


@pytest.fixture
def imx() -> tuple[Kernel, CoherencyTracker]:
    k = Kernel.boot(load_soc("nommu-imx8m"))
    return k, track_coherency(k)


def buffer(k: Kernel, dev: Device, pages: int) -> tuple[SgTable, int]:
    """Scattered order-0 pages in an sg table, and the first page's physical address."""
    pfns = [k.mem.alloc_pages(0) for _ in range(2 * pages)][::2]
    sgt = sg_alloc_table_from_pages_segment(pfns, 0, pages * PAGE, dev.max_segment_size)  # type: ignore[arg-type]
    return sgt, pfns[0] * PAGE  # type: ignore[operator]


def low_pages(k: Kernel, order: int) -> int:
    """Pages below 4 GiB (ZONE_DMA): a 32-bit dma-direct device maps them without a
    swiotlb bounce."""
    pfn = k.mem.alloc_pages(order, highest_zone=ZONE_DMA)
    assert pfn is not None
    return pfn * PAGE


def kinds(k: Kernel) -> list[str]:
    return sorted(f.kind for f in k.findings if f.kind.startswith("coherency"))


def test_hooks_go_on_non_coherent_devices_only(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    assert k.device("npu").coherent and k.device("npu").direct.arch_sync is None
    assert k.device("cam0").direct.arch_sync is not None
    tr.detach()
    assert k.device("cam0").direct.arch_sync is None


# -- stale CPU read --------------------------------------------------------------------------
@pytest.mark.parametrize("sync", [False, True])
def test_camera_frame_read_by_the_cpu(ref: tuple[Kernel, CoherencyTracker], sync: bool) -> None:
    k, tr = ref
    cam = k.device("cam0")
    sgt, phys = buffer(k, cam, 4)
    assert dma.dma_map_sgtable(cam, sgt, DMA_FROM_DEVICE) == 0
    k.clock.advance(12_500_000)
    acc = tr.device_write(cam, sgt.sgl[0].dma_address, 4 * PAGE)
    assert acc.bytes == 4 * PAGE and len(acc.runs) == 4 and not acc.faulted
    if sync:
        dma.dma_sync_sgtable_for_cpu(cam, sgt, DMA_FROM_DEVICE)
    assert tr.cpu_read(phys, PAGE) == (0 if sync else PAGE)
    if sync:
        assert kinds(k) == []
        return
    assert kinds(k) == ["coherency.cpu-access-while-device-owns", "coherency.stale-cpu-read"]
    (f,) = k.findings.of_kind("coherency.stale-cpu-read")
    assert f.message == (
        f"socmem-coherency: cpu read of 0x{phys:x}+4096 returns stale data (4096 bytes at "
        f"0x{phys:x}): device cam0 wrote it at 12.500 ms, no dma_sync_*_for_cpu / "
        "begin_cpu_access since"
    )
    assert [(h.what, h.detail) for h in f.history] == [
        (
            "dcache_clean_poc",
            "cam0: arch_sync_dma_for_device(DMA_FROM_DEVICE): dma_map_* / dma_sync_*_for_device",
        ),
        ("device write", "cam0 (non-coherent)"),
        ("cpu read", "cached"),
    ]
    assert f.history[1].time == pytest.approx(0.0125)
    (o,) = k.findings.of_kind("coherency.cpu-access-while-device-owns")
    assert o.message == (
        f"socmem-coherency: cpu read of 0x{phys:x}+4096 while device cam0 owns "
        f"0x{phys:x}+4096 (dma_map_* / dma_sync_*_for_device at 0.000 ms, no "
        "dma_sync_*_for_cpu / dma_unmap_* since)"
    )


def test_unmap_invalidates_on_dma_direct(imx: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = imx
    csi = k.device("csi1")
    assert not csi.uses_iommu_dma
    phys = low_pages(k, 2)
    tr.cpu_read(phys, 4 * PAGE)  # the CPU had the lines
    addr = dma.dma_map_page_attrs(csi, phys, 0, 4 * PAGE, DMA_FROM_DEVICE)
    tr.device_write(csi, addr, 4 * PAGE)
    dma.dma_unmap_page_attrs(csi, addr, 4 * PAGE, DMA_FROM_DEVICE)
    assert tr.cpu_read(phys, 4 * PAGE) == 0 and kinds(k) == []
    c = tr.cost(csi)
    assert (c.clean_lines, c.invalidate_lines, c.calls) == (256, 256, 2)


# -- device read of uncleaned CPU data -------------------------------------------------------
@pytest.mark.parametrize("attrs", [0, DMA_ATTR_SKIP_CPU_SYNC])
def test_encoder_reads_what_the_cpu_wrote(ref: tuple[Kernel, CoherencyTracker], attrs: int) -> None:
    k, tr = ref
    venc = k.device("venc")
    sgt, phys = buffer(k, venc, 2)
    for s in sgt.sgl[: sgt.orig_nents]:
        tr.cpu_write(s.phys, s.length)
    assert dma.dma_map_sgtable(venc, sgt, DMA_TO_DEVICE, attrs) == 0
    acc = tr.device_read(venc, sgt.sgl[0].dma_address, 2 * PAGE)
    if not attrs:
        assert acc.stale == 0 and kinds(k) == []
        return
    assert acc.stale == 2 * PAGE
    assert kinds(k) == ["coherency.device-read-uncleaned"] * 2  # one per physical run
    f = k.findings.of_kind("coherency.device-read-uncleaned")[0]
    assert f.message.startswith(f"socmem-coherency: venc: DMA read of 0x{phys:x}+4096 returns")


@pytest.mark.parametrize("sync", [False, True])
def test_cpu_refill_needs_sync_for_device(imx: tuple[Kernel, CoherencyTracker], sync: bool) -> None:
    k, tr = imx
    vpu = k.device("vpu")
    phys = low_pages(k, 0)
    addr = dma.dma_map_single_attrs(vpu, phys, PAGE, DMA_BIDIRECTIONAL)
    dma.dma_sync_single_for_cpu(vpu, addr, PAGE, DMA_BIDIRECTIONAL)
    tr.cpu_write(phys, PAGE)  # the CPU owns it: allowed
    if sync:
        dma.dma_sync_single_for_device(vpu, addr, PAGE, DMA_BIDIRECTIONAL)
    stale = tr.device_read(vpu, addr, PAGE).stale
    assert stale == (0 if sync else PAGE)
    assert kinds(k) == ([] if sync else ["coherency.device-read-uncleaned"])


# -- lost device write -----------------------------------------------------------------------
def test_cpu_dirtied_line_evicted_over_the_camera_frame(
    ref: tuple[Kernel, CoherencyTracker],
) -> None:
    k, tr = ref
    cam = k.device("cam1")
    sgt, phys = buffer(k, cam, 1)
    assert dma.dma_map_sgtable(cam, sgt, DMA_FROM_DEVICE) == 0
    tr.cpu_write(phys + 256, 64)  # the CPU scribbles on a buffer the camera owns
    k.clock.advance(1_000_000)
    tr.device_write(cam, sgt.sgl[0].dma_address, PAGE)
    assert tr.cache.evict(phys, PAGE) == 1
    assert kinds(k) == ["coherency.cpu-access-while-device-owns", "coherency.lost-device-write"]
    (f,) = k.findings.of_kind("coherency.lost-device-write")
    assert f.data == {
        "paddr": phys + 256,
        "size": 64,
        "lost_bytes": 64,
        "device": "cam1",
        "cause": "eviction",
    }
    assert [h.what for h in f.history] == ["dcache_clean_poc", "cpu write", "device write"]


@pytest.mark.parametrize("neighbour_dirty", [True, False])
def test_partial_line_buffer_next_to_cpu_data(
    imx: tuple[Kernel, CoherencyTracker], neighbour_dirty: bool
) -> None:
    """A 256-byte FROM_DEVICE buffer at +32 in a page: ``arch_sync_dma_for_cpu`` is
    ``dcache_inval_poc``, which cleans+invalidates the partial first and last lines, so a
    CPU-dirty neighbour in line 0 is written back over the device's first 32 bytes."""
    k, tr = imx
    csi = k.device("csi1")
    page = low_pages(k, 0)
    buf = page + 32
    addr = dma.dma_map_single_attrs(csi, buf, 256, DMA_FROM_DEVICE)
    if neighbour_dirty:
        tr.cpu_write(page, 32)  # a struct field next to the buffer: not owned by csi1
    tr.device_write(csi, addr, 256)
    dma.dma_unmap_single_attrs(csi, addr, 256, DMA_FROM_DEVICE)
    assert tr.cpu_read(buf, 256) == 0
    c = tr.cost(csi)
    assert (c.clean_lines, c.clean_invalidate_lines, c.invalidate_lines) == (5, 2, 3)
    if neighbour_dirty:
        assert kinds(k) == ["coherency.lost-device-write"]
        assert tr.cache.memory_token(page).by_cpu  # the neighbour keeps its data
        assert tr.cache.memory_token(buf).by_cpu  # the device's first 32 bytes are gone
    else:
        assert kinds(k) == []
    assert tr.cache.memory_token(page + 64).writer == "csi1"


# -- coherent master -------------------------------------------------------------------------
def test_coherent_npu_needs_no_maintenance(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    npu = k.device("npu")
    sgt, phys = buffer(k, npu, 4)
    for s in sgt.sgl[: sgt.orig_nents]:
        tr.cpu_write(s.phys, s.length)
    assert dma.dma_map_sgtable(npu, sgt, DMA_BIDIRECTIONAL) == 0
    iova = sgt.sgl[0].dma_address
    assert tr.device_read(npu, iova, 4 * PAGE).stale == 0
    tr.device_write(npu, iova, 4 * PAGE)
    assert tr.cpu_read(phys, PAGE) == 0
    dma.dma_unmap_sgtable(npu, sgt, DMA_BIDIRECTIONAL)
    tr.cache.evict_all()
    assert kinds(k) == [] and tr.cost(npu).lines == 0 and tr.cost().lines == 0
    assert tr.estimated_ns() == 0


def test_coherent_device_ownership_is_told_explicitly(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    npu = k.device("npu")
    sgt, phys = buffer(k, npu, 2)
    assert dma.dma_map_sgtable(npu, sgt, DMA_FROM_DEVICE) == 0
    tr.on_map(npu, sgt, DMA_FROM_DEVICE)
    assert tr.device_owners(phys, PAGE) == {"npu"}
    tr.cpu_read(phys, 16)
    assert kinds(k) == ["coherency.cpu-access-while-device-owns"]
    tr.on_sync_for_cpu(npu, sgt, DMA_FROM_DEVICE)
    tr.cpu_read(phys, 16)
    tr.on_sync_for_device(npu, [(phys, PAGE)], DMA_FROM_DEVICE)
    tr.on_unmap(npu, sgt, DMA_FROM_DEVICE)
    tr.cpu_write(phys, 16)
    assert len(k.findings.of_kind("coherency")) == 1 and tr.cost().calls == 0


def test_ownership_is_per_device(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    isp, venc = k.device("isp"), k.device("venc")
    sgt, phys = buffer(k, isp, 1)
    assert dma.dma_map_sgtable(isp, sgt, DMA_TO_DEVICE) == 0
    assert dma.dma_map_sgtable(venc, sgt, DMA_TO_DEVICE) == 0
    dma.dma_sync_sgtable_for_cpu(isp, sgt, DMA_TO_DEVICE)  # no invalidate for TO_DEVICE
    assert tr.cost(isp).invalidate_lines == 0 and tr.device_owners(phys, PAGE) == {"venc"}
    tr.cpu_read(phys, PAGE)
    assert kinds(k) == ["coherency.cpu-access-while-device-owns"]
    dma.dma_unmap_sgtable(venc, sgt, DMA_TO_DEVICE)
    assert tr.device_owners(phys, PAGE) == set()


# -- uncached and write-combined coherent allocations ----------------------------------------
@pytest.mark.parametrize("soc,dev", [("reference-mobile", "cam0"), ("nommu-imx8m", "csi1")])
@pytest.mark.parametrize("wc", [False, True])
def test_dma_alloc_coherent_on_a_non_coherent_device(soc: str, dev: str, wc: bool) -> None:
    from socmem.linux.dma.types import DMA_ATTR_WRITE_COMBINE

    k = Kernel.boot(load_soc(soc))
    tr = track_coherency(k)
    d = k.device(dev)
    alloc = dma.dma_alloc_attrs(d, 8 * PAGE, attrs=DMA_ATTR_WRITE_COMBINE if wc else 0)
    assert alloc is not None
    expected = "writecombine" if wc and not d.uses_iommu_dma else "dmacoherent"
    assert alloc.cpu_mapping == expected
    prep = tr.cost(d).clean_invalidate_lines  # arch_dma_prep_coherent on dma-direct only
    assert prep == (0 if d.uses_iommu_dma else 8 * PAGE // 64)
    assert tr.device_owners(alloc.phys, 8 * PAGE) == set()
    for _ in range(3):
        tr.device_write(d, alloc.dma_handle, PAGE)
        assert tr.cpu_read(alloc.pages[0], PAGE, alloc.cpu_mapping) == 0
        tr.cpu_write(alloc.pages[0], 64, alloc.cpu_mapping)
        assert tr.device_read(d, alloc.dma_handle, PAGE).stale == 0
    assert kinds(k) == [] and tr.cost(d).calls == (0 if d.uses_iommu_dma else 1)


# -- faults and cost -------------------------------------------------------------------------
def test_an_smmu_fault_touches_no_memory(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    cam = k.device("cam2")
    sgt, phys = buffer(k, cam, 1)
    assert dma.dma_map_sgtable(cam, sgt, DMA_FROM_DEVICE) == 0
    iova = sgt.sgl[0].dma_address
    dma.dma_unmap_sgtable(cam, sgt, DMA_FROM_DEVICE)
    acc = tr.device_write(cam, iova, PAGE)
    assert acc.faulted == PAGE and acc.runs == []
    assert tr.cache.memory_token(phys).writer == "boot"


def test_sync_cost_is_lines_touched(ref: tuple[Kernel, CoherencyTracker]) -> None:
    k, tr = ref
    dsp = k.device("dma0")
    phys = k.mem.alloc_pages(0) * PAGE  # type: ignore[operator]
    addr = dma.dma_map_page_attrs(dsp, phys, 0, PAGE, DMA_BIDIRECTIONAL)
    dma.dma_sync_single_for_cpu(dsp, addr + 10, 100, DMA_BIDIRECTIONAL)  # [10, 110): 2 lines
    dma.dma_sync_single_for_device(dsp, addr + 64, 128, DMA_BIDIRECTIONAL)  # 2 lines
    c = tr.cost(dsp)
    assert (c.clean_lines, c.clean_invalidate_lines, c.invalidate_lines) == (64 + 2, 2, 0)
    assert c.bytes == PAGE + 100 + 128 and c.calls == 3
    assert tr.estimated_ns(dsp) == pytest.approx(68 * 0.6e6 / 194_400)
    assert tr.cost().lines == 68


def test_a_12mib_frame_cycled_100_times_stays_a_few_intervals(
    ref: tuple[Kernel, CoherencyTracker],
) -> None:
    k, tr = ref
    cam, isp = k.device("cam0"), k.device("isp")
    blocks = [k.mem.alloc_pages(10) for _ in range(3)]  # 3 × 4 MiB
    pfns = [b + i for b in blocks for i in range(1024)]  # type: ignore[operator]
    frame = 12 << 20
    sgt = sg_alloc_table_from_pages_segment(pfns, 0, frame, cam.max_segment_size)
    assert dma.dma_map_sgtable(cam, sgt, DMA_FROM_DEVICE) == 0
    iova = sgt.sgl[0].dma_address
    for i in range(100):
        k.clock.advance(33_333_333)
        tr.device_write(cam, iova, frame)
        dma.dma_sync_sgtable_for_cpu(cam, sgt, DMA_FROM_DEVICE)
        tr.cpu_read(sgt.sgl[i % 3].phys + i * PAGE, PAGE)  # a CPU peek at statistics
        dma.dma_sync_sgtable_for_device(cam, sgt, DMA_FROM_DEVICE)
    dma.dma_unmap_sgtable(cam, sgt, DMA_FROM_DEVICE)
    assert kinds(k) == []
    assert tr.cache.intervals() < 40 and tr.owners.boundaries < 10
    lines = frame // 64
    c = tr.cost(cam)
    assert c.clean_lines == 101 * lines and c.invalidate_lines == 101 * lines
    # about 0.6 ms per 12 MiB pass (perf-anchors 4.10)
    assert tr.estimated_ns(cam) / 202 == pytest.approx(lines * 0.6e6 / 194_400)
    assert tr.cost(isp).calls == 0
