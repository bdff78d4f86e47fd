"""The self-contained HTML report of ``socmem run`` (:class:`~socmem.report.html.HtmlReport`:
tables and inline matplotlib SVG plots, findings at the end)."""

from __future__ import annotations

from socmem.report.html import HtmlReport, bar_svg, histogram_svg, line_svg
from socmem.sim.metrics import RunResult
from socmem.units import format_size

__all__ = ["render_run_html"]


def render_run_html(r: RunResult) -> str:
    """The report page for one run."""
    rep = HtmlReport(
        f"socmem run: {r.scenario}",
        f"on {r.soc}, {r.duration_s:g} s simulated, QoS {'on' if r.qos else 'off'}",
    )
    rep.fact("DRAM usable", f"{r.dram_capacity_bps / 1e9:.1f} GB/s")
    rep.fact(
        "DRAM utilisation avg / peak",
        f"{r.dram_utilisation_avg:.1%} / {r.dram_utilisation_peak:.1%}",
    )
    rep.fact("dropped frames", r.dropped)
    rep.fact("display underflows", r.underflows)
    rep.fact(
        "copies", f"{r.copies_total} ({format_size(sum(c.bytes for c in r.copies), exact=False)})"
    )
    rep.fact("findings", len(r.findings))
    rep.fact("speed", f"{r.speed:.0f}x real time")
    ff = r.fast_forward
    rep.fact("fast-forward", ff.summary() if ff is not None else "none: every period simulated")

    sec = rep.section("Bandwidth")
    masters = sorted({b.master for b in r.bandwidth})
    rows = []
    for m in masters:
        rd = next((b for b in r.bandwidth if b.master == m and b.direction == "read"), None)
        wr = next((b for b in r.bandwidth if b.master == m and b.direction == "write"), None)
        cf = r.closed_form_bps.get(m)
        steady = r.master_bps(m)
        any_bw = rd or wr
        rows.append(
            [
                m,
                any_bw.qos if any_bw is not None else "",
                round(rd.average_bps / 1e9, 4) if rd else 0,
                round(wr.average_bps / 1e9, 4) if wr else 0,
                round(max(b.peak_bps for b in r.bandwidth if b.master == m) / 1e9, 4),
                round(steady / 1e9, 4),
                round(cf / 1e9, 4) if cf is not None else "",
                f"{(steady / cf - 1) * 100:+.2f}%" if cf else "",
            ]
        )
    sec.table(
        [
            "master",
            "QoS",
            "read avg GB/s",
            "write avg GB/s",
            "peak GB/s",
            "steady GB/s",
            "closed form GB/s",
            "Δ",
        ],
        rows,
        note=f"steady window {r.steady_window_s[0]:.3f}–{r.steady_window_s[1]:.3f} s",
    )
    t = r.series.get("t_s", [])
    bw = r.series.get("bandwidth_bps", {})
    sec.plot(
        line_svg(
            {m: list(zip(t, [v / 1e9 for v in vals], strict=True)) for m, vals in bw.items()},
            xlabel="time (s)",
            ylabel="GB/s",
        ),
        "Bandwidth over time per master",
    )
    sec.plot(
        line_svg(
            {
                "DRAM": list(
                    zip(t, [v * 100 for v in r.series.get("dram_utilisation", [])], strict=True)
                )
            },
            xlabel="time (s)",
            ylabel="% of usable bandwidth",
        ),
        "DRAM utilisation",
    )

    sec = rep.section("Stages and frame latency")
    lat = {x.stage: x for x in r.latency}
    sec.table(
        [
            "stage",
            "type",
            "master",
            "stream",
            "jobs",
            "dropped",
            "underflows",
            "backlog max",
            "buffer wait ms",
            "p50 ms",
            "p99 ms",
            "max ms",
        ],
        [
            [
                s.stage,
                s.type,
                s.master,
                lat[s.stage].stream if s.stage in lat else "",
                s.jobs,
                s.dropped,
                s.underflows,
                s.backlog_max,
                s.buffer_wait_ms,
                lat[s.stage].p50_ms if s.stage in lat else "",
                lat[s.stage].p99_ms if s.stage in lat else "",
                lat[s.stage].max_ms if s.stage in lat else "",
            ]
            for s in r.stages
        ],
    )
    sec.plot(
        histogram_svg(
            {k: v for k, v in r.latency_samples.items() if v}, xlabel="frame latency (ms)"
        ),
        "Frame latency histograms (capture start → stage done)"
        + (
            f"; samples of the simulated {ff.from_s:.3g} s (the extrapolated tail repeats "
            "the last hyperperiod's; the table's percentiles count them)"
            if ff is not None
            else ""
        ),
    )

    sec = rep.section("Zero copy")
    if r.copies or r.copy_paths:
        sec.text(
            "Some devices could not reach their buffers; each copy below is charged its "
            "DRAM traffic (cpu master) and CPU time."
        )
        sec.table(
            ["pool", "stage", "copies", "bytes", "CPU ms", "why"],
            [[c.pool, c.stage, c.copies, c.bytes, c.cpu_ms, c.reason] for c in r.copies],
        )
        sec.table(
            ["pool", "device", "why"],
            [[p["pool"], p["device"], p["reason"]] for p in r.copy_paths],
            title="Access paths that are not zero-copy",
        )
    else:
        sec.text(
            f"All {r.zero_copy_paths} device access paths are direct: 0 copies, 0 bytes copied."
        )
    sec.table(["pool", "heap"], sorted(r.heaps.items()), title="Heap per pool")

    sec = rep.section("Address translation")
    sec.table(
        [
            "master",
            "transactions",
            "IOTLB misses",
            "hit rate",
            "walk traffic MB/s",
            "walk stall ms",
        ],
        [
            [
                x.master,
                x.transactions,
                x.misses,
                f"{x.hit_rate:.3%}",
                round(x.walk_bps / 1e6, 2),
                x.walk_stall_ms,
            ]
            for x in r.tlb
        ],
    )

    sec = rep.section("Memory footprint and cache maintenance")
    sec.plot(
        line_svg(
            {
                k: [(tt, v / 2**20) for tt, v in pts]
                for k, pts in r.footprint.items()
                if any(v for _t, v in pts)
            },
            xlabel="time (s)",
            ylabel="MiB",
        ),
        "Footprint per heap, CMA pool and carveout",
    )
    sec.table(
        ["where", "peak"], [[k, format_size(v, exact=False)] for k, v in r.footprint_peak.items()]
    )
    cm = r.cache_maintenance
    sec.table(["quantity", "value"], [[k, v] for k, v in cm.items()], title="Cache maintenance")
    sec.table(["quantity", "value"], [[k, v] for k, v in r.mapping.items()], title="DMA mappings")
    counts = r.finding_counts()
    if counts:
        s2 = rep.section("Findings by kind")
        s2.plot(bar_svg(list(counts), {"findings": list(counts.values())}), "Findings per kind")
    for n in r.notes:
        rep.sections[-1].text(n)
    rep.add_findings(r.findings)
    return rep.render()
