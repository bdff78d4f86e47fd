"""What a run measures: a :class:`Recorder` the devices write into while the engine runs,
and the :class:`RunResult` the runner builds from it (``to_dict()`` is ``results.json``).

Definitions (stated once):

* **Bandwidth** per ``(master, direction)``: average = bytes moved / time over the
  window, from the fluid model's rate series (partial transfers count the bytes they
  moved); peak = highest instantaneous rate.  The *steady window* starts after the
  pipeline has filled (a whole number of the scenario's common frame period after a
  quarter of the run) and ends at the last whole period: on it a periodic pipeline's
  average equals the closed-form figure exactly, so the cross-checks use it.
* **Frame latency** of a stage: its completion time minus the capture start of the
  frame at its source (for a display: the vsync that first shows the frame).
* **IOTLB**: transactions are 64-byte beats; misses come from the translation model
  (one per 4 KiB page for linear streams until ``sim.tlb`` lands); walk traffic is 64 B
  per miss, read by the master.
* **Copies**: one per frame that had to be copied because a device could not reach the
  buffer (see :mod:`socmem.sim.allocation`), with bytes, CPU time and the reason.
* **Fast-forward** (:mod:`socmem.sim.fastforward`): when a run was extended
  analytically, :attr:`RunResult.fast_forward` says from when and over how many
  hyperperiods; every figure above covers the whole run, the extrapolated tail included
  (latency percentiles weight the repeated samples), except the trace slices, the
  latency histogram samples and ``events``, which cover the simulated part.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from socmem.check.finding import Finding

__all__ = [
    "BandwidthStat",
    "CopyStat",
    "FastForwardStat",
    "LatencyStat",
    "Recorder",
    "RunResult",
    "SliceRecord",
    "StageStat",
    "TlbStat",
    "percentile",
    "weighted_percentile",
]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as NumPy); 0 for no values."""
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values, dtype=float), q))


def weighted_percentile(values: list[float], weights: list[int], q: float) -> float:
    """:func:`percentile` of ``values`` with each one repeated ``weights`` times (whole
    numbers), computed without the copies."""
    if not values:
        return 0.0
    order = sorted(zip(values, weights, strict=True))
    n = sum(w for _v, w in order)
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    frac = h - lo
    a = b = order[-1][0]
    seen = 0
    for i, (v, w) in enumerate(order):
        if seen + w > lo:
            a = v
            b = v if seen + w > lo + 1 else (order[i + 1][0] if i + 1 < len(order) else v)
            break
        seen += w
    return float(a + (b - a) * frac)


@dataclass(slots=True)
class SliceRecord:
    """One job of a device, for the trace: who, what, when, and the fence it waited on."""

    id: int
    master: str
    stage: str
    name: str
    start_ns: int
    end_ns: int
    args: dict[str, Any]
    waited_on: int = 0  # slice id of the producer whose fence this job waited for


