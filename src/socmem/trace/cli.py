"""``socmem trace analyze`` and ``socmem trace export``: real captures, explained.

Inputs are ftrace text captures, kernel logs, ``dma_buf/bufinfo`` and fdinfo dumps, or a
capture tarball (``socmem capture``'s ``.tar.gz``) holding them.  Each positional FILE is
recognised by its name inside a tarball, else by its content; ``--dmesg``, ``--bufinfo``,
``--fdinfo`` and ``--bufinfo-after`` name side files explicitly.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from socmem.cliutil import ForceOpt, err, out, print_json
from socmem.errors import EXIT_FINDINGS, InputError
from socmem.infile import read_bytes, read_text
from socmem.outfile import check_output_path
from socmem.trace.analyze import TraceReport, analyze
from socmem.trace.bufinfo import BufInfo, FdInfo, parse_bufinfo, parse_fdinfo
from socmem.trace.ftrace import TraceEvent, parse_line

__all__ = ["Inputs", "classify_text", "collect_inputs", "render_html", "trace_app"]

trace_app = typer.Typer(
    help="Real kernel captures: analyse traces, logs and dma-buf dumps; export to Perfetto.",
    no_args_is_help=True,
)

_SNIFF = 65536


def classify_text(head: str) -> str | None:
    """``trace``, ``bufinfo``, ``fdinfo``, ``dmesg`` or ``None`` from a file's first bytes."""
    if "Dma-buf Objects:" in head:
        return "bufinfo"
    lines = head.splitlines()[:200]
    if any(ln.startswith("# tracer:") or ln.startswith("cpus=") for ln in lines[:20]):
        return "trace"
    if any(isinstance(parse_line(ln), TraceEvent) for ln in lines[:200] if ln and ln[0] != "#"):
        return "trace"
    if any(ln.startswith(("exp_name:", "pos:\t")) for ln in lines):
        return "fdinfo"
    if any(
        (ln.startswith("[") and "] " in ln[:40]) or (ln.startswith("<") and ">[" in ln[:6])
        for ln in lines
    ):
        return "dmesg"
    return None


@dataclass
class Inputs:
    """Everything to analyse: trace sources (read in order) and side files."""

    traces: list[Any] = field(default_factory=list)
    trace_names: list[str] = field(default_factory=list)
    dmesg: Any | None = None
    dmesg_name: str | None = None
    bufinfo: BufInfo | None = None
    bufinfo_after: BufInfo | None = None
    fdinfo: list[FdInfo] | None = None
    names: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, name: str) -> None:
        """Remember which file played which part."""
        self.names.setdefault(kind, []).append(name)


def _read_text(path: Path) -> str:
    return read_text(path, "a capture file", strict=False)


def _head(path: Path) -> str:
    return read_bytes(path, "a capture file", _SNIFF).decode("utf-8", errors="replace")


def _is_tarball(path: Path) -> bool:
    if path.name.endswith((".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")):
        return True
    try:
        return path.is_file() and tarfile.is_tarfile(path)
    except OSError:
        return False


def _tar_kind(name: str, head: str) -> str | None:
    base = PurePosixPath(name).name
    if base == "trace.txt" or base.startswith("trace-cmd-report"):
        return "trace"
    if base == "dmesg.txt":
        return "dmesg"
    if "bufinfo" in base:
        if "after" in base or "release" in base:
            return "bufinfo-after"
        return "bufinfo-live" if "live" in base else "bufinfo"
    if "fdinfo" in base:
        return "fdinfo"
    if base.endswith(".txt") and not base.startswith(("trace-", "dmesg-")):
        kind = classify_text(head)
        return kind if kind == "trace" else None
    return None


