"""``socmem scenario``: list, show, check the use cases; publish their JSON Schema."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from socmem.cliutil import ForceOpt, err, write_or_print
from socmem.scenario.loader import (
    DEFAULT_SCENARIO,
    builtin_scenarios,
    check_against_soc,
    load_scenario,
)
from socmem.scenario.schema import Scenario

scenario_app = typer.Typer(
    help="Use cases: list the built-ins, show or check one, publish the JSON Schema.",
    no_args_is_help=True,
)
_out = Console(highlight=False, soft_wrap=True)

ScenarioArg = Annotated[
    str | None,
    typer.Argument(help="A built-in scenario name or a YAML file (default: default)"),
]


@scenario_app.command("list")
def scenario_list() -> None:
    """The built-in scenarios, with the SoC each runs on."""
    for name in builtin_scenarios():
        s = load_scenario(name).scenario
        first = s.description.strip().splitlines()[0] if s.description else ""
        mark = " (default)" if name == DEFAULT_SCENARIO else ""
        _out.print(f"[bold]{name}[/bold]{mark} on {s.soc}: {first}")


@scenario_app.command("show")
def scenario_show(scenario: ScenarioArg = None) -> None:
    """Print a scenario's YAML (a built-in's text, to copy and edit)."""
    spec = scenario or DEFAULT_SCENARIO
    if spec in builtin_scenarios():
        res = resources.files("socmem.scenario") / "builtin" / f"{spec}.yaml"
        sys.stdout.write(res.read_text(encoding="utf-8"))
        return
    load_scenario(spec)  # validate, with line numbers on error
    sys.stdout.write(Path(spec).read_text(encoding="utf-8"))


@scenario_app.command("check")
def scenario_check(
    scenario: ScenarioArg = None,
    soc: Annotated[str | None, typer.Option(help="Check against this SoC instead")] = None,
) -> None:
    """Validate a scenario and check that its SoC has every master it uses."""
    from socmem.soc.loader import load_soc

    loaded = load_scenario(scenario)
    s = loaded.scenario
    check_against_soc(loaded, load_soc(soc or s.soc))
    for w in loaded.warnings:
        err.print(f"warning: {w}", markup=False)
    _out.print(
        f"{scenario or DEFAULT_SCENARIO}: OK ({len(s.stages)} stages, {len(s.buffers)} pools, "
        f"on {soc or s.soc})"
    )


@scenario_app.command("schema")
def scenario_schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema here (default: stdout)")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Print the JSON Schema of scenario files (for editors: yaml-language-server)."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://socmem.dev/schema/scenario-v1.json"
    write_or_print(json.dumps(schema, indent=2) + "\n", output, force)
