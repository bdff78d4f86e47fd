"""The capture script: valid POSIX sh, and a real run against a fake /sys and /proc."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.cli import main
from socmem.errors import InputError
from socmem.trace.capture import DEFAULT_PROBES, capture_script, read_probe_file

SH = shutil.which("sh")


def test_script_is_valid_sh() -> None:
    assert SH
    proc = subprocess.run([SH, "-n"], input=capture_script(), text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_probes_are_well_formed() -> None:
    names = [p.name for p in DEFAULT_PROBES]
    assert len(names) == len(set(names))
    for p in DEFAULT_PROBES:
        line = p.line()
        assert line.startswith(("p:socmem/", "r:socmem/"))
        assert " " in line and "%x" not in line  # arch-neutral $argN only


def _fake_root(root: Path) -> Path:
    t = root / "sys/kernel/tracing"
    for sys in ("iommu", "dma_fence", "cma"):  # no "dma" (pre-6.12) and no swiotlb
        (t / "events" / sys).mkdir(parents=True)
        (t / "events" / sys / "enable").write_text("0")
    for f in (
        "tracing_on",
        "current_tracer",
        "buffer_size_kb",
        "kprobe_events",
        "set_event",
        "trace_marker",
        "error_log",
    ):
        (t / f).write_text("")
    (t / "trace").write_text("stale events from before the capture\n")
    (root / "proc").mkdir()
    (root / "proc/kallsyms").write_text(
        "ffff800008123456 T iommu_dma_map_page\nffff800008123460 T alloc_iova_fast\n"
    )
    (root / "proc/iomem").write_text(need(QEMU / "proc-iomem.txt").read_text())
    dbg = root / "sys/kernel/debug/dma_buf"
    dbg.mkdir(parents=True)
    (dbg / "bufinfo").write_text(need(QEMU / "dma_buf-bufinfo-live.txt").read_text())
    g = root / "sys/kernel/iommu_groups/7/devices/0000:00:06.0"
    g.mkdir(parents=True)
    (root / "sys/kernel/iommu_groups/7/type").write_text("DMA\n")
    (root / "sys/firmware").mkdir(parents=True)
    (root / "sys/firmware/fdt").write_bytes(need(QEMU / "guest-fdt.dtb").read_bytes())
    return root


@pytest.mark.skipif(not SH or not shutil.which("tar"), reason="needs sh and tar")
def test_script_runs_and_collects_everything(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    script = tmp_path / "capture.sh"
    script.write_text(capture_script())
    out = tmp_path / "cap"
    env = {"PATH": "/usr/bin:/bin", "SOCMEM_ROOT": str(root), "OUT": str(out)}
    proc = subprocess.run(
        # the command stands in for the workload; it also plays the kernel filling the buffer
        [
            SH,
            str(script),
            "--",
            SH,
            "-c",
            f'echo hello board; cat "{QEMU / "trace.txt"}" > "{root}/sys/kernel/tracing/trace"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "command.log").read_text() == "hello board\n"
    assert (out / "command-exit-code.txt").read_text().strip() == "0"
    results = (out / "probe-results.txt").read_text()
    assert "event iommu: OK" in results and "event dma: ABSENT" in results
    assert "probe socmem/alloc_iova_fast: OK" in results
    assert "probe socmem/dma_map_page_attrs: NO-SYMBOL (dma_map_page_attrs)" in results
    t = root / "sys/kernel/tracing"
    assert (t / "events/iommu/enable").read_text().strip() == "0"  # disabled again
    assert "p:socmem/alloc_iova_fast alloc_iova_fast" in (out / "kprobe_events.txt").read_text()
    assert "-:socmem/alloc_iova_fast" in (t / "kprobe_events").read_text()  # removed again
    assert "socmem: command end" in (t / "trace_marker").read_text()
    assert (out / "trace.txt").read_text() == (QEMU / "trace.txt").read_text()
    assert (out / "dma_buf-bufinfo.txt").read_text().startswith("\nDma-buf Objects:") or (
        "Dma-buf Objects:" in (out / "dma_buf-bufinfo.txt").read_text()
    )
    assert "group 7 type=DMA devices: 0000:00:06.0" in (out / "iommu_groups.txt").read_text()
    assert (out / "fdt.dtb").read_bytes()[:4] == b"\xd0\x0d\xfe\xed"
    with tarfile.open(f"{out}.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"cap/trace.txt", "cap/dmesg.txt", "cap/dma_buf-bufinfo.txt", "cap/fdt.dtb"} <= names


def test_extra_probe_file(tmp_path: Path) -> None:
    lines = read_probe_file(need(QEMU_REPLAY / "kprobe_events.txt"))
    assert lines[0].startswith("p:dmakp/dma_alloc_contiguous")
    script = capture_script(extra_probes=lines)
    assert "r64:dmakp/alloc_iova_fast_ret alloc_iova_fast pfn=$retval:x64" in script
    bad = tmp_path / "bad.txt"
    bad.write_text("# comment\nnot a probe\n")
    with pytest.raises(InputError, match=r"bad.txt:2: not a kprobe definition"):
        read_probe_file(bad)


def test_cli_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture"]) == 0
    assert capsys.readouterr().out.startswith("#!/bin/sh")
    target = tmp_path / "cap.sh"
    assert main(["capture", "-o", str(target), "--buffer-kb", "4096"]) == 0
    assert "BUFFER_KB:-4096" in target.read_text()
    assert main(["capture", "-o", str(target)]) == 2  # exists, no --force
    assert main(["capture", "--probes", str(tmp_path / "missing.txt")]) == 2


def test_replay_profile_replaces_same_named_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from socmem.trace.capture import probe_event_name, profile_probes

    lines = profile_probes("linux-6.1-arm64")
    assert any("iommu_setup_dma_ops" in ln for ln in lines)
    script = capture_script(extra_probes=lines)
    defined = [ln for ln in script.splitlines() if ln.startswith(("p:", "r:", "p64:", "r64:"))]
    names = [probe_event_name(ln) for ln in defined]
    assert len(names) == len(set(names))  # nothing traced twice
    assert "r64:dmakp/alloc_iova_fast_ret alloc_iova_fast pfn=$retval:x64" in defined
    assert main(["capture", "--profile", "linux-6.1-arm64"]) == 0
    assert "dmakp/iommu_dma_alloc_iova" in capsys.readouterr().out
    assert main(["capture", "--profile", "linux-9.9"]) == 2
