"""``socmem plan SCENARIO [--soc SOC]``: plan every buffer pool, print a table, write JSON.

Exit codes: 0 when every pool can be shared without a copy, 1 when some cannot (the
conflicts and ranked fixes are printed), 2 on bad input (raised as InputError).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from socmem.cliutil import ForceOpt
from socmem.outfile import write_atomic
from socmem.plan.planner import ScenarioPlan


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def render(plan: ScenarioPlan, console: Console) -> None:
    """A table per scenario: one row per pool, then the reasons, conflicts and fixes."""
    t = Table(title=f"plan: {plan.scenario} on {plan.soc}", show_lines=True)
    columns = (
        "pool", "users (usage)", "format/modifier", "stride", "size x n", "heap",
        "CPU", "IOMMU pages", "footprint", "maint/frame", "map/buffer", "GB/s raw/comp",
    )  # fmt: skip
    for col in columns:
        t.add_column(col)
    for p in plan.pools.values():
        users = "\n".join(f"{u.master} ({u.usage.value})" for u in p.users)
        pages = ",".join(sorted({s for m in p.iommu for s in m.page_sizes})) or "-"
        t.add_row(
            p.name + ("" if p.feasible else "\n[red]INFEASIBLE[/red]"),
            users,
            f"{p.format}/{p.modifier}",
            str(p.layout.stride),
            f"{p.size} x {p.count}",
            p.heap,
            p.cpu_caching,
            pages,
            _mib(p.footprint),
            f"{p.maintenance_per_frame_s * 1e6:.0f} us",
            f"{p.mapping_cost_per_buffer_s * 1e6:.0f} us",
            f"{p.bandwidth_raw / 1e9:.2f}/{p.bandwidth_compressed / 1e9:.2f}",
        )
    console.print(t)
    for p in plan.pools.values():
        console.print(f"[bold]{p.name}[/bold]", markup=True)
        for k, why in p.reasons.items():
            console.print(f"  {k}: {why}", markup=False)
        for c in p.conflicts:
            console.print(f"  CONFLICT [{c.kind}] {c.message}", markup=False)
        for i, f in enumerate(p.fixes, 1):
            extra = f" (not applicable: {f.why_not})" if not f.applicable else ""
            console.print(f"  fix {i}: {f.description} [{f.cost_text()}]{extra}", markup=False)


def plan_cmd(
    scenario: Annotated[
        str | None, typer.Argument(help="A built-in scenario or a YAML file")
    ] = None,
    soc: Annotated[str | None, typer.Option("--soc", help="SoC (default: the scenario's)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the plan JSON here")
    ] = None,
    force: ForceOpt = False,
) -> int:
    """Plan how every buffer pool of a scenario must be allocated, or why it cannot be shared."""
    from socmem.plan.planner import plan_scenario
    from socmem.scenario.loader import check_against_soc, load_scenario
    from socmem.soc.loader import load_soc

    loaded = load_scenario(scenario)
    soc_obj = load_soc(soc or loaded.scenario.soc)
    check_against_soc(loaded, soc_obj)
    err = Console(stderr=True, highlight=False)
    for w in loaded.warnings:
        err.print(f"warning: {w}", markup=False)
    plan = plan_scenario(loaded.scenario, soc_obj)
    if as_json:
        sys.stdout.write(plan.to_json())
    else:
        render(plan, Console(highlight=False, width=200))
    if output is not None:
        write_atomic(output, plan.to_json(), force=force)
        err.print(f"wrote {output}", markup=False)
    code = 0 if plan.feasible else 1
    if code:
        raise typer.Exit(code)
    return code
