"""Trace reading speed and memory: the real replay capture repeated to N lines.

Usage: python benchmarks/bench_trace_read.py [N_LINES] (default 1_400_000)

Measures (1) the streaming reader with prefix parse only (name, timestamp, counts, phases)
and (2) the same plus full field decoding of every event (socmem.trace.events.decode), in
lines/s, with peak Python heap (tracemalloc, separate pass) and the process max RSS.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from socmem.trace.events import decode
from socmem.trace.ftrace import FtraceReader
from socmem.trace.parallel import scan_trace

SRC = (
    Path(__file__).resolve().parents[2]
    / "shared/fixtures/real-kernel/qemu-virt-smmuv3-replay/trace.txt"
)
if not SRC.exists():
    SRC = Path("/work/shared/fixtures/real-kernel/qemu-virt-smmuv3-replay/trace.txt")


def make_file(n_lines: int, dest: Path) -> int:
    lines = SRC.read_text().splitlines(keepends=True)
    head = [ln for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if not ln.startswith("#")]
    written = len(head)
    with dest.open("w") as f:
        f.writelines(head)
        while written < n_lines:
            take = body[: n_lines - written]
            f.writelines(take)
            written += len(take)
    return written


def run(path: Path, full: bool) -> tuple[float, int]:
    t = time.perf_counter()
    r = FtraceReader(path)
    n = 0
    if full:
        for ev in r:
            decode(ev)
            n += 1
    else:
        for _ev in r:
            n += 1
    dt = time.perf_counter() - t
    return dt, r.stats.lines


def main() -> None:
    n_lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_400_000
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "trace.txt"
        lines = make_file(n_lines, path)
        mb = path.stat().st_size / 1e6
        print(f"file: {lines} lines, {mb:.0f} MB")
        for full in (False, True):
            best = min(run(path, full) for _ in range(3))
            label = "prefix only" if not full else "full decode"
            print(
                f"{label:12s}: {best[1] / best[0] / 1e6:.2f} M lines/s ({best[0]:.2f} s, best of 3)"
            )
            tracemalloc.start()
            run(path, full)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"{'':12s}  peak Python heap {peak / 1e6:.1f} MB (tracemalloc)")
        for jobs in (2,):
            t = time.perf_counter()
            scan = scan_trace(path, jobs)
            dt = time.perf_counter() - t
            print(
                f"parallel scan on {jobs} processes: "
                f"{scan.lines / dt / 1e6:.2f} M lines/s ({dt:.2f} s)"
            )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"max RSS of the process: {rss:.0f} MB (file is {mb:.0f} MB)")


if __name__ == "__main__":
    main()
