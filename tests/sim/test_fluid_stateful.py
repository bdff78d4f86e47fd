"""Stateful check of the incremental fluid model against the from-scratch allocation rule."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from socmem.sim.engine import Engine
from socmem.sim.fluid import Flow, FluidResource
from socmem.sim.qos import QosClass, waterfill

CAP = 10e9
EPS = 1e-6 * CAP  # bytes/s tolerance on sums of rates

limits = st.one_of(st.none(), st.floats(min_value=1e7, max_value=2 * CAP))


class FluidMachine(RuleBasedStateMachine):
    """Random starts, ends (completion or abort), limit changes and time steps."""

    @initialize(qos=st.booleans())
    def setup(self, qos: bool) -> None:
        self.engine = Engine()
        self.res = FluidResource(self.engine, CAP, qos=qos)
        self.flows: list[Flow] = []
        self.last_done: dict[int, float] = {}

    @rule(
        size=st.integers(min_value=0, max_value=50_000_000),
        qos=st.sampled_from(list(QosClass)),
        weight=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
        cap=limits,
        reg=limits,
        master=st.sampled_from(["cam", "isp", "npu", "dpu"]),
    )
    def start(self, size, qos, weight, cap, reg, master) -> None:
        f = self.res.transfer(master, size, "read", qos, weight, cap, reg)
        self.flows.append(f)

    @rule(dt=st.integers(min_value=0, max_value=5_000_000))
    def advance(self, dt: int) -> None:
        self.engine.run(until_ns=self.engine.now_ns + dt)

    @precondition(lambda self: any(f.live for f in self.flows))
    @rule(data=st.data(), cap=limits, reg=limits)
    def change_limit(self, data, cap, reg) -> None:
        live = [f for f in self.flows if f.live]
        f = data.draw(st.sampled_from(live))
        self.res.set_limit(f, cap_bps=cap, regulator_bps=reg)

    @precondition(lambda self: any(f.live for f in self.flows))
    @rule(data=st.data())
    def abort(self, data) -> None:
        live = [f for f in self.flows if f.live]
        self.res.abort(data.draw(st.sampled_from(live)))

    # -- invariants ------------------------------------------------------------------
    def _live(self) -> list[Flow]:
        return [f for f in self.flows if f.live]

    @invariant()
    def rates_match_reference_and_obey_limits(self) -> None:
        if not hasattr(self, "res"):
            return
        live = self._live()
        assert [f.seq for f in live] == [f.seq for f in self.res.live_flows()]
        rates = [f.rate_bps for f in live]
        total = math.fsum(rates)
        assert total <= CAP + EPS
        assert abs(total - self.res.throughput_bps) <= EPS
        for f, r in zip(live, rates, strict=True):
            assert r >= 0.0
            assert r <= f.limit_bps * (1 + 1e-9)
        ref = waterfill(CAP, [(int(f.qos), f.weight, f.limit_bps) for f in live], self.res.qos)
        for f, r, want in zip(live, rates, ref, strict=True):
            assert math.isclose(r, want, rel_tol=1e-6, abs_tol=1.0), (f, r, want)

    @invariant()
    def work_conserving(self) -> None:
        if not hasattr(self, "res"):
            return
        live = self._live()
        if any(f.rate_bps < f.limit_bps * (1 - 1e-9) for f in live):
            assert abs(math.fsum(f.rate_bps for f in live) - CAP) <= EPS

    @invariant()
    def max_min_within_class(self) -> None:
        if not hasattr(self, "res"):
            return
        live = self._live()
        key = (lambda f: int(f.qos)) if self.res.qos else (lambda f: 0)
        for f in live:
            if f.rate_bps < f.limit_bps * (1 - 1e-9):  # held back by sharing
                nf = f.rate_bps / f.weight
                for g in live:
                    if key(g) == key(f):
                        assert g.rate_bps / g.weight <= nf * (1 + 1e-9) + 1e-9

    @invariant()
    def bytes_conserved_and_monotone(self) -> None:
        if not hasattr(self, "res"):
            return
        for f in self.flows:
            done = f.bytes_done
            assert -1e-6 <= done <= f.size
            assert math.isclose(done + f.remaining, f.size)
            assert done >= self.last_done.get(f.seq, 0.0) - 1e-3 * max(1.0, done) * 1e-6
            self.last_done[f.seq] = done
            if not f.live and not f.aborted:
                assert done == f.size and f.end_ns is not None
        now = self.engine.now_ns
        moved = math.fsum(f.bytes_done for f in self.flows)
        series = self.res.utilisation.integral(0, now) * CAP
        per_master = math.fsum(a.bytes_between(0, now) for a in self.res.accounts.values())
        slack = 1e-6 * moved + 1e-9 * CAP * (len(self.flows) + 1) + 1.0  # <= 1 ns per flow
        assert abs(series - moved) <= slack
        assert abs(per_master - moved) <= slack


FluidMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFluidMachine = FluidMachine.TestCase
