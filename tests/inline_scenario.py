"""Run a small scenario written inline in a test (shared by the device tests)."""

from __future__ import annotations

from pathlib import Path

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
    """Write the scenario (one flow-style YAML mapping per buffer, stage and fault) and run it."""
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
