"""Speed of the timing core on the default-scenario shape (perf-anchors §10).

Run: ``.venv/bin/python benchmarks/bench_fluid.py [--seconds 10] [--repeat 3]``.

Workload, written directly against ``socmem.sim`` (no functional model): DRAM
51.2 GB/s × 0.8; N 4K30 cameras (phases spread over the frame period), each frame:
camera RAW10 write (realtime) → ISP read RAW10 + write NV12 (high) → NPU read NV12 +
20 MB weights (best effort); one 4K30 encode of stream 0 (high); a 4K60 RGBA display
scan-out (realtime).  Each stage is one flow of its frame's bytes, capped at the
master's own bandwidth (``--split-rw`` makes reads and writes separate flows).  Every
stage is a generator process yielding flows and timeouts, the way device models will be
written.

Prints simulated seconds per wall-clock second (median of ``--repeat``) for 4 and 16
camera streams, flows and engine events per simulated second, and the per-event cost of
the bare engine.

Measured (Python 3.11, shared 2-core machine, medians of 5): engine 0.8 µs per callback,
1.1 µs per Timeout; 4 streams 170× real time (450 flows/s, 13 µs per flow); 16 streams
47× (1528 flows/s, 14 µs per flow): cost ×3.6 for ×3.4 flows, linear.  With
``--split-rw``: 112× / 32×.  Below the 500× goal for 4 streams: the floor is Python
work per flow (Flow object, two heap entries, timer re-arm, two series points, process
resume), not the allocation, which is O(#classes + log n) per start/end.
"""

from __future__ import annotations

import argparse
import statistics
import time

from socmem.sim.engine import NSEC_PER_SEC, Engine
from socmem.sim.fluid import FluidResource, QosClass

W, H = 3840, 2160
RAW10 = W * H * 5 // 4  # 10.37 MB
NV12 = W * H * 3 // 2  # 12.44 MB
RGBA = W * H * 4  # 33.18 MB
WEIGHTS = 20_000_000
BITSTREAM = 200_000
DRAM_BPS = 51.2e9 * 0.8

CAM_CAP = 1.0e9  # CSI-2 receiver write port
ISP_CAP = 4.0e9
NPU_CAP = 8.0e9
ENC_CAP = 3.0e9
DISP_CAP = 1.2 * RGBA * 60  # scan-out × Qualcomm's 1.2 planning factor


def build(engine: Engine, dram: FluidResource, streams: int, split_rw: bool) -> None:
    """Start the processes of the workload on ``engine``."""
    tr = dram.transfer
    rt, hi, be = QosClass.REALTIME, QosClass.HIGH, QosClass.BEST_EFFORT

    def stage(master: str, rd: int, wr: int, qos: QosClass, cap: float):
        if split_rw:
            a = tr(master, rd, "read", qos, cap_bps=cap) if rd else None
            b = tr(master, wr, "write", qos, cap_bps=cap) if wr else None
            ev = [x for x in (a, b) if x is not None]
            return ev[0] if len(ev) == 1 else engine.all_of(ev)
        return tr(master, rd + wr, "read" if rd >= wr else "write", qos, cap_bps=cap)

    def downstream(i: int):
        yield stage("isp", RAW10, NV12, hi, ISP_CAP)
        if i == 0:
            engine.process(encode())
        yield stage("npu", NV12 + WEIGHTS, 0, be, NPU_CAP)

    def encode():
        yield stage("venc", NV12, BITSTREAM, hi, ENC_CAP)

    def camera(i: int):
        period = NSEC_PER_SEC / 30
        k = 0
        phase = i * period / streams
        yield engine.timeout(int(phase))
        while True:
            yield stage(f"cam{i}", 0, RAW10, rt, CAM_CAP)
            engine.process(downstream(i))
            k += 1
            nxt = int(phase + k * period)
            yield engine.timeout(max(0, nxt - engine.now_ns))

    def display():
        k = 0
        period = NSEC_PER_SEC / 60
        while True:
            tr("dpu", RGBA, "read", rt, cap_bps=DISP_CAP)
            k += 1
            yield engine.timeout(int(k * period) - engine.now_ns)

    for i in range(streams):
        engine.process(camera(i))
    engine.process(display())


def run_once(streams: int, seconds: float, split_rw: bool) -> tuple[float, Engine, FluidResource]:
    """Simulate ``seconds``; return (wall seconds, engine, dram)."""
    engine = Engine()
    dram = FluidResource(engine, DRAM_BPS, record_flows=False)
    build(engine, dram, streams, split_rw)
    t0 = time.perf_counter()
    engine.run(int(seconds * NSEC_PER_SEC))
    return time.perf_counter() - t0, engine, dram


def bench_engine(n: int = 200_000) -> tuple[float, float]:
    """Per-event cost (µs) of a bare callback and of a Timeout yielded by a process."""
    e = Engine()
    left = [n]

    def cb() -> None:  # 64 chains of callbacks: a steady heap of 64 entries
        left[0] -= 1
        if left[0] > 0:
            e.schedule(e.now_ns + 64, cb)

    for i in range(64):
        e.schedule(i, cb)
    t0 = time.perf_counter()
    e.run()
    per_cb = (time.perf_counter() - t0) / n * 1e6
    e = Engine()

    def proc():
        for _ in range(n):
            yield e.timeout(1)

    e.process(proc())
    t0 = time.perf_counter()
    e.run()
    per_to = (time.perf_counter() - t0) / n * 1e6
    return per_cb, per_to


def main() -> None:
    """Run the benchmark and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--split-rw", action="store_true")
    ap.add_argument("--streams", type=int, nargs="*", default=[4, 16])
    args = ap.parse_args()
    per_cb, per_to = bench_engine()
    print(f"engine: {per_cb:.2f} µs per scheduled callback, {per_to:.2f} µs per Timeout")
    base = None
    for n in args.streams:
        walls = []
        for _ in range(args.repeat):
            wall, engine, dram = run_once(n, args.seconds, args.split_rw)
            walls.append(wall)
        wall = statistics.median(walls)
        flows = sum(a.flows_completed for a in dram.accounts.values())
        util = dram.utilisation.mean(0, engine.now_ns)
        speed = args.seconds / wall
        per_flow = wall / max(flows, 1) * 1e6
        grow = "" if base is None else f"  cost ×{wall / base:.2f} vs first"
        base = base or wall
        print(
            f"{n:3d} streams: {speed:7.0f}× real time  ({wall * 1e3:.1f} ms wall, "
            f"{flows / args.seconds:.0f} flows/s, {engine.events_processed / args.seconds:.0f} "
            f"events/s, {per_flow:.1f} µs/flow, mean DRAM util {util:.1%}, "
            f"peak {dram.utilisation.max():.1%}){grow}"
        )


if __name__ == "__main__":
    main()
