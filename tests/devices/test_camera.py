"""Camera source: frame clock, readout-paced real-time writes, drops without a free buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from inline_scenario import run

RAW = "{name: raw, width: 1920, height: 1080, format: RAW10, count: 4}"


def test_frames_bytes_and_readout(tmp_path: Path) -> None:
    r = run(tmp_path, [RAW], ["{name: cam, type: source, master: cam0, fps: 60, outputs: [raw]}"])
    assert r.stage("cam").jobs == 18  # 0.3 s at 60 fps, the last one still being read out
    frame = 1920 * 1080 * 1.25
    wr = next(b for b in r.bandwidth if b.master == "cam0" and b.direction == "write")
    assert wr.bytes == pytest.approx(r.stage("cam").jobs * frame, rel=0.07)
    # readout over 90 % of the period: peak = frame / (0.9 / 60)
    assert wr.peak_bps == pytest.approx(frame / (0.9 / 60), rel=1e-3)
    lat = next(x for x in r.latency if x.stage == "cam")
    assert lat.p50_ms == pytest.approx(0.9 * 1000 / 60, rel=1e-3)
    assert wr.qos == "realtime"


def test_no_consumer_never_drops(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        ["{name: raw, width: 64, height: 64, format: RAW10, count: 1}"],
        ["{name: cam, type: source, master: cam0, fps: 30, outputs: [raw]}"],
    )
    assert r.stage("cam").dropped == 0


def test_drop_when_every_buffer_is_held(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        ["{name: raw, width: 1920, height: 1080, format: RAW10, count: 2}"],
        [
            "{name: cam, type: source, master: cam0, fps: 30, outputs: [raw]}",
            "{name: slow, type: process, master: npu, inputs: [raw], compute: 100ms}",
        ],
    )
    assert r.stage("cam").dropped > 0
    assert r.finding_counts()["sim.camera-drop"] == r.stage("cam").dropped
