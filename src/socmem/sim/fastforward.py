"""Steady-state fast-forward: stop simulating a periodic pipeline once it repeats itself,
and extend the metrics analytically to the end of the run.

Rules (each stated once, here):

* **Hyperperiod.** :func:`hyperperiod_ns`: the exact period, in integer nanoseconds, of
  every clock of the scenario (camera frames, vsyncs, free-running stages, at absolute
  times ``round(seq · 1e9 / f)``), times the decimations (``every``).  For 30 Hz and
  60 Hz clocks it is 100 ms, not 33.3 ms: ``round(n · 1e9 / 30)`` repeats its
  nanosecond pattern every third frame.  Rates that are not whole numbers of Hz: no
  hyperperiod, no fast-forward.
* **Boundaries** are counted back from the end of the run (``end - j·H``), so whatever
  follows a boundary is a whole number of hyperperiods: nothing is extrapolated
  proportionally and no partial period is left to simulate.
* **Signature** of the hyperperiod ending at a boundary: per ``(master, direction)`` the
  bytes moved and the peak rate, the DRAM utilisation integral; per stage the jobs,
  drops, underflows, buffer waits and the latency samples; copies, IOTLB counts, cache
  maintenance, CPU reads and the DMA layer's sync bytes; the number of findings; and
  the state at the boundary: live flows, queued events, per pool its free buffers and
  references, per master its queue, backlog maxima, worst display lateness, memory
  footprint.  Integers compare exactly, floats within a relative :data:`REL_TOL`.
* **Steady** when the last ``K`` (:data:`IDENTICAL_PERIODS`) signatures are identical,
  none of them contains a finding, and no fault injection is pending: a fault that
  applies from a frame on (``once: false``), or whose frame the stage has not passed by
  :data:`FAULT_MARGIN` frames (jobs + drops).  Then simulation stops at the boundary.
* **Extension** over the ``N`` remaining hyperperiods: counters (jobs, drops,
  underflows, waits, copies, IOTLB, cache maintenance, CPU reads, sync bytes) grow by
  ``N`` × the last period's; the latency samples of the last period count ``N + 1``
  times (weights, :func:`~socmem.sim.metrics.weighted_percentile`); every rate series
  and the utilisation series repeat the last period
  (:meth:`~socmem.sim.fluid.StepSeries.set_periodic`); maxima (peaks, backlog, worst
  lateness, latency max) are those simulated; no finding is added.  The functional
  model (kernel objects, clock, trace slices) stays where the simulation stopped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from socmem.devices import MAX_WAITING, NS, SimContext
from socmem.scenario.schema import Scenario, StageType
from socmem.sim.fluid import FluidResource
from socmem.sim.metrics import FastForwardStat

__all__ = ["FAULT_MARGIN", "IDENTICAL_PERIODS", "REL_TOL", "SteadyState", "hyperperiod_ns"]

IDENTICAL_PERIODS = 3
REL_TOL = 1e-9
FAULT_MARGIN = MAX_WAITING + 2


def hyperperiod_ns(scenario: Scenario) -> int | None:
    """The scenario's exact hyperperiod in ns (see the module rules), or None."""
    freqs: list[int] = []
    every = 1
    for st in scenario.stages:
        if st.type is StageType.SOURCE:
            f = st.fps or 30.0
        elif st.type is StageType.DISPLAY:
            f = st.refresh or 60.0
        elif st.type is not StageType.CPU and not st.inputs:
            f = st.fps or 30.0
        else:
            f = None
        if f is not None:
            fr = Fraction(float(f)).limit_denominator(1000)
            if fr.denominator != 1 or fr <= 0:
                return None
            freqs.append(int(fr))
        every = math.lcm(every, max(int(st.every), 1))
    if not freqs:
        return None
    g = 0
    for f in freqs:
        g = math.gcd(g, f)
    return NS // math.gcd(g, NS) * every


@dataclass
class _Snap:
    """Cumulative counters and state at one boundary."""

    t: int
    counters: dict[str, Any]
    n_lat: dict[str, int]
    n_findings: int
    state: tuple[Any, ...]


# one period's signature: counter deltas, latencies, new findings, state, traffic
_Sig = tuple[Any, dict[str, tuple[int, ...]], int, tuple[Any, ...], dict[Any, tuple[float, float]]]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _sub(a: Any, b: Any) -> Any:
    """``a - b`` for nested dicts / tuples of numbers (keys of ``a``)."""
    if isinstance(a, dict):
        return {k: _sub(v, b.get(k, _zero(v))) for k, v in a.items()}
    if isinstance(a, (tuple, list)):
        return tuple(_sub(x, y) for x, y in zip(a, b, strict=True))
    return a - b


def _zero(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _zero(x) for k, x in v.items()}
    if isinstance(v, (tuple, list)):
        return tuple(0 for _ in v)
    return 0


