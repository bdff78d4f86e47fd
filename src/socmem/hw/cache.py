"""The CPU caches' view of memory shared with DMA masters: a per-line state model kept as
intervals, with a "data token" (who wrote last) per byte range of DRAM and of every
cached copy.

What is modelled (arm64, one inner-shareable point of coherency for the whole cluster;
L1/L2/L3 are one cache here):

* **Line states** INVALID / CLEAN / DIRTY at the SoC's ``cpu.cache_line`` granularity.
  State is uniform over a line; the cached copy of a line carries data tokens at byte
  granularity (a line filled from memory, then partially written by the CPU, holds the
  CPU's token for the written bytes and memory's older token for the rest).
* **Data tokens** (:class:`DataToken`): every write (CPU or device) gets a monotonically
  increasing id.  DRAM keeps, per byte range, the token written last; a cached copy keeps
  the token it was filled with or written with.  Never-written DRAM holds
  :data:`BOOT_TOKEN` (id 0).
* **Maintenance by VA** as arch/arm64/mm/cache.S does it (``dcache_clean_poc``: ``dc cvac``
  per line; ``dcache_inval_poc``: ``dc civac`` on a partial first/last line, ``dc ivac`` on
  every other line; ``dcache_clean_inval_poc``: ``dc civac`` per line).  Cost is the number
  of lines the loop visits, resident or not (there is no range instruction: perf-anchors
  §4.1).
* **Masters**: a coherent master snoops (its reads see dirty CPU lines, its writes
  invalidate CPU copies after merging dirty partial edge lines); a non-coherent master
  reads and writes DRAM only.
* **Mappings**: ``cached`` (Normal WB: read-allocate, write-allocate), ``uncached``
  (``pgprot_dmacoherent`` / Device or Normal-NC: straight to DRAM) and ``writecombine``
  (Normal-NC with a write buffer; the buffer is modelled as drained at once, i.e. as if
  every WC write were followed by the barrier that drains it).
* **Speculative fills** (``speculative=True``, the default): the linear map is cacheable
  and Armv8 may allocate its lines at any time, which is why ``arch_sync_dma_for_cpu``
  invalidates after a DMA even when the CPU never touched the buffer.  The model takes the
  worst case: when a non-coherent master writes DRAM, every cacheable line of the range
  the CPU did not hold is assumed speculatively filled (CLEAN) with the data from before
  the write.  With ``speculative=False`` only lines the CPU really touched go stale.
* **Eviction**: :meth:`CpuCacheModel.evict` (explicit), and, with a ``capacity`` in bytes,
  oldest-fill-first eviction (a stand-in for the pseudo-LRU per set of real caches: there
  are no sets here).  Evicting a DIRTY line writes it back.

Checks (each a :class:`~socmem.check.finding.Finding` with the history of the range):

* ``coherency.stale-cpu-read``: a cached CPU read returns a copy older than a device's
  write to DRAM (no invalidate in between);
* ``coherency.device-read-uncleaned``: a non-coherent master reads DRAM older than a DIRTY
  CPU line (the CPU wrote and never cleaned);
* ``coherency.lost-device-write``: a DIRTY line written back (clean, the clean+invalidate
  of a partial edge line, eviction, a coherent master's merge) overwrites data a device
  wrote after the line's copy was taken.

Cost: :class:`MaintenanceCost` per "who" (the device on whose behalf the kernel does the
maintenance) and in total, with a CPU time estimate from :class:`CacheCostModel`.

Everything is stored as intervals (:class:`IntervalMap`): the cost grows with the number
of distinct ranges, never with bytes.
"""

from __future__ import annotations

import bisect
import enum
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from socmem.check.finding import Finding, FindingLog, HistoryEvent, Severity

__all__ = [
    "BOOT_TOKEN",
    "CacheCostModel",
    "CachedCopy",
    "CpuCacheModel",
    "CpuMapping",
    "DataToken",
    "IntervalMap",
    "LineState",
    "MaintenanceCost",
    "RangeHistory",
]

V = TypeVar("V")


