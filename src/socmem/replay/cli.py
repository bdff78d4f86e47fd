"""``socmem replay CAPTURE [--soc SOC] [--set K=V ...] [--json] [--html OUT] [--force]``.

Replays a captured kernel DMA history on the model and prints, per kind of call, how many
of the kernel's results the model reproduced, each divergence with the calls before it on
that domain and CPU, and the SMMU command totals next to QEMU's log.  With ``--set`` the
same history is also replayed on a changed model and the deltas are printed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from socmem.cliutil import ForceOpt, err, print_json
from socmem.errors import InputError
from socmem.replay.capture import Capture, load_capture
from socmem.replay.engine import KINDS, ReplayConfig, ReplayResult, replay
from socmem.replay.whatif import METRIC_LABELS, WhatIf, parse_sets, run_whatif

__all__ = ["render_html", "replay_app", "replay_cmd", "resolve_soc"]

replay_app = typer.Typer(
    help="Replay a real kernel's DMA history on the model: differential, then what-if.",
)


def _console() -> Console:
    c = Console(highlight=False)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c = Console(highlight=False, width=130)
    return c


def resolve_soc(spec: str | None, cap: Capture) -> Any:
    """The SoC to boot: ``--soc`` (built-in name, YAML or DTB), else the capture's own
    device tree blob; InputError when there is neither."""
    from socmem.soc.loader import load_soc

    if spec:
        return load_soc(spec)
    if cap.dtb:
        from socmem.soc.dt_import import import_dtb

        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "fdt.dtb"
            p.write_bytes(cap.dtb)
            return import_dtb(p).soc
    raise InputError(
        "the capture holds no device tree (fdt.dtb)",
        where=cap.source,
        expected="--soc SOC: the board's device tree blob, an SoC YAML or a built-in SoC",
    )


def print_result(res: ReplayResult, out: Console, whatif: WhatIf | None = None) -> None:
    """The console report: agreement per kind, SMMU commands, divergences, what-if."""
    out.print(
        f"[bold]replay[/] {res.source}: {res.events} events, {res.calls} calls, "
        f"{'strict' if res.strict else 'lazy'} invalidation, replayed in {res.seconds:.2f} s"
    )
    t = Table(title="agreement, kernel vs model", title_justify="left")
    t.add_column("kind")
    t.add_column("matched", justify="right")
    t.add_column("total", justify="right")
    t.add_column("not compared", justify="right")
    t.add_column("what is compared")
    for k, a in res.agreement.items():
        if k.startswith("smmu_cmd:"):
            continue
        mark = "" if a.ok else "[red]"
        t.add_row(
            k,
            f"{mark}{a.matched}",
            str(a.total),
            str(a.not_compared or ""),
            escape(KINDS.get(k, a.note)),
        )
    out.print(t)
    if res.commands:
        ct = Table(title="SMMU commands per kind", title_justify="left")
        cols = [c for c in ("model", "kernel_trace", "qemu") if c in res.commands]
        ct.add_column("command")
        for c in cols:
            ct.add_column(c, justify="right")
        ct.add_column("")
        kinds = sorted({k for c in cols for k in res.commands[c]})
        for k in kinds:
            vals = [res.commands[c].get(k, 0) for c in cols]
            ag = res.agreement.get(f"smmu_cmd:{k}")
            flag = (
                ""
                if ag is None
                else ("=" if ag.ok and ag.total else ag.note if not ag.total else "DIFFERS")
            )
            ct.add_row(k.removeprefix("SMMU_CMD_"), *map(str, vals), flag)
        out.print(ct)
        if res.commands_note:
            out.print(f"  {res.commands_note}")
    if res.missing_probes:
        out.print("[yellow]missing probes[/] (their calls cannot be replayed or compared):")
        for p, what in res.missing_probes.items():
            out.print(f"  {p}: {what}")
    if res.divergences:
        out.print(f"[red]{len(res.divergences)} divergence(s)[/]")
        for d in res.divergences[:20]:
            out.print(f"  [bold]{d.kind}[/] line {d.line} cpu{d.cpu} {d.device or ''}")
            out.print(f"    call:   {d.call}", markup=False)
            out.print(f"    kernel: {d.kernel}", markup=False)
            out.print(f"    model:  {d.model}", markup=False)
            out.print(f"    why:    {d.explanation}", markup=False)
            for line in d.context:
                out.print(f"      before: {line}", markup=False)
    elif res.agreement:
        out.print("[green]the model reproduced every compared result[/]")
    for n in res.notes[:10]:
        out.print(f"  note: {n}", markup=False)
    if whatif is not None:
        wt = Table(title=f"what-if {whatif.changed.config.describe()}", title_justify="left")
        wt.add_column("metric")
        wt.add_column("baseline", justify="right")
        wt.add_column("what-if", justify="right")
        wt.add_column("delta", justify="right")
        for _k, label, b, w, dlt in whatif.rows:
            wt.add_row(label, _num(b), _num(w), ("+" if dlt > 0 else "") + _num(dlt))
        out.print(wt)
        for n in whatif.changed.notes[-3:]:
            out.print(f"  note: {n}", markup=False)


def _num(v: float) -> str:
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}"
    return f"{int(v):,}"


def render_html(res: ReplayResult, whatif: WhatIf | None = None) -> str:
    """A self-contained HTML report with tables and plots."""
    from socmem.report.html import HtmlReport, bar_svg, line_svg

    h = HtmlReport("socmem replay", res.source)
    h.fact("events", res.events)
    h.fact("calls", res.calls)
    h.fact("invalidation", "strict" if res.strict else "lazy")
    h.fact("divergences", len(res.divergences))
    s = h.section("Agreement per kind (kernel vs model)")
    s.table(
        ["kind", "matched", "total", "not compared", "what is compared"],
        [
            [k, a.matched, a.total, a.not_compared, KINDS.get(k, a.note)]
            for k, a in res.agreement.items()
        ],
    )
    if res.commands:
        cols = [c for c in ("model", "kernel_trace", "qemu") if c in res.commands]
        kinds = sorted({k for c in cols for k in res.commands[c]})
        s2 = h.section("SMMU commands per kind")
        s2.table(
            ["command", *cols],
            [[k, *(res.commands[c].get(k, 0) for c in cols)] for k in kinds],
            note=res.commands_note,
        )
    if res.missing_probes:
        h.section("Missing probes").table(
            ["probe", "what is lost"], list(res.missing_probes.items())
        )
    if res.divergences:
        s3 = h.section("Divergences")
        for d in res.divergences[:100]:
            s3.text(f"{d.kind} at line {d.line} (cpu{d.cpu}, {d.device}): {d.call}")
            s3.table(
                ["", ""],
                [["kernel", d.kernel], ["model", d.model], ["why", d.explanation]]
                + [["before", c] for c in d.context],
            )
    if res.notes:
        s4 = h.section("Notes")
        for n in res.notes[:50]:
            s4.text(n)
    base = whatif.baseline if whatif is not None else res
    s5 = h.section("IOVA space and invalidations over time")
    series: dict[str, list[tuple[float, float]]] = {}
    for name, pts in base.metrics.iova_used_series.items():
        series[f"{name} baseline"] = pts
    if whatif is not None:
        for name, pts in whatif.changed.metrics.iova_used_series.items():
            series[f"{name} what-if"] = pts
    s5.plot(
        line_svg(series, xlabel="time (s)", ylabel="IOVA used (KiB)"), "IOVA space used per domain"
    )
    inv = {"baseline": base.metrics.tlbi_series}
    if whatif is not None:
        inv["what-if"] = whatif.changed.metrics.tlbi_series
    s5.plot(
        line_svg(inv, xlabel="time (s)", ylabel="TLBI commands (cumulative)"),
        "Invalidation commands",
    )
    if whatif is not None:
        s6 = h.section(f"What-if {whatif.changed.config.describe()}")
        s6.table(
            ["metric", "baseline", "what-if", "delta"],
            [[lab, b, w, d] for _k, lab, b, w, d in whatif.rows],
        )
        keys = [
            "pgtable_pages_peak",
            "invalidation_commands",
            "iotlb_misses",
            "tree_allocations",
            "cma_failures",
        ]
        bm, wm = whatif.baseline.metrics.scalars(), whatif.changed.metrics.scalars()
        s6.plot(
            bar_svg(
                [METRIC_LABELS[k] for k in keys],
                {"baseline": [bm[k] for k in keys], "what-if": [wm[k] for k in keys]},
                log=True,
            ),
            "Baseline vs what-if",
        )
        for n in whatif.changed.notes[-5:]:
            s6.text(n)
    return h.render()


class DivergedExit(typer.Exit):
    """Exit 1: ``--fail-on-divergence`` and the model disagreed with the kernel."""

    def __init__(self) -> None:
        super().__init__(code=1)


@replay_app.command("replay")
def replay_cmd(
    capture: Annotated[
        Path, typer.Argument(help="trace.txt, a capture directory or a socmem capture tarball")
    ],
    soc: Annotated[
        str | None,
        typer.Option(
            "--soc",
            help="SoC: device tree blob, YAML or built-in name (default: the capture's fdt.dtb)",
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="what-if KEY=VALUE: granule, invalidation, dma_mask, iova_limit, cma_size,"
            " rcache, iotlb_entries",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here")] = None,
    force: ForceOpt = False,
    fail_on_divergence: Annotated[
        bool,
        typer.Option(
            "--fail-on-divergence", help="Exit 1 when the model disagrees with the kernel"
        ),
    ] = False,
) -> None:
    """Replay CAPTURE on the model call for call; with --set, again on a changed model."""
    from socmem.outfile import check_output_path, write_atomic

    cfg: ReplayConfig = parse_sets(sets)
    if html is not None:
        check_output_path(html, force)
    cap = load_capture(capture)
    if cap.events == 0:
        raise InputError(
            "the trace holds no events", where=cap.source, expected="an ftrace capture"
        )
    soc_obj = resolve_soc(soc, cap)
    res = replay(cap, soc_obj)
    whatif = run_whatif(cap, soc_obj, cfg, baseline=res) if cfg != ReplayConfig() else None
    if as_json:
        doc: dict[str, Any] = {"replay": res.to_dict()}
        if whatif is not None:
            doc["whatif"] = whatif.to_dict()
        print_json(doc)
    else:
        print_result(res, _console(), whatif)
    if html is not None:
        write_atomic(html, render_html(res, whatif), force=force)
        err.print(f"wrote {html}")
    if fail_on_divergence and res.divergences:
        raise DivergedExit()
