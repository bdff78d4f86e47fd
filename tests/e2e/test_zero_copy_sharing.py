"""End to end: one camera frame shared, with zero copies, by an NPU, a CPU process and a
display, synchronised by explicit fences; then the same sequence with each rule broken
in turn, each producing exactly the findings expected and nothing else.

The pipeline (reference-mobile: SMMUv3; ``cam0`` and ``display`` non-coherent, ``npu``
coherent) for one frame:

1. the app allocates the frame from ``/dev/dma_heap/system`` (``DMA_HEAP_IOCTL_ALLOC``)
   and mmaps it; the camera, NPU and display drivers import it (``dma_buf_get`` on the
   fd, attach); the camera maps it for good, ``DMA_BIDIRECTIONAL`` (as V4L2 keeps its
   dma-buf mappings);
2. jobs are queued, each with the fence it will signal: the camera's completion fence
   (exported as a sync_file to the app and the NPU), the NPU's release fence (it waits
   for the camera), the app's overlay fence (a sw_sync point; it waits for the camera
   and for the NPU to finish reading);
3. the camera writes the frame and signals; the NPU waits, maps ``DMA_TO_DEVICE``,
   reads, unmaps, signals; the app waits and reads between ``DMA_BUF_IOCTL_SYNC``
   START/END (READ); the display queues a flip waiting for the overlay and maps the
   frame ``DMA_TO_DEVICE`` (DRM's prepare_fb); the app draws an overlay between
   START/END (WRITE) and signals; the display waits, scans out, unmaps, signals; the
   camera waits (bounded) for the release fences before it could reuse the buffer;
4. the drivers unmap, detach and put; the app exits (closing its fd and mapping).

Why these directions and this order: with 6.1 dma-debug, two mappings of the same pages
that may write (not ``DMA_TO_DEVICE``) are ``cacheline tracking EEXIST``, and the system
heap syncs every mapped attachment with the *caller's* direction on
``DMA_BUF_IOCTL_SYNC``, so a CPU sync while an importer holds a mapping of another
(non-bidirectional) direction is ``syncs DMA memory with different direction``.  The
correct sequence is the one with no finding at all.

The NPU also maps a 256-byte command descriptor with ``dma_map_single`` (a kernel page,
not a copy of the frame) so that the DMA API's size rule has something to break.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from socmem.check.lifetime import LifetimeSanitizer, agent_name, sanitize
from socmem.linux.coherency import CoherencyTracker, track_coherency
from socmem.linux.device import Device
from socmem.linux.dma import mapping as dma
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_BIDIRECTIONAL, DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SYNC_END,
    DMA_BUF_SYNC_READ,
    DMA_BUF_SYNC_START,
    DMA_BUF_SYNC_WRITE,
    DmaBuf,
    DmaBufAttachment,
    dma_buf_attach,
    dma_buf_detach,
    dma_buf_map_attachment,
    dma_buf_put,
    dma_buf_unmap_attachment,
)
from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceOps,
    dma_fence_context_alloc,
    dma_fence_put,
    dma_fence_signal,
    dma_fence_wait_timeout,
)
from socmem.linux.dmabuf.heaps import (
    DMA_HEAP_IOCTL_ALLOC,
    DmaHeapAllocationData,
    DmaHeapRegistry,
    dma_heaps_for_kernel,
)
from socmem.linux.dmabuf.sw_sync import SwSyncTimeline
from socmem.linux.dmabuf.sync_file import SyncFile, sync_file_create
from socmem.linux.kernel import Kernel
from socmem.linux.mm.buddy import ZONE_DMA
from socmem.linux.process import Mapping, Process, UserSpace, sync_file_install
from socmem.soc.loader import load_soc

PAGE = 4096
FRAME = 1280 * 720 * 3 // 2  # NV12 720p: 1 MiB + 326 KiB (system heap: orders 8, 4, 0)
FRAME_NS = 33_333_333


# ---------------------------------------------------------------------------------------
# the rig and its steps
# ---------------------------------------------------------------------------------------
@dataclass
class Import:
    """One driver's import of the frame."""

    dev: Device
    buf: DmaBuf
    attach: DmaBufAttachment
    sgt: SgTable | None = None
    dir: int = DMA_BIDIRECTIONAL
    pfns: list[int] = field(default_factory=list)
    segs: list[tuple[int, int]] = field(default_factory=list)
    put: bool = False