class SteadyState:
    """Watches a run at its hyperperiod boundaries and fast-forwards it (module rules)."""

    def __init__(
        self,
        ctx: SimContext,
        dram: FluidResource,
        period_ns: int,
        end_ns: int,
        footprint: Callable[[], dict[str, int]],
        identical: int = IDENTICAL_PERIODS,
    ) -> None:
        self.ctx = ctx
        self.dram = dram
        self.period = period_ns
        self.end = end_ns
        self.footprint = footprint
        self.identical = max(int(identical), 2)
        self.prev: _Snap | None = None
        self.sigs: deque[_Sig] = deque(maxlen=self.identical)
        self.last_delta: dict[str, Any] = {}
        self.last_lat: dict[str, int] = {}
        self.faults = [(f.stage, f.frame, f.once) for f in ctx.scenario.faults]
        self.sync_extra: dict[str, int] = {}  # DMA sync bytes of the extrapolated tail

    def boundaries(self) -> list[int]:
        """Boundary times before the end (counted back from it by whole periods)."""
        first = self.end % self.period or self.period
        return list(range(first, self.end, self.period))

    # -- observing ---------------------------------------------------------------------
    def _snap(self, t: int) -> _Snap:
        ctx = self.ctx
        rec = ctx.recorder
        dram = self.dram
        sync: dict[str, int] = {}
        for d in ctx.kernel.devices.values():
            for k in ("sync_for_cpu_bytes", "sync_for_device_bytes"):
                sync[k] = sync.get(k, 0) + int(d.stats.get(k, 0))
        counters = {
            "jobs": dict(rec.jobs),
            "drops": dict(rec.drops),
            "underflows": dict(rec.underflows),
            "buffer_wait_ns": dict(rec.buffer_wait_ns),
            "copies": {k: tuple(v) for k, v in rec.copies.items()},
            "tlb": {k: tuple(v) for k, v in rec.tlb.items()},
            "cache": (rec.cache_maint_bytes, rec.cache_maint_ns, rec.cpu_read_ns),
            "sync": sync,
            "flows": {k: (a.bytes_completed, a.flows_completed) for k, a in dram.accounts.items()},
        }
        pools = tuple(
            (
                name,
                sum(1 for b in p.buffers if b.refs == 0),
                tuple(sorted(b.refs for b in p.buffers)),
                len(p.waiters),
            )
            for name, p in sorted(ctx.pools.items())
        )
        queues = tuple((name, len(q.jobs), q.busy) for name, q in sorted(ctx.queues.items()))
        state = (
            dram.n_live,
            ctx.engine.pending,
            pools,
            queues,
            tuple(sorted(rec.backlog_max.items())),
            tuple(sorted(rec.worst_display_lateness_ns.items())),
            tuple(sorted(self.footprint().items())),
        )
        return _Snap(
            t,
            counters,
            {k: len(v) for k, v in rec.latencies.items()},
            len(ctx.kernel.findings),
            state,
        )

    def _period_traffic(self, t0: int, t1: int) -> dict[Any, tuple[float, float]]:
        out: dict[Any, tuple[float, float]] = {
            k: (a.rate.integral(t0, t1), a.rate.max(t0, t1)) for k, a in self.dram.accounts.items()
        }
        out["utilisation"] = (self.dram.utilisation.integral(t0, t1), 0.0)
        return out

    def _pending_fault(self) -> bool:
        rec = self.ctx.recorder
        for stage, frame, once in self.faults:
            if not once:
                return True
            if rec.jobs.get(stage, 0) + rec.drops.get(stage, 0) < frame + FAULT_MARGIN:
                return True
        return False

    def observe(self, t: int) -> bool:
        """Take the boundary at ``t`` (engine run up to it); True when steady (rules)."""
        snap = self._snap(t)
        prev, self.prev = self.prev, snap
        if prev is None:
            return False
        rec = self.ctx.recorder
        delta = _sub(snap.counters, prev.counters)
        lat = {k: tuple(rec.latencies[k][prev.n_lat.get(k, 0) : n]) for k, n in snap.n_lat.items()}
        sig = (
            delta,
            lat,
            snap.n_findings - prev.n_findings,
            snap.state,
            self._period_traffic(prev.t, t),
        )
        self.sigs.append(sig)
        self.last_delta = delta
        self.last_lat = {k: len(v) for k, v in lat.items()}
        if len(self.sigs) < self.identical or t >= self.end:
            return False
        if any(s[2] for s in self.sigs):
            return False
        first = self.sigs[0]
        if not all(_close(s, first) for s in list(self.sigs)[1:]):
            return False
        return not self._pending_fault()

    # -- extending ---------------------------------------------------------------------
    def extend(self, t: int) -> FastForwardStat:
        """Fast-forward from the boundary ``t`` to the end (module rules)."""
        n = (self.end - t) // self.period
        rec = self.ctx.recorder
        d = self.last_delta
        for name in ("jobs", "drops", "underflows", "buffer_wait_ns"):
            tally = getattr(rec, name)
            for k, v in d[name].items():
                if v:
                    tally[k] += n * v
        for k, v in d["copies"].items():
            row = rec.copies[k]
            for i, x in enumerate(v):
                row[i] += n * x
        for k, v in d["tlb"].items():
            tlb_row = rec.tlb[k]
            for i, x in enumerate(v):
                tlb_row[i] += n * x
        cb, cn, cr = d["cache"]
        rec.cache_maint_bytes += n * cb
        rec.cache_maint_ns += n * cn
        rec.cpu_read_ns += n * cr
        self.sync_extra = {k: n * v for k, v in d["sync"].items()}
        for key, (nb, nf) in d["flows"].items():
            acc = self.dram.accounts[key]
            acc.bytes_completed += n * nb
            acc.flows_completed += n * nf
        for k, m in self.last_lat.items():
            if m:
                rec.latency_repeat[k] = (m, n)
        for acc in self.dram.accounts.values():
            acc.rate.set_periodic(t, self.period)
        self.dram.utilisation.set_periodic(t, self.period)
        return FastForwardStat(
            from_s=t / NS, periods=n, hyperperiod_s=self.period / NS, identical=self.identical
        )