# -- interval map ----------------------------------------------------------------------------
class IntervalMap(Generic[V]):
    """A total map from ``[0, 2**64)`` to ``V | None`` as sorted boundaries.

    Interval ``i`` is ``[starts[i], starts[i + 1])`` (the last one runs to the end of the
    address space) with value ``vals[i]``; ``None`` means "nothing".  Adjacent intervals
    with equal values are merged, so the size is the number of distinct ranges.
    """

    __slots__ = ("_starts", "_vals")

    def __init__(self) -> None:
        self._starts: list[int] = [0]
        self._vals: list[V | None] = [None]

    def __len__(self) -> int:
        """Number of non-``None`` intervals."""
        return sum(1 for v in self._vals if v is not None)

    @property
    def boundaries(self) -> int:
        """Number of stored boundaries (``None`` gaps included)."""
        return len(self._starts)

    def _split(self, x: int) -> int:
        """Ensure an interval starts at ``x``; its index."""
        i = bisect.bisect_right(self._starts, x) - 1
        if self._starts[i] == x:
            return i
        self._starts.insert(i + 1, x)
        self._vals.insert(i + 1, self._vals[i])
        return i + 1

    def _merge_around(self, i: int) -> None:
        """Merge interval ``i`` with equal neighbours."""
        if i + 1 < len(self._starts) and self._vals[i + 1] == self._vals[i]:
            del self._starts[i + 1]
            del self._vals[i + 1]
        if i > 0 and self._vals[i - 1] == self._vals[i]:
            del self._starts[i]
            del self._vals[i]

    def assign(self, a: int, b: int, value: V | None) -> None:
        """Set ``[a, b)`` to ``value``."""
        if b <= a:
            return
        i = self._split(a)
        j = self._split(b)
        self._starts[i:j] = [a]
        self._vals[i:j] = [value]
        self._merge_around(i)

    def items(self, a: int, b: int) -> Iterator[tuple[int, int, V | None]]:
        """``(start, end, value)`` over ``[a, b)``, clipped, ``None`` gaps included.

        A snapshot: the map may be changed while iterating."""
        if b <= a:
            return iter(())
        i = bisect.bisect_right(self._starts, a) - 1
        out: list[tuple[int, int, V | None]] = []
        n = len(self._starts)
        while i < n and self._starts[i] < b:
            s = max(self._starts[i], a)
            e = min(self._starts[i + 1] if i + 1 < n else b, b)
            out.append((s, e, self._vals[i]))
            i += 1
        return iter(out)

    def present(self, a: int, b: int) -> Iterator[tuple[int, int, V]]:
        """The non-``None`` segments of ``[a, b)``."""
        for s, e, v in self.items(a, b):
            if v is not None:
                yield s, e, v

    def get(self, x: int) -> V | None:
        """The value at address ``x``."""
        return self._vals[bisect.bisect_right(self._starts, x) - 1]

    def covered(self, a: int, b: int) -> int:
        """Bytes of ``[a, b)`` with a value."""
        return sum(e - s for s, e, _ in self.present(a, b))


# -- data ------------------------------------------------------------------------------------
class LineState(enum.Enum):
    """The state of a CPU cache line (MESI collapsed to what maintenance cares about)."""

    INVALID = "invalid"
    CLEAN = "clean"
    DIRTY = "dirty"


class CpuMapping(enum.StrEnum):
    """How the CPU maps the memory it touches."""

    CACHED = "cached"  # Normal, inner/outer write-back (the linear map, "linear")
    UNCACHED = "uncached"  # pgprot_dmacoherent ("dmacoherent"), Device or Normal-NC
    WRITECOMBINE = "writecombine"  # pgprot_writecombine: Normal-NC with a write buffer

    @classmethod
    def of(cls, mapping: str | CpuMapping) -> CpuMapping:
        """Accept the DMA layer's names too: ``linear`` → cached, ``dmacoherent`` →
        uncached."""
        if isinstance(mapping, CpuMapping):
            return mapping
        return {"linear": cls.CACHED, "dmacoherent": cls.UNCACHED}.get(mapping) or cls(mapping)


@dataclass(frozen=True, slots=True)
class DataToken:
    """Who wrote a range last: ``writer`` ("cpu" or a device name), a global write ``id``
    (monotonic) and the model ``time`` in ns."""

    id: int
    writer: str
    time: int
    by_cpu: bool

    def describe(self) -> str:
        """``"cam0 at 12.500 ms"``."""
        return f"{self.writer} at {_ms(self.time)}"