@dataclass
class Rig:
    """A booted SoC with heaps, user space, the coherency tracker and the sanitizer."""

    k: Kernel
    heaps: DmaHeapRegistry
    us: UserSpace
    tr: CoherencyTracker
    san: LifetimeSanitizer
    app: Process
    heap: str
    cam: str
    npu: str
    disp: str
    fd: int = -1
    mapping: Mapping | None = None
    imports: dict[str, Import] = field(default_factory=dict)
    fences: dict[str, DmaFence] = field(default_factory=dict)
    cam_sync: SyncFile | None = None
    app_cam_fd: int = -1
    app_tl: SwSyncTimeline | None = None
    app_sync: SyncFile | None = None
    contexts: dict[str, int] = field(default_factory=dict)
    desc: int = 0

    def dev(self, name: str) -> Device:
        return self.k.device(name)

    @property
    def buf(self) -> DmaBuf:
        return self.app.file(self.fd).dmabuf if self.fd >= 0 else self.imports[self.cam].buf  # type: ignore[attr-defined]

    def kinds(self) -> set[str]:
        return {f.kind for f in self.k.findings}

    def counts(self) -> Counter[str]:
        return self.k.findings.counts()


def boot(
    soc: str = "reference-mobile",
    *,
    heap: str = "system",
    cam: str = "cam0",
    npu: str = "npu",
    disp: str = "display",
) -> Rig:
    k = Kernel.boot(load_soc(soc))
    # display drivers behind an IOMMU lift the 64 KiB segment limit at probe
    # (dma_set_max_seg_size(dev, UINT_MAX)): the system heap hands out 1 MiB chunks
    dma.dma_set_max_seg_size(k.device(disp), 0xFFFFFFFF)
    heaps = dma_heaps_for_kernel(k)
    us = UserSpace(k.core)
    us.add_devnodes(heaps.devnodes())
    tr = track_coherency(k)
    san = sanitize(k, userspace=us, coherency=tr)
    app = us.spawn("app")
    return Rig(k, heaps, us, tr, san, app, heap, cam, npu, disp)


def allocate(r: Rig) -> None:
    """The app allocates the frame from the heap and mmaps it."""
    hfd = r.app.open(f"/dev/dma_heap/{r.heap}")
    data = DmaHeapAllocationData(len=FRAME, fd_flags=0o2000002)
    r.app.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, data)
    r.app.close(hfd)
    r.fd = data.fd
    r.mapping = r.app.mmap(r.fd, FRAME)


def import_(r: Rig, name: str) -> Import:
    """A driver imports the fd: ``dma_buf_get``, attach."""
    dev = r.dev(name)
    buf = r.app.dma_buf_get(r.fd)
    attach = dma_buf_attach(buf, dev)
    assert isinstance(attach, DmaBufAttachment)
    imp = Import(dev, buf, attach)
    r.imports[name] = imp
    return imp


def map_(r: Rig, name: str, direction: int) -> None:
    """A driver maps its attachment (a coherent device also tells the coherency tracker
    that it owns the pages: no arch hook does it); the SMMU translation of every page of
    the mapping is kept, to check that it reaches the heap's own pages."""
    imp = r.imports[name]
    sgt = dma_buf_map_attachment(imp.attach, direction)
    assert isinstance(sgt, SgTable)
    imp.sgt, imp.dir = sgt, direction
    imp.segs = [(s.dma_address, s.dma_length) for s in sgt.sgl[: sgt.nents]]
    if imp.dev.coherent:
        r.tr.on_map(imp.dev, sgt, direction)
    smmu = r.k.smmu_of(imp.dev)
    if smmu is not None and imp.dev.iommu is not None:
        sid = imp.dev.iommu.sids[0][0]
        imp.pfns = [
            smmu.translate(sid, a + off) >> 12  # type: ignore[attr-defined]
            for a, n in segments(imp)
            for off in range(0, n, PAGE)
        ]


