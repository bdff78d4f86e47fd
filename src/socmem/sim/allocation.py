"""Buffer pools of a run: dma-buf heaps, attachments, DMA mappings and zero-copy accounting.

Every buffer of a scenario's pool is a real :class:`~socmem.linux.dmabuf.dma_buf.DmaBuf`
of the functional model, allocated once from a dma-buf heap
(:mod:`socmem.linux.dmabuf.heaps`) and shared by its producer and consumers through
dma-buf attachments mapped with the DMA API, so every check of the kernel model
(dma-debug, SMMU, swiotlb, heaps, dma-buf) applies in every run.

Rules (each stated once, here):

* **Heap.** ``pool.heap`` when set, else the zero-copy planner's choice
  (:func:`socmem.plan.plan_scenario`), so that ``socmem plan`` and ``socmem run`` agree.
* **Access paths.** At setup, for every buffer and every device that writes or reads it,
  the device attaches (``dma_buf_attach``) and maps (``dma_buf_map_attachment``, the
  producer ``DMA_FROM_DEVICE``, consumers ``DMA_TO_DEVICE``) once, as V4L2/DRM drivers
  cache their dma-buf mappings.  The path is **zero-copy** unless the device cannot
  reach the buffer:

  - attach or map fails (protected memory, ``-ENOMEM``, a DMA mask below the buffer);
  - the device has no IOMMU and the mapping has more than one DMA segment (it needs
    physically contiguous memory);
  - the mapping bounced through swiotlb (the buffer lies beyond the device's reach): the
    kernel copies on every sync.

  Then the stage copies: the CPU memcpy's the frame between the pool buffer and a
  staging buffer the device can reach (``dma_alloc_attrs`` on that device; for a
  swiotlb bounce the staging buffer is the swiotlb slot and the bytes are the ones the
  kernel counts in ``io_tlb_mem.bytes_bounced``).  Each copy is counted per stream with
  its reason, and charged: DRAM read + write bytes on the ``cpu`` master, CPU time at
  ``soc.cpu.copy_bandwidth``.
* **Free buffers.** A buffer is free when nobody holds it: the producer holds it while
  writing; publishing a frame gives one reference to every consumer stage, which drops
  it when done (or when it skips the frame).
* **Fences.** Each produced frame gets a :class:`~socmem.linux.dmabuf.fence.DmaFence`
  on the producing stage's fence context.  ``sync: explicit``: the fence travels as a
  ``sync_file``; ``sync: implicit``: the producer adds it to the dma-buf's ``dma_resv``
  as a WRITE fence and consumers read it back (``dma_resv_get_singleton``).  The frame is
  published to consumers when the producer *starts* (with its unsignalled fence, as
  Android/Wayland queue buffers with acquire fences); the fence signals when the last
  byte is written.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_FROM_DEVICE, DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    IS_ERR,
    DmaBuf,
    DmaBufAttachment,
    dma_buf_attach,
    dma_buf_map_attachment,
)
from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceCb,
    DmaFenceOps,
    dma_fence_add_callback,
    dma_fence_context_alloc,
    dma_fence_signal,
)
from socmem.linux.dmabuf.heaps import DmaHeapRegistry, dma_heap_buffer_alloc
from socmem.linux.dmabuf.resv import (
    DmaResvUsage,
    dma_resv_add_fence,
    dma_resv_get_singleton,
    dma_resv_lock,
    dma_resv_reserve_fences,
    dma_resv_unlock,
)
from socmem.linux.dmabuf.sync_file import SyncFile, sync_file_create, sync_file_get_fence
from socmem.plan.prove import heap_for
from socmem.scenario.schema import BufferPool, Scenario, SyncMode

if TYPE_CHECKING:
    from socmem.linux.device import Device
    from socmem.linux.kernel import Kernel
    from socmem.sim.engine import Engine, Event

__all__ = [
    "Access",
    "Buffer",
    "Frame",
    "PoolRuntime",
    "StageFences",
    "pool_users",
]


def pool_users(pool: BufferPool, scenario: Scenario) -> list[str]:
    """Masters writing or reading ``pool`` (``cpu`` excluded), producer first."""
    out: list[str] = []
    for st in scenario.producers(pool.name) + scenario.consumers(pool.name):
        if st.master != "cpu" and st.master not in out:
            out.append(st.master)
    return out


@dataclass(eq=False)
class Access:
    """How one device reaches one buffer: its attachment and mapping, or why it cannot."""

    device: str
    dev: Device | None
    direction: int
    attach: Any = None
    sgt: Any = None
    iova: int = 0  # first DMA address of the mapping
    zero_copy: bool = True
    reason: str = ""
    bounce: bool = False  # the mapping goes through swiotlb: the kernel copies
    staging: Any = None  # dma_alloc_attrs buffer the device uses instead
    pending_restore: Any = None  # an injected fault left it unmapped / detached

    @property
    def uses_iommu(self) -> bool:
        """True when the device translates through an IOMMU."""
        return self.dev is not None and self.dev.uses_iommu_dma


@dataclass(eq=False)
class Buffer:
    """One buffer of a pool: the dma-buf, per-device access paths, references."""

    pool: PoolRuntime
    index: int
    dmabuf: DmaBuf | None
    accesses: dict[str, Access] = field(default_factory=dict)
    refs: int = 0
    frame: Frame | None = None

    @property
    def label(self) -> str:
        """``pool[index]`` (ino)."""
        ino = self.dmabuf.ino if self.dmabuf is not None else "-"
        return f"{self.pool.spec.name}[{self.index}] (dmabuf ino {ino})"


@dataclass(eq=False)
class Frame:
    """A frame in flight: which buffer, its fence, where it came from, its timeline."""

    buffer: Buffer
    origin: str  # the source stage of the stream
    seq: int  # frame number at the source
    t0_ns: int  # capture start at the source
    producer: str  # stage writing it
    fence: DmaFence | None = None
    sync_file: SyncFile | None = None
    nbytes: int = 0  # valid bytes (the bitstream of an encoder, a full image otherwise)
    start_ns: int = 0  # producer started writing
    done_ns: int | None = None  # fence signalled
    slice_id: int = 0  # trace slice of the producer job

    @property
    def signalled(self) -> bool:
        """True once the producer's fence has signalled."""
        return self.done_ns is not None


