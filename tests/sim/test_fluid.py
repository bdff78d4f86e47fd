"""Rules of the fluid bandwidth model (socmem.sim.fluid) and its closed-form cross-checks."""

from __future__ import annotations

import pytest

from socmem.sim.engine import NSEC_PER_SEC, Engine
from socmem.sim.fluid import FluidResource, StepSeries
from socmem.sim.qos import QosClass, waterfill

RT, HI, BE = QosClass.REALTIME, QosClass.HIGH, QosClass.BEST_EFFORT
GB = 1e9


def _dram(cap: float = 1 * GB, qos: bool = True) -> tuple[Engine, FluidResource]:
    e = Engine()
    return e, FluidResource(e, cap, qos=qos)


def test_single_flow_completes_at_bytes_over_capacity_exactly() -> None:
    e, d = _dram(1 * GB)
    f = d.transfer("cam", 1_000_000, "write")
    e.run()
    assert f.end_ns == 1_000_000 and f.latency_ns == 1_000_000
    assert f.bytes_done == 1_000_000 and not f.live
    e2, d2 = _dram(40.96e9)  # 51.2 GB/s x 0.8; 12 441 600 B NV12 frame
    g = d2.transfer("isp", 12_441_600)
    e2.run()
    assert g.end_ns == 303_750  # 12 441 600 / 40.96e9 s = 303.75 us


def test_two_equal_flows_share_then_rate_re_rises() -> None:
    e, d = _dram(1 * GB)
    a = d.transfer("a", 1_000_000)
    b = d.transfer("b", 3_000_000)
    e.run(until_ns=1000)
    assert a.rate_bps == b.rate_bps == 0.5 * GB
    e.run()
    assert a.end_ns == 2_000_000  # 1 MB at 0.5 GB/s
    assert b.end_ns == 4_000_000  # 1 MB by 2 ms, then 2 MB at 1 GB/s


def test_weights_three_to_one() -> None:
    e, d = _dram(1 * GB)
    a = d.transfer("a", 3_000_000, weight=3)
    b = d.transfer("b", 3_000_000, weight=1)
    e.run(until_ns=1)
    assert a.rate_bps == pytest.approx(0.75 * GB) and b.rate_bps == pytest.approx(0.25 * GB)
    e.run()
    assert a.end_ns == 4_000_000
    assert b.end_ns == 6_000_000  # 1 MB by 4 ms, then 2 MB alone


def test_caps_water_filling_redistributes() -> None:
    e, d = _dram(1 * GB)
    a = d.transfer("a", 10_000_000, cap_bps=0.1 * GB)
    b = d.transfer("b", 10_000_000)
    c = d.transfer("c", 10_000_000, cap_bps=0.6 * GB)
    e.run(until_ns=1)
    # a is capped at 0.1; b and c share 0.9 equally (0.45 < c's cap 0.6)
    assert [f.rate_bps for f in (a, b, c)] == pytest.approx([0.1 * GB, 0.45 * GB, 0.45 * GB])
    d.set_limit(b, cap_bps=0.2 * GB)
    e.run(until_ns=2)
    assert [f.rate_bps for f in (a, b, c)] == pytest.approx([0.1 * GB, 0.2 * GB, 0.6 * GB])
    assert d.throughput_bps == pytest.approx(0.9 * GB)  # all capped: not work conserving


def test_strict_priority_realtime_keeps_its_demand() -> None:
    e, d = _dram(1 * GB)
    disp = d.transfer("dpu", 10_000_000, qos=RT, cap_bps=0.7 * GB)
    bes = [d.transfer(f"npu{i}", 10_000_000, qos=BE) for i in range(3)]
    hi = d.transfer("isp", 10_000_000, qos=HI, cap_bps=0.2 * GB)
    e.run(until_ns=1)
    assert disp.rate_bps == 0.7 * GB
    assert hi.rate_bps == pytest.approx(0.2 * GB)
    assert [f.rate_bps for f in bes] == pytest.approx([0.1 * GB / 3] * 3)
    # a best-effort arrival leaves realtime and high untouched
    d.transfer("gpu", 10_000_000, qos=BE)
    e.run(until_ns=2)
    assert disp.rate_bps == 0.7 * GB and hi.rate_bps == pytest.approx(0.2 * GB)
    assert [f.rate_bps for f in bes] == pytest.approx([0.025 * GB] * 3)