def unmap(r: Rig, name: str) -> None:
    imp = r.imports[name]
    if imp.sgt is None:
        return
    dma_buf_unmap_attachment(imp.attach, imp.sgt, imp.dir)
    if imp.dev.coherent:
        r.tr.on_unmap(imp.dev, imp.sgt, imp.dir)
    imp.sgt = None


def import_all(r: Rig) -> None:
    for name in (r.cam, r.npu, r.disp):
        import_(r, name)
    map_(r, r.cam, DMA_BIDIRECTIONAL)


def driver_fence(r: Rig, name: str, seqno: int = 1) -> DmaFence:
    """A driver's job fence on its own timeline (``<dev>-ring``)."""
    if name not in r.contexts:
        r.contexts[name] = dma_fence_context_alloc(1, r.k.core)
    ops = DmaFenceOps(get_driver_name=lambda f: name, get_timeline_name=lambda f: f"{name}-ring")
    return DmaFence(ops, r.contexts[name], seqno, core=r.k.core)


def segments(imp: Import) -> list[tuple[int, int]]:
    """The bus addresses the device's DMA engine was programmed with at its last map."""
    return imp.segs


def dev_access(r: Rig, name: str, write: bool, start: int = 0, end: int = FRAME) -> None:
    """``name`` reads or writes bytes ``[start, end)`` of the frame through its mapping."""
    imp = r.imports[name]
    off = 0
    for addr, n in segments(imp):
        a, b = max(start, off), min(end, off + n)
        if a < b:
            if write:
                r.tr.device_write(imp.dev, addr + a - off, b - a)
            else:
                r.tr.device_read(imp.dev, addr + a - off, b - a)
        off += n


def cam_submit(r: Rig) -> None:
    """The camera queues its capture; its completion fence goes out as a sync_file."""
    f = driver_fence(r, r.cam)
    r.fences["cam"] = f
    r.san.signals(r.cam, f, [r.buf], write=True)
    r.cam_sync = sync_file_create(f)
    r.app_cam_fd = sync_file_install(r.app, sync_file_create(f))


def npu_submit(r: Rig, wait: bool = True) -> None:
    """The NPU queues an inference that waits for the camera's sync_file."""
    f = driver_fence(r, r.npu)
    r.fences["npu"] = f
    r.san.signals(r.npu, f, [r.buf], write=False)
    if wait:
        assert r.cam_sync is not None
        r.san.waits(r.npu, r.cam_sync)


def app_submit(r: Rig) -> None:
    """The app's overlay job (a sw_sync point): after the camera and the NPU's read."""
    r.app_tl = SwSyncTimeline("app-overlay", r.k.core)
    r.app_sync = r.app_tl.create_fence(1)
    who = agent_name(r.app)
    r.san.signals(who, r.app_sync, [r.buf], write=True)
    r.san.waits(who, r.fences["cam"])
    r.san.waits(who, r.fences["npu"])


def disp_submit(r: Rig) -> None:
    """The display queues a flip that waits for the overlay, and maps the frame."""
    f = driver_fence(r, r.disp)
    r.fences["disp"] = f
    r.san.signals(r.disp, f, [r.buf], write=False)
    assert r.app_sync is not None
    r.san.waits(r.disp, r.app_sync)
    map_(r, r.disp, DMA_TO_DEVICE)


def submit_all(r: Rig) -> None:
    cam_submit(r)
    npu_submit(r)
    app_submit(r)