def _add_tarball(path: Path, inp: Inputs, stack: contextlib.ExitStack) -> None:
    try:
        tar = stack.enter_context(tarfile.open(path))  # noqa: SIM115
        members = [m for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"not a readable tarball: {exc}", where=str(path)) from None
    found: dict[str, list[tarfile.TarInfo]] = {}
    for m in members:
        fh = tar.extractfile(m)
        if fh is None:
            continue
        head = fh.read(_SNIFF).decode("utf-8", errors="replace")
        kind = _tar_kind(m.name, head)
        if kind is not None:
            found.setdefault(kind, []).append(m)
    if "trace" not in found:
        raise InputError(
            "no trace in the tarball",
            where=str(path),
            expected="a member trace.txt (ftrace text), as socmem capture writes",
        )

    def text(m: tarfile.TarInfo) -> str:
        fh = tar.extractfile(m)
        assert fh is not None
        return fh.read().decode("utf-8", errors="replace")

    for m in found["trace"]:
        fh = tar.extractfile(m)
        inp.traces.append(io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline=""))
        inp.trace_names.append(f"{path}:{m.name}")
        inp.note("trace", f"{path}:{m.name}")
    if "dmesg" in found and inp.dmesg is None:
        m = found["dmesg"][0]
        inp.dmesg = text(m).splitlines(keepends=True)
        inp.note("dmesg", f"{path}:{m.name}")
    live = found.get("bufinfo-live", []) or found.get("bufinfo", [])
    after = found.get("bufinfo-after", []) or (
        found.get("bufinfo", []) if found.get("bufinfo-live") else []
    )
    if live and inp.bufinfo is None:
        inp.bufinfo = parse_bufinfo(text(live[0]))
        inp.note("bufinfo", f"{path}:{live[0].name}")
    if after and inp.bufinfo_after is None:
        inp.bufinfo_after = parse_bufinfo(text(after[0]))
        inp.note("bufinfo-after", f"{path}:{after[0].name}")
    if "fdinfo" in found and inp.fdinfo is None:
        m = found["fdinfo"][0]
        inp.fdinfo = parse_fdinfo(text(m))
        inp.note("fdinfo", f"{path}:{m.name}")


def collect_inputs(
    files: list[Path],
    stack: contextlib.ExitStack,
    *,
    dmesg: Path | None = None,
    bufinfo: Path | None = None,
    fdinfo: Path | None = None,
    bufinfo_after: Path | None = None,
) -> Inputs:
    """Sort the command line's files into an :class:`Inputs` (tarballs opened in ``stack``)."""
    inp = Inputs()
    if dmesg is not None:
        _head(dmesg)
        inp.dmesg, inp.dmesg_name = dmesg, str(dmesg)
        inp.note("dmesg", str(dmesg))
    if bufinfo is not None:
        inp.bufinfo = _bufinfo(bufinfo)
        inp.note("bufinfo", str(bufinfo))
    if bufinfo_after is not None:
        inp.bufinfo_after = _bufinfo(bufinfo_after)
        inp.note("bufinfo-after", str(bufinfo_after))
    if fdinfo is not None:
        inp.fdinfo = parse_fdinfo(_read_text(fdinfo))
        inp.note("fdinfo", str(fdinfo))
    for path in files:
        if path.is_dir():
            raise InputError("is a directory", where=str(path), expected="a trace file or tarball")
        if not path.exists():
            raise InputError("no such file", where=str(path))
        if _is_tarball(path):
            _add_tarball(path, inp, stack)
            continue
        head = _head(path)
        if not head.strip():
            raise InputError(
                "the file is empty", where=str(path), expected="an ftrace text capture"
            )
        kind = classify_text(head)
        if kind == "trace":
            inp.traces.append(path)
            inp.trace_names.append(str(path))
            inp.note("trace", str(path))
        elif kind == "dmesg" and inp.dmesg is None:
            inp.dmesg = path
            inp.note("dmesg", str(path))
        elif kind == "bufinfo":
            if inp.bufinfo is None:
                inp.bufinfo = _bufinfo(path)
                inp.note("bufinfo", str(path))
            else:
                inp.bufinfo_after = _bufinfo(path)
                inp.note("bufinfo-after", str(path))
        elif kind == "fdinfo" and inp.fdinfo is None:
            inp.fdinfo = parse_fdinfo(_read_text(path))
            inp.note("fdinfo", str(path))
        else:
            raise InputError(
                "not a trace: no ftrace event line found",
                where=str(path),
                expected="ftrace text (tracefs 'trace', 'trace-cmd report'), a kernel log, "
                "a bufinfo/fdinfo dump or a capture tarball",
            )
    if not inp.traces:
        raise InputError(
            "no trace among the inputs", expected="at least one ftrace text capture or tarball"
        )
    return inp


def _bufinfo(path: Path) -> BufInfo:
    text = _read_text(path)
    info = parse_bufinfo(text)
    if not info.buffers and "Dma-buf Objects:" not in text:
        raise InputError(
            "not a dma_buf/bufinfo dump", where=str(path), expected="'Dma-buf Objects:'"
        )
    return info


