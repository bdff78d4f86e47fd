"""Encoder and decoder traffic: references, reconstruction and bitstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from inline_scenario import run


def test_encoder_reads_references_and_writes_recon_plus_bitstream(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        [
            "{name: yuv, width: 1920, height: 1080, format: NV12, count: 4}",
            "{name: bits, size: 1MiB, count: 4}",
        ],
        [
            "{name: src, type: source, master: cam0, fps: 30, outputs: [yuv]}",
            "{name: enc, type: encode, master: venc, inputs: [yuv], outputs: [bits],"
            " reference_frames: 2, bitrate: 24Mbps}",
        ],
        duration="0.5s",
    )
    frame = 1920 * 1080 * 1.5
    bits = 24e6 / 8 / 30
    rd = next(b for b in r.bandwidth if b.master == "venc" and b.direction == "read")
    wr = next(b for b in r.bandwidth if b.master == "venc" and b.direction == "write")
    walk = next(t for t in r.tlb if t.master == "venc").walk_bps  # the TLB model's charge
    assert 0 < walk <= 30 * (frame * 4 + bits) * 64 / 4096 * 1.01
    assert rd.average_bps == pytest.approx(
        30 * 3 * frame * r.duration_s / r.duration_s + walk, rel=0.02
    )
    assert wr.steady_bps == pytest.approx(30 * (frame + bits), rel=0.01)


def test_decoder_without_input_runs_on_its_own_clock(tmp_path: Path) -> None:
    r = run(
        tmp_path,
        ["{name: out, width: 1920, height: 1080, format: NV12, count: 4}"],
        [
            "{name: dec, type: decode, master: vdec, outputs: [out], fps: 30, bitrate: 8Mbps,"
            " reference_frames: 1}",
            "{name: show, type: display, master: display, inputs: [out], refresh: 60Hz}",
        ],
    )
    assert r.stage("dec").jobs == 9
    assert r.stage("show").underflows == 0
    assert r.master_bps("vdec") == pytest.approx(r.closed_form_bps["vdec"], rel=0.01)
