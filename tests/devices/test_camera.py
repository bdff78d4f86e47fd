"""Camera source: frame clock, readout-paced real-time writes, drops without a free buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

from socmem.sim.metrics import RunResult
from socmem.sim.runner import run_scenario


def run(
    tmp_path: Path,
    buffers: list[str],
    stages: list[str],
    soc: str = "reference-mobile",
    duration: str = "0.3s",
    faults: list[str] | None = None,
    qos: bool = True,
) -> RunResult:
    """Run a small inline scenario."""
    text = (
        f"schema_version: 1\nname: t\nsoc: {soc}\nduration: {duration}\nqos: {str(qos).lower()}\n"
        + "buffers:\n"
        + "".join(f"  - {b}\n" for b in buffers)
        + "stages:\n"
        + "".join(f"  - {s}\n" for s in stages)
        + ("faults:\n" + "".join(f"  - {f}\n" for f in faults) if faults else "")
    )
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return run_scenario(str(p)).result


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
