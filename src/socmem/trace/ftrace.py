"""Streaming, tolerant reader of ftrace text: the tracefs ``trace`` file and ``trace-cmd report``.

The line layout is the one ``kernel/trace/trace_output.c`` prints (``trace_print_context``,
``trace_print_lat_fmt``, ``trace_print_time``) for each ring-buffer entry::

    <comm %16s>-<pid %-7d> [(<tgid %7d>) ][<cpu %03d>] <flags 4|5 chars>
        <secs %5lu>.<usecs %06lu>: <event>: <TP_printk text>

and the header that ``print_trace_header`` / ``print_event_info`` write (``# tracer: nop``,
``# entries-in-buffer/entries-written: 23505/23505   #P:2``).  ``trace-cmd report`` output
(``cpus=2`` header, no latency flags unless ``-l``, event names padded with spaces, optional
nanosecond timestamps) is read by the same code.

Design:

* **Streaming**: :class:`FtraceReader` reads 1 MiB chunks and yields :class:`TraceEvent` one
  at a time; memory is bounded by the chunk, the counters and the first ``max_bad_kept``
  bad lines.
* **Lazy**: the hot path only locates the timestamp and the event name with ``str.find``;
  task, pid, CPU, flags, the float timestamp and the body are properties computed on access,
  and event fields are decoded only by :mod:`socmem.trace.events` on demand.
* **Tolerant**: a line that is not an event (truncated, binary garbage, a stray message) is
  kept as a :class:`BadLine` (the first ``max_bad_kept``) and always counted in
  :attr:`FtraceReader.stats`; a missing final newline, out-of-order timestamps and ``CPU:N
  [LOST n EVENTS]`` lines are counted too.  Iteration never raises on content; only a file
  that cannot be opened raises :class:`socmem.errors.InputError`.
* **Phases**: ``tracing_mark_write`` lines (user ``trace_marker`` writes) are events, and
  also delimit workload phases (see :class:`Phase`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, NamedTuple

from socmem.infile import open_lines

__all__ = [
    "MARKER_EVENT",
    "BadLine",
    "FtraceReader",
    "Phase",
    "ReaderStats",
    "TraceEvent",
    "TraceMetadata",
    "parse_line",
    "read_trace",
]

#: Event name of user-space ``trace_marker`` writes (``ftrace_print`` / TRACE_PRINT in
#: ``kernel/trace/trace_entries.h``, printed as ``tracing_mark_write: <text>``).
MARKER_EVENT = "tracing_mark_write"

_CHUNK = 1 << 20

# Slow-path regex: tolerates 4/5 flag characters, record-tgid, no flags (trace-cmd), the
# latency format of ``trace-cmd report -l`` (``1d...`` without brackets), and 3..9 digit
# fractions.  (Reference: kernel-iommu-dma-formats.md §0.)
_LINE_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?"
    r"(?:\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d][^\s]{3,4}|\d[^\s.][^\s]{2,3})\s+)?"
    r"|(?P<lcpu>\d+)(?P<lflags>[^\s\d][^\s]{3,4})\s+)"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[^\s:]+):(?P<sp>\s*)"
)
_HEAD_RE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?"
    r"(?:\[(?P<cpu>\d+)\]\s*(?P<flags>\S*)|(?P<lcpu>\d+)(?P<lflags>\S{4,5}))\s*$"
)
_ENTRIES_RE = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)")
_LOST_RE = re.compile(r"^\s*CPU:\s*(\d+)\s+\[LOST (\d+) EVENTS\]")


class BadLine(NamedTuple):
    """A line that is not an event: its 1-based number, why, and its text (capped at 200)."""

    line_no: int
    reason: str
    text: str


@lru_cache(maxsize=4096)
def _parse_head(head: str) -> tuple[str, int, int, str | None, int | None]:
    """``'  insmod-550     [001] d....'`` → (task, pid, cpu, flags, tgid)."""
    m = _HEAD_RE.match(head)
    if m is None:
        return (head.strip(), -1, -1, None, None)
    cpu = m.group("cpu") or m.group("lcpu")
    flags = m.group("flags") if m.group("cpu") is not None else m.group("lflags")
    tgid_s = m.group("tgid")
    tgid = int(tgid_s) if tgid_s and tgid_s[0] != "-" else None
    return (m.group("comm"), int(m.group("pid")), int(cpu), flags or None, tgid)


def _ts_to_ns(ts: str) -> int:
    secs, _, frac = ts.partition(".")
    if len(frac) < 9:
        frac = frac + "0" * (9 - len(frac))
    elif len(frac) > 9:
        frac = frac[:9]
    return int(secs) * 1_000_000_000 + int(frac)


class TraceEvent(NamedTuple):
    """One trace line, split lazily.

    Stored: the 1-based ``line_no``, the raw ``line`` (no newline), the timestamp text
    ``ts``, the event ``name`` (the probe name for kprobes; no system: tracefs prints none)
    and two offsets.  Everything else is a property computed from the line on access.
    """

    line_no: int
    line: str
    ts: str
    name: str
    head_end: int  # end of the "task-pid [cpu] flags" prefix (exclusive)
    body_at: int  # index of the first character of the TP_printk text

    @property
    def body(self) -> str:
        """The raw field text (TP_printk output, or the kprobe's fetch-args)."""
        return self.line[self.body_at :].lstrip(" ")

    @property
    def task(self) -> str:
        """The task comm (``<idle>``, ``kworker/0:1``, ``insmod`` ...)."""
        return _parse_head(self.line[: self.head_end])[0]

    @property
    def pid(self) -> int:
        """The pid (-1 if the prefix could not be read)."""
        return _parse_head(self.line[: self.head_end])[1]

    @property
    def cpu(self) -> int:
        """The CPU whose ring buffer held the entry (-1 if unreadable)."""
        return _parse_head(self.line[: self.head_end])[2]

    @property
    def flags(self) -> str | None:
        """Latency flags (``d.h1.``: irqs-off, need-resched, hard/softirq, preempt, migrate).

        ``None`` when the format has none (trace-cmd report, ``irq-info`` off).
        """
        return _parse_head(self.line[: self.head_end])[3]

    @property
    def tgid(self) -> int | None:
        """The tgid when the trace was taken with ``record-tgid``."""
        return _parse_head(self.line[: self.head_end])[4]

    @property
    def irqs_off(self) -> bool:
        """First flag character is ``d`` (irqs off) or ``D``/``X`` variants."""
        f = self.flags
        if not f:
            return False
        return f[0] in "dDX"

    @property
    def ts_ns(self) -> int:
        """Timestamp in integer nanoseconds (exact, for ordering)."""
        return _ts_to_ns(self.ts)

    @property
    def timestamp(self) -> float:
        """Timestamp in seconds."""
        return float(self.ts)

    @property
    def system(self) -> str | None:
        """The event's trace system when it is a known upstream event, else ``None``."""
        from socmem.trace.events import event_system

        return event_system(self.name, self.body)

    def decode(self) -> object:
        """Decoded fields: see :func:`socmem.trace.events.decode`."""
        from socmem.trace.events import decode

        return decode(self)


def parse_line(line: str, line_no: int = 0) -> TraceEvent | BadLine:
    """Parse one line (without its newline) with the tolerant slow path."""
    line = line.rstrip("\r\n")
    m = _LINE_RE.match(line)
    if m is None:
        return BadLine(line_no, _why_bad(line), line[:200])
    head_end = m.start("ts")
    return TraceEvent(line_no, line, m.group("ts"), m.group("event"), head_end, m.end("sp"))


def _why_bad(line: str) -> str:
    if not line.strip():
        return "blank line"
    if "\ufffd" in line or any(ord(c) < 32 and c not in "\t\r" for c in line):
        return "undecodable or binary data"
    if _TRUNC_RE.match(line):
        return "truncated event line"
    return "not an ftrace event line"


_TRUNC_RE = re.compile(r"^\s*\S.*?-\d+\s+(?:\(\s*(?:\d+|-+)\)\s+)?(?:\[\d*\]?|\d+\S*)")


@dataclass(slots=True)
class TraceMetadata:
    """What the header comments say (``print_trace_header``, ``print_event_info``)."""

    tracer: str | None = None
    entries_in_buffer: int | None = None
    entries_written: int | None = None
    nr_cpus: int | None = None
    format: str = "unknown"  # "tracefs", "trace-cmd" or "unknown"
    header_lines: list[str] = field(default_factory=list)
    annotations: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class Phase:
    """A workload phase delimited by ``trace_marker`` writes.

    A marker text opens a phase of that name (and closes the previous one); a marker
    ending in ``" end"`` closes the open phase.  Events before the first marker belong to
    the initial phase (``initial_phase`` of the reader, "boot" by default); events after a
    close and before the next open to a phase named ``"after <name>"``.  ``counts`` holds
    events by name, excluding the markers themselves.
    """

    name: str
    start_line: int = 0
    end_line: int | None = None
    start_ts: str | None = None
    end_ts: str | None = None
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        """Number of events (markers excluded)."""
        return sum(self.counts.values())


@dataclass(slots=True)
class ReaderStats:
    """Counters of a read; complete at the end of iteration."""

    lines: int = 0
    events: int = 0
    header_lines: int = 0
    blank_lines: int = 0
    bad_lines: int = 0
    bad_by_reason: Counter[str] = field(default_factory=Counter)
    events_by_name: Counter[str] = field(default_factory=Counter)
    unknown_events: Counter[str] = field(default_factory=Counter)
    markers: int = 0
    out_of_order: int = 0
    lost_events: int = 0
    lost_by_cpu: Counter[int] = field(default_factory=Counter)
    truncated_last_line: bool = False
    warnings: list[str] = field(default_factory=list)


def _default_phase_end(text: str) -> bool:
    return text == "end" or text.endswith(" end")


class FtraceReader:
    """Iterate the events of an ftrace text capture, streaming.

    ``source`` is a path, a text or binary file object, or an iterable of lines.  Binary
    input and paths are decoded as UTF-8 with ``errors="replace"`` so garbage bytes become
    U+FFFD and at worst a :class:`BadLine`.

    >>> r = FtraceReader("trace.txt")          # doctest: +SKIP
    >>> for ev in r:                           # doctest: +SKIP
    ...     if ev.name == "map": ...
    >>> r.stats.events, r.metadata.nr_cpus     # doctest: +SKIP

    Iterating yields :class:`TraceEvent` only; :meth:`records` yields bad lines too.  The
    reader can be iterated once.
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str],
        *,
        max_bad_kept: int = 1000,
        initial_phase: str = "boot",
        phase_end: Callable[[str], bool] = _default_phase_end,
        classify: Callable[[str, str], str] | None = None,
    ) -> None:
        self._input = open_lines(source, "trace", newline="")
        self.source_name = self._input.name
        self.metadata = TraceMetadata()
        self.stats = ReaderStats()
        self.bad_lines: list[BadLine] = []
        self.max_bad_kept = max_bad_kept
        self.phases: list[Phase] = [Phase(initial_phase, start_line=1)]
        self._phase_end = phase_end
        if classify is None:
            from socmem.trace.events import classify_event

            classify = classify_event
        self._classify = classify
        #: kind of every event name seen ("iommu", "dma", "kprobe", "unknown", ...)
        self._kinds: dict[str, str] = {MARKER_EVENT: "ftrace"}
        self._used = False

    # -- public -------------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        """The phase the most recently yielded event belongs to."""
        return self.phases[-1]

    def __iter__(self) -> Iterator[TraceEvent]:
        for rec in self.records():
            if rec.__class__ is TraceEvent:
                yield rec

    def events(self) -> Iterator[TraceEvent]:
        """Same as iterating the reader."""
        return iter(self)

    def read_all(self) -> FtraceReader:
        """Consume everything (to fill :attr:`stats`, :attr:`phases`); returns ``self``."""
        for _ in self.records():
            pass
        return self

    @property
    def event_kinds(self) -> dict[str, str]:
        """Kind of every event name seen: a trace system, ``kprobe``, ``kretprobe``, ...."""
        return dict(self._kinds)

    def phase_counts(self) -> dict[str, Counter[str]]:
        """Events by name in each phase (markers excluded), after iteration."""
        out: dict[str, Counter[str]] = {}
        for ph in self.phases:
            out.setdefault(ph.name, Counter()).update(ph.counts)
        return out

    def records(self) -> Iterator[TraceEvent | BadLine]:
        """Yield events and bad lines in file order (the hot loop)."""
        if self._used:
            raise RuntimeError("an FtraceReader can be iterated only once")
        self._used = True
        stats = self.stats
        new = tuple.__new__
        te = TraceEvent
        names: list[str] = []
        app = names.append
        phase = self.phases[-1]
        last_ts = ""
        last_len = 0
        ooo = 0
        n = 0
        try:
            for lines in self._chunks():
                for line in lines:
                    n += 1
                    a = line.find(": ")
                    b = line.find(": ", a + 2)
                    s = line.rfind(" ", 0, a)
                    if b > 0 and s > 0:
                        ts = line[s + 1 : a]
                        if ts[-7:-6] == "." and line.rfind("] ", 0, s) > 0:
                            if len(ts) == last_len:
                                if ts < last_ts:
                                    ooo += 1
                                else:
                                    last_ts = ts
                            elif _ts_lt(ts, last_ts):
                                ooo += 1
                            else:
                                last_ts = ts
                                last_len = len(ts)
                            name = line[a + 2 : b]
                            if name == MARKER_EVENT:
                                names, app, phase = self._flush(names, phase, lines)
                                ev = new(te, (n, line, ts, name, s, b + 2))
                                phase = self._marker(ev, phase)
                            else:
                                app(name)
                                ev = new(te, (n, line, ts, name, s, b + 2))
                            yield ev
                            continue
                    # slow path: headers, other widths, garbage
                    rec = self._slow(line, n)
                    if rec is None:
                        continue
                    if rec.__class__ is TraceEvent:
                        ts = rec.ts
                        if _ts_lt(ts, last_ts):
                            ooo += 1
                        else:
                            last_ts = ts
                            last_len = len(ts)
                        if rec.name == MARKER_EVENT:
                            names, app, phase = self._flush(names, phase, lines)
                            phase = self._marker(rec, phase)
                        else:
                            app(rec.name)
                    yield rec
                names, app, phase = self._flush(names, phase, lines)
        finally:
            self._flush(names, phase, [])
            stats.lines = n
            stats.out_of_order = ooo
            self._finish()

    # -- internals ----------------------------------------------------------------------

    def _chunks(self) -> Iterator[list[str]]:
        src = self._input.lines
        read = getattr(src, "read", None)
        if read is None:  # an iterable of lines
            batch: list[str] = []
            last = ""
            for ln in src:
                last = ln
                batch.append(ln.rstrip("\r\n") if ln.endswith(("\n", "\r")) else ln)
                if len(batch) >= 65536:
                    yield batch
                    batch = []
            if last and not last.endswith("\n") and batch:
                self.stats.truncated_last_line = True
            if batch:
                yield batch
            return
        carry = ""
        while True:
            try:
                chunk = read(_CHUNK)
            except (UnicodeDecodeError, ValueError) as exc:
                self.stats.warnings.append(f"read stopped: {exc}")
                break
            if not chunk:
                break
            if chunk.__class__ is bytes:
                chunk = chunk.decode("utf-8", errors="replace")
            lines = (carry + chunk).split("\n") if carry else chunk.split("\n")
            carry = lines.pop()
            if "\r" in chunk:
                lines = [ln.rstrip("\r") for ln in lines]
            if lines:
                yield lines
        if carry:
            self.stats.truncated_last_line = True
            self.stats.warnings.append("last line has no newline (truncated capture?)")
            yield [carry.rstrip("\r")]

    def _flush(
        self, names: list[str], phase: Phase, lines: list[str]
    ) -> tuple[list[str], Callable[[str], None], Phase]:
        if names:
            kinds = self._kinds
            for name in set(names).difference(kinds):
                kinds[name] = self._classify(name, _first_body(name, lines))
            phase.counts.update(names)
            names.clear()
        return names, names.append, phase

    def _marker(self, ev: TraceEvent, phase: Phase) -> Phase:
        self.stats.markers += 1
        text = ev.body.strip()
        if self._phase_end(text):
            phase.end_line = ev.line_no
            phase.end_ts = ev.ts
            nxt = Phase(f"after {phase.name}", start_line=ev.line_no + 1, start_ts=ev.ts)
        else:
            if phase.end_line is None:
                phase.end_line = ev.line_no - 1
                phase.end_ts = ev.ts
            nxt = Phase(text, start_line=ev.line_no, start_ts=ev.ts)
        if not phase.counts and phase.name.startswith("after ") and len(self.phases) > 1:
            self.phases.pop()  # an empty gap between "X end" and the next start
        self.phases.append(nxt)
        return nxt

    def _slow(self, line: str, n: int) -> TraceEvent | BadLine | None:
        stats = self.stats
        if not line or line.isspace():
            stats.blank_lines += 1
            return None
        if line[0] == "#":
            self._header(line, n)
            return None
        rec = parse_line(line, n)
        if rec.__class__ is TraceEvent:
            return rec
        stripped = line.strip()
        m = _LOST_RE.match(line)
        if m:
            lost = int(m.group(2))
            stats.lost_events += lost
            stats.lost_by_cpu[int(m.group(1))] += lost
            self.metadata.annotations.append((n, stripped))
            return None
        if stripped.startswith("cpus=") and stripped[5:].isdigit():
            self.metadata.nr_cpus = int(stripped[5:])
            self.metadata.format = "trace-cmd"
            self.metadata.header_lines.append(stripped)
            stats.header_lines += 1
            return None
        if re.match(r"^(CPU \d+ is empty|version = \d+|trace-cmd: )", stripped):
            self.metadata.header_lines.append(stripped)
            stats.header_lines += 1
            return None
        stats.bad_lines += 1
        stats.bad_by_reason[rec.reason] += 1  # type: ignore[union-attr]
        if len(self.bad_lines) < self.max_bad_kept:
            self.bad_lines.append(rec)  # type: ignore[arg-type]
        return rec

    def _header(self, line: str, n: int) -> None:
        md = self.metadata
        self.stats.header_lines += 1
        if line.startswith("#####"):
            md.annotations.append((n, line))  # e.g. "##### CPU 1 buffer started ####"
            return
        if len(md.header_lines) < 64:
            md.header_lines.append(line)
        if line.startswith("# tracer:"):
            md.tracer = line.split(":", 1)[1].strip()
            md.format = "tracefs"
            return
        m = _ENTRIES_RE.search(line)
        if m:
            md.entries_in_buffer = int(m.group(1))
            md.entries_written = int(m.group(2))
            md.nr_cpus = int(m.group(3))
            md.format = "tracefs"

    def _finish(self) -> None:
        st = self.stats
        total = Counter[str]()
        for ph in self.phases:
            total.update(ph.counts)
        total[MARKER_EVENT] += st.markers
        if not total[MARKER_EVENT]:
            del total[MARKER_EVENT]
        st.events_by_name = total
        st.events = sum(total.values())
        kinds = self._kinds
        st.unknown_events = Counter(
            {k: v for k, v in total.items() if kinds.get(k, "unknown") == "unknown"}
        )
        if self.phases[-1].name.startswith("after ") and not self.phases[-1].counts:
            self.phases.pop()
        if st.lines == 0:
            st.warnings.append("empty input: no lines")
        elif st.events == 0:
            st.warnings.append("no ftrace event line found")
        md = self.metadata
        if md.entries_in_buffer is not None and st.events != md.entries_in_buffer:
            st.warnings.append(
                f"header says {md.entries_in_buffer} entries in buffer, read {st.events} events"
            )
        if (
            md.entries_written is not None
            and md.entries_in_buffer is not None
            and md.entries_written > md.entries_in_buffer
        ):
            st.warnings.append(
                f"ring buffer overwrote {md.entries_written - md.entries_in_buffer} "
                "entries (entries-written > entries-in-buffer)"
            )
        self._input.close()


def _first_body(name: str, lines: list[str]) -> str:
    """The body of the first line of ``lines`` carrying event ``name`` ("" if none)."""
    needle = f": {name}: "
    for ln in lines:
        i = ln.find(needle)
        if i >= 0:
            return ln[i + len(needle) :]
    return ""


def _ts_lt(a: str, b: str) -> bool:
    """Numeric ``a < b`` for ``secs.frac`` strings of any width."""
    if not b:
        return False
    sa, _, fa = a.partition(".")
    sb, _, fb = b.partition(".")
    if len(sa) != len(sb):
        return len(sa) < len(sb)
    if sa != sb:
        return sa < sb
    w = max(len(fa), len(fb))
    return fa.ljust(w, "0") < fb.ljust(w, "0")


def read_trace(
    source: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str], **kw: object
) -> FtraceReader:
    """Read a whole capture for its statistics and phases (events are not kept)."""
    return FtraceReader(source, **kw).read_all()  # type: ignore[arg-type]
