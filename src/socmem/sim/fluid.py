"""DRAM (or any bandwidth resource) as a fluid shared by concurrent DMA flows.

A :class:`FluidResource` of ``capacity_bps`` bytes/s (peak × efficiency) is shared by
:class:`Flow` s: one DMA transfer each (master, direction, bytes, QoS class, weight, and
a limit: the master's own maximum bandwidth and/or a QoS-400-style regulator rate).
Rates follow the allocation rule of :mod:`socmem.sim.qos` (strict priority between
classes, weighted max-min water-filling inside a class; one class when QoS is off).

**How it stays cheap (cost per flow start/end is O(#classes + log n), not O(n)).**
Inside a class a flow is either *capped* (rate = its limit ``k``) or *shared*
(rate = ``w · L``, ``L`` the class's water level).  Each class keeps

* the sums ``K`` (limits of capped flows) and ``W`` (weights of shared flows), so the
  level is ``L = (A − K) / W`` for the ``A`` bytes/s the class is given;
* two heaps of normalised limits ``k / w`` (capped: max-heap, shared: min-heap): when
  ``L`` moves, only flows whose ``k / w`` it crosses change state (water-filling by
  transitions, each O(log n));
* a *virtual time* ``V = ∫ L dt`` (bytes per unit weight).  A shared flow's bytes are
  ``w · (V − V_ref)``, so a level change touches no flow; its completion is a tag
  ``V_ref + remaining / w`` in a heap.  Capped flows keep a real finish time in a heap.

So a best-effort arrival never touches realtime flows, and a change of level
reschedules nothing but the resource's single completion timer.  ``bytes_done`` is
integrated lazily (materialised only when a flow changes state) and is exact up to
float rounding.

**Time rounding.** Completion times are rounded up to whole nanoseconds; at the timer,
every flow with less than one nanosecond of transfer left completes (so simultaneous
finishes are handled in one event).  A flow therefore runs at most 1 ns longer than its
exact fluid time; bytes never exceed the size.

**Completion.**  A :class:`Flow` is an :class:`~socmem.sim.engine.Event` whose value
is the flow itself.  Flows finishing at the same instant are processed inside the
resource's timer event, after the resource has settled, in start order; their
callbacks (and the processes waiting on them) run then.

**Metrics.** Per ``(master, direction)`` a piecewise-constant rate series (bytes/s;
its integral is the bytes moved), the resource's utilisation series (fraction of
capacity), and per flow ``start_ns`` / ``end_ns`` / ``latency_ns``.  Series store change
points, never samples.  Several resources (DRAM channels, a link) are several
independent :class:`FluidResource` objects on one engine; a flow uses exactly one.

Measured (``benchmarks/bench_fluid.py``, default-scenario shape, 10 s simulated, with
generator processes and all metrics on): 170× real time for 4 camera streams, 47× for
16; ~13-14 µs per flow at both sizes, i.e. linear (perf-anchors §10's global recompute
grew ×7-8 for ×4 streams).
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from typing import Any

import numpy as np

from socmem.sim.engine import NSEC_PER_SEC, Engine, Event
from socmem.sim.qos import QosClass

__all__ = ["Flow", "FlowAccount", "FluidResource", "QosClass", "StepSeries"]

_INF = math.inf
_NS = float(NSEC_PER_SEC)


def _ceil_ns(x: float) -> int:
    """Round a duration in ns up to a whole ns, forgiving float noise (1e-6 ns)."""
    if x <= 1e-6:
        return 0
    return math.ceil(x - 1e-6 - x * 1e-13)


class StepSeries:
    """A piecewise-constant time series: change points ``(t_ns, value)``.

    The value holds from each change point until the next; the series does not exist
    before its first point (integrals count nothing there).  ``set`` at the time of the
    last point overwrites it; setting an unchanged value stores nothing.

    **Periodic tail.**  After :meth:`set_periodic` ``(t_from, period)`` the series is,
    from ``t_from`` on, its own ``[t_from - period, t_from)`` repeated forever (a
    fast-forwarded steady state, :mod:`socmem.sim.fastforward`); change points at or
    after ``t_from`` are ignored and ``times`` / ``values`` keep only what was
    simulated.  Queries cost the same however long the tail is.
    """

    __slots__ = ("_tail", "times", "values")

    def __init__(self, t0_ns: int = 0, value: float = 0.0) -> None:
        self.times: list[int] = [t0_ns]
        self.values: list[float] = [value]
        # (t_from, period, template offsets, values, cumulative integrals, period integral)
        self._tail: tuple[int, int, list[int], list[float], list[float], float] | None = None

    def set_periodic(self, t_from_ns: int, period_ns: int) -> None:
        """Repeat ``[t_from_ns - period_ns, t_from_ns)`` from ``t_from_ns`` on (see above)."""
        if period_ns <= 0:
            raise ValueError("period must be positive")
        base = t_from_ns - period_ns
        times, values = self.times, self.values
        i = bisect_right(times, base) - 1
        rel = [0]
        vals = [values[i] if i >= 0 else 0.0]
        j = max(i + 1, 0)
        while j < len(times) and times[j] < t_from_ns:
            if times[j] > base:
                rel.append(times[j] - base)
                vals.append(values[j])
            j += 1
        cum = [0.0]
        for k in range(1, len(rel)):
            cum.append(cum[-1] + vals[k - 1] * (rel[k] - rel[k - 1]))
        total = cum[-1] + vals[-1] * (period_ns - rel[-1])
        self._tail = (t_from_ns, period_ns, rel, vals, cum, total)

    @property
    def periodic_from(self) -> int | None:
        """Start of the periodic tail (None: the series is all simulated)."""
        return self._tail[0] if self._tail is not None else None

    def _tail_cum(self, t_ns: int) -> float:
        """∫ value dt (ns) over ``[t_from, t_ns]`` of the periodic tail."""
        t_from, period, rel, vals, cum, total = self._tail  # type: ignore[misc]
        q, r = divmod(t_ns - t_from, period)
        i = bisect_right(rel, r) - 1
        return q * total + cum[i] + vals[i] * (r - rel[i])

    def set(self, t_ns: int, value: float) -> None:
        """Record that the value is ``value`` from ``t_ns`` on (``t_ns`` >= last)."""
        values = self.values
        if value == values[-1]:
            return
        if t_ns == self.times[-1]:
            if len(values) > 1 and values[-2] == value:
                values.pop()
                self.times.pop()
            else:
                values[-1] = value
            return
        self.times.append(t_ns)
        values.append(value)

    def value_at(self, t_ns: int) -> float:
        """The value in force at ``t_ns``."""
        tail = self._tail
        if tail is not None and t_ns >= tail[0]:
            rel, vals = tail[2], tail[3]
            return vals[bisect_right(rel, (t_ns - tail[0]) % tail[1]) - 1]
        i = bisect_right(self.times, t_ns) - 1
        return self.values[max(i, 0)]

    def integral(self, t0_ns: int, t1_ns: int) -> float:
        """∫ value dt over ``[t0_ns, t1_ns]``, with dt in **seconds** (0 before the start)."""
        tail = self._tail
        if tail is not None and t1_ns > tail[0]:
            t_from = tail[0]
            head = self._integral(t0_ns, t_from) if t0_ns < t_from else 0.0
            a = max(t0_ns, t_from)
            return head + (self._tail_cum(t1_ns) - self._tail_cum(a)) / _NS
        return self._integral(t0_ns, t1_ns)

    def _integral(self, t0_ns: int, t1_ns: int) -> float:
        times, values = self.times, self.values
        t0_ns = max(t0_ns, times[0])
        if t1_ns <= t0_ns:
            return 0.0
        i = max(bisect_right(times, t0_ns) - 1, 0)
        total = 0.0
        t = t0_ns
        n = len(times)
        while t < t1_ns:
            nxt = times[i + 1] if i + 1 < n else t1_ns
            end = min(nxt, t1_ns)
            if end > t:
                total += values[i] * (end - t)
                t = end
            i += 1
            if i >= n:
                if t < t1_ns:
                    total += values[-1] * (t1_ns - t)
                break
        return total / _NS

    def integrals(self, edges: list[int]) -> np.ndarray:
        """∫ value dt (seconds) over each ``[edges[i], edges[i + 1]]`` (sorted edges), in
        one pass: what :meth:`integral` gives per interval, up to float rounding."""
        e = np.asarray(edges, dtype=np.int64)
        tail = self._tail
        t_from = tail[0] if tail is not None else None
        n = len(self.times)
        if t_from is not None:
            n = bisect_right(self.times, t_from - 1)
        t = np.asarray(self.times[:n], dtype=np.float64)
        v = np.asarray(self.values[:n], dtype=np.float64)
        c = np.concatenate(([0.0], np.cumsum(v[:-1] * np.diff(t))))
        head_e = e if t_from is None else np.minimum(e, t_from)
        x = np.maximum(head_e, self.times[0]).astype(np.float64)
        i = np.searchsorted(t, x, side="right") - 1
        cum = c[i] + v[i] * (x - t[i])
        if tail is not None:
            tail_from, period, rel, vals, tcum, total = tail  # tail_from == t_from
            d = np.maximum(e - tail_from, 0)
            q, r = np.divmod(d, period)
            j = np.searchsorted(np.asarray(rel), r, side="right") - 1
            tv = np.asarray(vals)
            cum = cum + q * total + np.asarray(tcum)[j] + tv[j] * (r - np.asarray(rel)[j])
        return np.diff(cum) / _NS

    def mean(self, t0_ns: int, t1_ns: int) -> float:
        """Time-average over ``[t0_ns, t1_ns]``."""
        return self.integral(t0_ns, t1_ns) * _NS / (t1_ns - t0_ns) if t1_ns > t0_ns else 0.0

    def max(self, t0_ns: int | None = None, t1_ns: int | None = None) -> float:
        """Largest value in force anywhere in ``[t0_ns, t1_ns)`` (whole series if None)."""
        tail = self._tail
        if tail is None:
            return self._max(t0_ns, t1_ns)
        t_from, period, rel, vals = tail[0], tail[1], tail[2], tail[3]
        parts: list[float] = []
        if t0_ns is None or t0_ns < t_from:
            parts.append(self._max(t0_ns, t_from if t1_ns is None else min(t1_ns, t_from)))
        if t1_ns is None or t1_ns > t_from:
            a = t_from if t0_ns is None else max(t0_ns, t_from)
            if t1_ns is None or t1_ns - a >= period:
                parts.append(max(vals))
            else:
                ra = (a - t_from) % period
                rb = ra + (t1_ns - a)
                spans = [(ra, rb)] if rb <= period else [(ra, period), (0, rb - period)]
                for lo_t, hi_t in spans:
                    lo = bisect_right(rel, lo_t) - 1
                    hi = max(bisect_right(rel, hi_t - 1), lo + 1)
                    parts.append(max(vals[lo:hi]))
        return max(parts)

    def _max(self, t0_ns: int | None, t1_ns: int | None) -> float:
        times, values = self.times, self.values
        lo = 0 if t0_ns is None else max(bisect_right(times, t0_ns) - 1, 0)
        hi = len(times) if t1_ns is None else max(bisect_right(times, t1_ns - 1), lo + 1)
        return max(values[lo:hi])


class FlowAccount:
    """Traffic of one ``(master, direction)`` on one resource."""

    __slots__ = (
        "bytes_completed",
        "capped_rate",
        "direction",
        "flows_completed",
        "live",
        "master",
        "n_shared",
        "rate",
        "shared_w",
    )

    def __init__(self, master: str, direction: str, t0_ns: int) -> None:
        self.master = master
        self.direction = direction
        self.rate = StepSeries(t0_ns, 0.0)  # bytes/s, piecewise constant
        self.bytes_completed = 0  # sizes of completed flows (exact)
        self.flows_completed = 0
        self.live = 0
        self.capped_rate = 0.0  # Σ limits of this account's capped flows
        self.shared_w = [0.0, 0.0, 0.0]  # Σ weights of its shared flows, per class rank
        self.n_shared = 0

    def bytes_between(self, t0_ns: int, t1_ns: int) -> float:
        """Bytes moved in ``[t0_ns, t1_ns]`` (integral of the rate series)."""
        return self.rate.integral(t0_ns, t1_ns)

    def average_bps(self, t0_ns: int, t1_ns: int) -> float:
        """Average bandwidth over ``[t0_ns, t1_ns]``, bytes/s."""
        return self.rate.mean(t0_ns, t1_ns)

    def peak_bps(self) -> float:
        """Highest instantaneous bandwidth, bytes/s."""
        return self.rate.max()


class Flow(Event):
    """One DMA transfer on a :class:`FluidResource`; an event processed at completion.

    Create with :meth:`FluidResource.transfer`.  ``limit_bps`` is
    ``min(cap_bps, regulator_bps)`` (``inf`` if neither is set).
    """

    __slots__ = (
        "_acc",
        "_capped",
        "_done",
        "_epoch",
        "_live",
        "_rank",
        "_t_ref",
        "_v_ref",
        "aborted",
        "cap_bps",
        "direction",
        "end_ns",
        "limit_bps",
        "master",
        "name",
        "qos",
        "regulator_bps",
        "resource",
        "seq",
        "size",
        "start_ns",
        "weight",
    )

    resource: FluidResource
    master: str
    direction: str
    size: int
    qos: QosClass
    weight: float
    cap_bps: float | None
    regulator_bps: float | None
    limit_bps: float
    name: str | None
    seq: int
    start_ns: int
    end_ns: int | None
    aborted: bool
    _acc: FlowAccount
    _capped: bool
    _done: float
    _epoch: int
    _live: bool
    _rank: int
    _t_ref: int
    _v_ref: float

    def __repr__(self) -> str:
        return (
            f"<Flow {self.name or self.seq} {self.master}/{self.direction} {self.size}B "
            f"{self.qos.name} w={self.weight} limit={self.limit_bps}>"
        )

    @property
    def live(self) -> bool:
        """True while the flow is moving bytes."""
        return self._live

    @property
    def rate_bps(self) -> float:
        """Current rate, bytes/s (0 once finished)."""
        if not self._live:
            return 0.0
        if self._capped:
            return self.limit_bps
        return self.weight * self.resource._classes[self._rank].L

    @property
    def bytes_done(self) -> float:
        """Bytes moved so far (exact up to float rounding; never above ``size``)."""
        if not self._live:
            return self._done
        now = self.resource.engine.now_ns
        if self._capped:
            done = self._done + self.limit_bps * (now - self._t_ref) / _NS
        else:
            cls = self.resource._classes[self._rank]
            done = self._done + self.weight * (cls.v_at(now) - self._v_ref)
        return min(done, float(self.size))

    @property
    def remaining(self) -> float:
        """Bytes still to move."""
        return self.size - self.bytes_done

    @property
    def latency_ns(self) -> int | None:
        """``end_ns - start_ns`` once finished, else ``None``."""
        return None if self.end_ns is None else self.end_ns - self.start_ns


class _Class:
    """Water-filling state of one QoS class on one resource (see module docstring)."""

    __slots__ = (
        "K",
        "L",
        "V",
        "W",
        "avail",
        "cap_fin",
        "cap_sum",
        "cap_thr",
        "dirty",
        "n_capped",
        "n_shared",
        "n_uncapped",
        "rank",
        "sh_fin",
        "sh_thr",
        "t_ref",
        "used",
    )

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.cap_thr: list[tuple[float, int, int, Flow]] = []  # (-k/w, seq, epoch, f)
        self.cap_fin: list[tuple[int, int, int, Flow]] = []  # (finish_ns, seq, epoch, f)
        self.sh_thr: list[tuple[float, int, int, Flow]] = []  # (k/w, seq, epoch, f)
        self.sh_fin: list[tuple[float, int, int, Flow]] = []  # (tag V, seq, epoch, f)
        self.K = 0.0
        self.W = 0.0
        self.L = _INF  # level: bytes/s per unit weight; inf = class not saturated
        self.V = 0.0  # virtual time: ∫ L dt, bytes per unit weight
        self.t_ref = 0
        self.cap_sum = 0.0  # Σ finite limits of all flows
        self.n_uncapped = 0
        self.n_capped = 0
        self.n_shared = 0
        self.avail = -1.0  # bytes/s given at the last solve
        self.used = 0.0
        self.dirty = False

    def v_at(self, now: int) -> float:
        """Virtual time at ``now`` (>= t_ref) without storing it."""
        if self.n_shared and self.L < _INF and now != self.t_ref:
            return self.V + self.L * (now - self.t_ref) / _NS
        return self.V

    def advance(self, now: int) -> None:
        """Bring ``V`` to ``now``; rebase it to 0 when no flow is shared."""
        if self.n_shared:
            if now != self.t_ref and self.L < _INF:
                self.V += self.L * (now - self.t_ref) / _NS
        elif self.V != 0.0 or self.sh_fin:
            self.V = 0.0
            self.sh_fin.clear()
            self.sh_thr.clear()
        self.t_ref = now

    def level(self, avail: float) -> float:
        """Water level for ``avail`` bytes/s given the current capped/shared split."""
        if self.W > 0.0:
            return (avail - self.K) / self.W
        return -_INF if avail < self.K else _INF


class FluidResource:
    """A bandwidth resource (one DRAM, a DRAM channel, a link) shared by flows.

    ``capacity_bps`` is the usable bandwidth (peak × efficiency).  ``qos=False`` puts all
    flows in one class (pure weighted max-min).  ``record_flows`` keeps finished flows
    in :attr:`finished`.
    """

    def __init__(
        self,
        engine: Engine,
        capacity_bps: float,
        name: str = "dram",
        qos: bool = True,
        record_flows: bool = True,
    ) -> None:
        if capacity_bps <= 0:
            raise ValueError("capacity must be positive")
        self.engine = engine
        self.name = name
        self.capacity_bps = float(capacity_bps)
        self.qos = qos
        self.record_flows = record_flows
        self._classes = [_Class(r) for r in range(len(QosClass))]
        self._seq = 0
        self._timer: Any = None
        self._timer_at = -1
        self.accounts: dict[tuple[str, str], FlowAccount] = {}
        self.utilisation = StepSeries(engine.now_ns, 0.0)  # fraction of capacity
        self.finished: list[Flow] = []
        self.n_live = 0
        self._touched: set[FlowAccount] = set()  # accounts whose rate may have changed

    # -- public API ------------------------------------------------------------------
    def transfer(
        self,
        master: str,
        nbytes: int,
        direction: str = "read",
        qos: QosClass = QosClass.BEST_EFFORT,
        weight: float = 1.0,
        cap_bps: float | None = None,
        regulator_bps: float | None = None,
        name: str | None = None,
    ) -> Flow:
        """Start moving ``nbytes`` for ``master``; the returned flow is a yieldable event."""
        if weight <= 0:
            raise ValueError("weight must be positive")
        engine = self.engine
        now = engine.now_ns
        f = Flow.__new__(Flow)
        f.engine = engine
        f.callbacks = []
        f.value = f
        f.ok = True
        f.defused = False
        f.resource = self
        f.master = master
        f.direction = direction
        f.size = nbytes
        f.qos = qos
        f.weight = float(weight)
        f.cap_bps = cap_bps
        f.regulator_bps = regulator_bps
        f.limit_bps = _limit(cap_bps, regulator_bps)
        f.name = name
        self._seq += 1
        f.seq = self._seq
        f.start_ns = now
        f.end_ns = None
        f.aborted = False
        f._epoch = 0
        f._done = 0.0
        f._t_ref = now
        f._v_ref = 0.0
        key = (master, direction)
        acc = self.accounts.get(key)
        if acc is None:
            acc = self.accounts[key] = FlowAccount(master, direction, now)
        f._acc = acc
        if nbytes <= 0:
            f._live = False
            f._capped = True
            f._rank = 0
            f.end_ns = now
            engine.schedule(now, f._process)
            return f
        f._live = True
        rank = int(qos) if self.qos else 0
        f._rank = rank
        cls = self._classes[rank]
        cls.advance(now)
        if f.limit_bps < _INF:
            cls.cap_sum += f.limit_bps
        else:
            cls.n_uncapped += 1
        acc.live += 1
        self.n_live += 1
        self._attach(cls, f, now)
        cls.dirty = True
        self._update(now)
        return f

    def set_limit(
        self, flow: Flow, cap_bps: float | None = None, regulator_bps: float | None = None
    ) -> None:
        """Change a live flow's cap and regulator rate (``None`` = none)."""
        if not flow._live:
            return
        now = self.engine.now_ns
        cls = self._classes[flow._rank]
        cls.advance(now)
        self._detach(cls, flow, now)
        if flow.limit_bps < _INF:
            cls.cap_sum -= flow.limit_bps
        else:
            cls.n_uncapped -= 1
        flow.cap_bps = cap_bps
        flow.regulator_bps = regulator_bps
        flow.limit_bps = _limit(cap_bps, regulator_bps)
        if flow.limit_bps < _INF:
            cls.cap_sum += flow.limit_bps
        else:
            cls.n_uncapped += 1
        self._attach(cls, flow, now)
        cls.dirty = True
        self._update(now)

    def abort(self, flow: Flow) -> None:
        """Stop a live flow now; it completes (``aborted=True``) with the bytes moved."""
        if not flow._live:
            return
        now = self.engine.now_ns
        flow.aborted = True
        self._remove(flow, now)
        self._update(now)
        self.engine.schedule(now, flow._process)

    def live_flows(self) -> list[Flow]:
        """Live flows, in start order (a scan: for tests and reports)."""
        seen: dict[int, Flow] = {}
        for cls in self._classes:
            for heap in (cls.cap_fin, cls.sh_fin):
                for e in heap:
                    f = e[3]
                    if f._live and e[2] == f._epoch:
                        seen[f.seq] = f
        return [seen[k] for k in sorted(seen)]

    @property
    def throughput_bps(self) -> float:
        """Σ of the current flow rates, bytes/s."""
        return sum(c.used for c in self._classes)

    def level_bps(self, qos: QosClass) -> float:
        """Current water level of a class (bytes/s per unit weight; inf = unsaturated)."""
        return self._classes[int(qos) if self.qos else 0].L

    # -- state transitions -----------------------------------------------------------
    def _attach(self, cls: _Class, f: Flow, now: int) -> None:
        """Enter ``f`` as capped (finite limit) or shared; the solve fixes the split."""
        k = f.limit_bps
        if k < _INF:
            self._attach_capped(cls, f, now)
        else:
            self._attach_shared(cls, f)

    def _attach_capped(self, cls: _Class, f: Flow, now: int) -> None:
        k = f.limit_bps
        f._capped = True
        f._t_ref = now
        ep = f._epoch
        finish = now + _ceil_ns((f.size - f._done) * _NS / k)
        heapq.heappush(cls.cap_fin, (finish, f.seq, ep, f))
        heapq.heappush(cls.cap_thr, (-k / f.weight, f.seq, ep, f))
        cls.K += k
        cls.n_capped += 1
        f._acc.capped_rate += k
        self._touched.add(f._acc)
        if len(cls.cap_fin) > 2 * cls.n_capped + 64:
            _compact(cls.cap_fin)
            _compact(cls.cap_thr)

    def _attach_shared(self, cls: _Class, f: Flow) -> None:
        w = f.weight
        f._capped = False
        f._v_ref = cls.V
        ep = f._epoch
        heapq.heappush(cls.sh_fin, (cls.V + (f.size - f._done) / w, f.seq, ep, f))
        if f.limit_bps < _INF:
            heapq.heappush(cls.sh_thr, (f.limit_bps / w, f.seq, ep, f))
        cls.W += w
        cls.n_shared += 1
        acc = f._acc
        acc.shared_w[cls.rank] += w
        acc.n_shared += 1
        self._touched.add(acc)
        if len(cls.sh_fin) > 2 * cls.n_shared + 64:
            _compact(cls.sh_fin)
            _compact(cls.sh_thr)

    def _detach(self, cls: _Class, f: Flow, now: int) -> None:
        """Materialise ``f``'s bytes at ``now`` and take it out of its state's sums."""
        f._epoch += 1
        acc = f._acc
        if f._capped:
            k = f.limit_bps
            f._done += k * (now - f._t_ref) / _NS
            cls.K -= k
            cls.n_capped -= 1
            acc.capped_rate -= k
            if not cls.n_capped:
                cls.K = 0.0
        else:
            w = f.weight
            f._done += w * (cls.V - f._v_ref)
            cls.W -= w
            cls.n_shared -= 1
            acc.shared_w[cls.rank] -= w
            acc.n_shared -= 1
            if not cls.n_shared:
                cls.W = 0.0
            if not acc.n_shared:
                acc.shared_w[cls.rank] = 0.0
        if f._done > f.size:
            f._done = float(f.size)
        f._t_ref = now
        self._touched.add(acc)

    def _remove(self, f: Flow, now: int) -> None:
        cls = self._classes[f._rank]
        cls.advance(now)
        self._detach(cls, f, now)
        f._live = False
        f.end_ns = now
        if f.limit_bps < _INF:
            cls.cap_sum -= f.limit_bps
        else:
            cls.n_uncapped -= 1
        if not (cls.n_capped or cls.n_shared):
            cls.cap_sum = 0.0
        cls.dirty = True
        acc = f._acc
        acc.live -= 1
        if not acc.live:
            acc.capped_rate = 0.0
        self.n_live -= 1
        if self.record_flows:
            self.finished.append(f)

    # -- solving ---------------------------------------------------------------------
    def _solve(self, cls: _Class, avail: float, now: int) -> None:
        """Water-fill ``cls`` with ``avail`` bytes/s (see :mod:`socmem.sim.qos`)."""
        cls.advance(now)
        cls.avail = avail
        cls.dirty = False
        if not cls.n_uncapped and cls.cap_sum <= avail:
            sh_thr = cls.sh_thr
            while cls.n_shared:
                e = heapq.heappop(sh_thr)
                f = e[3]
                if e[2] == f._epoch:
                    self._detach(cls, f, now)
                    self._attach_capped(cls, f, now)
            cls.L = _INF
            cls.used = cls.cap_sum
            return
        level = cls.level(avail)
        cap_thr = cls.cap_thr
        while cap_thr:
            e = cap_thr[0]
            f = e[3]
            if e[2] != f._epoch:
                heapq.heappop(cap_thr)
                continue
            if -e[0] <= level:
                break
            heapq.heappop(cap_thr)
            self._detach(cls, f, now)
            self._attach_shared(cls, f)
            level = cls.level(avail)
        sh_thr = cls.sh_thr
        while sh_thr:
            e = sh_thr[0]
            f = e[3]
            if e[2] != f._epoch:
                heapq.heappop(sh_thr)
                continue
            if e[0] >= level:
                break
            heapq.heappop(sh_thr)
            self._detach(cls, f, now)
            self._attach_capped(cls, f, now)
            level = cls.level(avail)
        cls.L = level if level > 0.0 else 0.0
        cls.used = avail

    def _update(self, now: int) -> None:
        """Re-solve dirty classes (and those below whose share moved), record, re-arm."""
        avail = self.capacity_bps
        level_moved = False
        classes = self._classes
        for cls in classes:
            if cls.dirty or cls.avail != avail:
                if not (cls.n_shared or cls.n_uncapped) and cls.cap_sum <= avail:
                    # fast path: unsaturated and every flow already at its limit
                    cls.avail = avail
                    cls.dirty = False
                    cls.L = _INF
                    cls.used = cls.cap_sum
                else:
                    old = cls.L
                    self._solve(cls, avail, now)
                    if old != cls.L and cls.n_shared:
                        level_moved = True
            avail -= cls.used
            if avail < 0.0:
                avail = 0.0
        used = self.capacity_bps - avail
        self.utilisation.set(now, used / self.capacity_bps)
        touched = self._touched
        if level_moved:
            touched.update(a for a in self.accounts.values() if a.n_shared)
        for acc in touched:
            rate = acc.capped_rate
            if acc.n_shared:
                sw = acc.shared_w
                for cls in classes:
                    if sw[cls.rank] > 0.0 and cls.L < _INF:
                        rate += sw[cls.rank] * cls.L
            acc.rate.set(now, rate)
        touched.clear()
        self._arm(now)

    def _arm(self, now: int) -> None:
        """(Re)schedule the single completion timer at the earliest finish."""
        best = -1
        for cls in self._classes:
            if cls.n_capped:
                heap = cls.cap_fin
                while heap[0][2] != heap[0][3]._epoch:
                    heapq.heappop(heap)
                t = heap[0][0]
                if best < 0 or t < best:
                    best = t
            if cls.n_shared and 0.0 < cls.L < _INF:
                tags = cls.sh_fin
                while tags[0][2] != tags[0][3]._epoch:
                    heapq.heappop(tags)
                t = now + _ceil_ns((tags[0][0] - cls.v_at(now)) * _NS / cls.L)
                if best < 0 or t < best:
                    best = t
        if best == self._timer_at and self._timer is not None and self._timer.callback:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = best
        if best >= 0:
            self._timer = self.engine.schedule(best, self._on_timer)

    def _on_timer(self) -> None:
        now = self.engine.now_ns
        self._timer = None
        self._timer_at = -1
        done: list[Flow] = []
        for cls in self._classes:
            cls.advance(now)
            if cls.n_capped:
                heap = cls.cap_fin
                while heap and heap[0][0] <= now:
                    e = heapq.heappop(heap)
                    if e[2] == e[3]._epoch:
                        done.append(e[3])
            if cls.n_shared and 0.0 < cls.L < _INF:
                tags = cls.sh_fin
                scale = _NS / cls.L
                while tags and _ceil_ns((tags[0][0] - cls.V) * scale) <= 0:
                    g = heapq.heappop(tags)
                    if g[2] == g[3]._epoch:
                        done.append(g[3])
        for f in done:
            self._remove(f, now)
            f._done = float(f.size)
            acc = f._acc
            acc.bytes_completed += f.size
            acc.flows_completed += 1
        self._update(now)
        if len(done) > 1:
            done.sort(key=_seq_of)
        for f in done:
            f._process()


def _seq_of(f: Flow) -> int:
    return f.seq


def _limit(cap_bps: float | None, regulator_bps: float | None) -> float:
    k = _INF
    if cap_bps is not None:
        if cap_bps <= 0:
            raise ValueError("cap must be positive")
        k = float(cap_bps)
    if regulator_bps is not None:
        if regulator_bps <= 0:
            raise ValueError("regulator rate must be positive")
        k = min(k, float(regulator_bps))
    return k


def _compact(heap: list) -> None:
    """Drop stale entries (flow left that state) and re-heapify, in place."""
    heap[:] = [e for e in heap if e[2] == e[3]._epoch and e[3]._live]
    heapq.heapify(heap)
