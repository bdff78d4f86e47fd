"""The parallel scan gives exactly what a sequential read gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.errors import InputError
from socmem.trace.ftrace import FtraceReader
from socmem.trace.parallel import scan_trace, split_ranges


def sequential(path: Path) -> tuple[int, int, dict[str, int], list[tuple[str, int]]]:
    r = FtraceReader(path).read_all()
    phases = [(p.name, sum(p.counts.values())) for p in r.phases]
    return r.stats.lines, r.stats.events, dict(r.stats.events_by_name), phases


@pytest.mark.parametrize(
    "trace", [QEMU / "trace.txt", QEMU_REPLAY / "trace.txt"], ids=["w", "replay"]
)
@pytest.mark.parametrize("jobs", [1, 2, 3, 7])
def test_scan_equals_sequential(trace: Path, jobs: int) -> None:
    need(trace)
    lines, events, names, phases = sequential(trace)
    s = scan_trace(trace, jobs)
    assert (s.lines, s.events, dict(s.events_by_name)) == (lines, events, names)
    assert [(n, sum(c.values())) for n, c in s.phases] == phases


def test_ranges_cut_at_newlines(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("".join(f"line {i}\n" for i in range(1000)))
    data = p.read_bytes()
    ranges = split_ranges(str(p), 5)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)
    assert all(data[b - 1 : b] == b"\n" for _a, b in ranges)
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))


def test_phase_continues_across_a_range_boundary(tmp_path: Path) -> None:
    head = "# tracer: nop\n"
    ev = "            init-1       [000] .....     {t:.6f}: {name}: {body}\n"
    body = [ev.format(t=1.0, name="tracing_mark_write", body="W1")]
    body += [ev.format(t=1.0 + i * 1e-6, name="map", body="x") for i in range(1, 400)]
    body += [ev.format(t=2.0, name="tracing_mark_write", body="W1 end")]
    body += [ev.format(t=2.0 + i * 1e-6, name="unmap", body="y") for i in range(1, 300)]
    p = tmp_path / "trace.txt"
    p.write_text(head + "".join(body))
    want = sequential(p)[3]
    for jobs in (2, 4, 9):
        assert [(n, sum(c.values())) for n, c in scan_trace(p, jobs).phases] == want


def test_missing_file() -> None:
    with pytest.raises(InputError, match="no such file"):
        scan_trace("/nonexistent/trace.txt")