def run_analysis(inp: Inputs, sink: Any = None) -> TraceReport:
    """Analyse collected inputs."""
    return analyze(
        inp.traces,
        dmesg=inp.dmesg,
        bufinfo=inp.bufinfo,
        fdinfo=inp.fdinfo,
        bufinfo_after=inp.bufinfo_after,
        sink=sink,
        names=inp.names,
    )


# -- console ------------------------------------------------------------------------------


def _sz(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} B"


def _ms(s: float | None) -> str:
    return "–" if s is None else f"{s * 1e3:.3f}"


def print_report(rep: TraceReport, con: Console) -> None:
    """The rich console summary."""
    con.print(
        f"[bold]{rep.events}[/bold] events in {rep.lines} lines, "
        f"{rep.start_s or 0:.6f} s .. {rep.end_s or 0:.6f} s; IOMMU invalidation: "
        f"[bold]{rep.mode}[/bold]"
        + (
            f" ({rep.invalidations['per_unmap']} invalidations per unmap)"
            if rep.invalidations.get("per_unmap") is not None
            else ""
        )
    )
    if rep.bad_lines:
        reasons = ", ".join(f"{k}: {v}" for k, v in rep.bad_by_reason.items())
        con.print(f"[yellow]warning:[/yellow] {rep.bad_lines} bad lines ({reasons})")
    for w in rep.warnings:
        con.print(f"[yellow]warning:[/yellow] {w}")

    t = Table(title="Phases", title_justify="left")
    for c in ("phase", "start s", "duration s", "events", "top events"):
        t.add_column(c, justify="right" if c in ("start s", "duration s", "events") else "left")
    shown = [ph for ph in rep.phases if ph["events"]] or rep.phases[:1]
    for ph in shown:  # marker-only phases (e.g. "socmem: command start") hold nothing
        top = ", ".join(f"{k}={v}" for k, v in list(ph["counts"].items())[:4])
        dur = (ph["end_s"] or 0) - (ph["start_s"] or 0)
        t.add_row(ph["name"], f"{ph['start_s'] or 0:.3f}", f"{dur:.3f}", str(ph["events"]), top)
    con.print(t)

    if rep.domains:
        t = Table(title="IOMMU mappings per device / domain", title_justify="left")
        cols: tuple[str, ...] = (
            "device / domain",
            "maps",
            "unmaps",
            "mapped",
            "peak live",
            "alive at end",
            "alive bytes",
            "inv/unmap",
            "lifetime p50 ms",
        )
        for c in cols:
            t.add_column(c, justify="left" if c == cols[0] else "right")
        for label, d in rep.domains.items():
            t.add_row(
                label,
                str(d["maps"]),
                str(d["unmaps"]),
                _sz(d["bytes_mapped"]),
                _sz(d["peak_live_bytes"]),
                str(d["alive_at_end"]),
                _sz(d["alive_bytes_at_end"]),
                str(
                    d["invalidations_per_unmap"]
                    if d["invalidations_per_unmap"] is not None
                    else "–"
                ),
                _ms(d["lifetime"]["p50_s"]),
            )
        con.print(t)
        t = Table(title="Mapping churn per phase", title_justify="left")
        for c in ("phase", "device / domain", "maps", "unmaps", "mapped", "maps/s", "MiB/s"):
            t.add_column(c, justify="left" if c in ("phase", "device / domain") else "right")
        for ch in rep.churn:
            t.add_row(
                ch["phase"],
                ch["domain"],
                str(ch["maps"]),
                str(ch["unmaps"]),
                _sz(ch["bytes_mapped"]),
                f"{ch['maps_per_s']:.0f}" if ch["maps_per_s"] else "–",
                f"{ch['bytes_per_s'] / (1 << 20):.2f}" if ch["bytes_per_s"] else "–",
            )
        con.print(t)

    if rep.faults:
        con.print("[bold]SMMU faults[/bold]")
        for f in rep.faults:
            rw = "" if f.write is None else (" write" if f.write else " read")
            con.print(
                f"  {f.event}{rw} x{f.count} at {f.iova_page:#x} "
                f"({f.source}, first at {f.first_time}): [bold]{f.verdict}[/bold]"
            )
            con.print(f"    {f.explanation}", markup=False)

    if rep.timelines:
        t = Table(
            title="dma_fence timelines (latency emit→signaled, wait start→end, ms)",
            title_justify="left",
        )
        cols = (
            "timeline",
            "emitted",
            "signaled",
            "p50",
            "p99",
            "max",
            "waits",
            "wait p50",
            "wait max",
            "unsignalled",
            "out of order",
        )
        for c in cols:
            t.add_column(c, justify="left" if c == "timeline" else "right", no_wrap=c == "timeline")
        for tl in rep.timelines:
            lat, w = tl["latency"], tl["wait"]
            t.add_row(
                f"{tl['driver']}/{tl['timeline']}#{tl['context']}",
                str(tl["emitted"]),
                str(tl["signaled"]),
                _ms(lat["p50_s"]),
                _ms(lat["p99_s"]),
                _ms(lat["max_s"]),
                str(tl["waits"]),
                _ms(w["p50_s"]),
                _ms(w["max_s"]),
                str(tl["never_signalled"]),
                str(tl["out_of_order"]),
            )
        con.print(t)

    if rep.cma:
        t = Table(title="CMA areas", title_justify="left")
        cols = (
            "area",
            "allocs",
            "failed",
            "busy retries",
            "pages",
            "released",
            "peak pages",
            "latency p50 ms",
            "max ms",
        )
        for c in cols:
            t.add_column(c, justify="left" if c == "area" else "right")
        for a in rep.cma:
            t.add_row(
                a["name"],
                str(a["allocs"]),
                str(max(a["failures"], a["dmesg_failures"])),
                str(a["busy_retries"]),
                str(a["pages_allocated"]),
                str(a["pages_released"]),
                str(a["peak_pages_in_use"]),
                _ms(a["latency"]["p50_s"]),
                _ms(a["latency"]["max_s"]),
            )
        con.print(t)

    inv = rep.dmabuf
    if inv is not None and inv.objects:
        t = Table(
            title=f"dma-buf inventory: {inv.objects} objects, {inv.bytes} bytes "
            f"(totals line {'OK' if inv.totals_ok else 'DISAGREES'})",
            title_justify="left",
        )
        for c in ("ino", "name", "exporter", "size", "attached", "fds", "fences"):
            t.add_column(c, justify="right" if c in ("ino", "size") else "left")
        for b in inv.buffers:
            t.add_row(
                str(b["ino"]),
                b["name"] or "<none>",
                b["exporter"],
                str(b["size"]),
                ", ".join(b["attached"]) or "–",
                ", ".join(map(str, b["fds"])) or "–",
                "; ".join(b["fences"]) or "–",
            )
        con.print(t)
        if inv.leaked:
            con.print(f"[red]{len(inv.leaked)} dma-buf(s) still alive after release[/red]")
    elif inv is not None and inv.exports_traced:
        con.print(f"dma_buf_export in the trace: {inv.exports_traced}")

    if rep.findings:
        con.print(f"[bold]Findings ({len(rep.findings)})[/bold]")
        for fnd in rep.findings:
            first = fnd.message.splitlines()[0] if fnd.message else ""
            con.print(f"  [{fnd.severity}] {fnd.kind}: {fnd.subject}", markup=False)
            con.print(f"      {first}", markup=False)
            if fnd.data.get("explanation"):
                con.print(f"      {fnd.data['explanation']}", markup=False)
    else:
        con.print("No findings.")