#: What DRAM holds before anybody wrote it.
BOOT_TOKEN = DataToken(0, "boot", 0, by_cpu=True)


@dataclass(frozen=True, slots=True)
class CachedCopy:
    """A cached byte range: the line state and the data token it holds."""

    state: LineState
    token: DataToken


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.3f} ms"


# -- cost ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheCostModel:
    """CPU time of maintenance by VA: ``lines × ns_per_line`` (× ``batched_factor`` when
    the kernel batches the DC ops behind one DSB).

    Figures (reference/perf-anchors.md §4): row 4.10 (grade D estimate) puts a clean or
    invalidate of a 12.4 MB NV12 frame (~194k lines of 64 B) at 0.2–1.0 ms per big core;
    the default is its midpoint, 0.6 ms / 194,400 lines ≈ 3.09 ns per line (≈ 324 lines
    per µs).  Row 4.2 (grade A, Dimensity 9500 at 2.6 GHz) measured the batched DC + one
    DSB patch at −64.6 % (map) / −66.6 % (unmap): ``batched_factor`` 0.35.
    """

    ns_per_line: float = 0.6e6 / 194_400
    batched: bool = False
    batched_factor: float = 0.35

    def ns(self, lines: int) -> float:
        """Estimated CPU nanoseconds for ``lines`` lines of maintenance."""
        return lines * self.ns_per_line * (self.batched_factor if self.batched else 1.0)


@dataclass(slots=True)
class MaintenanceCost:
    """Counters of cache maintenance done on behalf of one device (or in total).

    ``*_lines`` count the lines the per-line loop visits (every line of the range,
    resident or not); ``bytes`` the bytes the callers asked for; ``written_back_lines``
    the DIRTY lines actually written to DRAM (DRAM traffic for the timing model);
    ``discarded_dirty_lines`` DIRTY lines dropped by ``dc ivac``.
    """

    calls: int = 0
    bytes: int = 0
    clean_lines: int = 0
    invalidate_lines: int = 0
    clean_invalidate_lines: int = 0
    written_back_lines: int = 0
    discarded_dirty_lines: int = 0

    @property
    def lines(self) -> int:
        """Every line maintained, whatever the operation."""
        return self.clean_lines + self.invalidate_lines + self.clean_invalidate_lines

    def add(self, other: MaintenanceCost) -> None:
        """Accumulate ``other``."""
        self.calls += other.calls
        self.bytes += other.bytes
        self.clean_lines += other.clean_lines
        self.invalidate_lines += other.invalidate_lines
        self.clean_invalidate_lines += other.clean_invalidate_lines
        self.written_back_lines += other.written_back_lines
        self.discarded_dirty_lines += other.discarded_dirty_lines


# -- history ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _RangeEvent:
    a: int
    b: int
    event: HistoryEvent


class RangeHistory:
    """A bounded log of events on physical ranges; the history of a buffer is the events
    that overlap it (most recent ``limit``)."""

    def __init__(self, maxlen: int = 8192) -> None:
        self._events: deque[_RangeEvent] = deque(maxlen=maxlen)

    def add(self, a: int, b: int, time_ns: int, what: str, detail: str = "") -> None:
        """Record ``what`` on ``[a, b)`` at ``time_ns``."""
        self._events.append(_RangeEvent(a, b, HistoryEvent(time_ns / 1e9, what, detail)))

    def of(self, a: int, b: int, limit: int = 64) -> list[HistoryEvent]:
        """Events overlapping ``[a, b)``, oldest first, at most the last ``limit``."""
        out = [r.event for r in self._events if r.a < b and a < r.b]
        return out[-limit:]


# -- the cache model -------------------------------------------------------------------------
@dataclass
class _Hazard:
    a: int
    b: int
    cached: DataToken
    memory: DataToken

    @property
    def size(self) -> int:
        return self.b - self.a


