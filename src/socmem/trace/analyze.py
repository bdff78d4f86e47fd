"""Analyses of real kernel captures: IOVA lifetimes, SMMU faults, fences, CMA, dma-bufs.

One streaming pass over an ftrace text capture (:class:`~socmem.trace.ftrace.FtraceReader`)
feeds four analysers; the kernel log (:class:`~socmem.trace.dmesg.DmesgReader`) and the
debugfs ``dma_buf/bufinfo`` / ``fdinfo`` dumps (:mod:`socmem.trace.bufinfo`) are read
afterwards.  Memory grows with the objects alive in the capture (live mappings, pending
fences, CMA allocations in flight, distinct IOVA start addresses), never with its length:
time series for plots are decimated to a bounded number of points.

Events read (formats: include/trace/events/*.h and the replay capture's README):

* ``iommu:map`` / ``iommu:unmap`` (include/trace/events/iommu.h).  They carry no domain.
  When the capture has the ``__iommu_map`` / ``__iommu_unmap`` kprobes (``dom=`` argument,
  same task and CPU, just before the upstream event), the event is attributed to that
  ``struct iommu_domain *``; ``iommu_setup_dma_ops`` kprobes (``dev=``, ``dom=``, ``asid=``)
  name the device of each domain.  Otherwise mappings go to the ``"unknown domain"``, where
  several devices' IOVA spaces overlap and unmap anomalies are only counted, not reported.
* Invalidations: ``arm_smmu_iotlb_sync`` (dom), ``arm_smmu_cmdq_issue_cmdlist`` (n, sync,
  cmd0: opcode [7:0], ASID [63:48]), ``arm_smmu_tlb_inv_walk``, ``arm_smmu_tlb_inv_context``,
  ``arm_smmu_atc_inv_domain`` kprobes, and the lazy-mode ``fq_flush_iotlb`` / ``fq_ring_free``.
* ``iommu:io_page_fault`` and the dmesg SMMUv3 event records / SMMUv2 context faults.
* ``dma_fence:*`` (include/trace/events/dma_fence.h).
* ``cma:cma_alloc_start`` / ``cma_alloc_finish`` / ``cma_alloc_busy_retry`` / ``cma_release``
  (include/trace/events/cma.h) and dmesg ``cma_alloc: ... alloc failed`` lines.
* ``dma_buf_export`` / ``dma_buf_attach`` kprobes, when present.

Timestamps: trace times are seconds of the trace clock; dmesg times are printk's clock.
On the captures socmem ships (``trace_clock=global`` on arm64) both count from boot and
are compared directly.
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.errors import InputError
from socmem.trace.bufinfo import BufInfo, FdInfo
from socmem.trace.dmesg import CmaAllocFail, ContextFault, DmesgReader, SmmuEvent
from socmem.trace.events import (
    CmaAllocStart,
    CmaRange,
    FenceEvent,
    IommuDeviceEvent,
    IommuGroupEvent,
    IommuMap,
    IommuUnmap,
    IoPageFault,
    KprobeEvent,
    decode,
)
from socmem.trace.ftrace import FtraceReader, TraceEvent

__all__ = [
    "UNKNOWN_DOMAIN",
    "CmaAnalysis",
    "CmaAreaStats",
    "DmaBufInventory",
    "DomainStats",
    "FaultExplanation",
    "FenceAnalysis",
    "IovaAnalysis",
    "Sink",
    "TimelineStats",
    "TraceReport",
    "analyze",
    "explain_faults",
    "inventory_dmabufs",
    "pci_stream_id",
]

#: Label of mappings whose domain the capture does not tell.
UNKNOWN_DOMAIN = "unknown domain"

#: Granule used to name "the IOVA page" of a fault.
PAGE = 4096

#: Page sizes of the ARM LPAE 4K-granule format (io-pgtable-arm ``pgsize_bitmap``).
PAGE_SIZES = (1 << 30, 1 << 21, 1 << 12)

#: Bounded history kept per IOVA start address.
HISTORY_LEN = 8

#: A sink receives ``(kind, fields)`` while the analysis streams (used by the Perfetto
#: exporter): kinds ``map``, ``unmap``, ``fence``, ``fence_wait``, ``cma``.
Sink = Callable[[str, dict[str, Any]], None]


def _s(ns: int) -> float:
    return ns / 1e9


def _size_label(n: int) -> str:
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _bucket(n: int) -> int:
    """Power-of-two bucket (upper bound) of a size."""
    return 1 << max(0, (n - 1).bit_length())


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values`` (``None`` when empty)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


def pci_stream_id(device: str) -> int | None:
    """StreamID of a PCI device ``DDDD:BB:DD.F`` under an identity ``iommu-map``.

    The SMMU sees the PCI requester ID (``bus << 8 | devfn``) as StreamID when the host
    bridge's ``iommu-map`` is ``<0 &smmu 0 0x10000>`` (QEMU virt, most SoCs).
    """
    m = re.fullmatch(r"[0-9a-f]{4}:([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])", device)
    if m is None:
        return None
    return int(m.group(1), 16) << 8 | int(m.group(2), 16) << 3 | int(m.group(3))


def page_split(
    iova: int, paddr: int, size: int, sizes: tuple[int, ...] = PAGE_SIZES
) -> Counter[int]:
    """How ``iommu_map`` splits ``size`` into page sizes (``iommu_pgsize`` in iommu.c).

    Each step uses the largest page size that fits and to which both ``iova`` and
    ``paddr`` are aligned; the count of one size is computed arithmetically up to the
    next boundary of a larger size, so the cost does not grow with ``size``.
    """
    out: Counter[int] = Counter()
    small = sizes[-1]
    while size >= small:
        addr_merge = iova | paddr
        i = next((k for k, pg in enumerate(sizes) if pg <= size and addr_merge % pg == 0), None)
        if i is None:  # misaligned below the smallest page: the kernel refuses; count one
            out[small] += 1
            break
        pg = sizes[i]
        limit = size
        for big in sizes[:i]:
            # distance to the next alignment boundary of a larger page
            nxt = (-iova) % big
            if 0 < nxt < limit and (paddr + nxt) % big == 0:
                limit = nxt
        n = max(1, limit // pg)
        out[pg] += n
        iova += n * pg
        paddr += n * pg
        size -= n * pg
    return out


class Series:
    """A ``(time, value)`` series decimated to at most ``max_points`` (keeps the maxima)."""

    def __init__(self, max_points: int = 2000) -> None:
        self.max_points = max_points
        self.points: list[tuple[float, int]] = []

    def add(self, t: float, v: int) -> None:
        """Append a point; halve the series (pairwise max) when it is full."""
        self.points.append((t, v))
        if len(self.points) > self.max_points:
            p = self.points
            self.points = [max(p[i], p[i + 1], key=lambda x: x[1]) for i in range(0, len(p) - 1, 2)]
            if len(p) % 2:
                self.points.append(p[-1])


# -- IOVA ---------------------------------------------------------------------------------


@dataclass(slots=True)
class IovaSlot:
    """What the trace says about one IOVA start address of one domain."""

    start: int
    end: int
    paddr: int = 0
    maps: int = 0
    unmaps: int = 0
    live: int = 0  # live mappings starting here (>1 only in the unknown domain)
    map_ns: int = 0
    unmap_ns: int | None = None
    history: deque[HistoryEvent] = field(default_factory=lambda: deque(maxlen=HISTORY_LEN))


@dataclass(slots=True)
class DomainStats:
    """Mapping statistics of one IOMMU domain (one device's default DMA domain)."""

    label: str
    dom: int | None = None
    devices: list[str] = field(default_factory=list)
    asid: int | None = None
    group: int | None = None
    maps: int = 0
    unmaps: int = 0
    bytes_mapped: int = 0
    bytes_unmapped: int = 0
    live_bytes: int = 0
    peak_live_bytes: int = 0
    peak_live_mappings: int = 0
    live_mappings: int = 0
    partial_unmaps: int = 0  # unmap covering only part of a mapping (mapping split)
    short_unmaps: int = 0  # unmapped_size < size: the kernel stopped early
    gap_bytes: int = 0  # unmapped bytes the trace never saw mapped (sg padding, ...)
    unmatched_unmaps: int = 0  # unmap of nothing the trace saw mapped
    overlapping_maps: int = 0
    iotlb_syncs: int = 0
    tlbi_cmds: int = 0
    lifetime_count: int = 0
    lifetime_sum_ns: int = 0
    lifetime_max_ns: int = 0
    lifetime_hist: Counter[int] = field(default_factory=Counter)  # log2(ns) buckets
    size_hist: Counter[int] = field(default_factory=Counter)
    page_hist: Counter[int] = field(default_factory=Counter)
    series: Series = field(default_factory=Series)

    def lifetime_percentile(self, q: float) -> float | None:
        """Approximate lifetime percentile in seconds (upper edge of a log2 bucket)."""
        total = self.lifetime_count
        if not total:
            return None
        want = q / 100 * total
        acc = 0
        for b in sorted(self.lifetime_hist):
            acc += self.lifetime_hist[b]
            if acc >= want:
                return min(_s(1 << b), _s(self.lifetime_max_ns))
        return _s(self.lifetime_max_ns)

    def to_dict(self, alive: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "label": self.label,
            "dom": hex(self.dom) if self.dom is not None else None,
            "devices": self.devices,
            "asid": self.asid,
            "group": self.group,
            "maps": self.maps,
            "unmaps": self.unmaps,
            "bytes_mapped": self.bytes_mapped,
            "bytes_unmapped": self.bytes_unmapped,
            "peak_live_bytes": self.peak_live_bytes,
            "peak_live_mappings": self.peak_live_mappings,
            "alive_at_end": self.live_mappings,
            "alive_bytes_at_end": self.live_bytes,
            "alive": alive or [],
            "partial_unmaps": self.partial_unmaps,
            "short_unmaps": self.short_unmaps,
            "gap_bytes": self.gap_bytes,
            "unmatched_unmaps": self.unmatched_unmaps,
            "overlapping_maps": self.overlapping_maps,
            "iotlb_syncs": self.iotlb_syncs,
            "tlbi_cmds": self.tlbi_cmds,
            "invalidations_per_unmap": (
                round(max(self.iotlb_syncs, self.tlbi_cmds) / self.unmaps, 3)
                if self.unmaps and (self.iotlb_syncs or self.tlbi_cmds)
                else None
            ),
            "lifetime": {
                "count": self.lifetime_count,
                "mean_s": _s(self.lifetime_sum_ns) / self.lifetime_count
                if self.lifetime_count
                else None,
                "p50_s": self.lifetime_percentile(50),
                "p99_s": self.lifetime_percentile(99),
                "max_s": _s(self.lifetime_max_ns),
            },
            "size_histogram": {_size_label(k): v for k, v in sorted(self.size_hist.items())},
            "page_size_histogram": {_size_label(k): v for k, v in sorted(self.page_hist.items())},
        }


@dataclass(slots=True)
class _DomainState:
    stats: DomainStats
    slots: dict[int, IovaSlot] = field(default_factory=dict)
    live_starts: list[int] = field(default_factory=list)  # sorted, with repeats
    live_len: dict[int, list[int]] = field(default_factory=dict)  # start -> [end, ...]
    max_size: int = 0


class IovaAnalysis:
    """IOVA lifetimes, churn, anomalies and invalidations per IOMMU domain.

    Feed it ``(event, phase name)``; call :meth:`finish` at the end.
    """

    MAP_KPROBE = "__iommu_map"
    UNMAP_KPROBE = "__iommu_unmap"

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self.domains: dict[str, _DomainState] = {}
        self.dom_device: dict[int, str] = {}
        self.dom_info: dict[int, dict[str, Any]] = {}
        self.asid_dom: dict[int, int] = {}
        self.devices_seen: dict[str, dict[str, Any]] = {}
        self.pending: dict[tuple[int, int, int], int] = {}
        self.phase_stats: dict[tuple[str, str], list[int]] = {}
        self.findings: list[Finding] = []
        self.inval: Counter[str] = Counter()
        self.cmd_opcodes: Counter[str] = Counter()
        self.commands = 0
        self.first_ns: int | None = None
        self.last_ns = 0

    # -- identity ---------------------------------------------------------------------

    def _label(self, dom: int | None) -> str:
        if dom is None:
            return UNKNOWN_DOMAIN
        dev = self.dom_device.get(dom)
        return dev if dev is not None else f"dom {dom:#x}"

    def _domain(self, dom: int | None) -> _DomainState:
        label = self._label(dom)
        st = self.domains.get(label)
        if st is None:
            ds = DomainStats(label, dom)
            info = self.dom_info.get(dom) if dom is not None else None
            if info:
                ds.devices = [label]
                ds.asid = info.get("asid")
                ds.group = info.get("grp")
            st = self.domains[label] = _DomainState(ds)
        return st

    def _setup(self, kp: KprobeEvent) -> None:
        dev, dom = kp.get("dev"), kp.get("dom")
        if isinstance(dev, str) and isinstance(dom, int):
            self.dom_device[dom] = dev
            self.dom_info[dom] = dict(kp.args)
            asid = kp.get("asid")
            if isinstance(asid, int):
                self.asid_dom[asid] = dom
            self.devices_seen.setdefault(dev, {}).update(
                {"dom": dom, "asid": asid, "group": kp.get("grp")}
            )

    # -- the stream -------------------------------------------------------------------

    def feed(self, ev: TraceEvent, phase: str) -> None:
        """Consume one event (any event: others are ignored quickly)."""
        name = ev.name
        if name == "map":
            d = decode(ev)
            if isinstance(d, IommuMap):
                self._map(ev, d, phase)
        elif name == "unmap":
            d = decode(ev)
            if isinstance(d, IommuUnmap):
                self._unmap(ev, d, phase)
        elif name in (self.MAP_KPROBE, self.UNMAP_KPROBE):
            d = decode(ev)
            if isinstance(d, KprobeEvent):
                dom, iova = d.get("dom"), d.get("iova")
                if isinstance(dom, int) and isinstance(iova, int):
                    self.pending[(ev.pid, ev.cpu, iova)] = dom
        elif name in _INVAL_EVENTS:
            self._inval(ev, name)
        elif name == "iommu_setup_dma_ops":
            d = decode(ev)
            if isinstance(d, KprobeEvent):
                self._setup(d)
        elif name in ("add_device_to_group", "attach_device_to_domain"):
            d = decode(ev)
            if isinstance(d, IommuGroupEvent):
                self.devices_seen.setdefault(d.device, {})["group"] = d.group_id
            elif isinstance(d, IommuDeviceEvent):
                self.devices_seen.setdefault(d.device, {})
        else:
            return
        ns = ev.ts_ns
        if self.first_ns is None:
            self.first_ns = ns
        self.last_ns = max(self.last_ns, ns)

    def _inval(self, ev: TraceEvent, name: str) -> None:
        self.inval[name] += 1
        if name not in ("arm_smmu_iotlb_sync", "arm_smmu_cmdq_issue_cmdlist"):
            return
        d = decode(ev)
        if not isinstance(d, KprobeEvent):
            return
        if name == "arm_smmu_iotlb_sync":
            dom = d.get("dom")
            if isinstance(dom, int):
                self._domain(dom).stats.iotlb_syncs += 1
            return
        n, sync, cmd0 = d.get("n"), d.get("sync"), d.get("cmd0")
        self.commands += (n if isinstance(n, int) else 0) + (1 if sync else 0)
        if isinstance(cmd0, int) and isinstance(n, int) and n > 0:
            op = cmd0 & 0xFF
            self.cmd_opcodes[_CMDQ_OPCODES.get(op, f"{op:#04x}")] += 1
            if op in (0x11, 0x12):  # TLBI_NH_ASID / TLBI_NH_VA: ASID in cmd0[63:48]
                dom = self.asid_dom.get(cmd0 >> 48)
                if dom is not None:
                    self._domain(dom).stats.tlbi_cmds += 1

    def _phase(self, phase: str, label: str) -> list[int]:
        key = (phase, label)
        row = self.phase_stats.get(key)
        if row is None:
            row = self.phase_stats[key] = [0, 0, 0, 0]
        return row

    def _map(self, ev: TraceEvent, m: IommuMap, phase: str) -> None:
        dom = self.pending.pop((ev.pid, ev.cpu, m.iova), None)
        st = self._domain(dom)
        ds = st.stats
        ns = ev.ts_ns
        t = _s(ns)
        start, end = m.iova, m.iova + m.size
        ds.maps += 1
        ds.bytes_mapped += m.size
        ds.size_hist[_bucket(m.size)] += 1
        ds.page_hist.update(page_split(m.iova, m.paddr, m.size))
        row = self._phase(phase, ds.label)
        row[0] += 1
        row[2] += m.size
        unknown = dom is None
        if not unknown:
            over = self._overlaps(st, start, end)
            if over:
                ds.overlapping_maps += 1
                slot = st.slots.get(over[0][0])
                self.findings.append(
                    Finding(
                        "trace.map-overlap",
                        Severity.WARNING,
                        f"iommu map: iova {start:#x}-{end:#x} overlaps a live mapping "
                        f"{over[0][0]:#x}-{over[0][1]:#x} in {ds.label}",
                        subject=f"{ds.label} iova {start:#x}",
                        time=t,
                        history=list(slot.history) if slot else [],
                        data={"line": ev.line_no},
                    )
                )
                for s, e in over:  # the new mapping replaces what it overlaps
                    self._remove_live(st, s, e, ns, lifetime=False)
        slot = st.slots.get(start)
        if slot is None:
            slot = st.slots[start] = IovaSlot(start, end)
        slot.end = max(end, slot.end) if slot.live else end
        slot.paddr = m.paddr
        slot.maps += 1
        slot.live += 1
        slot.map_ns = ns
        slot.history.append(
            HistoryEvent(
                t, "iommu_map", f"iova={start:#x} size={m.size} paddr={m.paddr:#x} [{phase}]"
            )
        )
        bisect.insort(st.live_starts, start)
        st.live_len.setdefault(start, []).append(end)
        st.max_size = max(st.max_size, m.size)
        ds.live_mappings += 1
        ds.live_bytes += m.size
        ds.peak_live_mappings = max(ds.peak_live_mappings, ds.live_mappings)
        if ds.live_bytes > ds.peak_live_bytes:
            ds.peak_live_bytes = ds.live_bytes
        ds.series.add(t, ds.live_bytes)
        if self.sink is not None:
            self.sink(
                "map",
                {
                    "domain": ds.label,
                    "ts_ns": ns,
                    "iova": start,
                    "size": m.size,
                    "paddr": m.paddr,
                    "live_bytes": ds.live_bytes,
                },
            )

    def _overlaps(self, st: _DomainState, a: int, b: int) -> list[tuple[int, int]]:
        """Live ``(start, end)`` intervals intersecting ``[a, b)``."""
        starts = st.live_starts
        i = bisect.bisect_right(starts, a - st.max_size)
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        while i < len(starts) and starts[i] < b:
            s = starts[i]
            i += 1
            if s in seen:
                continue
            seen.add(s)
            for e in st.live_len.get(s, ()):
                if e > a:
                    out.append((s, e))
        return out

    def _remove_live(self, st: _DomainState, s: int, e: int, ns: int, lifetime: bool) -> None:
        ends = st.live_len[s]
        ends.remove(e)
        if not ends:
            del st.live_len[s]
        del st.live_starts[bisect.bisect_left(st.live_starts, s)]
        slot = st.slots[s]
        slot.live -= 1
        ds = st.stats
        ds.live_mappings -= 1
        ds.live_bytes -= e - s
        if lifetime:
            life = max(0, ns - slot.map_ns)
            ds.lifetime_count += 1
            ds.lifetime_sum_ns += life
            ds.lifetime_max_ns = max(ds.lifetime_max_ns, life)
            ds.lifetime_hist[max(0, life - 1).bit_length()] += 1

    def _add_live(self, st: _DomainState, s: int, e: int, paddr: int, map_ns: int) -> None:
        slot = st.slots.get(s)
        if slot is None:
            slot = st.slots[s] = IovaSlot(s, e, paddr)
        slot.end = e
        slot.live += 1
        slot.map_ns = map_ns
        bisect.insort(st.live_starts, s)
        st.live_len.setdefault(s, []).append(e)
        st.stats.live_mappings += 1
        st.stats.live_bytes += e - s

    def _unmap(self, ev: TraceEvent, u: IommuUnmap, phase: str) -> None:
        dom = self.pending.pop((ev.pid, ev.cpu, u.iova), None)
        st = self._domain(dom)
        ds = st.stats
        ns = ev.ts_ns
        t = _s(ns)
        a, b = u.iova, u.iova + u.size
        ds.unmaps += 1
        ds.bytes_unmapped += u.unmapped_size
        row = self._phase(phase, ds.label)
        row[1] += 1
        row[3] += u.unmapped_size
        if u.partial:
            ds.short_unmaps += 1
        unknown = dom is None
        over = self._overlaps(st, a, b)
        if unknown:
            # several devices' IOVA spaces share this bucket: take one mapping, preferring
            # one that starts at the unmapped address
            inside = [(s, e) for s, e in over if s >= a and e <= b]
            exact = [x for x in inside if x[0] == a]
            over = (exact or inside)[:1]
        covered = 0
        detail = f"iova={a:#x} size={u.size} unmapped_size={u.unmapped_size} [{phase}]"
        for s, e in over:
            lo, hi = max(s, a), min(e, b)
            covered += hi - lo
            slot = st.slots[s]
            paddr, map_ns = slot.paddr, slot.map_ns
            full = lo == s and hi == e
            self._remove_live(st, s, e, ns, lifetime=full)
            slot.unmaps += 1
            slot.unmap_ns = ns
            slot.history.append(HistoryEvent(t, "iommu_unmap", detail))
            if not full:
                ds.partial_unmaps += 1
                if s < lo:
                    self._add_live(st, s, lo, paddr, map_ns)
                if hi < e:
                    self._add_live(st, hi, e, paddr + (hi - s), map_ns)
                    st.slots[hi].history.append(
                        HistoryEvent(t, "iommu_unmap", f"partial: {detail}")
                    )
        ds.gap_bytes += max(0, (b - a) - covered) if covered else 0
        ds.series.add(t, ds.live_bytes)
        if self.sink is not None:
            self.sink(
                "unmap",
                {
                    "domain": ds.label,
                    "ts_ns": ns,
                    "iova": a,
                    "size": u.size,
                    "live_bytes": ds.live_bytes,
                },
            )
        if covered:
            return
        ds.unmatched_unmaps += 1
        if unknown:
            return
        dead = [sl for sl in st.slots.values() if sl.start < b and sl.end > a and sl.maps]
        if dead:
            sl = max(dead, key=lambda x: x.unmap_ns or 0)
            ago = (ns - sl.unmap_ns) / 1e6 if sl.unmap_ns is not None else None
            hist = list(sl.history)
            hist.append(HistoryEvent(t, "iommu_unmap", detail))
            sl.history.append(HistoryEvent(t, "iommu_unmap", f"again: {detail}"))
            sl.unmaps += 1
            self.findings.append(
                Finding(
                    "trace.double-unmap",
                    Severity.ERROR,
                    f"iommu unmap: iova {a:#x}-{b:#x} in {ds.label} was already unmapped"
                    + (f" {ago:.3f} ms before" if ago is not None else ""),
                    subject=f"{ds.label} iova {a:#x}",
                    time=t,
                    history=hist,
                    data={"line": ev.line_no, "iova": a, "size": u.size, "domain": ds.label},
                )
            )
        else:
            self.findings.append(
                Finding(
                    "trace.unmap-unmapped",
                    Severity.ERROR,
                    f"iommu unmap: iova {a:#x}-{b:#x} in {ds.label} was never mapped in the trace",
                    subject=f"{ds.label} iova {a:#x}",
                    time=t,
                    history=[HistoryEvent(t, "iommu_unmap", detail)],
                    data={"line": ev.line_no, "iova": a, "size": u.size, "domain": ds.label},
                )
            )

    # -- queries ----------------------------------------------------------------------

    def history_of(self, label: str, iova: int) -> tuple[str, IovaSlot | None]:
        """``("live"|"unmapped"|"never", slot)`` for address ``iova`` in domain ``label``."""
        st = self.domains.get(label)
        if st is None:
            return ("never", None)
        live = [s for s, e in self._overlaps(st, iova, iova + 1)]
        if live:
            return ("live", st.slots[live[0]])
        dead = [sl for sl in st.slots.values() if sl.start <= iova < sl.end and sl.maps]
        if dead:
            return ("unmapped", max(dead, key=lambda x: x.unmap_ns or 0))
        return ("never", None)

    def mode(self) -> str:
        """``strict``, ``lazy`` or ``unknown`` (from the invalidation events present)."""
        if self.inval["fq_flush_iotlb"] or self.inval["fq_ring_free"]:
            return "lazy"
        unmaps = sum(s.stats.unmaps for s in self.domains.values())
        per = max(
            self.inval["arm_smmu_iotlb_sync"],
            self.inval["arm_smmu_atc_inv_domain"],
            self.cmd_opcodes.get("TLBI_NH_VA", 0),
        )
        if unmaps and per >= 0.9 * unmaps:
            return "strict"
        return "unknown"

    def alive(self, label: str, limit: int = 50) -> list[dict[str, Any]]:
        """The mappings of ``label`` alive at the end (first ``limit``, by IOVA)."""
        st = self.domains[label]
        out: list[dict[str, Any]] = []
        for s in sorted(st.live_len):
            for e in st.live_len[s]:
                if len(out) >= limit:
                    return out
                sl = st.slots[s]
                out.append(
                    {
                        "iova": hex(s),
                        "size": e - s,
                        "paddr": hex(sl.paddr),
                        "mapped_at": _s(sl.map_ns),
                    }
                )
        return out

    def finish(self) -> None:
        """Nothing to flush today (mappings alive at the end stay alive)."""


_INVAL_EVENTS = frozenset(
    {
        "arm_smmu_iotlb_sync",
        "arm_smmu_cmdq_issue_cmdlist",
        "arm_smmu_tlb_inv_walk",
        "arm_smmu_tlb_inv_context",
        "arm_smmu_atc_inv_domain",
        "fq_flush_iotlb",
        "fq_ring_free",
        "fq_flush_timeout",
        "iommu_iotlb_sync",
    }
)

#: SMMUv3 command opcodes (arm-smmu-v3.h CMDQ_OP_*).
_CMDQ_OPCODES = {
    0x01: "PREFETCH_CONFIG",
    0x03: "CFGI_STE",
    0x04: "CFGI_STE_RANGE",
    0x05: "CFGI_CD",
    0x06: "CFGI_CD_ALL",
    0x11: "TLBI_NH_ASID",
    0x12: "TLBI_NH_VA",
    0x20: "TLBI_EL2_ALL",
    0x28: "TLBI_S12_VMALL",
    0x2A: "TLBI_S2_IPA",
    0x30: "TLBI_NSNH_ALL",
    0x40: "ATC_INV",
    0x41: "PRI_RESP",
    0x44: "RESUME",
    0x46: "CMD_SYNC",
}


# -- fences -------------------------------------------------------------------------------


@dataclass(slots=True)
class TimelineStats:
    """One fence context (``driver/timeline``, ``context``)."""

    driver: str
    timeline: str
    context: int
    inits: int = 0
    emitted: int = 0
    signaled: int = 0
    destroyed: int = 0
    waits: int = 0
    latencies: list[float] = field(default_factory=list)  # emit -> signaled, seconds
    wait_durations: list[float] = field(default_factory=list)
    never_signalled: int = 0
    out_of_order: int = 0

    @property
    def label(self) -> str:
        """``driver/timeline#context``."""
        return f"{self.driver}/{self.timeline}#{self.context}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""

        def summ(v: list[float]) -> dict[str, Any]:
            return {
                "count": len(v),
                "p50_s": percentile(v, 50),
                "p99_s": percentile(v, 99),
                "max_s": max(v) if v else None,
            }

        return {
            "driver": self.driver,
            "timeline": self.timeline,
            "context": self.context,
            "init": self.inits,
            "emitted": self.emitted,
            "signaled": self.signaled,
            "destroyed": self.destroyed,
            "waits": self.waits,
            "latency": summ(self.latencies),
            "wait": summ(self.wait_durations),
            "never_signalled": self.never_signalled,
            "out_of_order": self.out_of_order,
        }


class FenceAnalysis:
    """dma_fence timelines: emit → signaled latency, waits, unsignalled and reordered fences.

    A fence is identified by ``(context, seqno)`` from ``dma_fence_emit`` on (drivers such as
    virtio-gpu ``dma_fence_init`` with seqno 0 and assign the seqno at emit).  Fences on
    one context must signal in seqno order (``dma_fence_is_later``); a ``dma_fence_signaled``
    while an older emitted fence of the context is pending is reported.
    """

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self.timelines: dict[int, TimelineStats] = {}
        self.pending: dict[tuple[int, int], tuple[int, list[HistoryEvent]]] = {}
        self.waits: dict[tuple[int, int, int], int] = {}
        self.findings: list[Finding] = []

    def feed(self, ev: TraceEvent, phase: str) -> None:
        """Consume a ``dma_fence_*`` event (others are ignored)."""
        if not ev.name.startswith("dma_fence_"):
            return
        f = decode(ev)
        if not isinstance(f, FenceEvent):
            return
        tl = self.timelines.get(f.context)
        if tl is None:
            tl = self.timelines[f.context] = TimelineStats(f.driver, f.timeline, f.context)
        ns = ev.ts_ns
        t = _s(ns)
        op = f.op
        key = (f.context, f.seqno)
        if op == "init":
            tl.inits += 1
        elif op == "emit":
            tl.emitted += 1
            self.pending[key] = (
                ns,
                [HistoryEvent(t, "dma_fence_emit", f"seqno={f.seqno} [{phase}]")],
            )
        elif op == "signaled":
            tl.signaled += 1
            p = self.pending.pop(key, None)
            older = sorted(s for c, s in self.pending if c == f.context and s < f.seqno)
            if p is not None:
                lat = (ns - p[0]) / 1e9
                tl.latencies.append(lat)
                if self.sink is not None:
                    self.sink(
                        "fence",
                        {"timeline": tl.label, "seqno": f.seqno, "start_ns": p[0], "end_ns": ns},
                    )
            if older:
                tl.out_of_order += 1
                hist = (p[1] if p else []) + [
                    HistoryEvent(t, "dma_fence_signaled", f"seqno={f.seqno}")
                ]
                self.findings.append(
                    Finding(
                        "trace.fence-out-of-order",
                        Severity.ERROR,
                        f"dma_fence: {tl.label} seqno {f.seqno} signalled before seqno "
                        f"{', '.join(map(str, older))} of the same context",
                        subject=f"{tl.label} seqno {f.seqno}",
                        time=t,
                        history=hist,
                        data={"line": ev.line_no, "pending_older": older},
                    )
                )
        elif op == "wait_start":
            tl.waits += 1
            self.waits[(f.context, f.seqno, ev.pid)] = ns
        elif op == "wait_end":
            s = self.waits.pop((f.context, f.seqno, ev.pid), None)
            if s is not None:
                tl.wait_durations.append((ns - s) / 1e9)
                if self.sink is not None:
                    self.sink(
                        "fence_wait",
                        {
                            "timeline": tl.label,
                            "seqno": f.seqno,
                            "start_ns": s,
                            "end_ns": ns,
                            "pid": ev.pid,
                            "task": ev.task,
                        },
                    )
        elif op == "destroy":
            tl.destroyed += 1
            p = self.pending.get(key)
            if p is not None:
                p[1].append(HistoryEvent(t, "dma_fence_destroy", f"seqno={f.seqno} (unsignalled)"))

    def finish(self, end_ns: int) -> None:
        """Report every emitted fence still unsignalled at the end of the capture."""
        for (ctx, seqno), (ns, hist) in sorted(self.pending.items()):
            tl = self.timelines[ctx]
            tl.never_signalled += 1
            self.findings.append(
                Finding(
                    "trace.fence-never-signalled",
                    Severity.ERROR,
                    f"dma_fence: {tl.label} seqno {seqno} emitted at {_s(ns):.6f} never "
                    f"signalled ({(end_ns - ns) / 1e6:.3f} ms until the end of the trace)",
                    subject=f"{tl.label} seqno {seqno}",
                    time=_s(ns),
                    history=hist,
                    data={"context": ctx, "seqno": seqno},
                )
            )
        self.pending.clear()


# -- CMA ----------------------------------------------------------------------------------


@dataclass(slots=True)
class CmaAreaStats:
    """One CMA area (``name`` of the cma events; ``"?"`` when the kernel does not print it)."""

    name: str
    allocs: int = 0
    failures: int = 0
    dmesg_failures: int = 0
    busy_retries: int = 0
    releases: int = 0
    pages_allocated: int = 0
    pages_released: int = 0
    pages_in_use: int = 0
    peak_pages_in_use: int = 0
    latencies: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        v = self.latencies
        return {
            "name": self.name,
            "allocs": self.allocs,
            "failures": self.failures,
            "dmesg_failures": self.dmesg_failures,
            "busy_retries": self.busy_retries,
            "releases": self.releases,
            "pages_allocated": self.pages_allocated,
            "pages_released": self.pages_released,
            "peak_pages_in_use": self.peak_pages_in_use,
            "latency": {
                "count": len(v),
                "p50_s": percentile(v, 50),
                "max_s": max(v) if v else None,
            },
        }


class CmaAnalysis:
    """``cma_alloc_start`` → ``cma_alloc_finish`` per area; failures, busy retries, releases."""

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink
        self.areas: dict[str, CmaAreaStats] = {}
        self.starts: dict[int, list[tuple[int, CmaAllocStart]]] = defaultdict(list)
        self.findings: list[Finding] = []

    def _area(self, name: str | None) -> CmaAreaStats:
        key = name or "?"
        a = self.areas.get(key)
        if a is None:
            a = self.areas[key] = CmaAreaStats(key)
        return a

    def feed(self, ev: TraceEvent, phase: str) -> None:
        """Consume a ``cma_*`` event."""
        if not ev.name.startswith("cma_"):
            return
        d = decode(ev)
        ns = ev.ts_ns
        if isinstance(d, CmaAllocStart):
            self.starts[ev.pid].append((ns, d))
            return
        if not isinstance(d, CmaRange):
            return
        if d.event == "cma_alloc_busy_retry":
            self._area(d.name).busy_retries += 1
            return
        if d.event == "cma_release":
            a = self._area(d.name)
            a.releases += 1
            a.pages_released += d.count
            a.pages_in_use = max(0, a.pages_in_use - d.count)
            return
        if d.event != "cma_alloc_finish":
            return
        stack = self.starts.get(ev.pid)
        start = stack.pop() if stack else None
        name = d.name or (start[1].name if start else None)
        a = self._area(name)
        a.allocs += 1
        failed = (
            d.failed or (d.page is not None and d.page.strip("0") == "") or d.pfn == (1 << 64) - 1
        )
        start_ns = start[0] if start else ns
        if start is not None:
            a.latencies.append((ns - start_ns) / 1e9)
        if failed:
            a.failures += 1
            err = f", errorno {d.errorno}" if d.errorno else ""
            self.findings.append(
                Finding(
                    "cma.alloc-failed",
                    Severity.ERROR,
                    f"cma_alloc: {a.name}: alloc failed, req-size: {d.count} pages{err}",
                    subject=f"cma {a.name}",
                    time=_s(ns),
                    history=[
                        HistoryEvent(_s(start_ns), "cma_alloc_start", f"count={d.count} [{phase}]"),
                        HistoryEvent(_s(ns), "cma_alloc_finish", ev.body),
                    ],
                    data={"line": ev.line_no, "count": d.count, "errorno": d.errorno},
                )
            )
        else:
            a.pages_allocated += d.count
            a.pages_in_use += d.count
            a.peak_pages_in_use = max(a.peak_pages_in_use, a.pages_in_use)
        if self.sink is not None:
            self.sink(
                "cma",
                {
                    "area": a.name,
                    "start_ns": start_ns,
                    "end_ns": ns,
                    "count": d.count,
                    "pfn": d.pfn,
                    "failed": failed,
                    "pages_in_use": a.pages_in_use,
                },
            )

    def add_dmesg(self, fails: Iterable[CmaAllocFail]) -> None:
        """Merge dmesg ``alloc failed`` lines: matched to trace failures, else reported."""
        unmatched = {id(f): f for f in self.findings}
        for fl in fails:
            a = self._area(fl.name or (next(iter(self.areas)) if len(self.areas) == 1 else None))
            a.dmesg_failures += 1
            match = next(
                (
                    f
                    for f in unmatched.values()
                    if f.subject == f"cma {a.name}" and f.data.get("count") == fl.pages
                ),
                None,
            )
            text = (
                f"cma_alloc: {fl.name + ': ' if fl.name else ''}alloc failed, "
                f"req-size: {fl.pages} pages, ret: {fl.ret}"
            )
            if match is not None:
                match.message = text
                match.data["dmesg_line"] = fl.line_no
                del unmatched[id(match)]
                continue
            self.findings.append(
                Finding(
                    "cma.alloc-failed",
                    Severity.ERROR,
                    text,
                    subject=f"cma {a.name}",
                    time=fl.timestamp,
                    history=[HistoryEvent(fl.timestamp or 0.0, "dmesg", text)],
                    data={"dmesg_line": fl.line_no, "count": fl.pages, "ret": fl.ret},
                )
            )


# -- faults -------------------------------------------------------------------------------


@dataclass(slots=True)
class FaultExplanation:
    """A group of SMMU faults on one IOVA page of one stream, and what the trace says."""

    source: str  # "smmuv3-event" | "smmuv2-context-fault" | "io_page_fault"
    smmu: str | None
    stream_id: int | None
    device: str | None
    event: str
    iova_page: int
    iovas: list[int]
    count: int
    first_time: float | None
    write: bool | None
    verdict: str  # "never mapped" | "unmapped" | "mapped" | "no domain"
    explanation: str
    log_lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "source": self.source,
            "smmu": self.smmu,
            "stream_id": hex(self.stream_id) if self.stream_id is not None else None,
            "device": self.device,
            "event": self.event,
            "iova_page": hex(self.iova_page),
            "iovas": [hex(x) for x in self.iovas],
            "count": self.count,
            "first_time": self.first_time,
            "write": self.write,
            "verdict": self.verdict,
            "explanation": self.explanation,
            "log_lines": self.log_lines,
        }