def cam_capture(r: Rig, start: int = 0, end: int = FRAME) -> None:
    r.k.clock.advance(FRAME_NS // 2)
    dev_access(r, r.cam, True, start, end)


def cam_done(r: Rig) -> None:
    dma_fence_signal(r.fences["cam"])


def wait(r: Rig, who: str, fence: DmaFence) -> None:
    with r.san.agent(who):
        assert dma_fence_wait_timeout(fence, True, FRAME_NS) > 0


def npu_run(r: Rig, wait_first: bool = True, desc_unmap_size: int = 256) -> None:
    """The NPU: wait for the camera, map its descriptor, read the frame, unmap, signal."""
    npu = r.dev(r.npu)
    if wait_first:
        assert r.cam_sync is not None
        wait(r, r.npu, r.cam_sync.fence)
    if not r.desc:
        pfn = r.k.mem.alloc_pages(0, highest_zone=ZONE_DMA, owner="npu-cmdq")  # GFP_DMA32
        assert pfn is not None
        r.desc = pfn * PAGE
    map_(r, r.npu, DMA_TO_DEVICE)
    handle = dma.dma_map_single_attrs(npu, r.desc, 256, DMA_TO_DEVICE)
    assert not dma.dma_mapping_error(npu, handle)
    r.k.clock.advance(1_000_000)
    dev_access(r, r.npu, False)
    dma.dma_unmap_page_attrs(npu, handle, desc_unmap_size, DMA_TO_DEVICE)
    unmap(r, r.npu)


def npu_done(r: Rig) -> None:
    dma_fence_signal(r.fences["npu"])


def _sync(r: Rig, flags: int) -> None:
    """``DMA_BUF_IOCTL_SYNC``; a coherent importer mapped now has its ownership follow it
    (the exporter's ``dma_sync_*`` calls reach no arch hook for a coherent device)."""
    r.app.ioctl(r.fd, DMA_BUF_IOCTL_SYNC, flags)
    for imp in r.imports.values():
        if imp.dev.coherent and imp.sgt is not None:
            if flags & DMA_BUF_SYNC_END:
                r.tr.on_sync_for_device(imp.dev, imp.sgt, imp.dir)
            else:
                r.tr.on_sync_for_cpu(imp.dev, imp.sgt, imp.dir)


def phys_runs(r: Rig) -> list[tuple[int, int]]:
    return [(pfn * PAGE, n * PAGE) for pfn, n in r.buf.priv.pfn_runs()]


def app_read(r: Rig, sync: bool = True) -> None:
    """The app waits for the camera, then reads the frame through its mapping."""
    who = agent_name(r.app)
    sf = r.app.file(r.app_cam_fd).sync_file  # type: ignore[attr-defined]
    wait(r, who, sf.fence)
    if sync:
        _sync(r, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)
    with r.san.agent(who):
        for a, n in phys_runs(r):
            r.tr.cpu_read(a, min(n, FRAME))
    if sync:
        _sync(r, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ)


def app_overlay(r: Rig, end: bool = True) -> None:
    """The app draws an overlay on the first page (after the NPU's read) and signals."""
    who = agent_name(r.app)
    wait(r, who, r.fences["npu"])
    _sync(r, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE)
    with r.san.agent(who):
        r.tr.cpu_write(phys_runs(r)[0][0], PAGE)
    if end:
        _sync(r, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE)
    assert r.app_tl is not None
    r.app_tl.inc(1)


def disp_run(r: Rig) -> None:
    assert r.app_sync is not None
    wait(r, r.disp, r.app_sync.fence)
    r.k.clock.advance(1_000_000)
    dev_access(r, r.disp, False)
    unmap(r, r.disp)


def disp_done(r: Rig) -> None:
    dma_fence_signal(r.fences["disp"])


def cam_requeue(r: Rig) -> None:
    """Before reusing the buffer the camera waits (one frame at most) for the release
    fences; on a timeout it gives up (it would not reuse the buffer)."""
    for key in ("npu", "disp"):
        f = r.fences[key]
        r.san.waits(r.cam, f)
        with r.san.agent(r.cam):
            if dma_fence_wait_timeout(f, True, FRAME_NS) == 0:
                r.san.unwait(r.cam, f)


def release(r: Rig, name: str, put: bool = True) -> None:
    """A driver unmaps, detaches and (unless ``put`` is false: the bug) puts the buffer."""
    imp = r.imports[name]
    unmap(r, name)
    dma_buf_detach(imp.buf, imp.attach)
    if put:
        dma_buf_put(imp.buf)
        imp.put = True


def drop_fences(r: Rig, keep: tuple[str, ...] = ()) -> None:
    """Drivers drop their job fences once signalled (a stuck job keeps its own)."""
    for key, f in r.fences.items():
        if key not in keep:
            dma_fence_put(f)
    if r.cam_sync is not None:
        r.cam_sync.release()
    if r.app_sync is not None:
        r.app_sync.release()


def run(r: Rig, **broken: object) -> None:
    """The whole correct sequence; ``broken`` replaces one step (see the tests)."""
    allocate(r)
    import_all(r)
    submit_all(r)
    cam_capture(r)
    cam_done(r)
    npu_run(r, desc_unmap_size=broken.get("desc_unmap_size", 256))  # type: ignore[arg-type]
    if not broken.get("npu_never_signals"):
        npu_done(r)
    app_read(r, sync=not broken.get("no_sync_start"))
    disp_submit(r)
    app_overlay(r, end=not broken.get("no_sync_end"))
    disp_run(r)
    if not broken.get("disp_never_signals"):
        disp_done(r)
    cam_requeue(r)
    release(r, r.cam)
    release(r, r.npu, put=not broken.get("npu_forgets_put"))
    release(r, r.disp)
    r.app.exit()
    keep = tuple(k for k in ("npu", "disp") if broken.get(f"{k}_never_signals"))
    drop_fences(r, keep)
    r.san.teardown()


# ---------------------------------------------------------------------------------------
# the correct sequence
# ---------------------------------------------------------------------------------------
def test_zero_copy_sharing_is_clean() -> None:
    r = boot()
    allocate(r)
    import_all(r)
    buf = r.buf
    submit_all(r)
    cam_capture(r)
    cam_done(r)
    npu_run(r)
    npu_done(r)
    app_read(r)
    disp_submit(r)
    app_overlay(r)
    disp_run(r)
    disp_done(r)
    cam_requeue(r)
    # zero copies: one allocation, and every device's IOVAs, translated through its own
    # SMMU stream when it mapped, reached the very pages the heap allocated
    system = r.heaps["system"]
    assert system.allocated == 1 and len(system.live) == 1
    pages = [p for pfn, n in buf.priv.pfn_runs() for p in range(pfn, pfn + n)]
    assert len(pages) == (FRAME + PAGE - 1) // PAGE
    for name, imp in r.imports.items():
        assert imp.pfns == pages, name
    for name in (r.cam, r.npu, r.disp):
        release(r, name)
    r.app.exit()
    drop_fences(r)
    assert r.san.teardown() == []
    # no bounce buffer touched, still one allocation, everything freed, nothing found
    assert r.k.swiotlb is None or sum(r.k.swiotlb.bytes_bounced.values()) == 0
    assert system.allocated == 1 and not system.live and buf.released
    assert list(r.k.findings) == []


def test_run_helper_is_the_correct_sequence() -> None:
    r = boot()
    run(r)
    assert list(r.k.findings) == []


def test_zero_copy_sharing_on_nommu_cma_is_clean() -> None:
    r = boot("nommu-imx8m", heap="linux,cma", cam="csi1", npu="vpu", disp="dcss")
    run(r)
    assert r.heaps["linux,cma"].allocated == 1
    assert r.k.swiotlb is None or sum(r.k.swiotlb.bytes_bounced.values()) == 0
    assert list(r.k.findings) == []


# ---------------------------------------------------------------------------------------
# each rule broken in turn
# ---------------------------------------------------------------------------------------
def test_a_cpu_reads_without_sync_start() -> None:
    """The app reads without its DMA_BUF_IOCTL_SYNC bracket: the camera's lines are still
    in the CPU cache (stale), and the devices still own the pages."""
    r = boot()
    run(r, no_sync_start=True)
    assert r.kinds() == {"coherency.stale-cpu-read", "coherency.cpu-access-while-device-owns"}


def test_b_npu_reads_before_the_camera_fence_signals() -> None:
    r = boot()
    allocate(r)
    import_all(r)
    cam_submit(r)
    npu_submit(r, wait=False)  # the broken step: the NPU job does not wait
    app_submit(r)
    cam_capture(r)
    npu_run(r, wait_first=False)  # ... and runs before the camera signals
    cam_done(r)
    npu_done(r)
    app_read(r)
    disp_submit(r)
    app_overlay(r)
    disp_run(r)
    disp_done(r)
    cam_requeue(r)
    for name in (r.cam, r.npu, r.disp):
        release(r, name)
    r.app.exit()
    drop_fences(r)
    r.san.teardown()
    assert r.counts() == {"lifetime.read-before-signal": 1}
    (f,) = r.k.findings.of_kind("lifetime.read-before-signal")
    assert f.data["agent"] == "npu" and f.data["signaller"] == "cam0"


def _release_during_capture(r: Rig) -> None:
    """The buffer is released (app closes, every importer detaches) in the middle of the
    camera's DMA, which then goes on writing."""
    allocate(r)
    import_all(r)
    cam_submit(r)
    cam_capture(r, 0, FRAME // 2)
    for name in (r.npu, r.disp, r.cam):
        release(r, name)
    r.app.exit()
    buf = r.imports[r.cam].buf
    assert buf.released
    cam_capture(r, FRAME // 2, FRAME)
    cam_done(r)
    drop_fences(r)
    r.san.teardown()


def test_c_release_while_the_camera_writes_faults_in_the_smmu() -> None:
    r = boot()
    _release_during_capture(r)
    assert r.kinds() == {"smmu.f-translation", "lifetime.dma-after-free"}
    (f,) = r.k.findings.of_kind("lifetime.dma-after-free")
    assert f.data["mode"] == "smmu-fault" and f.data["smmu_fault"] == "smmu.f-translation"
    assert f.data["device"] == "cam0" and f.data["write"]
    whats = [h.what for h in f.history]
    assert whats.index("dma_buf_export") < whats.index("dma_buf_map_attachment")
    assert whats.index("dma_buf_release") < whats.index("device write after free")


def test_d_release_while_the_camera_writes_without_iommu_corrupts() -> None:
    r = boot("nommu-imx8m", heap="linux,cma", cam="csi1", npu="vpu", disp="dcss")
    _release_during_capture(r)
    assert r.counts() == {"lifetime.dma-after-free": 1}
    (f,) = r.k.findings.of_kind("lifetime.dma-after-free")
    assert f.data["mode"] == "no-iommu" and "silent corruption" in f.message
    assert f.data["owner_now"] == "nobody: free in CMA area linux,cma"
    assert f.data["pages"] == (FRAME - 1) // PAGE - (FRAME // 2) // PAGE + 1


def test_e_process_exits_while_a_driver_reference_leaks() -> None:
    """The app exits holding its fd and mapping (legitimate: exit frees them), but the
    NPU driver never put its import reference: the buffer outlives every process."""
    r = boot()
    run(r, npu_forgets_put=True)
    assert r.counts() == {"process.exit-leak": 1}


def test_e0_process_exit_holding_the_only_references_is_no_leak() -> None:
    """Exit is how processes free buffers: with nothing else holding it the buffer goes."""
    r = boot()
    run(r)
    assert r.imports[r.cam].buf.released
    assert list(r.k.findings) == []


def test_f_display_release_fence_never_signalled() -> None:
    r = boot()
    run(r, disp_never_signals=True)
    assert r.counts() == {"lifetime.fence-never-signalled": 1}
    (f,) = r.k.findings.of_kind("lifetime.fence-never-signalled")
    assert f.data["timeline"] == "display-ring" and f.data["signallers"] == ["display"]


def test_g_wait_cycle_between_camera_and_npu() -> None:
    """The camera job is told to wait for the NPU's release fence of the same frame
    before writing; the NPU waits for the camera: nothing can ever run."""
    r = boot()
    allocate(r)
    import_all(r)
    cam_submit(r)
    npu_submit(r)
    r.san.waits(r.cam, r.fences["npu"])  # the broken step
    app_submit(r)
    r.san.teardown()
    assert r.counts() == {"lifetime.fence-deadlock": 1}
    (f,) = r.k.findings.of_kind("lifetime.fence-deadlock")
    assert {(s["waiter"], s["signaller"]) for s in f.data["cycle"]} == {
        ("cam0", "npu"),
        ("npu", "cam0"),
    }


def test_h_descriptor_unmapped_with_the_wrong_size() -> None:
    r = boot()
    run(r, desc_unmap_size=PAGE)
    assert r.counts() == {"dma-debug.unmap-wrong-size": 1}


def test_i_display_reads_an_overlay_never_cleaned() -> None:
    r = boot()
    run(r, no_sync_end=True)
    assert r.kinds() == {"coherency.device-read-uncleaned"}
