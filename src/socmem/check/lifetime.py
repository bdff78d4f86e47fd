"""The lifetime sanitizer: buffer and fence lifetimes across devices, CPU and processes.

``sanitize(kernel, userspace=..., coherency=...)`` attaches a :class:`LifetimeSanitizer`
to a booted :class:`~socmem.linux.kernel.Kernel`.  It changes no module: it observes
the objects' public state and wraps callables **of the instances it is given**:

* ``dma_buf_list(kernel.core).buffers`` becomes a list that reports ``insert`` (export)
  and ``remove`` (last ``fput``); every buffer's ``ops`` is replaced by a copy whose
  ``map_dma_buf`` / ``unmap_dma_buf`` / ``release`` record the DMA segments each device
  got, when they were unmapped, and the physical pages the exporter gave back;
* ``kernel.device_dma`` (the SMMU / dma-ranges path every device access takes, the
  coherency tracker's ``device_write`` / ``device_read`` included) is wrapped;
* the coherency tracker's ``cpu_read`` / ``cpu_write`` are wrapped (CPU fence races);
* fences: the one global hook.  ``DmaFence.__init__`` is wrapped once per Python process
  and hands each new fence to the sanitizer registered for the fence's
  :class:`~socmem.linux.dmabuf.fence.DmaBufCore` (none: nothing happens); the fence's
  ``history`` list is then replaced by one that reports ``dma_fence_signaled``,
  ``dma_fence_wait_start/end`` and ``dma_fence_release`` as they are appended.  Fences
  created on another core (the default core) are not seen.

Agents (who waits, who signals, who accesses) are names: a device's ``name``, a process
as ``"<name>:<pid>"``, or any string (``"cpu"`` for CPU accesses outside
:meth:`LifetimeSanitizer.agent`).

Rules, each with its finding kind (severity):

``lifetime.dma-after-free`` (ERROR; FATAL when memory was hit)
    A device accesses a bus address whose most recent mapping *for that device* belongs
    to a dma-buf already released (last reference gone, pages given back).  Behind an
    SMMU whose mapping was torn down (detach / unmap) the access faults: the SMMU's own
    fault finding (``smmu.f-translation`` ...) is found in the log and tied to the
    buffer's history.  If the translation still succeeds (released while attached or
    mapped: the exporter freed pages the IOMMU still maps; or a stale IOTLB entry) the
    access reaches freed memory: *silent corruption*.  Without an IOMMU the bus address
    is a physical one and the access always lands: *silent corruption*, with who owns
    those pages now (another dma-buf, a buddy owner, a CMA area, free).  One finding per
    (device, buffer); ``data["pages"]`` counts the page-sized transactions involved.
``lifetime.read-before-signal`` / ``lifetime.write-before-signal`` (ERROR)
    A fence race: an agent reads a buffer while another agent's *write* fence on it is
    unsignalled, or writes it while another agent's read or write fence on it is
    unsignalled.  A buffer's fences are those declared with
    :meth:`LifetimeSanitizer.signals` (``buffers=``) and the unsignalled fences of its
    ``dma_resv`` (KERNEL/WRITE usage = write fences, READ = read fences; BOOKKEEP
    ignored).  A fence's signaller is the one declared with ``signals``, else the device
    whose name is the fence's driver name; fences with no known signaller are not
    judged.  One finding per (agent, buffer, fence).
``lifetime.release-while-mapped`` (ERROR)
    A buffer released while a device mapping of it was still in place.  dma-buf already
    reports this as ``dma-buf.release-while-attached`` (or the earlier
    ``dma-buf.detach-while-mapped``); the sanitizer only adds its own finding when
    neither was recorded for that buffer.
``lifetime.fence-never-signalled`` (ERROR)
    At :meth:`LifetimeSanitizer.teardown`, every fence (not a container: arrays and
    chains are judged by their leaves) that was never signalled, live or released
    without ``dma-fence.released-unsignaled`` having been reported, one finding per
    fence context listing its fences and the timeline name.  Fences that are part of a
    reported deadlock are left out (the deadlock explains them).
``lifetime.fence-deadlock`` (FATAL)
    A cycle in the wait-for graph: agent A waits for fence F whose signaller is B, B
    waits for G whose signaller is ... A (a self-wait included).  Edges come from
    :meth:`~LifetimeSanitizer.waits` (fence, sync_file, or a dma-buf's resv) and from
    observed ``dma_fence_wait*`` calls made inside :meth:`~LifetimeSanitizer.agent`;
    an edge lasts while its fence is unsignalled.  One finding per cycle.
``lifetime.fence-out-of-order`` (ERROR)
    A fence is signalled while an earlier fence (lower seqno, 32- or 64-bit as the
    fence compares) of the same context is still pending.  dma-fence itself reports
    nothing for this.  Containers and context 0 (the stub) are not judged.
``lifetime.dmabuf-leak`` (WARNING)
    At teardown, a live dma-buf no process references (fd or mapping, in the watched
    :class:`~socmem.linux.process.UserSpace`), no device is attached to and no kernel
    owner declared with :meth:`~LifetimeSanitizer.kernel_owner` holds: a reference
    nobody will put.  Buffers already reported as ``process.exit-leak`` (the process
    model's finding at exit) are not reported again.

Cost: records per buffer, mapping, fence and agent; nothing per byte or page.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.linux.clock import ns_to_s
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dmabuf.dma_buf import DmaBuf, DmaBufAttachment, DmaBufFile, dma_buf_list
from socmem.linux.dmabuf.fence import DmaBufCore, DmaFence, dma_fence_is_container
from socmem.linux.dmabuf.fence_unwrap import dma_fence_unwrap_for_each
from socmem.linux.dmabuf.resv import DmaResvUsage
from socmem.linux.dmabuf.sync_file import SyncFile

if TYPE_CHECKING:
    from socmem.linux.coherency import CoherencyTracker
    from socmem.linux.device import Device
    from socmem.linux.kernel import Kernel
    from socmem.linux.process import UserSpace

__all__ = ["LifetimeSanitizer", "sanitize"]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
_U32 = 0xFFFFFFFF

Agent = Any  # a Device, a Process, or a name


def agent_name(who: Agent) -> str:
    """The name of an agent: ``dev.name``, ``"<name>:<pid>"`` for a process, or ``str``."""
    if isinstance(who, str):
        return who
    pid = getattr(who, "pid", None)
    if pid is not None:
        return f"{who.name}:{pid}"
    return str(getattr(who, "name", who))


# ---------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class _BufRecord:
    buf: DmaBuf
    label: str
    runs: list[tuple[int, int]] = field(default_factory=list)  # physical (addr, size)
    released_at: int | None = None
    mapped_at_release: list[str] = field(default_factory=list)
    release_checked: bool = False

    def covers(self, phys: int) -> bool:
        return any(a <= phys < a + n for a, n in self.runs)


@dataclass(eq=False)
class _MapRecord:
    rec: _BufRecord
    dev: str
    attach: DmaBufAttachment
    sgt: SgTable
    segs: list[tuple[int, int]]  # (dma address, length)
    mapped_at: int
    unmapped_at: int | None = None

    def covers(self, addr: int) -> bool:
        return any(a <= addr < a + n for a, n in self.segs)


@dataclass(eq=False)
class _FenceRecord:
    fence: DmaFence
    signaller: str | None = None
    buffers: list[tuple[_BufRecord, bool]] = field(default_factory=list)  # (buffer, write)
    released: bool = False
    deadlocked: bool = False
    started: bool = False  # the signaller has accessed one of ``buffers``


class _ObservedBuffers(list):
    """``db_list`` that tells the sanitizer about exports and releases."""

    def __init__(self, items: Iterable[DmaBuf], san: LifetimeSanitizer) -> None:
        super().__init__(items)
        self.san = san

    def insert(self, index: Any, buf: DmaBuf) -> None:
        super().insert(index, buf)
        self.san._adopt_buffer(buf)

    def append(self, buf: DmaBuf) -> None:
        super().append(buf)
        self.san._adopt_buffer(buf)


class _FenceHistory(list):
    """A fence's history list that reports signal, wait and release as they happen."""

    def __init__(self, items: Iterable[HistoryEvent], san: LifetimeSanitizer, fence: DmaFence):
        super().__init__(items)
        self.san_ref = weakref.ref(san)
        self.fence = fence

    def append(self, ev: HistoryEvent) -> None:
        super().append(ev)
        san = self.san_ref()
        if san is not None:
            san._on_fence_event(self.fence, ev.what)