class CpuCacheModel:
    """The CPU caches (all levels, all cores) in front of DRAM, for shared buffers.

    ``line`` is the cache line (the SoC's ``cpu.cache_line``); ``capacity`` the bytes the
    caches hold (None: unbounded, lines leave only by maintenance or :meth:`evict`);
    ``findings`` receives the checks' findings; ``clock`` gives model time in ns.
    """

    def __init__(
        self,
        line: int = 64,
        *,
        capacity: int | None = None,
        speculative: bool = True,
        findings: FindingLog | None = None,
        clock: Callable[[], int] | None = None,
        cost_model: CacheCostModel | None = None,
    ) -> None:
        if line <= 0 or line & (line - 1):
            raise ValueError(f"cache line {line} is not a power of two")
        self.line = line
        self.capacity = capacity
        self.speculative = speculative
        self.findings = findings if findings is not None else FindingLog()
        self.clock = clock or (lambda: 0)
        self.cost_model = cost_model or CacheCostModel()
        self.memory: IntervalMap[DataToken] = IntervalMap()
        self.cache: IntervalMap[CachedCopy] = IntervalMap()
        self.history = RangeHistory()
        self.cost: dict[str, MaintenanceCost] = {}
        self.total = MaintenanceCost()
        self._ids = itertools.count(1)
        self._fills: deque[tuple[int, int]] = deque()
        self._resident = 0

    # -- helpers ---------------------------------------------------------------------------
    def _align(self, a: int, b: int) -> tuple[int, int]:
        m = self.line - 1
        return a & ~m, (b + m) & ~m

    def lines_of(self, paddr: int, size: int) -> int:
        """Lines the range touches (what a by-VA loop visits)."""
        if size <= 0:
            return 0
        la, lb = self._align(paddr, paddr + size)
        return (lb - la) // self.line

    def _token(self, writer: str, by_cpu: bool) -> DataToken:
        return DataToken(next(self._ids), writer, self.clock(), by_cpu)

    def _mem(self, x: int) -> DataToken:
        return self.memory.get(x) or BOOT_TOKEN

    def _mem_items(self, a: int, b: int) -> Iterator[tuple[int, int, DataToken]]:
        for s, e, t in self.memory.items(a, b):
            yield s, e, t or BOOT_TOKEN

    def note(self, paddr: int, size: int, what: str, detail: str = "") -> None:
        """Add an event to the history of ``[paddr, paddr + size)``."""
        self.history.add(paddr, paddr + size, self.clock(), what, detail)

    def _set_cache(self, a: int, b: int, value: CachedCopy | None) -> None:
        before = self.cache.covered(a, b)
        self.cache.assign(a, b, value)
        self._resident += (b - a if value is not None else 0) - before

    def _charge(self, who: str) -> MaintenanceCost:
        c = self.cost.get(who)
        if c is None:
            c = self.cost[who] = MaintenanceCost()
        return c

    def _account(self, who: str, delta: MaintenanceCost) -> None:
        self._charge(who).add(delta)
        self.total.add(delta)

    def _finding(
        self, kind: str, message: str, a: int, b: int, subject: str, **data: object
    ) -> Finding:
        f = Finding(
            kind=kind,
            severity=Severity.ERROR,
            message=message,
            subject=subject,
            time=self.clock() / 1e9,
            history=self.history.of(a, b),
            data={"paddr": a, "size": b - a, **data},
        )
        return self.findings.add(f)

    # -- fills and write-backs ---------------------------------------------------------------
    def _fill(self, la: int, lb: int) -> None:
        """Allocate the INVALID lines of ``[la, lb)`` (line aligned) CLEAN from DRAM."""
        filled = False
        for s, e, v in self.cache.items(la, lb):
            if v is not None:
                continue
            for ms, me, tok in self._mem_items(s, e):
                self.cache.assign(ms, me, CachedCopy(LineState.CLEAN, tok))
            self._resident += e - s
            self._fills.append((s, e))
            filled = True
        if filled:
            self._enforce_capacity()

    def _write_back(self, la: int, lb: int, cause: str, cost: MaintenanceCost) -> None:
        """Write the DIRTY lines of ``[la, lb)`` (line aligned) to DRAM; they stay resident,
        CLEAN.  ``lost-device-write`` where DRAM holds a device write newer than the copy."""
        lost: list[_Hazard] = []
        last_line = -1
        for s, e, v in list(self.cache.present(la, lb)):
            if v.state is not LineState.DIRTY:
                continue
            first, last = s // self.line, (e - 1) // self.line
            cost.written_back_lines += last - max(first, last_line + 1) + 1
            last_line = last
            for ms, me, mt in self._mem_items(s, e):
                if not mt.by_cpu and mt.id > v.token.id:
                    lost.append(_Hazard(ms, me, v.token, mt))
            self.memory.assign(s, e, v.token)
            self.cache.assign(s, e, CachedCopy(LineState.CLEAN, v.token))
        if lost:
            self._report_lost(lost, cause)

    def _count_dirty_lines(self, la: int, lb: int) -> int:
        n, last_line = 0, -1
        for s, e, v in self.cache.present(la, lb):
            if v.state is LineState.DIRTY:
                first, last = s // self.line, (e - 1) // self.line
                n += last - max(first, last_line + 1) + 1
                last_line = last
        return n

    def _report_lost(self, lost: list[_Hazard], cause: str) -> None:
        a, b = lost[0].a, lost[-1].b
        size = sum(h.size for h in lost)
        dev = lost[0].memory
        self._finding(
            "coherency.lost-device-write",
            f"socmem-coherency: dirty cpu cache lines written back over 0x{a:x}+{size} "
            f"({cause}): device {dev.writer}'s write at {_ms(dev.time)} is lost "
            f"(the cpu's copy dates from {_ms(lost[0].cached.time)})",
            a,
            b,
            f"phys 0x{a:x}+{b - a}",
            lost_bytes=size,
            device=dev.writer,
            cause=cause,
        )
        self.note(a, b - a, "lost device write", f"{size} bytes of {dev.writer} overwritten")

    def _drop(self, la: int, lb: int, cost: MaintenanceCost) -> None:
        """Drop the lines of ``[la, lb)`` without writing back (``dc ivac``)."""
        cost.discarded_dirty_lines += self._count_dirty_lines(la, lb)
        self._set_cache(la, lb, None)

    # -- CPU accesses ------------------------------------------------------------------------
    def cpu_read(self, paddr: int, size: int, mapping: str | CpuMapping = "cached") -> int:
        """A CPU load of ``[paddr, paddr + size)``: the number of stale bytes returned.

        ``cached``: resident lines are hits (a copy older than a device's write to DRAM is
        a ``stale-cpu-read``), the others are filled from DRAM.  ``uncached`` and
        ``writecombine`` read DRAM and never go stale."""
        if size <= 0:
            return 0
        m = CpuMapping.of(mapping)
        a, b = paddr, paddr + size
        self.note(paddr, size, "cpu read", m.value)
        if m is not CpuMapping.CACHED:
            return 0
        stale: list[_Hazard] = []
        for s, e, v in self.cache.present(a, b):
            for ms, me, mt in self._mem_items(s, e):
                if not mt.by_cpu and mt.id > v.token.id:
                    stale.append(_Hazard(ms, me, v.token, mt))
        la, lb = self._align(a, b)
        self._fill(la, lb)
        if not stale:
            return 0
        n = sum(h.size for h in stale)
        dev = stale[-1].memory
        s0, s1 = stale[0].a, stale[-1].b
        self._finding(
            "coherency.stale-cpu-read",
            f"socmem-coherency: cpu read of 0x{a:x}+{size} returns stale data "
            f"({n} bytes at 0x{s0:x}): device {dev.writer} wrote it at {_ms(dev.time)}, "
            "no dma_sync_*_for_cpu / begin_cpu_access since",
            s0,
            s1,
            f"phys 0x{a:x}+{size}",
            stale_bytes=n,
            device=dev.writer,
        )
        return n

    def cpu_write(
        self, paddr: int, size: int, mapping: str | CpuMapping = "cached"
    ) -> DataToken | None:
        """A CPU store to ``[paddr, paddr + size)``: its data token.

        ``cached``: write-allocate (partial edge lines are filled first), the lines become
        DIRTY.  ``uncached``: straight to DRAM.  ``writecombine``: through the write
        buffer, modelled as drained at once (DRAM updated now)."""
        if size <= 0:
            return None
        m = CpuMapping.of(mapping)
        a, b = paddr, paddr + size
        tok = self._token("cpu", True)
        self.note(paddr, size, "cpu write", m.value)
        if m is not CpuMapping.CACHED:
            self.memory.assign(a, b, tok)
            return tok
        la, lb = self._align(a, b)
        if la < a:
            self._fill(la, la + self.line)
        if lb > b:
            self._fill(lb - self.line, lb)
        self._set_cache(a, b, CachedCopy(LineState.DIRTY, tok))
        for ea, eb in ((la, a), (b, lb)):
            for s, e, v in list(self.cache.present(ea, eb)):
                self.cache.assign(s, e, CachedCopy(LineState.DIRTY, v.token))
        self._fills.append((la, lb))
        self._enforce_capacity()
        return tok

    # -- maintenance by VA (arch/arm64/mm/cache.S) -------------------------------------------
    def clean(self, paddr: int, size: int, who: str = "cpu", reason: str = "") -> MaintenanceCost:
        """``dcache_clean_poc``: ``dc cvac`` on every line of the range; DIRTY lines are
        written back and stay CLEAN."""
        c = MaintenanceCost(calls=1, bytes=max(size, 0))
        if size > 0:
            la, lb = self._align(paddr, paddr + size)
            c.clean_lines = (lb - la) // self.line
            self._write_back(la, lb, "dcache_clean_poc", c)
            self.note(paddr, size, "dcache_clean_poc", f"{who}: {reason}" if reason else who)
        self._account(who, c)
        return c

    def invalidate(
        self, paddr: int, size: int, who: str = "cpu", reason: str = ""
    ) -> MaintenanceCost:
        """``dcache_inval_poc``: a partial first or last line is cleaned and invalidated
        (``dc civac``: its DIRTY data is written back, over whatever a device wrote in the
        rest of that line), every other line is invalidated (``dc ivac``: DIRTY data is
        discarded)."""
        c = MaintenanceCost(calls=1, bytes=max(size, 0))
        if size > 0:
            a, b = paddr, paddr + size
            la, lb = self._align(a, b)
            edges: list[tuple[int, int]] = []
            if la < a:
                edges.append((la, la + self.line))
            if lb > b and (lb - self.line, lb) not in edges:
                edges.append((lb - self.line, lb))
            for ea, eb in edges:
                c.clean_invalidate_lines += 1
                self._write_back(ea, eb, "dc civac of a partial line", c)
                self._set_cache(ea, eb, None)
            ia = la + self.line if la < a else la
            ib = lb - self.line if lb > b else lb
            if ib > ia:
                c.invalidate_lines += (ib - ia) // self.line
                self._drop(ia, ib, c)
            self.note(paddr, size, "dcache_inval_poc", f"{who}: {reason}" if reason else who)
        self._account(who, c)
        return c

    def clean_invalidate(
        self, paddr: int, size: int, who: str = "cpu", reason: str = ""
    ) -> MaintenanceCost:
        """``dcache_clean_inval_poc``: ``dc civac`` on every line (``arch_dma_prep_coherent``)."""
        c = MaintenanceCost(calls=1, bytes=max(size, 0))
        if size > 0:
            la, lb = self._align(paddr, paddr + size)
            c.clean_invalidate_lines = (lb - la) // self.line
            self._write_back(la, lb, "dcache_clean_inval_poc", c)
            self._set_cache(la, lb, None)
            self.note(paddr, size, "dcache_clean_inval_poc", f"{who}: {reason}" if reason else who)
        self._account(who, c)
        return c

    # -- eviction ----------------------------------------------------------------------------
    def evict(self, paddr: int, size: int, cause: str = "eviction") -> int:
        """Evict the lines of the range (a capacity or conflict miss elsewhere): DIRTY lines
        are written back at this arbitrary moment.  Returns the lines written back."""
        if size <= 0:
            return 0
        la, lb = self._align(paddr, paddr + size)
        c = MaintenanceCost()
        self._write_back(la, lb, cause, c)
        self._set_cache(la, lb, None)
        if c.written_back_lines:
            self.note(la, lb - la, "evict", f"{c.written_back_lines} dirty lines written back")
        return c.written_back_lines

    def evict_all(self) -> int:
        """Evict every line (a context switch to a cache-hungry task, a suspend)."""
        n = 0
        for s, e, _ in list(self.cache.present(0, 1 << 64)):
            n += self.evict(s, e - s)
        self._fills.clear()
        return n

    def _enforce_capacity(self) -> None:
        if self.capacity is None:
            return
        while self._resident > self.capacity and self._fills:
            s, e = self._fills.popleft()
            self.evict(s, e - s, cause="eviction (capacity)")

    # -- masters -----------------------------------------------------------------------------
    def device_read(self, paddr: int, size: int, coherent: bool, who: str) -> int:
        """A master's read of DRAM: the number of stale bytes it got.

        Coherent: snoops, sees DIRTY CPU data.  Non-coherent: reads DRAM; where a DIRTY CPU
        line holds newer CPU data, ``device-read-uncleaned``."""
        if size <= 0:
            return 0
        a, b = paddr, paddr + size
        self.note(
            paddr, size, "device read", f"{who} ({'coherent' if coherent else 'non-coherent'})"
        )
        if coherent:
            return 0
        bad: list[_Hazard] = []
        for s, e, v in self.cache.present(a, b):
            if v.state is not LineState.DIRTY:
                continue
            for ms, me, mt in self._mem_items(s, e):
                if v.token.by_cpu and v.token.id > mt.id:
                    bad.append(_Hazard(ms, me, v.token, mt))
        if not bad:
            return 0
        n = sum(h.size for h in bad)
        cpu = bad[-1].cached
        s0, s1 = bad[0].a, bad[-1].b
        self._finding(
            "coherency.device-read-uncleaned",
            f"socmem-coherency: {who}: DMA read of 0x{a:x}+{size} returns stale memory "
            f"({n} bytes at 0x{s0:x}): the cpu wrote it at {_ms(cpu.time)} and never "
            "cleaned it to memory (no dma_map_* / dma_sync_*_for_device / end_cpu_access "
            "since)",
            s0,
            s1,
            f"phys 0x{a:x}+{size}",
            stale_bytes=n,
            device=who,
        )
        return n

    def device_write(self, paddr: int, size: int, coherent: bool, who: str) -> DataToken | None:
        """A master's write to DRAM: its data token.

        Coherent: DIRTY CPU data in partial edge lines is merged first (written back),
        then every CPU copy of the range is invalidated.  Non-coherent: DRAM only; CPU
        copies stay as they were (with ``speculative``, INVALID lines of the range are
        first assumed prefetched CLEAN)."""
        if size <= 0:
            return None
        a, b = paddr, paddr + size
        la, lb = self._align(a, b)
        if coherent:
            c = MaintenanceCost()
            if la < a:
                self._write_back(la, la + self.line, "snoop merge of a partial line", c)
            if lb > b:
                self._write_back(lb - self.line, lb, "snoop merge of a partial line", c)
        elif self.speculative:
            for s, e, v in list(self.cache.items(la, lb)):
                if v is None:
                    for ms, me, mt in self._mem_items(s, e):
                        self.cache.assign(ms, me, CachedCopy(LineState.CLEAN, mt))
                    self._resident += e - s
                    self._fills.append((s, e))
        tok = self._token(who, False)
        self.memory.assign(a, b, tok)
        if coherent:
            self._set_cache(la, lb, None)
        self.note(
            paddr, size, "device write", f"{who} ({'coherent' if coherent else 'non-coherent'})"
        )
        if not coherent and self.speculative:
            self._enforce_capacity()
        return tok

    # -- queries -----------------------------------------------------------------------------
    def state_at(self, paddr: int) -> LineState:
        """The state of the line holding ``paddr``."""
        v = self.cache.get(paddr)
        return LineState.INVALID if v is None else v.state

    def memory_token(self, paddr: int) -> DataToken:
        """The data token DRAM holds at ``paddr``."""
        return self._mem(paddr)

    def cached_token(self, paddr: int) -> DataToken | None:
        """The data token the cached copy of ``paddr`` holds, or None (INVALID)."""
        v = self.cache.get(paddr)
        return None if v is None else v.token

    @property
    def resident_bytes(self) -> int:
        """Bytes of resident lines."""
        return self._resident

    def intervals(self) -> int:
        """Stored intervals (DRAM tokens + cached copies): the model's size."""
        return self.memory.boundaries + self.cache.boundaries

    def estimated_ns(self, who: str | None = None) -> float:
        """Estimated CPU time of the maintenance done (for ``who``, or in total)."""
        c = self.total if who is None else self.cost.get(who, MaintenanceCost())
        return self.cost_model.ns(c.lines)
