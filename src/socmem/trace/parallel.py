"""Scan a large trace on every core: event counts, per-phase counts and bad lines.

The streaming :class:`~socmem.trace.ftrace.FtraceReader` is one Python loop (about
0.85 M lines/s here, see benchmarks/bench_trace_read.py).  A question that needs no
event order across the whole file ("what is in this 1 GB trace?", the first thing
``socmem trace analyze`` prints) can split the file at line boundaries into one byte
range per worker, read each range with the same reader, and merge the counters.

Merging is exact: line numbers add up, and a range's events before its first
``trace_marker`` belong to the phase the previous range ended in (so phases, including
``"after X"`` gaps, come out as a sequential read gives them).  Out-of-order counts are
per range (an inversion across a range boundary is not seen).
"""

from __future__ import annotations

import io
import itertools
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from socmem.errors import InputError
from socmem.trace.ftrace import FtraceReader, ReaderStats


class _Range(io.RawIOBase):
    """A read-only raw stream over ``[start, end)`` of a file."""

    def __init__(self, path: str, start: int, end: int) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._fh.seek(start)
        self._left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buf)[: min(len(buf), self._left)]
        n = self._fh.readinto(view)
        self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


@dataclass
class RangeCounts:
    """What one worker found in its byte range."""

    stats: ReaderStats
    phases: list[tuple[str, Counter[str]]]  # (name, counts); [0] continues the previous range


@dataclass
class TraceScan:
    """Counts of a whole trace, merged from the ranges."""

    lines: int = 0
    events: int = 0
    bad_lines: int = 0
    bad_by_reason: Counter[str] = field(default_factory=Counter)
    events_by_name: Counter[str] = field(default_factory=Counter)
    markers: int = 0
    phases: list[tuple[str, Counter[str]]] = field(default_factory=list)
    jobs: int = 1


def split_ranges(path: str, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges of ``path`` cut just after a newline."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            fh.seek(max(cuts[-1], size * k // parts))
            fh.readline()
            pos = fh.tell()
            if pos < size and pos > cuts[-1]:
                cuts.append(pos)
    cuts.append(size)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _count_range(args: tuple[str, int, int]) -> RangeCounts:
    path, start, end = args
    raw = _Range(path, start, end)
    text = io.TextIOWrapper(io.BufferedReader(raw, 1 << 20), encoding="utf-8", errors="replace")
    reader = FtraceReader(text)
    for _ in reader.records():
        pass
    text.close()
    return RangeCounts(reader.stats, [(p.name, p.counts) for p in reader.phases])


def scan_trace(path: str | os.PathLike[str], jobs: int | None = None) -> TraceScan:
    """Count a trace's events, phases and bad lines on ``jobs`` processes (default: CPUs)."""
    p = os.fspath(path)
    if not Path(p).is_file():
        raise InputError("no such file", where=p, expected="an ftrace text file")
    jobs = max(1, jobs or os.cpu_count() or 1)
    ranges = split_ranges(p, jobs)
    work = [(p, a, b) for a, b in ranges]
    if len(work) == 1:
        results = [_count_range(work[0])]
    else:
        with ProcessPoolExecutor(len(work)) as ex:
            results = list(ex.map(_count_range, work))
    out = TraceScan(jobs=len(work))
    for i, r in enumerate(results):
        s = r.stats
        out.lines += s.lines
        out.events += s.events
        out.bad_lines += s.bad_lines
        out.bad_by_reason.update(s.bad_by_reason)
        out.events_by_name.update(s.events_by_name)
        out.markers += s.markers
        phases = r.phases
        if i and out.phases:
            # the range's first phase continues the previous range's last one; an end
            # marker in it closed that phase, not the reader's initial "boot"
            current = out.phases[-1][0]
            out.phases[-1][1].update(phases[0][1])
            phases = phases[1:]
            if phases and phases[0][0] == f"after {results[i].phases[0][0]}":
                phases = [(f"after {current}", phases[0][1]), *phases[1:]]
        out.phases.extend((name, Counter(c)) for name, c in phases)
    out.phases = [(n, c) for n, c in out.phases if c or n == out.phases[0][0]]
    return out