def test_qos_off_is_plain_weighted_max_min() -> None:
    e, d = _dram(1 * GB, qos=False)
    disp = d.transfer("dpu", 10_000_000, qos=RT, cap_bps=0.7 * GB)
    bes = [d.transfer(f"npu{i}", 10_000_000, qos=BE) for i in range(3)]
    e.run(until_ns=1)
    assert disp.rate_bps == pytest.approx(0.25 * GB)
    assert [f.rate_bps for f in bes] == pytest.approx([0.25 * GB] * 3)


def test_regulator_caps_a_flow_and_can_be_reprogrammed() -> None:
    e, d = _dram(1 * GB)
    f = d.transfer("npu", 2_000_000, regulator_bps=0.25 * GB)
    assert f.limit_bps == 0.25 * GB
    e.run(until_ns=4_000_000)  # 1 MB done at 0.25 GB/s
    assert f.bytes_done == pytest.approx(1_000_000)
    d.set_limit(f, regulator_bps=None, cap_bps=0.5 * GB)
    e.run()
    assert f.end_ns == 6_000_000


def test_abort_and_zero_size() -> None:
    e, d = _dram(1 * GB)
    f = d.transfer("a", 1_000_000)
    z = d.transfer("a", 0)
    e.run(until_ns=250_000)
    d.abort(f)
    e.run()
    assert f.aborted and f.end_ns == 250_000 and f.bytes_done == pytest.approx(250_000)
    assert z.processed and z.end_ns == 0


def test_process_waits_on_flow_and_callbacks_in_start_order() -> None:
    e, d = _dram(1 * GB)
    log = []

    def dma(name: str, n: int):
        f = yield d.transfer(name, n)
        log.append((name, e.now_ns, f.size))

    e.process(dma("x", 1_000_000))
    e.process(dma("y", 1_000_000))  # equal flows finish together: start order
    e.run()
    assert log == [("x", 2_000_000, 1_000_000), ("y", 2_000_000, 1_000_000)]


def test_utilisation_series_integrates_to_total_bytes() -> None:
    e, d = _dram(2 * GB)
    sizes = [3_000_000, 1_000_000, 5_000_000, 700_000]
    caps = [None, 0.3 * GB, None, 0.2 * GB]
    for i, (n, c) in enumerate(zip(sizes, caps, strict=True)):
        e.schedule(i * 400_000, d.transfer, f"m{i % 2}", n, "read", BE, 1.0, c)
    e.run()
    end = e.now_ns
    moved = d.utilisation.integral(0, end) * d.capacity_bps
    assert moved == pytest.approx(sum(sizes), rel=1e-6)
    per_master = sum(a.bytes_between(0, end) for a in d.accounts.values())
    assert per_master == pytest.approx(sum(sizes), rel=1e-6)
    assert sum(a.bytes_completed for a in d.accounts.values()) == sum(sizes)
    assert d.utilisation.values[-1] == 0.0
    assert max(d.utilisation.values) == pytest.approx(1.0)


def test_step_series_rules() -> None:
    s = StepSeries(0, 0.0)
    s.set(10, 1.0)
    s.set(10, 2.0)  # same instant: overwrite
    s.set(20, 2.0)  # unchanged: nothing stored
    s.set(30, 0.0)
    assert s.times == [0, 10, 30] and s.values == [0.0, 2.0, 0.0]
    assert s.integral(0, 40) == pytest.approx(40 / NSEC_PER_SEC)
    assert s.value_at(15) == 2.0 and s.max() == 2.0 and s.max(30, 40) == 0.0
    assert s.mean(10, 30) == pytest.approx(2.0)


