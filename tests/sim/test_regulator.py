"""A QoS-400 regulator on a master's port caps its DRAM traffic in each direction."""

from __future__ import annotations

import pytest

from socmem.sim.runner import run_scenario
from socmem.soc.loader import load_soc


def test_regulated_npu_never_exceeds_its_rate() -> None:
    soc = load_soc("reference-mobile")
    free = run_scenario("default", soc=soc, duration_s=0.5).result
    npu_free = next(b for b in free.bandwidth if b.master == "npu" and b.direction == "read")
    assert npu_free.peak_bps > 2e9  # unregulated, its weight reads burst above 2 GB/s
    soc = soc.model_copy(deep=True)
    npu = soc.master("npu")
    assert npu is not None
    npu.qos_regulator = 2e9
    reg = run_scenario("default", soc=soc, duration_s=0.5).result
    npu_reg = next(b for b in reg.bandwidth if b.master == "npu" and b.direction == "read")
    assert npu_reg.peak_bps <= 2e9 * (1 + 1e-9)
    assert npu_reg.peak_bps == pytest.approx(2e9)
    # the NPU takes longer per job, the real-time masters are untouched
    lat_free = {x.stage: x for x in free.latency}
    lat_reg = {x.stage: x for x in reg.latency}
    assert lat_reg["npu"].p50_ms > lat_free["npu"].p50_ms
    assert lat_reg["cam0"].p50_ms == pytest.approx(lat_free["cam0"].p50_ms)