def explain_faults(
    iova: IovaAnalysis,
    smmu_events: Iterable[SmmuEvent | ContextFault],
    page_faults: Iterable[tuple[float, IoPageFault, str]] = (),
    dmesg_lines: dict[int, str] | None = None,
) -> tuple[list[FaultExplanation], list[Finding]]:
    """Group faults by (stream/device, event, IOVA page) and tie each to the IOVA's history.

    The device of a StreamID is found among the PCI devices the trace names, as their
    requester ID (:func:`pci_stream_id`); the mapping history is looked up in that
    device's domain, else in the unknown domain, and every other domain is checked too.
    """
    dmesg_lines = dmesg_lines or {}
    sid_dev = {
        sid: dev
        for dev in list(iova.devices_seen) + [s.stats.label for s in iova.domains.values()]
        if (sid := pci_stream_id(dev)) is not None
    }
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for ev in smmu_events:
        if isinstance(ev, SmmuEvent):
            if ev.iova is None:
                continue
            key: tuple[Any, ...] = (
                "smmuv3-event",
                ev.smmu,
                ev.stream_id,
                ev.name,
                ev.iova & ~(PAGE - 1),
            )
            lines = [
                dmesg_lines.get(n, "")
                for n in range(ev.line_no, ev.line_no + 5 + len(ev.decoded_text))
            ]
            g = groups.setdefault(
                key,
                {
                    "iovas": [],
                    "time": ev.timestamp,
                    "write": ev.write,
                    "lines": [x for x in lines if x],
                    "device": sid_dev.get(ev.stream_id) if ev.stream_id is not None else None,
                },
            )
            g["iovas"].append(ev.iova)
        else:
            key = (
                "smmuv2-context-fault",
                ev.smmu,
                ev.stream_id,
                "context fault",
                ev.iova & ~(PAGE - 1),
            )
            g = groups.setdefault(
                key,
                {
                    "iovas": [],
                    "time": ev.timestamp,
                    "write": ev.write,
                    "lines": [dmesg_lines.get(ev.line_no, "")],
                    "device": sid_dev.get(ev.stream_id) if ev.stream_id is not None else None,
                },
            )
            g["iovas"].append(ev.iova)
    for t, pf, line in page_faults:
        key = (
            "io_page_fault",
            pf.driver,
            pci_stream_id(pf.device),
            "io_page_fault",
            pf.iova & ~(PAGE - 1),
        )
        g = groups.setdefault(
            key, {"iovas": [], "time": t, "write": pf.write, "lines": [line], "device": pf.device}
        )
        g["iovas"].append(pf.iova)

    out: list[FaultExplanation] = []
    findings: list[Finding] = []
    for (source, smmu, sid, evname, page), g in groups.items():
        dev = g["device"]
        if dev in iova.domains or (dev is not None and iova.devices_seen.get(dev, {}).get("dom")):
            where: str | None = dev
        elif UNKNOWN_DOMAIN in iova.domains:
            where = UNKNOWN_DOMAIN
        else:
            where = None
        verdict, slot = ("never", None) if where is None else iova.history_of(where, page)
        others = [
            lbl for lbl in iova.domains if lbl != where and iova.history_of(lbl, page)[0] != "never"
        ]
        t = g["time"]
        who = f"stream {sid:#x}" if sid is not None else "unknown stream"
        if dev:
            who += f" ({dev})"
        n = len(g["iovas"])
        if verdict == "never":
            v = "never mapped"
            if where is None:
                expl = f"{who}: no mapping of any domain in the trace covers IOVA {page:#x}"
            else:
                expl = f"{who}: IOVA page {page:#x} was never mapped in {where} during the trace"
                if where not in iova.domains:
                    expl += " (its domain has no mapping at all)"
            if others:
                expl += f" (mapped only in other domains: {', '.join(others)})"
            elif where is not None:
                expl += "; no other domain mapped it either"
        elif verdict == "unmapped" and slot is not None:
            v = "unmapped"
            ago = (t - _s(slot.unmap_ns)) * 1e3 if (t is not None and slot.unmap_ns) else None
            expl = (
                f"{who}: IOVA page {page:#x} was unmapped"
                + (f" {ago:.3f} ms before the fault" if ago is not None else "")
                + f", after {slot.maps} map(s) and {slot.unmaps} unmap(s) in {where}"
            )
        else:
            v = "mapped"
            expl = (
                f"{who}: IOVA page {page:#x} is mapped in {where} at the fault: a permission "
                "or stale-TLB fault, or the mapping belongs to another domain"
            )
        fx = FaultExplanation(
            source, smmu, sid, dev, evname, page, g["iovas"], n, t, g["write"], v, expl, g["lines"]
        )
        out.append(fx)
        hist = list(slot.history) if slot is not None else []
        for i, x in enumerate(g["iovas"][:HISTORY_LEN]):
            hist.append(HistoryEvent(t or 0.0, f"fault {evname}", f"#{i + 1} iova={x:#x}"))
        message = "\n".join(g["lines"]) or f"{evname} {who} iova {page:#x}"
        findings.append(
            Finding(
                "smmu.fault",
                Severity.ERROR,
                message,
                subject=f"{who} iova {page:#x}",
                time=t,
                history=hist,
                data={"explanation": expl, "verdict": v, "count": n, "event": evname},
            )
        )
    return out, findings


