"""The ``socmem`` command.

Subcommands grow with the model (DESIGN.md lists run, plan, check, trace, sweep); each
one turns :class:`~socmem.errors.InputError` into a one-line message on stderr and exit
code 2, never a traceback.  Outputs are written atomically and never replace an
existing file without ``--force``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from socmem import __version__
from socmem.cliutil import ForceOpt, err, out, print_json, write_or_print
from socmem.errors import EXIT_INPUT, InputError
from socmem.plan.cli import plan_cmd
from socmem.replay.cli import replay_cmd
from socmem.scenario.cli import scenario_app
from socmem.sim.cli import run_command
from socmem.trace.cli import trace_app

app = typer.Typer(
    name="socmem",
    help="A workbench for the memory architecture of a Linux SoC: DMA, IOMMU/SMMU, caches, "
    "dma-buf and fences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
soc_app = typer.Typer(
    help="SoC descriptions: show, import from a device tree, validate, JSON Schema.",
    no_args_is_help=True,
)
app.add_typer(soc_app, name="soc")
app.add_typer(trace_app, name="trace")
app.add_typer(scenario_app, name="scenario")
app.command("run")(run_command)
app.command("plan")(plan_cmd)
app.command("replay")(replay_cmd)

SocArg = Annotated[
    str | None,
    typer.Argument(
        help="A built-in SoC name, a YAML file or a device tree blob (default: reference-mobile)",
        show_default=False,
    ),
]


@app.command()
def version() -> None:
    """Print socmem's version."""
    out.print(f"socmem {__version__}")


@app.command()
def capture(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the script here (default: stdout)")
    ] = None,
    force: ForceOpt = False,
    probes: Annotated[
        Path | None,
        typer.Option("--probes", help="Extra kprobe_events lines to add (one per line)"),
    ] = None,
    buffer_kb: Annotated[int, typer.Option(help="Trace ring buffer per CPU, KiB")] = 32768,
    profile: Annotated[
        str | None,
        typer.Option(
            help="Add the probes `socmem replay` needs on this kernel build: linux-6.1-arm64"
        ),
    ] = None,
) -> None:
    """Print the shell script that captures a DMA trace, dmesg and dma-buf state on a board."""
    from socmem.trace.capture import capture_script, profile_probes, read_probe_file

    extra = profile_probes(profile) if profile else []
    extra += read_probe_file(probes) if probes else []
    text = capture_script(extra_probes=extra, buffer_kb=buffer_kb)
    write_or_print(text, output, force)
    if output is not None:
        os.chmod(output, 0o755)


@soc_app.command("list")
def soc_list() -> None:
    """List the built-in SoC descriptions."""
    from socmem.soc.loader import DEFAULT_SOC, builtin_names, load_soc

    for name in builtin_names():
        soc = load_soc(name)
        first = soc.description.strip().splitlines()[0] if soc.description else ""
        mark = " (default)" if name == DEFAULT_SOC else ""
        out.print(f"[bold]{name}[/bold]{mark}  {first}")


@soc_app.command("show")
def soc_show(
    soc: SocArg = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
) -> None:
    """Summarise an SoC: memory map, carveouts and CMA, IOMMUs and their masters, DMA reach."""
    from socmem.report.soc_console import print_soc
    from socmem.soc.loader import load_soc_full
    from socmem.soc.summary import summarize

    loaded = load_soc_full(soc)
    if as_json:
        data = summarize(loaded.soc)
        data["warnings"] = loaded.warnings
        print_json(data)
        return
    print_soc(loaded.soc, out, loaded.warnings)


@soc_app.command("check")
def soc_check(
    soc: Annotated[str, typer.Argument(help="A YAML file, a DTB or a built-in name")],
) -> None:
    """Validate an SoC description; print its problems with file and line."""
    from socmem.soc.loader import load_soc_full

    loaded = load_soc_full(soc)
    for w in loaded.warnings:
        err.print(f"warning: {w}")
    out.print(f"{soc}: OK ({loaded.soc.name}: {len(loaded.soc.masters)} masters)")


@soc_app.command("import")
def soc_import(
    dtb: Annotated[
        Path, typer.Argument(help="A flattened device tree blob (.dtb, /sys/firmware/fdt)")
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the YAML here (default: stdout)")
    ] = None,
    force: ForceOpt = False,
    name: Annotated[str | None, typer.Option(help="Name of the SoC (default: from the DT)")] = None,
) -> None:
    """Import an SoC description from a device tree blob; assumptions are listed in the YAML."""
    from socmem.soc.dt_import import import_dtb
    from socmem.soc.loader import dump_soc

    result = import_dtb(dtb, name=name)
    header = (
        f"socmem SoC description imported from {dtb}\n"
        f"Device tree: {result.model}\n"
        "Values a device tree cannot give (bandwidths, TLB sizes, QoS) are per-kind defaults:\n"
        "see 'assumptions' below, review and edit them."
    )
    write_or_print(dump_soc(result.soc, header=header), output, force)
    for w in result.warnings:
        err.print(f"warning: {w}")


@soc_app.command("schema")
def soc_schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema here (default: stdout)")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Print the JSON Schema of SoC descriptions (for editors: yaml-language-server)."""
    from socmem.soc.schema import Soc

    schema = Soc.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://socmem.dev/schema/soc-v1.json"
    write_or_print(json.dumps(schema, indent=2) + "\n", output, force)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning input errors into exit code 2 without a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        rc = app(args=args or ["--help"], standalone_mode=False)
    except InputError as exc:
        err.print(f"socmem: error: {exc.render()}", markup=False)
        return EXIT_INPUT
    except typer.Abort:
        err.print("socmem: aborted")
        return 130
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # usage errors of typer's click (vendored as typer._click in recent typer)
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if isinstance(code, int) and callable(show):
            show()
            return code
        if isinstance(code, int) and type(exc).__name__ == "Exit":
            return code
        if os.environ.get("SOCMEM_DEBUG"):
            raise
        err.print(
            f"socmem: internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in socmem; run with SOCMEM_DEBUG=1 for the traceback",
            markup=False,
        )
        return 70
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