def test_waterfill_reference() -> None:
    r = waterfill(10.0, [(0, 1, 3.0), (2, 1, float("inf")), (2, 3, float("inf")), (2, 1, 0.5)])
    assert r == pytest.approx([3.0, 1.625, 4.875, 0.5])


# -- closed-form cross-check (analytic level of the fidelity ladder) ------------------


def _periodic(e: Engine, d: FluidResource, master: str, period: int, nbytes: int, qos, cap):
    def proc():
        k = 0
        while True:
            d.transfer(master, nbytes, "write", qos, cap_bps=cap)
            k += 1
            yield e.timeout(k * period - e.now_ns)

    return e.process(proc())


def test_periodic_producers_match_closed_form_below_saturation() -> None:
    e, d = _dram(40.96e9)
    specs = [  # master, period ns, bytes, qos, cap
        ("cam0", 33_333_333, 10_368_000, RT, 1e9),
        ("cam1", 33_333_333, 10_368_000, RT, 1e9),
        ("isp", 16_666_667, 12_441_600, HI, 4e9),
        ("npu", 50_000_000, 32_441_600, BE, None),
        ("dpu", 16_666_667, 33_177_600, RT, 2.4e9),
    ]
    for m, p, b, q, c in specs:
        _periodic(e, d, m, p, b, q, c)
    end = 3 * NSEC_PER_SEC
    e.run(until_ns=end)
    total = 0.0
    for m, p, b, _q, _c in specs:
        want = b / (p / NSEC_PER_SEC)
        total += want
        got = d.accounts[(m, "write")].average_bps(0, end)
        assert got == pytest.approx(want, rel=0.01), m
    assert d.utilisation.mean(0, end) == pytest.approx(total / d.capacity_bps, rel=0.01)


def test_at_saturation_realtime_keeps_bandwidth_and_best_effort_slows() -> None:
    e, d = _dram(10e9)
    _periodic(e, d, "dpu", 10_000_000, 40_000_000, RT, 5e9)  # 4 GB/s, at 5 GB/s for 8 ms
    _periodic(e, d, "cam", 10_000_000, 20_000_000, RT, 4e9)  # 2 GB/s
    npu = []

    def greedy():  # best effort wants 8 GB/s: over what is left
        while True:
            f = yield d.transfer("npu", 80_000_000, "read", BE)
            npu.append(f.latency_ns)

    e.process(greedy())
    end = NSEC_PER_SEC
    e.run(until_ns=end)
    acc = d.accounts
    assert acc[("dpu", "write")].average_bps(0, end) == pytest.approx(4e9, rel=0.01)
    assert acc[("cam", "write")].average_bps(0, end) == pytest.approx(2e9, rel=0.01)
    assert acc[("npu", "read")].average_bps(0, end) == pytest.approx(4e9, rel=0.02)
    assert d.utilisation.mean(0, end) == pytest.approx(1.0, rel=1e-3)
    assert min(npu) > 80_000_000 / 10e9 * NSEC_PER_SEC  # slower than alone


def _display_underflows(qos: bool) -> int:
    """A 4K60 display that needs its line buffer refilled every 1 ms against a greedy NPU."""
    e, d = _dram(8e9, qos=qos)
    misses = []

    def display():
        chunk = 2_000_000  # 2 MB per ms = 2 GB/s, deadline 1 ms
        for k in range(1, 200):
            f = yield d.transfer("dpu", chunk, "read", RT, cap_bps=4e9)
            if f.end_ns > k * 1_000_000:
                misses.append(k)
            yield e.timeout(max(0, k * 1_000_000 - e.now_ns))

    def npu(i):
        while True:
            yield d.transfer(f"npu{i}", 50_000_000, "read", BE)

    e.process(display())
    for i in range(4):
        e.process(npu(i))
    e.run(until_ns=200_000_000)
    return len(misses)


def test_display_underflows_only_when_qos_is_off() -> None:
    assert _display_underflows(qos=True) == 0
    assert _display_underflows(qos=False) > 100  # gets 1.6 GB/s < 2 GB/s needed