class StageFences:
    """A fence timeline (context) per producing stage: ``dma_fence_context_alloc``."""

    def __init__(self, kernel: Kernel, stage: str, driver: str) -> None:
        self.core = kernel.core
        self.context = dma_fence_context_alloc(1, self.core)
        self.seqno = 0
        self.driver = driver
        self.stage = stage
        self.ops = DmaFenceOps(get_driver_name=self._driver, get_timeline_name=self._timeline)

    def _driver(self, _fence: DmaFence) -> str:
        return self.driver

    def _timeline(self, _fence: DmaFence) -> str:
        return self.stage

    def next_fence(self) -> DmaFence:
        """A new unsignalled fence, next seqno on this timeline."""
        self.seqno += 1
        return DmaFence(self.ops, self.context, self.seqno, core=self.core)


Subscriber = Callable[[Frame], None]


class PoolRuntime:
    """The live state of one buffer pool in a run (see the module rules)."""

    def __init__(self, spec: BufferPool, heap_name: str, engine: Engine) -> None:
        self.spec = spec
        self.heap_name = heap_name
        self.engine = engine
        self.buffers: list[Buffer] = []
        self.free: deque[Buffer] = deque()
        self.waiters: deque[Event] = deque()
        self.subscribers: list[tuple[str, Subscriber]] = []
        self.alloc_error = ""
        self.published = 0
        self.latest: Frame | None = None

    # -- buffers ---------------------------------------------------------------------
    def try_acquire(self) -> Buffer | None:
        """A free buffer (its producer reference taken), or None."""
        while self.free:
            buf = self.free.popleft()
            if buf.refs == 0:
                buf.refs = 1
                return buf
        return None

    def acquire(self) -> Event:
        """An event whose value is a free buffer, as soon as one is free."""
        ev = self.engine.event()
        buf = self.try_acquire()
        if buf is not None:
            ev.succeed(buf)
        else:
            self.waiters.append(ev)
        return ev

    def release(self, buf: Buffer) -> None:
        """Drop one reference; a buffer nobody holds is free (a waiter gets it)."""
        buf.refs -= 1
        if buf.refs > 0:
            return
        if buf.refs < 0:  # pragma: no cover - a model bug, never silent
            raise RuntimeError(f"{buf.label}: released more often than held")
        if self.waiters:
            buf.refs = 1
            self.waiters.popleft().succeed(buf)
        else:
            self.free.append(buf)

    @property
    def free_count(self) -> int:
        """Buffers nobody holds."""
        return sum(1 for b in self.buffers if b.refs == 0)

    # -- frames ----------------------------------------------------------------------
    def subscribe(self, stage: str, fn: Subscriber) -> None:
        """Call ``fn(frame)`` for every frame published to this pool (a consumer)."""
        self.subscribers.append((stage, fn))

    def publish(self, frame: Frame) -> None:
        """Hand ``frame`` to every consumer (each takes a reference)."""
        self.published += 1
        self.latest = frame
        frame.buffer.frame = frame
        frame.buffer.refs += len(self.subscribers)
        for _stage, fn in self.subscribers:
            fn(frame)