# -- dma-buf ------------------------------------------------------------------------------


@dataclass(slots=True)
class DmaBufInventory:
    """What bufinfo (and fdinfo) say about the dma-bufs alive when they were dumped."""

    objects: int = 0
    bytes: int = 0
    total_objects_line: int | None = None
    total_bytes_line: int | None = None
    totals_ok: bool = True
    by_exporter: dict[str, dict[str, int]] = field(default_factory=dict)
    buffers: list[dict[str, Any]] = field(default_factory=list)
    attached_devices: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fds: int = 0
    leaked: list[dict[str, Any]] = field(default_factory=list)
    exports_traced: int = 0
    export_bytes_traced: int = 0
    attaches_traced: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "objects": self.objects,
            "bytes": self.bytes,
            "total_line": {"objects": self.total_objects_line, "bytes": self.total_bytes_line},
            "totals_ok": self.totals_ok,
            "by_exporter": self.by_exporter,
            "buffers": self.buffers,
            "attached_devices": self.attached_devices,
            "problems": self.problems,
            "fds": self.fds,
            "leaked": self.leaked,
            "trace": {
                "exports": self.exports_traced,
                "export_bytes": self.export_bytes_traced,
                "attaches": self.attaches_traced,
            },
        }


def inventory_dmabufs(
    live: BufInfo | None,
    fdinfo: list[FdInfo] | None = None,
    after: BufInfo | None = None,
) -> tuple[DmaBufInventory, list[Finding]]:
    """Totals, per exporter, attachments and names; leaks when an after-release dump is given.

    A leak is a buffer (by inode) of the live dump still present in ``after``, the dump
    taken once user space released everything.
    """
    inv = DmaBufInventory()
    findings: list[Finding] = []
    if live is None:
        return inv, findings
    fd_by_ino: dict[int, list[int | None]] = defaultdict(list)
    for fi in fdinfo or []:
        if fi.is_dmabuf and fi.ino is not None:
            fd_by_ino[fi.ino].append(fi.fd)
            inv.fds += 1
    devs: set[str] = set()
    for b in live.buffers:
        inv.objects += 1
        inv.bytes += b.size
        ex = inv.by_exporter.setdefault(b.exp_name, {"objects": 0, "bytes": 0})
        ex["objects"] += 1
        ex["bytes"] += b.size
        devs.update(b.attached)
        inv.buffers.append(
            {
                "ino": b.ino,
                "name": b.name if b.named else None,
                "exporter": b.exp_name,
                "size": b.size,
                "file_count": b.count,
                "attached": list(b.attached),
                "fences": [f.render().strip() for f in b.fences],
                "fds": fd_by_ino.get(b.ino, []),
            }
        )
    inv.attached_devices = sorted(devs)
    inv.total_objects_line, inv.total_bytes_line = live.total_objects, live.total_bytes
    inv.problems = live.check_totals()
    inv.totals_ok = not inv.problems
    for p in inv.problems:
        findings.append(Finding("dmabuf.bufinfo-totals", Severity.WARNING, p, subject="bufinfo"))
    if after is not None:
        still = {b.ino: b for b in after.buffers}
        for b in live.buffers:
            if b.ino in still:
                rec = {
                    "ino": b.ino,
                    "name": b.name if b.named else None,
                    "size": b.size,
                    "exporter": b.exp_name,
                }
                inv.leaked.append(rec)
                findings.append(
                    Finding(
                        "dmabuf.leak",
                        Severity.ERROR,
                        f"dma-buf ino {b.ino} ({b.name}, {b.size} bytes, {b.exp_name}) still "
                        "exists after release",
                        subject=f"dma-buf ino {b.ino}",
                        data=rec,
                    )
                )
    return inv, findings