# ---------------------------------------------------------------------------------------
# the one global hook: DmaFence.__init__ → the sanitizer of the fence's core
# ---------------------------------------------------------------------------------------
_SANITIZERS: weakref.WeakKeyDictionary[DmaBufCore, LifetimeSanitizer] = weakref.WeakKeyDictionary()
_HOOKED: list[Callable[..., None]] = []


def _install_fence_hook() -> None:
    if _HOOKED:
        return
    orig = DmaFence.__init__

    @functools.wraps(orig)
    def __init__(self: DmaFence, *args: Any, **kwargs: Any) -> None:
        orig(self, *args, **kwargs)
        san = _SANITIZERS.get(self.core)
        if san is not None:
            san._adopt_fence(self)

    _HOOKED.append(orig)
    DmaFence.__init__ = __init__  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------
# the sanitizer
# ---------------------------------------------------------------------------------------
class LifetimeSanitizer:
    """Buffer and fence lifetime checks on one booted kernel (see the module docstring)."""

    def __init__(
        self,
        kernel: Kernel,
        *,
        userspace: UserSpace | None = None,
        coherency: CoherencyTracker | None = None,
    ) -> None:
        self.kernel = kernel
        self.core: DmaBufCore = kernel.core
        self.findings = kernel.findings
        self.userspaces: list[UserSpace] = []
        self._bufs: dict[int, _BufRecord] = {}  # id(DmaBuf) -> record
        self._maps: dict[str, list[_MapRecord]] = {}  # device -> mappings, oldest first
        self._fences: dict[int, _FenceRecord] = {}  # id(DmaFence) -> record
        self._by_ctx: dict[int, list[_FenceRecord]] = {}  # context -> records
        self._waits: dict[str, dict[int, DmaFence]] = {}  # waiter -> {id: fence}
        self._kernel_owners: dict[int, set[str]] = {}  # id(DmaBuf) -> owners
        self._daf: dict[tuple[str, int], Finding] = {}
        self._races: set[tuple[str, int, int]] = set()
        self._cycles: set[frozenset[int]] = set()
        self._agent_stack: list[str] = []
        self._observed_waits: list[tuple[str, DmaFence]] = []
        self._torn_down = False
        self._restore: list[Callable[[], None]] = []
        # dma-buf list
        lst = dma_buf_list(self.core)
        old = lst.buffers
        lst.buffers = _ObservedBuffers(old, self)

        def _restore_list() -> None:
            lst.buffers = list(lst.buffers)

        self._restore.append(_restore_list)
        for buf in old:
            self._adopt_buffer(buf)
        # device accesses
        orig_dma = kernel.device_dma

        def device_dma(dev: Device, iova: int, is_write: bool) -> int | None:
            phys = orig_dma(dev, iova, is_write)
            self._on_device_access(dev, iova, is_write, phys)
            return phys

        kernel.device_dma = device_dma  # type: ignore[method-assign]
        self._restore.append(lambda: kernel.__dict__.pop("device_dma", None))
        # fences
        _install_fence_hook()
        _SANITIZERS[self.core] = self
        self._restore.append(self._unregister)
        if userspace is not None:
            self.watch_userspace(userspace)
        if coherency is not None:
            self.watch_coherency(coherency)

    # -- attaching ------------------------------------------------------------------------
    def watch_userspace(self, userspace: UserSpace) -> None:
        """Count this user space's fds and mappings as process references (leak rule)."""
        if userspace not in self.userspaces:
            self.userspaces.append(userspace)

    def watch_coherency(self, tracker: CoherencyTracker) -> None:
        """Check CPU accesses made through ``tracker`` for fence races."""
        orig_read, orig_write = tracker.cpu_read, tracker.cpu_write

        def cpu_read(paddr: int, size: int, mapping: Any = "cached") -> int:
            self._on_cpu_access(paddr, size, False)
            return orig_read(paddr, size, mapping)

        def cpu_write(paddr: int, size: int, mapping: Any = "cached") -> None:
            self._on_cpu_access(paddr, size, True)
            orig_write(paddr, size, mapping)

        tracker.cpu_read = cpu_read  # type: ignore[method-assign]
        tracker.cpu_write = cpu_write  # type: ignore[method-assign]

        def _undo() -> None:
            tracker.__dict__.pop("cpu_read", None)
            tracker.__dict__.pop("cpu_write", None)

        self._restore.append(_undo)

    def _unregister(self) -> None:
        _SANITIZERS.pop(self.core, None)

    def detach(self) -> None:
        """Undo every wrap (buffers keep their wrapped ops; they stop reporting)."""
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    # -- explicit calls (device models, drivers, tests) -----------------------------------
    @contextmanager
    def agent(self, who: Agent) -> Iterator[None]:
        """Run a block as ``who``: CPU accesses and observed fence waits are its."""
        self._agent_stack.append(agent_name(who))
        try:
            yield
        finally:
            self._agent_stack.pop()

    def signals(
        self,
        signaller: Agent,
        fence: DmaFence | SyncFile,
        buffers: Iterable[DmaBuf] = (),
        *,
        write: bool = True,
    ) -> None:
        """``signaller`` will signal ``fence``; until then it writes (``write``) or reads
        ``buffers``."""
        for leaf in self._leaves(fence):
            rec = self._fence_record(leaf)
            rec.signaller = agent_name(signaller)
            for b in buffers:
                rec.buffers.append((self._buf_record(b), write))
        self._flush()
        self._check_cycles()

    def waits(
        self, waiter: Agent, what: DmaFence | SyncFile | DmaBuf, *, write: bool = False
    ) -> None:
        """``waiter`` blocks until ``what`` signals: a fence, a sync_file, or a dma-buf's
        implicit fences (those a ``write`` or read access waits for)."""
        name = agent_name(waiter)
        edges = self._waits.setdefault(name, {})
        for f in self._wait_targets(what, write):
            self._fence_record(f)
            edges[id(f)] = f
        self._flush()
        self._check_cycles()

    def unwait(self, waiter: Agent, what: DmaFence | SyncFile | DmaBuf | None = None) -> None:
        """``waiter`` stops waiting (a timeout, a cancelled job): for ``what``, or all."""
        name = agent_name(waiter)
        if what is None:
            self._waits.pop(name, None)
            return
        edges = self._waits.get(name, {})
        for f in self._wait_targets(what, True):
            edges.pop(id(f), None)

    def kernel_owner(self, buf: DmaBuf, owner: Agent, held: bool = True) -> None:
        """Declare (``held``) or drop a legitimate kernel holder of ``buf`` (leak rule)."""
        owners = self._kernel_owners.setdefault(id(buf), set())
        if held:
            owners.add(agent_name(owner))
        else:
            owners.discard(agent_name(owner))

    def device_access(
        self, dev: Device, dma_addr: int, size: int, is_write: bool
    ) -> list[int | None]:
        """A device access of ``size`` bytes at ``dma_addr``, page by page through
        ``kernel.device_dma`` (for device models that do not use the coherency tracker).
        Returns the physical address reached per page (None: faulted)."""
        out: list[int | None] = []
        addr, end = dma_addr, dma_addr + size
        while addr < end:
            n = min(PAGE_SIZE - (addr & (PAGE_SIZE - 1)), end - addr)
            out.append(self.kernel.device_dma(dev, addr, is_write))
            addr += n
        return out

    def teardown(self) -> list[Finding]:
        """End of run: fences never signalled and dma-buf leaks.  Returns the findings
        this call added.  Idempotent."""
        if self._torn_down:
            return []
        self._torn_down = True
        self._flush()
        start = len(self.findings)
        self._teardown_fences()
        self._teardown_leaks()
        return list(self.findings)[start:]

    # -- buffers ---------------------------------------------------------------------------
    def _buf_record(self, buf: DmaBuf) -> _BufRecord:
        rec = self._bufs.get(id(buf))
        if rec is None:
            rec = self._adopt_buffer(buf)
        return rec

    def _adopt_buffer(self, buf: DmaBuf) -> _BufRecord:
        rec = self._bufs.get(id(buf))
        if rec is not None:
            return rec
        rec = _BufRecord(buf, buf.label(), _phys_runs(buf))
        self._bufs[id(buf)] = rec
        ops = buf.ops
        orig_map, orig_unmap, orig_release = ops.map_dma_buf, ops.unmap_dma_buf, ops.release

        def map_dma_buf(attach: DmaBufAttachment, direction: int) -> SgTable | int:
            assert orig_map is not None
            sgt = orig_map(attach, direction)
            if isinstance(sgt, SgTable):
                self._on_map(rec, attach, sgt)
            return sgt

        def unmap_dma_buf(attach: DmaBufAttachment, sgt: SgTable, direction: int) -> None:
            self._on_unmap(attach, sgt)
            assert orig_unmap is not None
            orig_unmap(attach, sgt, direction)

        def release(b: DmaBuf) -> None:
            if not rec.runs:
                rec.runs = _phys_runs(b)
            rec.released_at = self.kernel.clock.now
            rec.label = b.label()
            rec.mapped_at_release = [
                m.dev
                for ms in self._maps.values()
                for m in ms
                if m.rec is rec and m.unmapped_at is None
            ]
            assert orig_release is not None
            orig_release(b)

        buf.ops = dataclasses.replace(
            ops,
            map_dma_buf=map_dma_buf if orig_map else None,
            unmap_dma_buf=unmap_dma_buf if orig_unmap else None,
            release=release if orig_release else None,
        )
        return rec

    def _on_map(self, rec: _BufRecord, attach: DmaBufAttachment, sgt: SgTable) -> None:
        segs = [(s.dma_address, s.dma_length or s.length) for s in sgt.sgl[: sgt.nents]]
        if not rec.runs:
            rec.runs = [(s.phys, s.length) for s in sgt.sgl[: sgt.orig_nents]]
        m = _MapRecord(rec, attach.dev_name, attach, sgt, segs, self.kernel.clock.now)
        self._maps.setdefault(attach.dev_name, []).append(m)

    def _on_unmap(self, attach: DmaBufAttachment, sgt: SgTable) -> None:
        for m in reversed(self._maps.get(attach.dev_name, [])):
            if m.attach is attach and m.sgt is sgt and m.unmapped_at is None:
                m.unmapped_at = self.kernel.clock.now
                return

    def _mapping_of(self, dev: str, addr: int) -> _MapRecord | None:
        for m in reversed(self._maps.get(dev, [])):
            if m.covers(addr):
                return m
        return None

    def _flush(self) -> None:
        """Checks that need the release to have finished (dma-buf warns after ops.release)."""
        for rec in self._bufs.values():
            if rec.released_at is None or rec.release_checked or not rec.buf.released:
                continue
            rec.release_checked = True
            if not rec.mapped_at_release:
                continue
            reported = any(
                f.subject == rec.label
                and f.kind in ("dma-buf.release-while-attached", "dma-buf.detach-while-mapped")
                for f in self.findings
            )
            if reported:
                continue
            self._add(
                "lifetime.release-while-mapped",
                Severity.ERROR,
                f"socmem-lifetime: {rec.label} released while still mapped for "
                f"{', '.join(sorted(set(rec.mapped_at_release)))} (dma_buf_unmap_attachment "
                "missing: the device can still reach the freed pages)",
                rec.label,
                list(rec.buf.history),
                devices=sorted(set(rec.mapped_at_release)),
                ino=rec.buf.ino,
            )

    # -- device and CPU accesses -----------------------------------------------------------
    def _on_device_access(self, dev: Device, addr: int, is_write: bool, phys: int | None) -> None:
        self._flush()
        m = self._mapping_of(dev.name, addr)
        if m is None:
            return
        rec = m.rec
        if rec.released_at is not None:
            self._dma_after_free(dev, m, addr, is_write, phys)
        elif m.unmapped_at is None and phys is not None:
            self._fence_race(dev.name, rec, is_write)

    def _on_cpu_access(self, paddr: int, size: int, is_write: bool) -> None:
        self._flush()
        who = self._agent_stack[-1] if self._agent_stack else "cpu"
        for rec in self._bufs.values():
            if rec.released_at is None and any(
                a < paddr + size and paddr < a + n for a, n in rec.runs
            ):
                self._fence_race(who, rec, is_write)

    def _dma_after_free(
        self, dev: Device, m: _MapRecord, addr: int, is_write: bool, phys: int | None
    ) -> None:
        rec = m.rec
        key = (dev.name, id(rec))
        prev = self._daf.get(key)
        if prev is not None:
            prev.data["pages"] += 1
            return
        rw = "write" if is_write else "read"
        released = ns_to_s(rec.released_at or 0)
        smmu = self.kernel.smmu_of(dev) if dev.uses_iommu_dma else None
        data: dict[str, Any] = {
            "device": dev.name,
            "ino": rec.buf.ino,
            "dma_addr": addr,
            "write": is_write,
            "pages": 1,
            "released_at": released,
            "mapped_at": ns_to_s(m.mapped_at),
            "unmapped_at": None if m.unmapped_at is None else ns_to_s(m.unmapped_at),
        }
        if phys is None:
            fault = self._smmu_fault_for(dev, addr)
            data["mode"] = "smmu-fault"
            data["smmu_fault"] = fault.kind if fault is not None else None
            what = (
                f"the SMMU stopped it ({fault.kind}: the mapping was torn down at "
                f"{'unmap' if m.unmapped_at is not None else 'release'})"
                if fault is not None
                else "the access was terminated (no SMMU fault record found)"
            )
            severity = Severity.ERROR
            history = list(rec.buf.history) + (list(fault.history) if fault else [])
        else:
            owner = self._owner_now(phys, rec)
            data["phys"] = phys
            data["owner_now"] = owner
            if smmu is not None:
                stale = any(
                    f.kind == "smmu.stale-iotlb-hit" and f.data.get("iova") == addr
                    for f in list(self.findings)[-4:]
                )
                data["mode"] = "stale-iotlb" if stale else "stale-iommu-mapping"
                how = (
                    "a stale IOTLB entry still translates it"
                    if stale
                    else "the IOMMU mapping was never torn down (released while mapped)"
                )
            else:
                data["mode"] = "no-iommu"
                how = "no IOMMU stands in the way"
            what = f"silent corruption: {how}; phys 0x{phys:x} now belongs to {owner}"
            severity = Severity.FATAL
            history = list(rec.buf.history)
        history.append(
            HistoryEvent(ns_to_s(self.kernel.clock.now), f"device {rw} after free", dev.name)
        )
        msg = (
            f"socmem-lifetime: {dev.name} DMA {rw} at 0x{addr:x} into {rec.label}, released "
            f"at {released * 1e3:.3f} ms: {what}"
        )
        f = self._add("lifetime.dma-after-free", severity, msg, rec.label, history, **data)
        self._daf[key] = f

    def _smmu_fault_for(self, dev: Device, addr: int) -> Finding | None:
        items = list(self.findings)
        for f in reversed(items[-8:]):
            if f.kind.startswith("smmu.") and f.data.get("iova") == addr:
                return f
        return None

    def _owner_now(self, phys: int, freed: _BufRecord) -> str:
        for rec in self._bufs.values():
            if rec is not freed and rec.released_at is None and rec.covers(phys):
                return rec.label
        mem = self.kernel.mem
        pfn = phys >> PAGE_SHIFT
        for cma in mem.cma_areas.values():
            if cma.cma_pages_valid(pfn, 1) and cma.bitmap is not None:
                bit = (pfn - cma.base_pfn) >> cma.order_per_bit
                if cma.bitmap.count_set(bit, 1):
                    return f"a cma_alloc of CMA area {cma.name}"
                blk = mem.buddy.page_block(pfn)
                if blk is not None:
                    return (
                        f"{blk.owner or 'a buddy allocation'} (borrowed from CMA area {cma.name})"
                    )
                return f"nobody: free in CMA area {cma.name}"
        region = mem.region_of(phys)
        if region is not None:
            return f"reserved region {region.name}"
        blk = mem.buddy.page_block(pfn)
        if blk is not None:
            owner = blk.owner or "an unnamed"
            return f"{owner} buddy allocation (pfn 0x{blk.pfn:x} order {blk.order})"
        if mem.buddy.is_free(pfn):
            return "nobody: free in the buddy allocator (the next allocation gets it)"
        return "unknown"

    def _buffer_fences(self, rec: _BufRecord) -> list[tuple[DmaFence, bool]]:
        """Unsignalled ``(fence, is_write)`` of a buffer: declared and in its resv."""
        out: dict[int, tuple[DmaFence, bool]] = {}
        for frec in self._fences.values():
            for b, w in frec.buffers:
                if b is rec and _pending(frec.fence):
                    out[id(frec.fence)] = (
                        frec.fence,
                        w or out.get(id(frec.fence), (None, False))[1],
                    )
        buf = rec.buf
        if not buf.released:
            for e in list(buf.resv.entries):
                if e.usage == DmaResvUsage.BOOKKEEP:
                    continue
                w = e.usage <= DmaResvUsage.WRITE
                for leaf in _unwrap(e.fence):
                    if _pending(leaf):
                        out.setdefault(id(leaf), (leaf, w))
        return list(out.values())

    def _signaller(self, fence: DmaFence) -> str | None:
        frec = self._fences.get(id(fence))
        if frec is not None and frec.signaller is not None:
            return frec.signaller
        try:
            drv = fence.driver_name()
        except Exception:  # a half-built fence
            return None
        return drv if drv in self.kernel.devices else None

    def _ordered_after(self, later: str, earlier: str) -> bool:
        """Does ``later`` (transitively) wait for an unsignalled fence ``earlier`` signals?"""
        todo, seen = [later], {later}
        while todo:
            a = todo.pop()
            for f in self._waits.get(a, {}).values():
                if not _pending(f):
                    continue
                sig = self._signaller(f)
                if sig == earlier:
                    return True
                if sig is not None and sig not in seen:
                    seen.add(sig)
                    todo.append(sig)
        return False

    def _fence_race(self, who: str, rec: _BufRecord, is_write: bool) -> None:
        for frec in self._fences.values():
            if frec.signaller == who and any(b is rec for b, _ in frec.buffers):
                frec.started = True
        for fence, fwrite in self._buffer_fences(rec):
            sig = self._signaller(fence)
            if sig is None or sig == who or not (fwrite or is_write):
                continue
            if not fwrite:
                started = self._fences.get(id(fence))
                if started is not None and not started.started:
                    continue  # the reader has not started: nothing to race with yet
            if self._ordered_after(sig, who):
                continue  # the signaller waits for us: its access comes after ours
            key = (who, id(rec), id(fence))
            if key in self._races:
                continue
            self._races.add(key)
            kind = "lifetime.write-before-signal" if is_write else "lifetime.read-before-signal"
            access = "writes" if is_write else "reads"
            fkind = "write" if fwrite else "read"
            self._add(
                kind,
                Severity.ERROR,
                f"socmem-lifetime: {who} {access} {rec.label} while {sig}'s {fkind} fence "
                f"{fence.name()} is unsignalled (no wait on it: a fence race)",
                rec.label,
                list(rec.buf.history) + list(fence.history),
                agent=who,
                signaller=sig,
                fence=fence.name(),
                ino=rec.buf.ino,
            )

    # -- fences ----------------------------------------------------------------------------
    def _fence_record(self, fence: DmaFence) -> _FenceRecord:
        rec = self._fences.get(id(fence))
        if rec is None:
            rec = self._adopt_fence(fence)
        return rec

    def _adopt_fence(self, fence: DmaFence) -> _FenceRecord:
        rec = self._fences.get(id(fence))
        if rec is not None and rec.fence is fence:
            return rec
        rec = _FenceRecord(fence)
        self._fences[id(fence)] = rec
        self._by_ctx.setdefault(fence.context, []).append(rec)
        if not isinstance(fence.history, _FenceHistory):
            fence.history = _FenceHistory(fence.history, self, fence)
        return rec

    def _on_fence_event(self, fence: DmaFence, what: str) -> None:
        if what == "dma_fence_signaled":
            self._check_order(fence)
        elif what == "dma_fence_release":
            rec = self._fences.get(id(fence))
            if rec is not None:
                rec.released = True
        elif what == "dma_fence_wait_start" and self._agent_stack:
            waiter = self._agent_stack[-1]
            self._observed_waits.append((waiter, fence))
            for leaf in _unwrap(fence):
                self._fence_record(leaf)
                self._waits.setdefault(waiter, {})[id(leaf)] = leaf
            self._check_cycles()
        elif what == "dma_fence_wait_end" and self._observed_waits:
            waiter, f = self._observed_waits.pop()
            for leaf in _unwrap(f):
                self._waits.get(waiter, {}).pop(id(leaf), None)

    def _check_order(self, fence: DmaFence) -> None:
        if fence.context == 0 or dma_fence_is_container(fence):
            return
        earlier = [
            r.fence
            for r in self._by_ctx.get(fence.context, [])
            if r.fence is not fence
            and not r.released
            and not dma_fence_is_container(r.fence)
            and _is_later(fence, r.fence)
            and _pending(r.fence)
        ]
        if not earlier:
            return
        earlier.sort(key=lambda f: f.seqno)
        names = ", ".join(str(f.seqno) for f in earlier)
        self._add(
            "lifetime.fence-out-of-order",
            Severity.ERROR,
            f"socmem-lifetime: fence {fence.name()} signalled while earlier seqno(s) {names} "
            f"of context {fence.context} ({_timeline(fence)}) are pending: a timeline must "
            "signal in order",
            fence.name(),
            list(fence.history),
            context=fence.context,
            seqno=fence.seqno,
            pending=[f.seqno for f in earlier],
        )

    def _wait_targets(self, what: DmaFence | SyncFile | DmaBuf, write: bool) -> list[DmaFence]:
        if isinstance(what, DmaBuf):
            out: list[DmaFence] = []
            for e in list(what.resv.entries):
                usage_ok = e.usage <= (DmaResvUsage.READ if write else DmaResvUsage.WRITE)
                if usage_ok:
                    out.extend(f for f in _unwrap(e.fence) if _pending(f))
            return out
        return [f for f in self._leaves(what)]

    @staticmethod
    def _leaves(what: DmaFence | SyncFile) -> list[DmaFence]:
        fence = what.fence if isinstance(what, SyncFile) else what
        return _unwrap(fence)

    def _check_cycles(self) -> None:
        """Find wait-for cycles between agents (edges through unsignalled fences)."""
        graph: dict[str, list[tuple[str, DmaFence]]] = {}
        for waiter, fences in self._waits.items():
            for f in fences.values():
                if not _pending(f):
                    continue
                sig = self._signaller(f)
                if sig is not None:
                    graph.setdefault(waiter, []).append((sig, f))
        for start in sorted(graph):
            cycle = _find_cycle(graph, start)
            if cycle is None:
                continue
            key = frozenset(id(f) for _, _, f in cycle)
            if key in self._cycles:
                continue
            self._cycles.add(key)
            for _, _, f in cycle:
                self._fence_record(f).deadlocked = True
            steps = "; ".join(f"{a} waits for {f.name()} which {b} signals" for a, b, f in cycle)
            history: list[HistoryEvent] = []
            for _, _, f in cycle:
                history.extend(f.history)
            history.sort(key=lambda h: h.time)
            self._add(
                "lifetime.fence-deadlock",
                Severity.FATAL,
                f"socmem-lifetime: fence wait cycle (deadlock): {steps}",
                " -> ".join([a for a, _, _ in cycle] + [cycle[0][0]]),
                history,
                cycle=[{"waiter": a, "signaller": b, "fence": f.name()} for a, b, f in cycle],
            )

    # -- teardown --------------------------------------------------------------------------
    def _teardown_fences(self) -> None:
        warned = {f.subject for f in self.findings if f.kind == "dma-fence.released-unsignaled"}
        blocked = self._blocked_by_deadlock()
        by_ctx: dict[int, list[_FenceRecord]] = {}
        for rec in self._fences.values():
            f = rec.fence
            if rec.deadlocked or f.context == 0 or dma_fence_is_container(f):
                continue
            if rec.signaller is not None and rec.signaller in blocked:
                continue  # its signaller is stuck behind a reported deadlock
            if f.signaled_flag or (getattr(f, "freed", False) and not rec.released):
                continue  # a duplicate sw_sync point that never lived
            if rec.released and f.name() in warned:
                continue
            if not _pending(f):
                continue
            by_ctx.setdefault(f.context, []).append(rec)
        for ctx, recs in sorted(by_ctx.items()):
            recs.sort(key=lambda r: r.fence.seqno)
            first = recs[0].fence
            tl = _timeline(first)
            items = ", ".join(
                f"{r.fence.seqno}{' (released)' if r.released else ''}"
                f"{' signaller ' + r.signaller if r.signaller else ''}"
                for r in recs
            )
            history: list[HistoryEvent] = []
            for r in recs:
                history.extend(r.fence.history)
            self._add(
                "lifetime.fence-never-signalled",
                Severity.ERROR,
                f"socmem-lifetime: {len(recs)} fence(s) of context {ctx} "
                f"({first.driver_name()}:{tl}) never signalled at teardown: seqno {items}",
                f"{first.driver_name()}:{tl}:{ctx:x}",
                history,
                context=ctx,
                timeline=tl,
                driver=first.driver_name(),
                seqnos=[r.fence.seqno for r in recs],
                signallers=sorted({r.signaller for r in recs if r.signaller}),
            )

    def _blocked_by_deadlock(self) -> set[str]:
        """Agents that wait (transitively) for a fence of a reported deadlock cycle."""
        blocked: set[str] = set()
        changed = True
        while changed:
            changed = False
            for waiter, fences in self._waits.items():
                if waiter in blocked:
                    continue
                for f in fences.values():
                    if not _pending(f):
                        continue
                    frec = self._fences.get(id(f))
                    if (frec is not None and frec.deadlocked) or self._signaller(f) in blocked:
                        blocked.add(waiter)
                        changed = True
                        break
        return blocked

    def _process_refs(self, buf: DmaBuf) -> int:
        n = 0
        for us in self.userspaces:
            for p in us.live():
                n += sum(
                    1
                    for e in p.fds.values()
                    if isinstance(e.file, DmaBufFile) and e.file.dmabuf is buf
                )
                n += sum(1 for m in p.mappings if m.dmabuf is buf)
        return n

    def _teardown_leaks(self) -> None:
        reported = {f.data.get("ino") for f in self.findings if f.kind == "process.exit-leak"}
        for buf in list(dma_buf_list(self.core).buffers):
            if buf.released or buf.ino in reported:
                continue
            if self._process_refs(buf) or buf.attachments or self._kernel_owners.get(id(buf)):
                continue
            self._add(
                "lifetime.dmabuf-leak",
                Severity.WARNING,
                f"socmem-lifetime: {buf.label()} ({buf.size} bytes) is alive at teardown with "
                f"file count {buf.file_count} and nothing holding it: no process fd or "
                "mapping, no attachment, no declared kernel owner (a dma_buf_get never put)",
                buf.label(),
                list(buf.history),
                ino=buf.ino,
                size=buf.size,
                count=buf.file_count,
            )

    # -- findings --------------------------------------------------------------------------
    def _add(
        self,
        kind: str,
        severity: Severity,
        message: str,
        subject: str,
        history: list[HistoryEvent],
        **data: Any,
    ) -> Finding:
        return self.findings.add(
            Finding(
                kind=kind,
                severity=severity,
                message=message,
                subject=subject,
                time=ns_to_s(self.kernel.clock.now),
                history=history,
                data=dict(data),
            )
        )


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _phys_runs(buf: DmaBuf) -> list[tuple[int, int]]:
    """The physical ``(addr, size)`` runs of a heap buffer (empty if unknown yet)."""
    runs = getattr(buf.priv, "pfn_runs", None)
    if runs is None:
        return []
    try:
        return [(pfn << PAGE_SHIFT, n << PAGE_SHIFT) for pfn, n in runs()]
    except (TypeError, ValueError):
        return []