@dataclass
class Recorder:
    """Mutable tallies the devices update during a run (cheap appends only)."""

    latencies: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    streams: dict[str, str] = field(default_factory=dict)  # stage -> source stream(s)
    jobs: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    drops: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    underflows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    backlog_max: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    buffer_wait_ns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    copies: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    # master -> [beats, misses, walk bytes, walk stall ns]
    tlb: dict[str, list[int]] = field(default_factory=dict)
    cache_maint_bytes: int = 0
    cache_maint_ns: int = 0
    cpu_read_ns: int = 0
    slices: list[SliceRecord] = field(default_factory=list)
    keep_slices: bool = True
    worst_display_lateness_ns: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # fast-forward: stage -> (how many of its last latency samples repeat, extra copies)
    latency_repeat: dict[str, tuple[int, int]] = field(default_factory=dict)
    _next_id: int = 0

    def slice(
        self,
        master: str,
        stage: str,
        name: str,
        start_ns: int,
        end_ns: int,
        waited_on: int = 0,
        **args: Any,
    ) -> int:
        """Record a job slice; returns its id (0 when slices are not kept)."""
        if not self.keep_slices:
            return 0
        self._next_id += 1
        self.slices.append(
            SliceRecord(self._next_id, master, stage, name, start_ns, end_ns, args, waited_on)
        )
        return self._next_id

    def copy(self, pool: str, stage: str, reason: str, nbytes: int, cpu_ns: int) -> None:
        """Count one frame copy of ``nbytes`` on ``pool`` for ``stage``."""
        rec = self.copies.setdefault((pool, stage, reason), [0, 0, 0])
        rec[0] += 1
        rec[1] += nbytes
        rec[2] += cpu_ns

    def translation(self, master: str, nbytes: int, misses: int, walk_bytes: int) -> None:
        """Count ``nbytes`` of translated traffic with ``misses`` IOTLB misses."""
        rec = self.tlb.get(master)
        if rec is None:
            rec = self.tlb[master] = [0, 0, 0, 0]
        rec[0] += (nbytes + 63) >> 6
        rec[1] += misses
        rec[2] += walk_bytes

    def walk_stall(self, master: str, stall_ns: int) -> None:
        """Count walk latency a job of ``master`` could not hide (added to its job time)."""
        rec = self.tlb.get(master)
        if rec is None:
            rec = self.tlb[master] = [0, 0, 0, 0]
        rec[3] += stall_ns


@dataclass
class BandwidthStat:
    """Traffic of one master in one direction."""

    master: str
    direction: str
    average_bps: float
    peak_bps: float
    bytes: float
    steady_bps: float
    qos: str = ""


@dataclass
class LatencyStat:
    """Frame latency of one stage (capture start at the source → stage done)."""

    stage: str
    stream: str
    frames: int
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class StageStat:
    """What a stage did: jobs, drops, underflows, backlog, waits for a free buffer."""

    stage: str
    type: str
    master: str
    jobs: int
    dropped: int
    underflows: int
    backlog_max: int
    buffer_wait_ms: float


@dataclass
class CopyStat:
    """Copies one stage made on one pool, and why."""

    pool: str
    stage: str
    reason: str
    copies: int
    bytes: int
    cpu_ms: float


@dataclass
class TlbStat:
    """Address translation of one master."""

    master: str
    transactions: int
    misses: int
    hit_rate: float
    walk_bytes: int
    walk_bps: float
    walk_stall_ms: float = 0.0  # walk latency added to the master's jobs, in total


