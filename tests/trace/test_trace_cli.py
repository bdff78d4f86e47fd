"""``socmem trace analyze`` / ``socmem trace export``: exit codes, outputs, tarballs."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.cli import main

TRACE = QEMU_REPLAY / "trace.txt"


def test_analyze_console(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["trace", "analyze", str(need(TRACE)), "--dmesg", str(QEMU_REPLAY / "dmesg.txt")]) == 0
    )
    text = capsys.readouterr().out
    assert "IOMMU mappings per device / domain" in text
    assert "0000:00:01.0" in text and "never mapped" in text and "strict" in text


def test_analyze_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "trace",
        "analyze",
        str(need(TRACE)),
        "--json",
        "--bufinfo",
        str(QEMU / "dma_buf-bufinfo-live.txt"),
        "--fdinfo",
        str(QEMU / "dma_buf-fdinfo-live.txt"),
    ]
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["iommu"]["domains"]["0000:00:01.0"]["maps"] == 1012
    assert data["dmabuf"]["objects"] == 5 and data["dmabuf"]["bytes"] == 8486912
    assert data["cma"][0]["allocs"] == 6


def test_analyze_html(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    args = [
        "trace",
        "analyze",
        str(need(TRACE)),
        "--dmesg",
        str(QEMU_REPLAY / "dmesg.txt"),
        "--html",
        str(out),
    ]
    assert main(args) == 0
    html = out.read_text()
    assert html.count("<svg") >= 3  # mapped bytes, churn, fence latency
    assert "Mapped bytes over time" in html and "Fence latency histogram" in html
    assert "smmu.fault" in html
    assert "<script" not in html and not re.search(r'(?:src|href)="(?:https?:)?//', html)
    assert main(args) == 2  # exists, no --force
    assert main([*args, "--force"]) == 0


def test_strict_exit_code() -> None:
    args = ["trace", "analyze", str(need(TRACE)), "--dmesg", str(QEMU_REPLAY / "dmesg.txt")]
    assert main([*args, "--strict", "--json"]) == 1  # the SMMU fault is an error


def test_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "analyze", str(tmp_path / "missing.txt")]) == 2
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["trace", "analyze", str(empty)]) == 2
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nthis is not a trace\n")
    assert main(["trace", "analyze", str(junk)]) == 2
    assert main(["trace", "analyze", str(need(TRACE)), "--dmesg", str(tmp_path / "nope")]) == 2
    assert main(["trace", "export", str(junk), "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "socmem: error:" in err
    assert not (tmp_path / "x.json").exists()


def test_bad_lines_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = tmp_path / "t.txt"
    lines = need(QEMU / "trace.txt").read_text().splitlines(keepends=True)[:200]
    t.write_text("".join(lines[:100]) + "\x00\x01garbage\n" + "".join(lines[100:]))
    assert main(["trace", "analyze", str(t), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bad_lines"] == 1 and data["bad_by_reason"] == {"undecodable or binary data": 1}


def test_tarball(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tgz = tmp_path / "capture.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name in (
            "trace.txt",
            "dmesg.txt",
            "dma_buf-bufinfo-live.txt",
            "dma_buf-bufinfo-after-release.txt",
            "dma_buf-fdinfo-live.txt",
            "trace-event-counts.txt",
            "console.log",
        ):
            tar.add(need(QEMU / name), arcname=f"socmem-capture/{name}")
    assert main(["trace", "analyze", str(tgz), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["sources"]["trace"] == [f"{tgz}:socmem-capture/trace.txt"]
    assert data["dmabuf"]["objects"] == 5 and data["dmabuf"]["leaked"] == []
    assert data["faults"][0]["verdict"] == "never mapped"
    assert data["iommu"]["domains"]["unknown domain"]["maps"] == 2201
    out = tmp_path / "t.json"
    assert main(["trace", "export", str(tgz), "-o", str(out)]) == 0
    assert json.loads(out.read_text())["traceEvents"]


def test_export(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    args = ["trace", "export", str(need(TRACE)), "-o", str(out)]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert all({"ph", "ts", "pid", "tid"} <= e.keys() for e in doc["traceEvents"])
    before = out.read_text()
    assert main(args) == 2
    assert out.read_text() == before
    assert main([*args, "--force"]) == 0
