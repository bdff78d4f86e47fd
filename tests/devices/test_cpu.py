"""The CPU runtime: a process with fds, begin/end_cpu_access with its maintenance cost,
and what skipping it does."""

from __future__ import annotations

from pathlib import Path

from inline_scenario import run

BUFS = [
    "{name: yuv, width: 1920, height: 1080, format: NV12, count: 4}",
    "{name: det, size: 256KiB, count: 4}",
]
STAGES = [
    "{name: src, type: source, master: cam0, fps: 30, outputs: [yuv]}",
    "{name: gpu, type: process, master: gpu, inputs: [yuv], outputs: [det], compute: 4ms}",
    "{name: app, type: cpu, master: cpu, inputs: [det], process_name: viewer}",
]


def test_reads_with_cache_maintenance(tmp_path: Path) -> None:
    r = run(tmp_path, BUFS, STAGES)
    assert r.findings == []
    assert r.stage("app").jobs == r.stage("gpu").jobs
    assert r.cache_maintenance["cpu_ms"] > 0  # gpu is not coherent: invalidate per frame
    assert r.cache_maintenance["sync_for_cpu_bytes"] >= r.stage("app").jobs * 256 * 1024
    assert r.master_bps("cpu") > 0


def test_skip_cache_sync_reads_stale_lines(tmp_path: Path) -> None:
    r = run(tmp_path, BUFS, STAGES, faults=["{stage: app, kind: skip-cache-sync, frame: 3}"])
    counts = r.finding_counts()
    stale = [f for f in r.findings if f.kind == "coherency.stale-cpu-read"]
    # one frame read without SYNC_START: one finding per physically contiguous chunk
    assert stale and len({f.time for f in stale}) == 1
    assert sum(f.data["stale_bytes"] for f in stale) == 256 * 1024
    assert set(counts) <= {"coherency.stale-cpu-read", "coherency.cpu-access-while-device-owns"}
