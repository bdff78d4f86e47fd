"""Scenario descriptions: built-ins, structure rules and SoC checks with line numbers."""

from __future__ import annotations

import textwrap

import pytest

from socmem.errors import InputError
from socmem.scenario.loader import (
    builtin_scenarios,
    check_against_soc,
    load_scenario,
)
from socmem.scenario.schema import StageType
from socmem.soc.loader import load_soc

BASE = """\
name: t
buffers:
  - {name: a, width: 64, height: 64, format: NV12}
  - {name: b, size: 4KiB}
stages:
  - {name: cam, type: source, master: cam0, fps: 30, outputs: [a]}
  - {name: isp, type: process, master: isp, inputs: [a], outputs: [b]}
  - {name: app, type: cpu, master: cpu, inputs: [b]}
"""


def load_text(tmp_path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text))
    return load_scenario(str(p))


def errors(tmp_path, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        load_text(tmp_path, text)
    return info.value.render().splitlines()


def test_builtins_load_and_fit_their_soc() -> None:
    assert {"default", "saturated", "nommu-contiguous", "bug-skip-sync"} <= set(builtin_scenarios())
    for name in builtin_scenarios():
        loaded = load_scenario(name)
        check_against_soc(loaded, load_soc(loaded.scenario.soc))
        assert not loaded.warnings, name


def test_default_is_the_issue_use_case() -> None:
    s = load_scenario().scenario
    sources = [st for st in s.stages if st.type is StageType.SOURCE]
    assert len(sources) == 4 and all(st.fps == 30 for st in sources)
    npu = s.stage("npu")
    assert npu is not None and npu.inputs == ["yuv0", "yuv1", "yuv2", "yuv3"]
    disp = s.stage("preview")
    assert disp is not None and disp.refresh == 60
    raw0 = s.pool("raw0")
    assert raw0 is not None and raw0.frame_bytes == 3840 * 2160 * 5 // 4


def test_unknown_pool_and_two_producers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("inputs: [b]}", "inputs: [c]}")
    (line,) = [x for x in errors(tmp_path, text) if "unknown buffer pool" in x]
    assert line.startswith(f"{tmp_path / 's.yaml'}:8: stages[2].inputs[0]: unknown buffer pool 'c'")
    text = BASE.replace("outputs: [b]}", "outputs: [a]}")
    lines = errors(tmp_path, text)
    assert any("pool 'a' needs exactly one producer (has cam, isp)" in x for x in lines)


def test_stage_shape_rules(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = BASE.replace("fps: 30, ", "")
    assert any("a source stage needs 'fps'" in x for x in errors(tmp_path, text))
    text = BASE.replace("{name: b, size: 4KiB}", "{name: b, size: 4KiB, width: 3}")
    assert any("not both" in x for x in errors(tmp_path, text))
    text = BASE.replace("format: NV12", "format: NV99")
    assert any("unknown pixel format 'NV99'" in x for x in errors(tmp_path, text))


def test_cycle_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = BASE + "  - {name: loop, type: process, master: gpu, inputs: [b], outputs: [c]}\n"
    text = text.replace(
        "- {name: b, size: 4KiB}", "- {name: b, size: 4KiB}\n  - {name: c, size: 4KiB}"
    )
    text = text.replace("inputs: [a], outputs: [b]}", "inputs: [a, c], outputs: [b]}")
    assert any("cycle: isp -> loop -> isp" in x for x in errors(tmp_path, text))


def test_soc_check_names_the_master(tmp_path) -> None:  # type: ignore[no-untyped-def]
    loaded = load_text(tmp_path, BASE.replace("master: isp", "master: isp9"))
    with pytest.raises(InputError) as info:
        check_against_soc(loaded, load_soc("reference-mobile"))
    assert (
        ":7: stages[1].master: SoC 'reference-mobile' has no master 'isp9'" in info.value.render()
    )


def test_missing_scenario_file() -> None:
    with pytest.raises(InputError, match="no such file or built-in scenario"):
        load_scenario("/nonexistent.yaml")


def test_scenario_cli(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from socmem.cli import main

    assert main(["scenario", "list"]) == 0
    assert "default (default) on reference-mobile" in capsys.readouterr().out
    assert main(["scenario", "show", "saturated"]) == 0
    assert "name: saturated" in capsys.readouterr().out
    assert main(["scenario", "check", "nommu-contiguous"]) == 0
    assert "OK (4 stages, 2 pools, on nommu-imx8m)" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("master: isp", "master: isp9"))
    assert main(["scenario", "check", str(bad), "--soc", "reference-mobile"]) == 2
    assert "has no master 'isp9'" in capsys.readouterr().err
    out = tmp_path / "scenario.schema.json"
    assert main(["scenario", "schema", "-o", str(out)]) == 0
    schema = json.loads(out.read_text())
    assert schema["title"] == "Scenario" and "stages" in schema["properties"]
    assert main(["scenario", "schema", "-o", str(out)]) == 2  # exists, no --force