# -- HTML ---------------------------------------------------------------------------------


def render_html(rep: TraceReport, title: str = "socmem trace analysis") -> str:
    """The self-contained HTML report of a :class:`TraceReport`."""
    from socmem.report.html import HtmlReport, bar_svg, histogram_svg, line_svg

    h = HtmlReport(title, ", ".join(f"{k}: {', '.join(v)}" for k, v in rep.sources.items()))
    h.fact("events", rep.events).fact("phases", len(rep.phases)).fact("IOMMU mode", rep.mode)
    h.fact("devices / domains", len(rep.domains)).fact("SMMU fault groups", len(rep.faults))
    h.fact("findings", len(rep.findings))
    sec = h.section("Capture")
    sec.table(
        ["phase", "start s", "end s", "events", "top events"],
        [
            [
                p["name"],
                p["start_s"],
                p["end_s"],
                p["events"],
                ", ".join(f"{k}={v}" for k, v in list(p["counts"].items())[:5]),
            ]
            for p in rep.phases
        ],
    )
    if rep.bad_lines:
        sec.text(
            f"{rep.bad_lines} bad lines: "
            + ", ".join(f"{k}: {v}" for k, v in rep.bad_by_reason.items())
        )
    for w in rep.warnings:
        sec.text(f"warning: {w}")

    sec = h.section("IOMMU mappings")
    sec.text(
        f"Invalidation mode: {rep.mode}; "
        f"invalidations per unmap: {rep.invalidations.get('per_unmap')}; "
        f"SMMU commands: {rep.invalidations.get('commands')}."
    )
    sec.table(
        [
            "device / domain",
            "maps",
            "unmaps",
            "bytes mapped",
            "peak live bytes",
            "alive at end",
            "alive bytes",
            "partial unmaps",
            "inv/unmap",
            "lifetime p50 s",
            "lifetime max s",
        ],
        [
            [
                k,
                d["maps"],
                d["unmaps"],
                d["bytes_mapped"],
                d["peak_live_bytes"],
                d["alive_at_end"],
                d["alive_bytes_at_end"],
                d["partial_unmaps"],
                d["invalidations_per_unmap"],
                d["lifetime"]["p50_s"],
                d["lifetime"]["max_s"],
            ]
            for k, d in rep.domains.items()
        ],
    )
    sec.plot(
        line_svg(
            {k: v for k, v in rep.series.items() if v},
            xlabel="trace time (s)",
            ylabel="mapped bytes",
        ),
        title="Mapped bytes over time per device",
    )
    phases = [p["name"] for p in rep.phases]
    doms = list(rep.domains)
    churn = {(c["phase"], c["domain"]): c["maps"] for c in rep.churn}
    sec.plot(
        bar_svg(
            phases,
            {d: [churn.get((p, d), 0) for p in phases] for d in doms},
            ylabel="iommu maps",
            log=True,
        ),
        title="Mapping churn per phase",
    )
    sec.table(
        ["phase", "device / domain", "maps", "unmaps", "bytes mapped", "maps/s", "bytes/s"],
        [
            [
                c["phase"],
                c["domain"],
                c["maps"],
                c["unmaps"],
                c["bytes_mapped"],
                c["maps_per_s"],
                c["bytes_per_s"],
            ]
            for c in rep.churn
        ],
        title="Churn",
    )
    sec.table(
        ["device / domain", "map sizes", "page sizes"],
        [
            [
                k,
                ", ".join(f"{s}: {n}" for s, n in d["size_histogram"].items()),
                ", ".join(f"{s}: {n}" for s, n in d["page_size_histogram"].items()),
            ]
            for k, d in rep.domains.items()
        ],
        title="Size histograms",
    )

    sec = h.section("SMMU faults")
    if not rep.faults:
        sec.text("No SMMU fault in the inputs.")
    sec.table(
        ["event", "stream", "device", "IOVA page", "count", "first at s", "verdict", "explanation"],
        [
            [
                f.event,
                hex(f.stream_id) if f.stream_id is not None else None,
                f.device,
                hex(f.iova_page),
                f.count,
                f.first_time,
                f.verdict,
                f.explanation,
            ]
            for f in rep.faults
        ],
    )

    sec = h.section("dma_fence timelines")
    sec.table(
        [
            "timeline",
            "emitted",
            "signaled",
            "p50 s",
            "p99 s",
            "max s",
            "waits",
            "wait p50 s",
            "wait max s",
            "never signalled",
            "out of order",
        ],
        [
            [
                f"{t['driver']}/{t['timeline']}#{t['context']}",
                t["emitted"],
                t["signaled"],
                t["latency"]["p50_s"],
                t["latency"]["p99_s"],
                t["latency"]["max_s"],
                t["waits"],
                t["wait"]["p50_s"],
                t["wait"]["max_s"],
                t["never_signalled"],
                t["out_of_order"],
            ]
            for t in rep.timelines
        ],
    )
    lat = {k: [x * 1e3 for x in v] for k, v in rep.fence_latencies.items() if v}
    sec.plot(histogram_svg(lat, xlabel="emit → signaled (ms)"), title="Fence latency histogram")

    sec = h.section("CMA")
    sec.table(
        [
            "area",
            "allocs",
            "failed",
            "dmesg failures",
            "busy retries",
            "pages allocated",
            "pages released",
            "peak pages",
            "latency p50 s",
            "latency max s",
        ],
        [
            [
                a["name"],
                a["allocs"],
                a["failures"],
                a["dmesg_failures"],
                a["busy_retries"],
                a["pages_allocated"],
                a["pages_released"],
                a["peak_pages_in_use"],
                a["latency"]["p50_s"],
                a["latency"]["max_s"],
            ]
            for a in rep.cma
        ],
    )

    inv = rep.dmabuf
    sec = h.section("dma-buf inventory")
    if inv is None:
        sec.text("No bufinfo given.")
    else:
        sec.text(
            f"{inv.objects} objects, {inv.bytes} bytes; bufinfo totals line: "
            f"{inv.total_objects_line} objects, {inv.total_bytes_line} bytes "
            f"({'consistent' if inv.totals_ok else 'inconsistent'})."
        )
        sec.table(
            ["ino", "name", "exporter", "size", "attached", "fds", "fences"],
            [
                [
                    b["ino"],
                    b["name"],
                    b["exporter"],
                    b["size"],
                    ", ".join(b["attached"]),
                    ", ".join(map(str, b["fds"])),
                    "; ".join(b["fences"]),
                ]
                for b in inv.buffers
            ],
        )
        if inv.leaked:
            sec.table(
                ["ino", "name", "size", "exporter"],
                [[x["ino"], x["name"], x["size"], x["exporter"]] for x in inv.leaked],
                title="Still alive after release",
            )
    h.add_findings(rep.findings)
    return h.render()


