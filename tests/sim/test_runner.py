"""``run_scenario`` end to end: zero copy verified, copies explained and charged, drops,
fault injection producing exactly the expected findings, JSON results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socmem.sim.metrics import RunResult, percentile
from socmem.sim.runner import Run, common_period_ns, run_scenario

SCENARIO = """schema_version: 1
name: {name}
soc: {soc}
duration: {duration}
buffers:
{buffers}
stages:
{stages}
faults:
{faults}
"""


def scenario_file(
    tmp_path: Path,
    name: str,
    soc: str,
    buffers: list[str],
    stages: list[str],
    faults: list[str] | None = None,
    duration: str = "0.3s",
) -> str:
    """Write a scenario YAML and return its path."""
    text = SCENARIO.format(
        name=name,
        soc=soc,
        duration=duration,
        buffers="\n".join(f"  - {b}" for b in buffers),
        stages="\n".join(f"  - {s}" for s in stages),
        faults="\n".join(f"  - {f}" for f in faults or []) or "  []",
    ).replace("faults:\n  []", "faults: []")
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return str(p)


@pytest.fixture(scope="module")
def default() -> Run:
    return run_scenario("default", duration_s=0.3)


def test_default_is_zero_copy_and_clean(default: Run) -> None:
    r = default.result
    assert r.copies == [] and r.copies_total == 0 and r.copy_paths == []
    # every buffer of every pool, for every device using it (producer + consumers)
    users = {
        "raw0": 2,
        "raw1": 2,
        "raw2": 2,
        "raw3": 2,
        "yuv0": 4,
        "yuv1": 2,
        "yuv2": 2,
        "yuv3": 2,
        "bitstream": 1,
        "detections": 1,
    }
    counts = {b.name: b.count for b in default.loaded.scenario.buffers}
    assert r.zero_copy_paths == sum(users[p] * counts[p] for p in users)
    assert r.findings == []
    assert r.dropped == 0 and r.underflows == 0
    assert r.heaps["raw0"] == "system" and r.heaps["detections"] == "system"


def test_default_buffers_are_real_dma_bufs(default: Run) -> None:
    pool = default.ctx.pools["yuv0"]
    buf = pool.buffers[0]
    assert buf.dmabuf is not None and buf.dmabuf.size >= pool.spec.frame_bytes
    names = sorted(a.dev_name for a in buf.dmabuf.attachments)
    assert names == ["display", "isp", "npu", "venc"]
    assert all(acc.sgt is not None and acc.zero_copy for acc in buf.accesses.values())
    # the app process holds an fd on each buffer it reads
    procs = default.ctx.userspace.live() if default.ctx.userspace else []
    app = next(p for p in procs if p.name == "camera-app")
    assert len(app.held_dmabufs()) == 8


def test_results_are_json_and_complete(default: Run) -> None:
    d = json.loads(json.dumps(default.result.to_dict()))
    for key in (
        "bandwidth",
        "closed_form_bps",
        "latency",
        "stages",
        "dropped_frames",
        "display_underflows",
        "copies",
        "tlb",
        "footprint",
        "cache_maintenance",
        "findings",
        "series",
        "dram",
    ):
        assert key in d
    lat = {x["stage"]: x for x in d["latency"]}
    assert lat["cam0"]["p50_ms"] == pytest.approx(30.0, abs=0.01)  # 90% readout of 33.3 ms
    assert lat["npu"]["max_ms"] >= lat["npu"]["p99_ms"] >= lat["npu"]["p50_ms"] > 0
    tlb = {x["master"]: x for x in d["tlb"]}
    assert 1 - 1 / 64 <= tlb["isp"]["hit_rate"] < 1.0  # at most one miss per 4 KiB page
    assert d["footprint_peak"]["heap system"] > 20 * 12_000_000


def test_footprint_and_cache_maintenance(default: Run) -> None:
    r = default.result
    assert r.cache_maintenance["cpu_ms"] > 0  # the app's begin/end_cpu_access
    assert r.cache_maintenance["sync_for_cpu_bytes"] > 0
    series = r.footprint["heap system"]
    assert series[0][1] == series[-1][1]  # pools are allocated once


def test_bug_scenario_produces_exactly_the_expected_findings() -> None:
    r = run_scenario("bug-skip-sync", duration_s=0.8).result
    assert r.finding_counts() == {
        "coherency.cpu-access-while-device-owns": 1,
        "coherency.stale-cpu-read": 1,
        "sim.fence-race": 1,
    }
    race = next(f for f in r.findings if f.kind == "sim.fence-race")
    assert race.data["producer"] == "cam0" and race.data["consumer"] == "isp0"
    assert race.data["consumer_start_ns"] < race.data["producer_signal_ns"]
    whats = [h.what for h in race.history]
    assert "producer-start" in whats and "consumer-start" in whats
    assert "dma_fence_signaled" in whats
    stale = next(f for f in r.findings if f.kind == "coherency.stale-cpu-read")
    assert "gpu" in stale.message


def test_shallow_pool_with_slow_consumer_drops(tmp_path: Path) -> None:
    path = scenario_file(
        tmp_path,
        "shallow",
        "reference-mobile",
        ["{name: raw, width: 1920, height: 1080, format: RAW10, count: 1}"],
        [
            "{name: cam, type: source, master: cam0, fps: 30, outputs: [raw]}",
            "{name: slow, type: process, master: gpu, inputs: [raw], compute: 50ms}",
        ],
    )
    r = run_scenario(path).result
    assert r.stage("cam").dropped > 0
    drops = [f for f in r.findings if f.kind == "sim.camera-drop"]
    assert len(drops) == r.stage("cam").dropped
    assert "no free buffer in pool raw" in drops[0].message


def test_unreachable_buffer_is_copied_and_charged(tmp_path: Path) -> None:
    # no IOMMU, 32-bit reach, system heap pages from above 4 GiB: no device can map it
    path = scenario_file(
        tmp_path,
        "copy",
        "nommu-imx8m",
        ["{name: cam, width: 1920, height: 1080, format: YUYV, count: 4, heap: system}"],
        [
            "{name: csi, type: source, master: csi1, fps: 30, outputs: [cam]}",
            "{name: preview, type: display, master: dcss, inputs: [cam], refresh: 60Hz}",
        ],
    )
    r = run_scenario(path).result
    by_stage = {c.stage: c for c in r.copies}
    assert set(by_stage) == {"csi", "preview"}
    frame = 1920 * 1080 * 2
    csi = by_stage["csi"]
    assert csi.copies == r.stage("csi").jobs
    assert csi.bytes == csi.copies * frame
    assert csi.cpu_ms == pytest.approx(csi.copies * frame / 3e9 * 1e3, rel=1e-3)
    assert "DMA reach" in csi.reason and "csi1" in csi.reason
    cpu_bytes = sum(b.bytes for b in r.bandwidth if b.master == "cpu")
    assert cpu_bytes >= 2 * (csi.bytes + by_stage["preview"].bytes) * 0.95  # read + write
    assert {p["device"] for p in r.copy_paths} == {"csi1", "dcss"}


@pytest.mark.parametrize(
    ("soc", "cam", "disp", "kinds"),
    [
        (
            "reference-mobile",
            "cam0",
            "display",
            {"sim.dma-fault-after-unmap", "smmu.f-translation"},
        ),
        ("nommu-imx8m", "csi1", "dcss", {"sim.dma-after-free"}),
    ],
)
@pytest.mark.parametrize("fault", ["unmap-before-dma-done", "release-early"])
def test_unmap_while_dma_in_flight(
    tmp_path: Path, soc: str, cam: str, disp: str, kinds: set[str], fault: str
) -> None:
    path = scenario_file(
        tmp_path,
        "unmap",
        soc,
        ["{name: cam, width: 1920, height: 1080, format: NV12, count: 4}"],
        [
            f"{{name: cam, type: source, master: {cam}, fps: 30, outputs: [cam]}}",
            f"{{name: show, type: display, master: {disp}, inputs: [cam], refresh: 60Hz}}",
        ],
        [f"{{stage: cam, kind: {fault}, frame: 2}}"],
        duration="0.2s",
    )
    r = run_scenario(path).result
    assert set(r.finding_counts()) == kinds
    assert all(v == 1 for v in r.finding_counts().values())
    assert r.stage("cam").jobs == 6  # later frames use the restored mapping


def test_implicit_sync_matches_explicit(tmp_path: Path) -> None:
    results = {}
    for sync in ("explicit", "implicit"):
        path = scenario_file(
            tmp_path,
            f"sync-{sync}",
            "reference-mobile",
            [
                f"{{name: raw, width: 3840, height: 2160, format: RAW10, count: 4, sync: {sync}}}",
                f"{{name: yuv, width: 3840, height: 2160, format: NV12, count: 4, sync: {sync}}}",
            ],
            [
                "{name: cam, type: source, master: cam0, fps: 30, outputs: [raw]}",
                "{name: isp, type: process, master: isp, inputs: [raw], outputs: [yuv]}",
                "{name: show, type: display, master: display, inputs: [yuv], refresh: 60Hz}",
            ],
        )
        results[sync] = run_scenario(path).result
    e, i = results["explicit"], results["implicit"]
    assert i.findings == [] and e.findings == []
    assert [s.jobs for s in i.stages] == [s.jobs for s in e.stages]
    assert i.master_bps("isp") == pytest.approx(e.master_bps("isp"))


def test_helpers() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    from socmem.scenario.loader import load_scenario

    assert common_period_ns(load_scenario("default").scenario) == round(1e9 / 30)


def test_result_queries(default: Run) -> None:
    r: RunResult = default.result
    assert r.speed > 0
    assert r.stage("npu").jobs > 0
    assert r.master_bps("npu", steady=False) > 0
