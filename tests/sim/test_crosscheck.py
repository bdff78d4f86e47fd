"""Cross-checks of ``socmem run`` against the level above it (closed-form bandwidth) and
against what QoS must guarantee at saturation."""

from __future__ import annotations

import pytest

from socmem.sim.metrics import RunResult
from socmem.sim.runner import run_scenario


@pytest.fixture(scope="module")
def default_run() -> RunResult:
    return run_scenario("default", duration_s=0.5).result


@pytest.fixture(scope="module")
def saturated() -> RunResult:
    return run_scenario("saturated", duration_s=0.5).result


@pytest.fixture(scope="module")
def saturated_no_qos() -> RunResult:
    return run_scenario("saturated", duration_s=0.5, qos=False).result


def _within(result: RunResult, master: str, tol: float = 0.01) -> float:
    cf = result.closed_form_bps[master]
    sim = result.master_bps(master)
    assert cf > 0
    err = abs(sim / cf - 1)
    assert err < tol, f"{master}: simulated {sim / 1e9:.4f} GB/s vs closed form {cf / 1e9:.4f}"
    return err


def test_default_every_master_matches_closed_form(default_run: RunResult) -> None:
    assert set(default_run.closed_form_bps) >= {"cam0", "isp", "npu", "venc", "display", "cpu"}
    for master in default_run.closed_form_bps:
        _within(default_run, master)


@pytest.mark.parametrize("name", ["nommu-contiguous", "bug-skip-sync"])
def test_other_unsaturated_builtins_match_closed_form(name: str) -> None:
    r = run_scenario(name, duration_s=0.4).result
    assert r.dropped == 0 and r.underflows == 0
    for master in r.closed_form_bps:
        _within(r, master)


def test_closed_form_includes_walks(default_run: RunResult) -> None:
    # cameras only write; their read traffic is IOTLB walks, as the TLB model charged them:
    # at most one 64 B walk per 4 KiB page, fewer where the heap gave 2 MiB blocks
    cam_read = next(
        b for b in default_run.bandwidth if b.master == "cam0" and b.direction == "read"
    )
    cam_write = next(
        b for b in default_run.bandwidth if b.master == "cam0" and b.direction == "write"
    )
    walks = next(t for t in default_run.tlb if t.master == "cam0")
    jobs = default_run.stage("cam0").jobs
    per_frame = walks.walk_bytes / jobs  # charged when a frame starts; the last is in flight
    assert walks.walk_bytes - per_frame - 1 <= cam_read.bytes <= walks.walk_bytes + 1
    assert 0 < cam_read.steady_bps <= cam_write.steady_bps / 64 * 1.01


def test_utilisation_is_the_sum_of_the_masters(default_run: RunResult) -> None:
    total = sum(b.average_bps for b in default_run.bandwidth)
    assert default_run.dram_utilisation_avg == pytest.approx(
        total / default_run.dram_capacity_bps, rel=1e-3
    )


def test_saturation_realtime_keeps_its_bandwidth(saturated: RunResult) -> None:
    # DRAM runs full whenever the best-effort masters are not stalled on IOTLB walks or
    # waiting for the (compute-bound) ISP
    assert saturated.dram_utilisation_peak == pytest.approx(1.0)
    assert saturated.dram_utilisation_avg > 0.8
    for master in ("camss", "mdss"):  # realtime: cameras and display
        _within(saturated, master)
    assert saturated.underflows == 0
    assert saturated.stage("cam0").dropped == saturated.stage("cam1").dropped == 0


def test_saturation_best_effort_slows_down_and_drops(saturated: RunResult) -> None:
    assert saturated.master_bps("cdsp") < 0.8 * saturated.closed_form_bps["cdsp"]
    assert saturated.master_bps("venus") < 0.8 * saturated.closed_form_bps["venus"]
    assert saturated.stage("npu").dropped + saturated.stage("encode").dropped > 0


def test_without_qos_the_display_underflows(saturated_no_qos: RunResult) -> None:
    assert saturated_no_qos.underflows > 0
    kinds = saturated_no_qos.finding_counts()
    assert kinds["sim.display-underflow"] == saturated_no_qos.underflows
    assert not saturated_no_qos.qos
