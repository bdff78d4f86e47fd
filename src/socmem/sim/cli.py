"""``socmem run [SCENARIO] [--soc SOC] [--duration T]``: socmem's main job.

Runs a scenario (the built-in ``default`` without arguments) and writes, into ``--out``
(default ``socmem-out/<scenario>/``): ``results.json``, ``report.html`` (self-contained)
and ``trace.json`` (opens in ui.perfetto.dev).  Existing files are never replaced
without ``--force``: the run refuses before it starts, naming the file (exit 2).  A
progress bar is shown on stderr when it is a terminal; the summary goes to stdout, or
the results as JSON with ``--json``.  A periodic pipeline is simulated until it repeats
itself and extrapolated from there (:mod:`socmem.sim.fastforward`; the summary says so);
``--no-fast-forward`` simulates every nanosecond.  Exit codes: 0 done; 1 with ``--strict`` and
findings of severity error; 2 bad input or an output that exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from socmem.cliutil import print_json
from socmem.errors import EXIT_FINDINGS, InputError
from socmem.outfile import check_output_path, write_atomic

__all__ = ["OUTPUT_FILES", "run_command"]

OUTPUT_FILES = ("results.json", "report.html", "trace.json")


class FindingsExit(Exception):
    """``--strict`` with error findings: exit 1 (``socmem.cli.main`` calls ``show``)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, errors: int) -> None:
        super().__init__(f"{errors} finding(s) of severity error")

    def show(self) -> None:
        """Print the reason on stderr."""
        Console(stderr=True).print(f"socmem: {self}", markup=False)


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from socmem.units import parse_duration

    try:
        value = float(parse_duration(text))
    except ValueError as exc:
        raise InputError(str(exc), where="--duration", expected="e.g. 2s, 500ms") from None
    if value <= 0:
        raise InputError("must be positive", where="--duration", expected="e.g. 2s, 500ms")
    return value


def run_command(
    scenario: Annotated[
        str | None,
        typer.Argument(
            help="A built-in scenario name or a YAML file (default: the built-in 'default')",
            show_default=False,
        ),
    ] = None,
    soc: Annotated[
        str | None,
        typer.Option("--soc", help="SoC (built-in name or file); default: the scenario's"),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option("--duration", "-t", help="Simulated time, e.g. 2s (default: the scenario's)"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default socmem-out/<scenario>/)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite existing outputs")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON on stdout")
    ] = False,
    qos: Annotated[
        bool | None, typer.Option("--qos/--no-qos", help="Override the scenario's interconnect QoS")
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when there are findings of severity error")
    ] = False,
    fast_forward: Annotated[
        bool,
        typer.Option(
            "--fast-forward/--no-fast-forward",
            help="Extrapolate once the pipeline repeats itself (default) or simulate it all",
        ),
    ] = True,
) -> None:
    """Run a use case on an SoC: bandwidth, latency, drops, underflows, copies, findings."""
    from socmem.report.run_console import print_run_summary
    from socmem.report.run_html import render_run_html
    from socmem.scenario.loader import load_scenario
    from socmem.sim.perfetto import write_run_trace
    from socmem.sim.runner import run_scenario

    secs = _duration(duration)
    loaded = load_scenario(scenario)
    outdir = out if out is not None else Path("socmem-out") / loaded.scenario.name
    if outdir.exists() and not outdir.is_dir():
        raise InputError("is not a directory", where=str(outdir), expected="an output directory")
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {name: outdir / name for name in OUTPUT_FILES}
    for p in paths.values():  # refuse before running, naming the file
        check_output_path(p, force)

    err = Console(stderr=True, highlight=False)
    progress_cb: Any = None
    prog: Any = None
    if err.is_terminal:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        prog = Progress(
            TextColumn(f"simulating {loaded.scenario.name}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        task = prog.add_task("run", total=1.0)
        prog.start()

        def progress_cb(frac: float) -> None:
            prog.update(task, completed=frac)

    try:
        run = run_scenario(
            loaded,
            soc=soc,
            duration_s=secs,
            qos=qos,
            progress=progress_cb,
            fast_forward=fast_forward,
        )
    finally:
        if prog is not None:
            prog.stop()
    result = run.result
    data = result.to_dict()
    write_atomic(paths["results.json"], json.dumps(data, indent=1, default=str) + "\n", force)
    write_atomic(paths["report.html"], render_run_html(result), force)
    write_run_trace(run, paths["trace.json"], force)
    if as_json:
        print_json(data)
    else:
        console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
        print_run_summary(result, console)
        console.print(f"wrote {', '.join(str(p) for p in paths.values())}")
    for w in loaded.warnings:
        err.print(f"socmem: warning: {w}", markup=False)
    if strict:
        from socmem.check.finding import Severity

        n = sum(1 for f in result.findings if f.severity >= Severity.ERROR)
        if n:
            raise FindingsExit(n)
