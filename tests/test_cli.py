"""The socmem command as a user runs it: exit codes, no tracebacks, no lost files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from socmem.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_soc_show_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "soc", "show")
    assert code == 0
    assert "reference-mobile" in out
    assert "51.2GB/s peak" in out
    assert "smmu0" in out and "0x2100" in out
    assert "linux,cma" in out


@pytest.mark.parametrize("name", ["reference-mobile", "midrange-lpddr4x", "nommu-imx8m"])
def test_soc_show_builtins_json(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, _ = run(capsys, "soc", "show", name, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["name"] == name
    assert data["dram"]["peak_bandwidth"] > 1e10
    assert data["masters"]


def test_nommu_reach_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "soc", "show", "nommu-imx8m")
    assert code == 0
    assert "Masters without an IOMMU" in out
    assert "3GiB of 4GiB DRAM" in out


def test_soc_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "soc", "list")
    assert code == 0 and "reference-mobile (default)" in out


def test_bad_input_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndram:\n  type: LPDDR5\n  data_rate: fast\n  channels: 2\n")
    code, _, err = run(capsys, "soc", "show", str(bad))
    assert code == 2
    assert f"{bad}:4: dram.data_rate: cannot read a data rate 'fast'" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, "soc", "show", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such file or built-in SoC" in err


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "soc", "show", "--no-such-option")
    assert code == 2
    assert "No such option" in err


def test_schema_written_atomically_and_not_overwritten(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "soc.schema.json"
    code, _, _ = run(capsys, "soc", "schema", "-o", str(target))
    assert code == 0
    schema = json.loads(target.read_text())
    assert schema["title"] == "Soc"
    assert "masters" in schema["properties"]
    target.write_text("precious")
    code, _, err = run(capsys, "soc", "schema", "-o", str(target))
    assert code == 2 and "--force" in err
    assert target.read_text() == "precious"
    code, _, _ = run(capsys, "soc", "schema", "-o", str(target), "--force")
    assert code == 0 and json.loads(target.read_text())["title"] == "Soc"
    assert [p.name for p in tmp_path.iterdir()] == ["soc.schema.json"]  # no temp files left


def test_console_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "socmem.cli", "soc", "check", "nommu-imx8m"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
