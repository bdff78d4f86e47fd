"""Display: scan-out every refresh of the newest finished frame, underflow past the
line buffer's slack."""

from __future__ import annotations

from pathlib import Path

import pytest

from inline_scenario import run

YUV = "{name: yuv, width: 3840, height: 2160, format: NV12, count: 4}"
SRC = "{name: src, type: source, master: cam0, fps: 30, outputs: [yuv]}"


def test_scans_every_refresh_and_latches_each_frame_once(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [YUV],
        [SRC, "{name: show, type: display, master: display, inputs: [yuv], refresh: 60Hz}"],
        duration="0.5s",
    )
    show = r.stage("show")
    assert show.underflows == 0
    lat = next(x for x in r.latency if x.stage == "show")
    assert lat.frames == pytest.approx(r.stage("src").jobs, abs=1)  # each frame shown once
    assert show.jobs > 1.8 * lat.frames  # 60 Hz scans of a 30 fps stream
    assert r.master_bps("display") == pytest.approx(r.closed_form_bps["display"], rel=0.01)


def test_underflow_when_greedy_masters_starve_it_without_qos(tmp_path: Path) -> None:
    stages = [
        SRC,
        "{name: show, type: display, master: display, inputs: [yuv], refresh: 60Hz,"
        " latency_budget: 10us}",
        "{name: hog, type: process, master: gpu, inputs: [yuv], outputs: [junk],"
        " weights: 1GiB, compute: 20ms}",
        "{name: hog2, type: process, master: npu, inputs: [yuv], outputs: [junk2],"
        " weights: 1GiB, compute: 20ms}",
    ]
    bufs = [YUV, "{name: junk, size: 64KiB, count: 4}", "{name: junk2, size: 64KiB, count: 4}"]
    on = run(tmp_path, bufs, stages, duration="0.3s")
    off = run(tmp_path, bufs, stages, duration="0.3s", qos=False)
    assert on.dram_utilisation_peak == pytest.approx(1.0)
    assert on.underflows == 0
    assert off.underflows > 0
    f = next(x for x in off.findings if x.kind == "sim.display-underflow")
    assert "line-buffer slack 10.0 us" in f.message