def _unwrap(fence: DmaFence | None) -> list[DmaFence]:
    if fence is None:
        return []
    if not dma_fence_is_container(fence):
        return [fence]
    return list(dma_fence_unwrap_for_each(fence))


def _pending(fence: DmaFence) -> bool:
    """Not signalled: neither the flag nor what ``ops->signaled`` says (no side effect)."""
    if fence.signaled_flag:
        return False
    if fence.ops.signaled is not None and not dma_fence_is_container(fence):
        try:
            return not fence.ops.signaled(fence)
        except Exception:
            return True
    return True


def _is_later(f1: DmaFence, f2: DmaFence) -> bool:
    if f1.ops.use_64bit_seqno or f1.test_bit(31):
        return f1.seqno > f2.seqno
    d = (f1.seqno - f2.seqno) & _U32
    return 0 < d < 0x80000000


def _timeline(fence: DmaFence) -> str:
    try:
        return fence.timeline_name()
    except Exception:
        return "?"


def _find_cycle(
    graph: dict[str, list[tuple[str, DmaFence]]], start: str
) -> list[tuple[str, str, DmaFence]] | None:
    """A cycle through ``start`` as ``[(waiter, signaller, fence), ...]``, or None."""
    path: list[tuple[str, str, DmaFence]] = []
    seen: set[str] = set()

    def dfs(node: str) -> bool:
        for nxt, f in graph.get(node, []):
            path.append((node, nxt, f))
            if nxt == start:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if dfs(nxt):
                    return True
            path.pop()
        return False

    return list(path) if dfs(start) else None


def sanitize(
    kernel: Kernel,
    *,
    userspace: UserSpace | None = None,
    coherency: CoherencyTracker | None = None,
) -> LifetimeSanitizer:
    """Attach a :class:`LifetimeSanitizer` to ``kernel`` (see the module docstring)."""
    return LifetimeSanitizer(kernel, userspace=userspace, coherency=coherency)