# -- the report ---------------------------------------------------------------------------


@dataclass
class TraceReport:
    """Everything ``socmem trace analyze`` found, JSON-ready through :meth:`to_dict`."""

    sources: dict[str, list[str]] = field(default_factory=dict)
    events: int = 0
    lines: int = 0
    bad_lines: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    events_by_name: dict[str, int] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None
    mode: str = "unknown"
    invalidations: dict[str, Any] = field(default_factory=dict)
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    churn: list[dict[str, Any]] = field(default_factory=list)
    series: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    faults: list[FaultExplanation] = field(default_factory=list)
    timelines: list[dict[str, Any]] = field(default_factory=list)
    fence_latencies: dict[str, list[float]] = field(default_factory=dict)
    cma: list[dict[str, Any]] = field(default_factory=list)
    dmabuf: DmaBufInventory | None = None
    dmesg: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def domain(self, label: str) -> dict[str, Any]:
        """The domain statistics of ``label`` (device name, ``dom 0x..`` or unknown)."""
        return self.domains[label]

    def findings_of(self, kind: str) -> list[Finding]:
        """Findings of ``kind``."""
        return [f for f in self.findings if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (series and raw latencies left out)."""
        return {
            "sources": self.sources,
            "events": self.events,
            "lines": self.lines,
            "bad_lines": self.bad_lines,
            "bad_by_reason": self.bad_by_reason,
            "warnings": self.warnings,
            "events_by_name": self.events_by_name,
            "phases": self.phases,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "iommu": {
                "mode": self.mode,
                "invalidations": self.invalidations,
                "domains": self.domains,
                "churn": self.churn,
            },
            "faults": [f.to_dict() for f in self.faults],
            "fences": self.timelines,
            "cma": self.cma,
            "dmabuf": self.dmabuf.to_dict() if self.dmabuf else None,
            "dmesg": self.dmesg,
            "findings": [f.to_dict() for f in self.findings],
            "finding_counts": dict(Counter(f.kind for f in self.findings)),
        }


TraceSource = str | os.PathLike[str] | Any


def analyze(
    traces: Iterable[TraceSource] = (),
    *,
    dmesg: TraceSource | None = None,
    bufinfo: BufInfo | None = None,
    fdinfo: list[FdInfo] | None = None,
    bufinfo_after: BufInfo | None = None,
    sink: Sink | None = None,
    names: dict[str, list[str]] | None = None,
) -> TraceReport:
    """Run every analysis over ``traces`` (read in order, as one capture) and the side files.

    ``traces`` and ``dmesg`` are paths, file objects or iterables of lines.  Raises
    :class:`InputError` when a trace is empty or holds no ftrace event.
    """
    iova = IovaAnalysis(sink)
    fences = FenceAnalysis(sink)
    cma = CmaAnalysis(sink)
    rep = TraceReport(sources=dict(names or {}))
    page_faults: list[tuple[float, IoPageFault, str]] = []
    phases: list[dict[str, Any]] = []
    by_name: Counter[str] = Counter()
    bad: Counter[str] = Counter()
    first_ns: int | None = None
    last_ns = 0
    for src in traces:
        reader = FtraceReader(src)
        label = reader.source_name or getattr(src, "name", "") or "<trace>"
        iova_feed, fence_feed, cma_feed = iova.feed, fences.feed, cma.feed
        for ev in reader:
            name = ev.name
            if first_ns is None:
                first_ns = ev.ts_ns
            c = name[0]
            if c == "d" and name.startswith("dma_fence_"):
                fence_feed(ev, reader.phase.name)
            elif c == "c" and name.startswith("cma_"):
                cma_feed(ev, reader.phase.name)
            elif name == "io_page_fault":
                d = decode(ev)
                if isinstance(d, IoPageFault):
                    page_faults.append((ev.timestamp, d, ev.line.strip()))
            else:
                iova_feed(ev, reader.phase.name)
            last = ev
        st = reader.stats
        if st.events == 0:
            why = "empty file" if st.lines == 0 else "no ftrace event line found"
            raise InputError(
                f"not a trace: {why}",
                where=str(label),
                expected="ftrace text (tracefs 'trace' or 'trace-cmd report')",
            )
        last_ns = max(last_ns, last.ts_ns)
        rep.events += st.events
        rep.lines += st.lines
        rep.bad_lines += st.bad_lines
        bad.update(st.bad_by_reason)
        by_name.update(st.events_by_name)
        rep.warnings.extend(f"{label}: {w}" for w in st.warnings)
        for ph in reader.phases:
            phases.append(
                {
                    "name": ph.name,
                    "start_s": float(ph.start_ts) if ph.start_ts else None,
                    "end_s": float(ph.end_ts) if ph.end_ts else None,
                    "events": ph.events,
                    "counts": dict(ph.counts.most_common()),
                }
            )
    if first_ns is None:
        raise InputError("no trace given", expected="an ftrace text capture")
    fences.finish(last_ns)
    iova.finish()
    rep.start_s, rep.end_s = _s(first_ns), _s(last_ns)
    if phases:
        if phases[0]["start_s"] is None:
            phases[0]["start_s"] = rep.start_s
        for i, phd in enumerate(phases):
            if phd["end_s"] is None:
                nxt = phases[i + 1]["start_s"] if i + 1 < len(phases) else None
                phd["end_s"] = nxt if nxt is not None else rep.end_s
    rep.phases = phases
    rep.bad_by_reason = dict(bad)
    rep.events_by_name = dict(by_name.most_common())
    rep.mode = iova.mode()
    unmaps = sum(st.stats.unmaps for st in iova.domains.values())
    per = max(
        iova.inval["arm_smmu_iotlb_sync"],
        iova.inval["arm_smmu_atc_inv_domain"],
        iova.cmd_opcodes.get("TLBI_NH_VA", 0),
    )
    rep.invalidations = {
        "unmaps": unmaps,
        "per_unmap": round(per / unmaps, 3) if unmaps and per else None,
        "events": dict(iova.inval),
        "commands": iova.commands,
        "first_opcode": dict(iova.cmd_opcodes),
    }
    for label, dom in iova.domains.items():
        rep.domains[label] = dom.stats.to_dict(iova.alive(label))
        rep.series[label] = list(dom.stats.series.points)
    durations = {p["name"]: max(0.0, (p["end_s"] or 0) - (p["start_s"] or 0)) for p in phases}
    for (phase, label), (nm, nu, bm, bu) in iova.phase_stats.items():
        dur = durations.get(phase, 0.0)
        rep.churn.append(
            {
                "phase": phase,
                "domain": label,
                "maps": nm,
                "unmaps": nu,
                "bytes_mapped": bm,
                "bytes_unmapped": bu,
                "duration_s": dur,
                "maps_per_s": nm / dur if dur else None,
                "bytes_per_s": bm / dur if dur else None,
            }
        )
    for tl in fences.timelines.values():
        rep.timelines.append(tl.to_dict())
        rep.fence_latencies[tl.label] = list(tl.latencies)

    # dmesg
    smmu: list[SmmuEvent | ContextFault] = []
    cma_fails: list[CmaAllocFail] = []
    lines: dict[int, str] = {}
    if dmesg is not None:
        text_lines = _read_lines(dmesg, "kernel log")
        dr = DmesgReader(text_lines)
        for r in dr:
            if isinstance(r, SmmuEvent | ContextFault):
                smmu.append(r)
            elif isinstance(r, CmaAllocFail):
                cma_fails.append(r)
        rep.dmesg = {
            "lines": dr.stats.lines,
            "records": dict(dr.stats.records),
            "suppressed": dr.stats.suppressed,
            "incomplete_smmu_events": dr.stats.incomplete_smmu_events,
        }
        for r in smmu:
            extra = 5 + len(r.decoded_text) if isinstance(r, SmmuEvent) else 1
            for n in range(r.line_no, r.line_no + extra):
                if n - 1 < len(text_lines):
                    lines[n] = text_lines[n - 1].rstrip("\r\n")
    cma.add_dmesg(cma_fails)
    rep.cma = [a.to_dict() for a in cma.areas.values()]
    rep.faults, fault_findings = explain_faults(iova, smmu, page_faults, lines)
    if rep.dmesg.get("suppressed"):
        for f in fault_findings:
            f.data["log_suppressed"] = rep.dmesg["suppressed"]

    inv, inv_findings = inventory_dmabufs(bufinfo, fdinfo, bufinfo_after)
    inv.exports_traced = by_name.get("dma_buf_export", 0)
    rep.dmabuf = inv if (bufinfo is not None or inv.exports_traced) else None
    rep.findings = iova.findings + fault_findings + fences.findings + cma.findings + inv_findings
    return rep


def _read_lines(src: Any, what: str) -> list[str]:
    """All lines of a small text input (a path, a text/binary file object or lines)."""
    if isinstance(src, str | os.PathLike):
        try:
            with open(src, encoding="utf-8", errors="replace") as f:
                return f.readlines()
        except OSError as exc:
            raise InputError(f"cannot open {what}: {exc.strerror}", where=os.fspath(src)) from exc
    if hasattr(src, "read"):
        data = src.read()
        if isinstance(data, bytes):
            data = data.decode("utf-8", errors="replace")
        return str(data).splitlines(keepends=True)
    return list(src)
