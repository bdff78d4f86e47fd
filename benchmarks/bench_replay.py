"""Replay speed on the real-kernel fixture: events per second for reading the capture,
for the differential replay, and for one what-if.  Prints a small table; no assertions.

    .venv/bin/python benchmarks/bench_replay.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixture_paths import QEMU, QEMU_REPLAY
from socmem.replay import load_capture, parse_sets, replay, run_whatif
from socmem.soc.dt_import import import_dtb


def main() -> None:
    """Time each stage three times and print the best run."""
    soc = import_dtb(QEMU / "guest-fdt.dtb").soc
    rows = []
    for _ in range(3):
        t0 = time.perf_counter()
        cap = load_capture(QEMU_REPLAY)
        t1 = time.perf_counter()
        base = replay(cap, soc)
        t2 = time.perf_counter()
        run_whatif(cap, soc, parse_sets(["granule=64K"]), baseline=base)
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2))
    best = [min(r[i] for r in rows) for i in range(3)]
    n = cap.events
    print(f"fixture: {n} events, {len(cap.calls)} calls")
    for name, t in zip(
        ("read capture", "differential replay", "what-if replay"), best, strict=True
    ):
        print(f"  {name:20s} {t:6.3f} s  {n / t:10,.0f} events/s")
    total = sum(best)
    print(f"  {'total':20s} {total:6.3f} s  {n / total:10,.0f} events/s")


if __name__ == "__main__":
    main()
