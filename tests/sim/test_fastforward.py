"""Steady-state fast-forward: the periodic tail of a step series, weighted percentiles,
the hyperperiod, and runs that agree with and without fast-forward (and never skip a
pending fault)."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from socmem.cli import main
from socmem.scenario.loader import load_scenario
from socmem.scenario.schema import FaultInjection, FaultKind
from socmem.sim.fastforward import hyperperiod_ns
from socmem.sim.fluid import StepSeries
from socmem.sim.metrics import RunResult, weighted_percentile
from socmem.sim.runner import run_scenario

REL = 5e-3  # the brief's tolerance; the runs below agree to float rounding


# -- building blocks -------------------------------------------------------------------------
def _pattern(series: StepSeries, periods: int, period: int) -> None:
    for k in range(periods):
        for t, v in ((0, 1.0), (100, 3.0), (450, 0.5), (900, 2.0)):
            series.set(k * period + t + (5 if k == 0 else 0), v * (7 if k == 0 else 1))


def test_periodic_tail_equals_the_replicated_series() -> None:
    period = 1000
    full = StepSeries(0, 0.0)
    _pattern(full, 30, period)
    part = StepSeries(0, 0.0)
    _pattern(part, 5, period)
    part.set(5000, 1.0)  # a change point at the boundary is the tail's business
    part.set_periodic(5000, period)
    assert part.periodic_from == 5000
    rng = random.Random(7)
    for _ in range(2000):
        a = rng.randint(0, 25000)
        b = rng.randint(a, 25000)
        assert part.integral(a, b) == pytest.approx(full.integral(a, b), rel=1e-12, abs=1e-15)
        assert part.value_at(a) == full.value_at(a)
        if b > a:
            assert part.max(a, b) == full.max(a, b)
    edges = sorted(rng.randint(0, 25000) for _ in range(50))
    got = part.integrals(edges)
    want = [full.integral(a, b) for a, b in itertools.pairwise(edges)]
    assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert part.max() == full.max()


def test_weighted_percentile_is_the_percentile_of_the_copies() -> None:
    rng = random.Random(3)
    for _ in range(500):
        n = rng.randint(1, 9)
        values = [rng.choice([1.0, 2.0, 3.5, rng.random()]) for _ in range(n)]
        weights = [rng.randint(1, 6) for _ in range(n)]
        copies = [v for v, w in zip(values, weights, strict=True) for _ in range(w)]
        for q in (0, 1, 50, 99, 100, rng.random() * 100):
            assert weighted_percentile(values, weights, q) == pytest.approx(
                float(np.percentile(copies, q)), rel=1e-12
            )
    assert weighted_percentile([], [], 50) == 0.0


def test_hyperperiod_is_exact_in_nanoseconds() -> None:
    # round(n * 1e9 / 30) repeats every third frame: 100 ms, not 33.3 ms
    assert hyperperiod_ns(load_scenario("default").scenario) == 100_000_000
    assert hyperperiod_ns(load_scenario("saturated").scenario) == 50_000_000
    sc = load_scenario("default").scenario
    odd = sc.model_copy(
        update={"stages": [s.model_copy(update={"fps": 29.97}) if s.fps else s for s in sc.stages]}
    )
    assert hyperperiod_ns(odd) is None
    every = sc.model_copy(
        update={
            "stages": [
                s.model_copy(update={"every": 2}) if s.name == "encode" else s for s in sc.stages
            ]
        }
    )
    assert hyperperiod_ns(every) == 200_000_000


# -- whole runs, both ways ------------------------------------------------------------------
def _assert_same(ff: RunResult, full: RunResult) -> None:
    assert full.fast_forward is None
    keys = [(b.master, b.direction) for b in full.bandwidth]
    assert [(b.master, b.direction) for b in ff.bandwidth] == keys
    for a, b in zip(ff.bandwidth, full.bandwidth, strict=True):
        for f in ("average_bps", "steady_bps", "peak_bps", "bytes"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=REL), (a.master, f)
    for m in {b.master for b in full.bandwidth}:
        assert ff.master_bps(m, steady=False) == pytest.approx(
            full.master_bps(m, steady=False), rel=REL
        )
    assert ff.dram_utilisation_avg == pytest.approx(full.dram_utilisation_avg, rel=REL)
    assert ff.dram_utilisation_peak == pytest.approx(full.dram_utilisation_peak, rel=REL)
    assert ff.dropped == full.dropped and ff.underflows == full.underflows
    for a, b in zip(ff.stages, full.stages, strict=True):
        assert (a.stage, a.jobs, a.dropped, a.underflows, a.backlog_max) == (
            b.stage,
            b.jobs,
            b.dropped,
            b.underflows,
            b.backlog_max,
        )
        assert a.buffer_wait_ms == pytest.approx(b.buffer_wait_ms, rel=REL, abs=1e-3)
    for a, b in zip(ff.latency, full.latency, strict=True):
        assert a.frames == b.frames, a.stage
        for f in ("p50_ms", "p99_ms", "max_ms"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=REL), (a.stage, f)
    assert ff.footprint_peak == full.footprint_peak
    assert [(t.master, t.transactions, t.misses, t.walk_bytes) for t in ff.tlb] == [
        (t.master, t.transactions, t.misses, t.walk_bytes) for t in full.tlb
    ]
    assert [(c.pool, c.stage, c.copies, c.bytes) for c in ff.copies] == [
        (c.pool, c.stage, c.copies, c.bytes) for c in full.copies
    ]
    for k, v in full.cache_maintenance.items():
        assert ff.cache_maintenance[k] == pytest.approx(v, rel=REL, abs=1e-6), k
    assert ff.finding_counts() == full.finding_counts()


@pytest.mark.parametrize("name", ["default", "nommu-contiguous"])
def test_fast_forward_agrees_with_the_full_run(name: str) -> None:
    ff = run_scenario(name, duration_s=1.0).result
    full = run_scenario(name, duration_s=1.0, fast_forward=False).result
    assert ff.fast_forward is not None, "a periodic pipeline must reach its steady state"
    assert ff.fast_forward.periods >= 1
    assert ff.fast_forward.from_s + ff.fast_forward.extrapolated_s == pytest.approx(1.0)
    assert ff.to_dict()["fast_forward"]["hyperperiod_s"] == pytest.approx(0.1)
    assert any("fast-forward: steady after" in n for n in ff.notes)
    _assert_same(ff, full)


def test_saturated_agrees_or_does_not_fast_forward() -> None:
    """The saturated pipeline's backlog keeps moving: it must never be extrapolated
    wrongly (either it is not fast-forwarded at all, or the figures agree)."""
    ff = run_scenario("saturated", duration_s=1.0).result
    full = run_scenario("saturated", duration_s=1.0, fast_forward=False).result
    assert full.dropped > 0
    _assert_same(ff, full)


def test_no_fast_forward_while_a_fault_is_pending() -> None:
    """bug-skip-sync injects faults at frames 10 and 20: the run of 1 s is simulated in
    full and the bugs are found; over 3 s it may fast-forward after them, with the same
    findings as the full run."""
    r = run_scenario("bug-skip-sync", duration_s=1.0).result
    assert r.fast_forward is None
    kinds = r.finding_counts()
    assert "sim.fence-race" in kinds
    assert any(k.startswith("coherency.") or k == "sim.skip-cache-sync" for k in kinds)
    long_ff = run_scenario("bug-skip-sync", duration_s=3.0).result
    long_full = run_scenario("bug-skip-sync", duration_s=3.0, fast_forward=False).result
    if long_ff.fast_forward is not None:
        assert long_ff.fast_forward.from_s > 20 / 30
    _assert_same(long_ff, long_full)


def test_a_fault_that_never_ends_blocks_fast_forward() -> None:
    """A fault applying from a frame on (``once: false``) is always pending."""
    loaded = load_scenario("nommu-contiguous")
    fault = FaultInjection(stage="recorder", kind=FaultKind.SKIP_CACHE_SYNC, frame=1000, once=False)
    faulty = loaded.scenario.model_copy(update={"faults": [fault]})
    r = run_scenario(replace(loaded, scenario=faulty), duration_s=1.0).result
    assert r.fast_forward is None


def test_cli_says_so_and_can_refuse(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert main(["run", "--duration", "1s", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "Fast-forward: steady after 0.4 s; 0.6 s extrapolated from 3 identical" in stdout
    data = json.loads((out / "results.json").read_text())
    assert data["fast_forward"]["periods"] == 6
    trace = json.loads((out / "trace.json").read_text())
    marks = [e for e in trace["traceEvents"] if e.get("cat") == "fast-forward"]
    assert len(marks) == 1 and marks[0]["dur"] == pytest.approx(0.6e6)
    assert "fast-forward" in (out / "report.html").read_text()
    assert main(["run", "--duration", "1s", "--out", str(out), "--force", "--no-fast-forward"]) == 0
    stdout = capsys.readouterr().out
    assert "Fast-forward" not in stdout
    assert json.loads((out / "results.json").read_text())["fast_forward"] is None
