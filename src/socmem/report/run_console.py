"""The terminal summary of ``socmem run``: rich tables of a
:class:`~socmem.sim.metrics.RunResult`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from socmem.check.finding import Severity
from socmem.sim.metrics import RunResult
from socmem.units import format_size

__all__ = ["print_run_summary"]


def _gbps(x: float) -> str:
    return f"{x / 1e9:.3f}"


def print_run_summary(result: RunResult, console: Console, max_findings: int = 12) -> None:
    """Print the run's headline, bandwidth, stages, latency, copies, TLB and findings."""
    r = result
    console.print(
        f"[bold]socmem run[/bold] {r.scenario} on {r.soc}: {r.duration_s:g} s simulated "
        f"in {r.wall_s:.2f} s ({r.speed:.0f}x real time), QoS {'on' if r.qos else 'off'}"
    )
    if r.fast_forward is not None:
        console.print(f"Fast-forward: {r.fast_forward.summary()}")
    console.print(
        f"DRAM {r.dram_capacity_bps / 1e9:.1f} GB/s usable of {r.dram_peak_bps / 1e9:.1f} "
        f"GB/s peak: utilisation avg {r.dram_utilisation_avg:.1%}, peak "
        f"{r.dram_utilisation_peak:.1%}"
    )

    t = Table(title="Bandwidth per master (GB/s)", title_justify="left")
    for c in ("master", "qos", "read avg", "write avg", "peak", "steady", "closed form", "Δ"):
        t.add_column(c, justify="left" if c in ("master", "qos") else "right")
    masters = sorted({b.master for b in r.bandwidth})
    for m in masters:
        rd = next((b for b in r.bandwidth if b.master == m and b.direction == "read"), None)
        wr = next((b for b in r.bandwidth if b.master == m and b.direction == "write"), None)
        steady = r.master_bps(m)
        cf = r.closed_form_bps.get(m)
        delta = f"{(steady / cf - 1) * 100:+.2f}%" if cf else "-"
        peak = max((b.peak_bps for b in r.bandwidth if b.master == m), default=0.0)
        any_bw = rd or wr
        qos = any_bw.qos if any_bw is not None else ""
        t.add_row(
            m,
            qos,
            _gbps(rd.average_bps) if rd else "-",
            _gbps(wr.average_bps) if wr else "-",
            _gbps(peak),
            _gbps(steady),
            _gbps(cf) if cf is not None else "-",
            delta,
        )
    console.print(t)

    t = Table(title="Stages", title_justify="left")
    for c in (
        "stage",
        "type",
        "master",
        "jobs",
        "dropped",
        "underflows",
        "backlog",
        "buf wait ms",
        "p50 ms",
        "p99 ms",
        "max ms",
    ):
        t.add_column(c, justify="left" if c in ("stage", "type", "master") else "right")
    lat = {x.stage: x for x in r.latency}
    for s in r.stages:
        x = lat.get(s.stage)
        t.add_row(
            s.stage,
            s.type,
            s.master,
            str(s.jobs),
            _warn(s.dropped),
            _warn(s.underflows),
            str(s.backlog_max),
            f"{s.buffer_wait_ms:.1f}",
            f"{x.p50_ms:.2f}" if x else "-",
            f"{x.p99_ms:.2f}" if x else "-",
            f"{x.max_ms:.2f}" if x else "-",
        )
    console.print(t)

    if r.copies or r.copy_paths:
        t = Table(title="Copies (a device could not reach a buffer)", title_justify="left")
        for c in ("pool", "stage", "copies", "bytes", "cpu ms", "why"):
            t.add_column(c, justify="right" if c in ("copies", "bytes", "cpu ms") else "left")
        for cs in r.copies:
            t.add_row(
                cs.pool,
                cs.stage,
                str(cs.copies),
                format_size(cs.bytes, exact=False),
                f"{cs.cpu_ms:.2f}",
                cs.reason,
            )
        if not r.copies:
            for p in r.copy_paths:
                t.add_row(p["pool"], p["device"], "0", "0", "0", p["reason"])
        console.print(t)
    else:
        console.print(
            f"Zero copy: {r.zero_copy_paths} device access paths, every one direct "
            "(0 copies, 0 bytes copied)"
        )

    if r.tlb:
        t = Table(title="IOTLB", title_justify="left")
        for c in ("master", "transactions", "misses", "hit rate", "walk traffic", "walk stall"):
            t.add_column(c, justify="left" if c == "master" else "right")
        for tl in r.tlb:
            t.add_row(
                tl.master,
                f"{tl.transactions:,}",
                f"{tl.misses:,}",
                f"{tl.hit_rate:.2%}",
                f"{tl.walk_bps / 1e6:.1f} MB/s",
                f"{tl.walk_stall_ms:.2f} ms" if tl.walk_stall_ms else "-",
            )
        console.print(t)

    cm = r.cache_maintenance
    console.print(
        f"Cache maintenance: {cm.get('cpu_ms', 0):.2f} ms CPU "
        f"({cm.get('cpu_share', 0):.3%} of one core); CPU reads {cm.get('cpu_read_ms', 0):.2f} ms"
    )
    mp = r.mapping
    if mp:
        console.print(
            f"DMA mappings: {mp.get('map_calls', 0):.0f} made once at set-up "
            f"({mp.get('iommu_pages_mapped', 0):,.0f} IOMMU pages, "
            f"{mp.get('smmu_tlbi_commands', 0):.0f} SMMU TLBI commands, "
            f"~{mp.get('setup_cpu_ms', 0):.1f} ms CPU); none per frame"
        )
    if r.footprint_peak:
        parts = [f"{k} {format_size(v, exact=False)}" for k, v in r.footprint_peak.items() if v]
        console.print("Memory footprint (peak): " + ", ".join(parts))

    counts = r.finding_counts()
    if not counts:
        console.print("[green]Findings: none[/green]")
        return
    console.print("[bold]Findings:[/bold] " + ", ".join(f"{k} ×{v}" for k, v in counts.items()))
    worst = sorted(r.findings, key=lambda f: (-int(f.severity), f.time or 0.0))
    for f in worst[:max_findings]:
        color = "red" if f.severity >= Severity.ERROR else "yellow"
        when = f"{f.time * 1e3:9.3f} ms" if f.time is not None else ""
        console.print(
            f"  [{color}]{f.severity}[/{color}] {when} {f.kind}: {escape(f.message)}",
            highlight=False,
        )
    if len(worst) > max_findings:
        console.print(f"  … {len(worst) - max_findings} more in results.json / report.html")


def _warn(n: int) -> str:
    return f"[red]{n}[/red]" if n else "0"