class FindingsExit(Exception):
    """``--strict`` with error findings: exit 1 (``socmem.cli.main`` calls ``show``)."""

    exit_code = EXIT_FINDINGS

    def __init__(self, errors: int) -> None:
        super().__init__(f"{errors} finding(s) of severity error")
        self.errors = errors

    def show(self) -> None:
        """Print the reason on stderr."""
        err.print(f"socmem: {self}", markup=False)


# -- commands -----------------------------------------------------------------------------

FilesArg = Annotated[
    list[Path],
    typer.Argument(
        help="ftrace text captures, kernel logs, bufinfo/fdinfo dumps or capture "
        "tarballs (.tar.gz)",
        show_default=False,
    ),
]


@trace_app.command("analyze")
def analyze_cmd(
    files: FilesArg,
    dmesg: Annotated[Path | None, typer.Option("--dmesg", help="Kernel log (dmesg)")] = None,
    bufinfo: Annotated[
        Path | None, typer.Option("--bufinfo", help="debugfs dma_buf/bufinfo dump")
    ] = None,
    fdinfo: Annotated[
        Path | None, typer.Option("--fdinfo", help="/proc/<pid>/fdinfo dump of dma-bufs")
    ] = None,
    bufinfo_after: Annotated[
        Path | None,
        typer.Option("--bufinfo-after", help="bufinfo dumped after release (finds leaks)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML report here")] = None,
    force: ForceOpt = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when a finding of severity error is found")
    ] = False,
) -> None:
    """Rebuild IOVA lifetimes, explain SMMU faults, time fences and CMA, list dma-bufs."""
    from socmem.check.finding import Severity
    from socmem.outfile import write_atomic

    if html is not None:
        check_output_path(html, force)
    with contextlib.ExitStack() as stack:
        inp = collect_inputs(
            files, stack, dmesg=dmesg, bufinfo=bufinfo, fdinfo=fdinfo, bufinfo_after=bufinfo_after
        )
        rep = run_analysis(inp)
    if as_json:
        print_json(rep.to_dict())
    else:
        print_report(rep, out)
    if html is not None:
        write_atomic(html, render_html(rep), force=force)
        err.print(f"wrote {html}")
    errors = sum(1 for f in rep.findings if f.severity >= Severity.ERROR)
    if strict and errors:
        raise FindingsExit(errors)


@trace_app.command("export")
def export_cmd(
    files: FilesArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="The Perfetto JSON file")],
    dmesg: Annotated[Path | None, typer.Option("--dmesg", help="Kernel log (dmesg)")] = None,
    force: ForceOpt = False,
) -> None:
    """Write a Perfetto-loadable Chrome JSON trace (open it in ui.perfetto.dev)."""
    from socmem.trace.perfetto import export_perfetto

    check_output_path(output, force)
    with contextlib.ExitStack() as stack:
        inp = collect_inputs(files, stack, dmesg=dmesg)
        rep = export_perfetto(inp.traces, output, force=force, dmesg=inp.dmesg)
    err.print(
        f"wrote {output}: {rep.events} trace events, {len(rep.domains)} IOMMU domains, "
        f"{len(rep.timelines)} fence timelines, {len(rep.faults)} fault groups"
    )