@dataclass
class FastForwardStat:
    """The analytic extension of a run (:mod:`socmem.sim.fastforward`): from ``from_s``
    on, ``periods`` copies of the last simulated hyperperiod, which was the last of
    ``identical`` identical ones."""

    from_s: float
    periods: int
    hyperperiod_s: float
    identical: int

    @property
    def extrapolated_s(self) -> float:
        """Simulated time covered analytically."""
        return self.periods * self.hyperperiod_s

    def summary(self) -> str:
        """The one-line account printed with every fast-forwarded run."""
        return (
            f"steady after {self.from_s:.3g} s; {self.extrapolated_s:.3g} s extrapolated "
            f"from {self.identical} identical hyperperiods of {self.hyperperiod_s * 1e3:.1f} ms"
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``fast_forward`` entry of ``results.json``."""
        return {
            "from_s": self.from_s,
            "periods": self.periods,
            "hyperperiod_s": self.hyperperiod_s,
            "identical_periods": self.identical,
            "extrapolated_s": round(self.extrapolated_s, 9),
        }


@dataclass
class RunResult:
    """Everything a run produced; ``to_dict()`` is the ``results.json`` document."""

    scenario: str
    soc: str
    duration_s: float
    qos: bool
    wall_s: float
    events: int
    dram_capacity_bps: float
    dram_peak_bps: float
    dram_utilisation_avg: float
    dram_utilisation_peak: float
    steady_window_s: tuple[float, float]
    bandwidth: list[BandwidthStat]
    closed_form_bps: dict[str, float]
    latency: list[LatencyStat]
    stages: list[StageStat]
    copies: list[CopyStat]
    tlb: list[TlbStat]
    footprint: dict[str, list[tuple[float, int]]]
    footprint_peak: dict[str, int]
    cache_maintenance: dict[str, float]
    heaps: dict[str, str]
    zero_copy_paths: int
    copy_paths: list[dict[str, str]]
    findings: list[Finding]
    series: dict[str, Any] = field(default_factory=dict, repr=False)
    latency_samples: dict[str, list[float]] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)
    setup_s: float = 0.0  # wall time to boot, allocate and map before the engine ran
    mapping: dict[str, float] = field(default_factory=dict)  # DMA mappings (set-up)
    fast_forward: FastForwardStat | None = None  # None: every nanosecond was simulated

    # -- queries -------------------------------------------------------------------------
    @property
    def speed(self) -> float:
        """Simulated seconds per wall-clock second (set-up included)."""
        return self.duration_s / self.wall_s if self.wall_s > 0 else math.inf

    @property
    def engine_speed(self) -> float:
        """Simulated seconds per wall-clock second of the timed run alone (no set-up)."""
        t = self.wall_s - self.setup_s
        return self.duration_s / t if t > 0 else math.inf

    def master_bps(self, master: str, steady: bool = True) -> float:
        """Read + write bandwidth of ``master`` (steady window by default)."""
        return sum(
            (b.steady_bps if steady else b.average_bps)
            for b in self.bandwidth
            if b.master == master
        )

    def stage(self, name: str) -> StageStat:
        """The stats of stage ``name``."""
        return next(s for s in self.stages if s.stage == name)

    @property
    def dropped(self) -> int:
        """Frames dropped anywhere."""
        return sum(s.dropped for s in self.stages)

    @property
    def underflows(self) -> int:
        """Display underflows anywhere."""
        return sum(s.underflows for s in self.stages)

    @property
    def copies_total(self) -> int:
        """Frame copies anywhere."""
        return sum(c.copies for c in self.copies)

    def finding_counts(self) -> dict[str, int]:
        """How many findings of each kind."""
        out: dict[str, int] = defaultdict(int)
        for f in self.findings:
            out[f.kind] += 1
        return dict(sorted(out.items()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready results (series included, latency samples not)."""
        return {
            "scenario": self.scenario,
            "soc": self.soc,
            "duration_s": self.duration_s,
            "qos": self.qos,
            "wall_s": round(self.wall_s, 4),
            "setup_s": round(self.setup_s, 4),
            "speed_x_realtime": round(self.speed, 1) if math.isfinite(self.speed) else None,
            "events": self.events,
            "fast_forward": self.fast_forward.to_dict() if self.fast_forward else None,
            "dram": {
                "capacity_bps": self.dram_capacity_bps,
                "peak_bps": self.dram_peak_bps,
                "utilisation_avg": self.dram_utilisation_avg,
                "utilisation_peak": self.dram_utilisation_peak,
            },
            "steady_window_s": list(self.steady_window_s),
            "bandwidth": [asdict(b) for b in self.bandwidth],
            "closed_form_bps": self.closed_form_bps,
            "latency": [asdict(x) for x in self.latency],
            "stages": [asdict(s) for s in self.stages],
            "dropped_frames": self.dropped,
            "display_underflows": self.underflows,
            "copies": [asdict(c) for c in self.copies],
            "copies_total": self.copies_total,
            "bytes_copied": sum(c.bytes for c in self.copies),
            "zero_copy_paths": self.zero_copy_paths,
            "copy_paths": self.copy_paths,
            "tlb": [asdict(t) for t in self.tlb],
            "footprint": {k: [list(p) for p in v] for k, v in self.footprint.items()},
            "footprint_peak": self.footprint_peak,
            "cache_maintenance": self.cache_maintenance,
            "mapping": self.mapping,
            "heaps": self.heaps,
            "finding_counts": self.finding_counts(),
            "findings": [f.to_dict() for f in self.findings],
            "series": self.series,
            "notes": self.notes,
        }
