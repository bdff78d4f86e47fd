"""Processing engines: one job per input frame, shared masters serialise, decimation,
compute from the pixel rate, backlog and drop-oldest."""

from __future__ import annotations

from pathlib import Path

import pytest

from inline_scenario import run

RAW = "{name: raw%d, width: 3840, height: 2160, format: RAW10, count: 4}"
YUV = "{name: yuv%d, width: 3840, height: 2160, format: NV12, count: 4}"


def test_shared_master_serialises_and_each_frame_is_a_job(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [RAW % 0, RAW % 1, YUV % 0, YUV % 1, "{name: det, size: 64KiB, count: 4}"],
        [
            "{name: cam0, type: source, master: cam0, fps: 30, outputs: [raw0]}",
            "{name: cam1, type: source, master: cam1, fps: 30, outputs: [raw1]}",
            "{name: isp0, type: process, master: isp, inputs: [raw0], outputs: [yuv0]}",
            "{name: isp1, type: process, master: isp, inputs: [raw1], outputs: [yuv1]}",
            "{name: npu, type: process, master: npu, inputs: [yuv0, yuv1], outputs: [det],"
            " compute: 5ms, weights: 1MiB}",
        ],
    )
    assert r.stage("npu").jobs == r.stage("isp0").jobs + r.stage("isp1").jobs
    lat = {x.stage: x for x in r.latency}
    # ISP compute = 8.29 Mpixel / 2 Gpixel/s = 4.15 ms after the 30 ms readout, plus the
    # IOTLB walk stall of the job (it depends on each buffer's leaf sizes); isp1 queues
    # behind isp0 on the one ISP
    compute_ms = 3840 * 2160 / 2e9 * 1e3
    isp = next(t for t in r.tlb if t.master == "isp")
    assert isp.walk_stall_ms > 0
    assert 30 + compute_ms < lat["isp0"].p50_ms < 30 + compute_ms + 1
    assert (
        lat["isp0"].p50_ms + compute_ms < lat["isp1"].p50_ms < lat["isp0"].p50_ms + compute_ms + 1
    )


def test_every_decimates(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [RAW % 0, "{name: det, size: 64KiB, count: 4}"],
        [
            "{name: cam0, type: source, master: cam0, fps: 30, outputs: [raw0]}",
            "{name: npu, type: process, master: npu, inputs: [raw0], outputs: [det], every: 3,"
            " compute: 5ms}",
        ],
        duration="0.5s",
    )
    assert r.stage("npu").jobs == pytest.approx(r.stage("cam0").jobs / 3, abs=1)


def test_slow_stage_drops_oldest_instead_of_stalling_the_camera(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            "{name: raw0, width: 3840, height: 2160, format: RAW10, count: 6}",
            "{name: det, size: 64KiB, count: 4}",
        ],
        [
            "{name: cam0, type: source, master: cam0, fps: 30, outputs: [raw0]}",
            "{name: npu, type: process, master: npu, inputs: [raw0], outputs: [det],"
            " compute: 80ms}",
        ],
        duration="0.6s",
    )
    assert r.stage("cam0").dropped == 0
    assert r.stage("npu").dropped > 0
    assert r.stage("npu").backlog_max == 2