# -- fences --------------------------------------------------------------------------------
def attach_fence(frame: Frame, sync: SyncMode) -> None:
    """Make ``frame.fence`` visible to consumers: a sync_file or the buffer's dma_resv."""
    fence = frame.fence
    assert fence is not None
    if sync is SyncMode.EXPLICIT:
        frame.sync_file = sync_file_create(fence)
        return
    buf = frame.buffer.dmabuf
    if buf is None:
        return
    resv = buf.resv
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 1)
    dma_resv_add_fence(resv, fence, DmaResvUsage.WRITE)
    dma_resv_unlock(resv)


def consumer_fence(frame: Frame, sync: SyncMode) -> DmaFence | None:
    """The fence a consumer waits on: from the sync_file, or the dma_resv (READ usage)."""
    if sync is SyncMode.EXPLICIT:
        return sync_file_get_fence(frame.sync_file) if frame.sync_file is not None else None
    buf = frame.buffer.dmabuf
    if buf is None:
        return frame.fence
    _ret, fence = dma_resv_get_singleton(buf.resv, DmaResvUsage.READ)
    return fence


def when_signalled(engine: Engine, fence: DmaFence | None) -> Event:
    """An engine event processed when ``fence`` signals (at once if it has)."""
    ev = engine.event()
    if fence is None:
        ev.succeed(None)
        return ev

    def wake(_f: DmaFence, _cb: DmaFenceCb) -> None:
        ev.succeed(fence)

    if dma_fence_add_callback(fence, DmaFenceCb(), wake) != 0:
        ev.succeed(fence)
    return ev


def signal_frame(frame: Frame, now_ns: int) -> None:
    """The producer is done: signal the fence (callbacks wake the consumers)."""
    frame.done_ns = now_ns
    if frame.fence is not None:
        dma_fence_signal(frame.fence)


# -- setup ---------------------------------------------------------------------------------
def allocate_pool(
    pool: PoolRuntime,
    registry: DmaHeapRegistry,
    kernel: Kernel,
    producer: str | None,
    consumers: list[str],
    findings_time: float = 0.0,
) -> None:
    """Allocate ``pool.spec.count`` buffers and set up every device's access path."""
    spec = pool.spec
    heap = heap_for(registry, pool.heap_name)
    if heap is None:
        pool.alloc_error = f"no dma-buf heap '{pool.heap_name}' (heaps: {registry.names()})"
        kernel.findings.add(
            Finding(
                "sim.alloc-failed",
                Severity.ERROR,
                f"pool {spec.name}: {pool.alloc_error}",
                subject=spec.name,
                time=findings_time,
            )
        )
        return
    size = max(spec.frame_bytes, 1)
    for i in range(spec.count):
        dmabuf = dma_heap_buffer_alloc(heap, size, 2, 0)
        if IS_ERR(dmabuf):
            pool.alloc_error = (
                f"{heap.name} heap: allocation of {size} bytes failed "
                f"({errno.errorcode.get(-int(dmabuf), dmabuf)})"  # type: ignore[arg-type]
            )
            kernel.findings.add(
                Finding(
                    "sim.alloc-failed",
                    Severity.ERROR,
                    f"pool {spec.name} buffer {i}: {pool.alloc_error}",
                    subject=spec.name,
                    time=findings_time,
                )
            )
            break
        assert isinstance(dmabuf, DmaBuf)
        buf = Buffer(pool, i, dmabuf)
        if producer is not None and producer != "cpu":
            buf.accesses[producer] = _access(kernel, buf, producer, DMA_FROM_DEVICE)
        for c in consumers:
            if c != "cpu" and c not in buf.accesses:
                buf.accesses[c] = _access(kernel, buf, c, DMA_TO_DEVICE)
        pool.buffers.append(buf)
        pool.free.append(buf)


