"""``socmem run`` as a user runs it: outputs, --json, --force, exit codes, no progress bar
when stderr is not a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from socmem.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_default_writes_everything(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    code, stdout, stderr = run(capsys, "run", "--duration", "0.2s", "--out", str(out))
    assert code == 0, stderr
    assert "socmem run default on reference-mobile" in stdout
    assert "Bandwidth per master" in stdout and "Zero copy" in stdout
    assert "simulating" not in stderr  # no progress bar: stderr is not a terminal
    data = json.loads((out / "results.json").read_text())
    assert data["scenario"] == "default" and data["duration_s"] == 0.2
    assert data["copies_total"] == 0
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html") or "<html" in html[:200]
    assert "Bandwidth over time per master" in html
    trace = json.loads((out / "trace.json").read_text())
    phases = {e["ph"] for e in trace["traceEvents"]}
    assert {"X", "C", "s", "f", "M"} <= phases
    names = {
        e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert {"isp", "npu", "display", "cam0"} <= names


def test_second_run_refuses_without_force(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "o"
    assert run(capsys, "run", "-t", "0.1s", "-o", str(out))[0] == 0
    before = (out / "results.json").read_text()
    code, _, stderr = run(capsys, "run", "-t", "0.1s", "-o", str(out))
    assert code == 2
    assert "results.json" in stderr and "file exists" in stderr and "--force" in stderr
    assert (out / "results.json").read_text() == before
    code, _, _ = run(capsys, "run", "-t", "0.1s", "-o", str(out), "--force")
    assert code == 0


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, stdout, _ = run(
        capsys, "run", "nommu-contiguous", "-t", "0.2s", "-o", str(tmp_path), "--json"
    )
    assert code == 0
    data = json.loads(stdout)
    assert data["soc"] == "nommu-imx8m"
    assert data["heaps"] == {"cam": "cma", "bitstream": "cma"}
    assert data["dropped_frames"] == 0


def test_default_out_dir_is_per_scenario(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "run", "-t", "0.1s")[0] == 0
    assert (tmp_path / "socmem-out" / "default" / "results.json").exists()


def test_qos_override_and_strict(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, stdout, stderr = run(
        capsys, "run", "saturated", "-t", "0.2s", "-o", str(tmp_path), "--no-qos", "--strict"
    )
    assert code == 1
    assert "QoS off" in stdout and "sim.display-underflow" in stdout
    assert "finding(s) of severity error" in stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "no-such-scenario"], "no such file or built-in scenario"),
        (["run", "-t", "soon"], "--duration"),
        (["run", "-t", "-1s"], "--duration"),
        (["run", "--soc", "no-such-soc", "-t", "0.1s"], "no-such-soc"),
    ],
)
def test_bad_input_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], needle: str
) -> None:
    code, _, stderr = run(capsys, *args, "-o", str(tmp_path))
    assert code == 2
    assert needle in stderr
    assert "Traceback" not in stderr
