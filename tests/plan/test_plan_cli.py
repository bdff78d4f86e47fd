import json
from pathlib import Path

import pytest

from socmem.cli import main


def test_plan_builtin_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["plan", "nommu-contiguous", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "cam" in text and "cma" in text and "heap:" in text
    data = json.loads(out.read_text())
    assert data["feasible"] and data["pools"]["cam"]["heap"] == "cma"
    assert main(["plan", "nommu-contiguous", "-o", str(out)]) == 2  # exists, no --force
    assert main(["plan", "nommu-contiguous", "-o", str(out), "--force"]) == 0


def test_plan_json_and_infeasible_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "default", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["soc"] == "reference-mobile"
    bad = tmp_path / "s.yaml"
    bad.write_text(
        "schema_version: 1\nname: p\nsoc: reference-mobile\nbuffers:\n"
        "  - {name: s, width: 1920, height: 1080, format: NV12, heap: 'protected:secure-video'}\n"
        "stages:\n"
        "  - {name: dec, type: decode, master: vdec, outputs: [s]}\n"
        "  - {name: app, type: cpu, master: cpu, inputs: [s]}\n"
    )
    assert main(["plan", str(bad)]) == 1
    assert "CONFLICT [protected]" in capsys.readouterr().out
    assert main(["plan", "no-such-scenario"]) == 2