def _bounced(kernel: Kernel, dev: Device) -> int:
    pool = dev.direct.dma_io_tlb_mem if hasattr(dev.direct, "dma_io_tlb_mem") else None
    pool = pool or kernel.swiotlb
    if pool is None:
        return 0
    return int(sum(pool.bytes_bounced.values()))


def _access(kernel: Kernel, buf: Buffer, device: str, direction: int) -> Access:
    dev = kernel.device(device)
    acc = Access(device, dev, direction)
    assert buf.dmabuf is not None
    before = _bounced(kernel, dev)
    attach = dma_buf_attach(buf.dmabuf, dev)
    if not isinstance(attach, DmaBufAttachment):
        return _staged(kernel, acc, buf, f"dma_buf_attach failed ({_errname(attach)})")
    acc.attach = attach
    sgt = dma_buf_map_attachment(attach, direction)
    if not isinstance(sgt, SgTable):
        why = f"dma_buf_map_attachment failed ({_errname(sgt)})"
        return _staged(kernel, acc, buf, why + _reach_note(buf, dev))
    acc.sgt = sgt
    acc.iova = sgt.sgl[0].dma_address if sgt.sgl else 0
    if not dev.uses_iommu_dma and sgt.nents > 1:
        return _staged(
            kernel,
            acc,
            buf,
            f"{device} has no IOMMU and the buffer is in {sgt.nents} DMA segments "
            "(needs physically contiguous memory)",
        )
    if _bounced(kernel, dev) > before:
        acc.zero_copy = False
        acc.bounce = True
        acc.reason = (
            f"mapping for {device} bounces through swiotlb (buffer beyond its DMA reach "
            f"{dev.direct.bus_dma_limit or dev.dma_mask:#x})"
        )
    return acc


def _reach_note(buf: Buffer, dev: Device) -> str:
    """Why a mapping may fail: pages beyond the device's reach (no IOMMU)."""
    master = dev.master
    heap_buf = buf.dmabuf.priv if buf.dmabuf is not None else None
    if master is None or master.has_iommu or heap_buf is None:
        return ""
    reach = master.phys_reach()
    out = 0
    for pfn, n in heap_buf.pfn_runs():
        a, b = pfn << 12, (pfn + n) << 12
        if not any(lo <= a and b <= hi for lo, hi in reach):
            out += b - a
    if not out:
        return ""
    top = max(hi for _lo, hi in reach) - 1
    return (
        f": {out} of {buf.dmabuf.size if buf.dmabuf else 0} bytes lie beyond {dev.name}'s "
        f"DMA reach (up to {top:#x}, no IOMMU) and swiotlb could not bounce them"
    )


def _errname(err: Any) -> str:
    try:
        return errno.errorcode.get(-int(err), str(err))
    except (TypeError, ValueError):
        return str(err)


def _staged(kernel: Kernel, acc: Access, buf: Buffer, reason: str) -> Access:
    """The device cannot use the buffer: it gets a staging buffer and a copy per frame."""
    from socmem.linux.dma.mapping import dma_alloc_attrs

    acc.zero_copy = False
    acc.reason = reason
    assert acc.dev is not None
    acc.staging = dma_alloc_attrs(acc.dev, max(buf.pool.spec.frame_bytes, 4096))
    if acc.staging is None:
        acc.reason += "; dma_alloc_attrs for a staging buffer failed too"
    if buf.dmabuf is not None:
        buf.dmabuf.history.append(
            HistoryEvent(kernel.clock.now / 1e9, "copy-path", f"{acc.device}: {reason}")
        )
    return acc
