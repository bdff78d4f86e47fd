"""Speed of ``socmem run``: the whole stack (functional model + devices + fluid DRAM).

Run: ``.venv/bin/python benchmarks/bench_run.py [--seconds 10] [--repeat 3] [--profile]``.

Prints, in both modes (``fast-forward``: the default, :mod:`socmem.sim.fastforward`
extrapolates once the pipeline repeats itself; ``full``: every nanosecond simulated)

1. simulated seconds per wall-clock second on the built-in ``default`` scenario, for the
   timed run alone (target ≥ 500× on one core) and including set-up (boot, heap
   allocation, dma-buf attach + DMA map of every buffer for every device, SMMU page
   tables), the per-job cost and, fast-forwarded, where the steady state began;
2. how the cost grows from 4 to 16 camera streams: a generated scenario of N 1080p30
   RAW10 cameras (four per camera port of ``reference-mobile``), N ISP contexts on the
   one ISP, NPU ingest of every stream, one encode and one display of stream 0.  Linear
   growth means wall time per simulated second ∝ N (jobs ∝ N).

``--profile`` prints the top of a cProfile of the default run (where the time goes).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
from pathlib import Path

from socmem.sim.runner import run_scenario


def streams_scenario(n: int) -> str:
    """A scenario file with ``n`` 1080p30 camera streams."""
    bufs, stages = [], []
    for i in range(n):
        bufs.append(f"  - {{name: raw{i}, width: 1920, height: 1080, format: RAW10, count: 4}}")
        bufs.append(f"  - {{name: yuv{i}, width: 1920, height: 1080, format: NV12, count: 4}}")
        stages.append(
            f"  - {{name: cam{i}, type: source, master: cam{i % 4}, fps: 30, outputs: [raw{i}]}}"
        )
        stages.append(
            f"  - {{name: isp{i}, type: process, master: isp, inputs: [raw{i}], outputs: [yuv{i}]}}"
        )
    ins = ", ".join(f"yuv{i}" for i in range(n))
    bufs.append("  - {name: det, size: 64KiB, count: 8}")
    bufs.append("  - {name: bits, size: 1MiB, count: 4}")
    stages.append(
        f"  - {{name: npu, type: process, master: npu, inputs: [{ins}], outputs: [det],"
        " compute: 1ms, weights: 4MiB}"
    )
    stages.append(
        "  - {name: enc, type: encode, master: venc, inputs: [yuv0], outputs: [bits],"
        " reference_frames: 2, bitrate: 20Mbps}"
    )
    stages.append("  - {name: show, type: display, master: display, inputs: [yuv0], refresh: 60Hz}")
    stages.append("  - {name: app, type: cpu, master: cpu, inputs: [det, bits]}")
    text = (
        f"schema_version: 1\nname: streams{n}\nsoc: reference-mobile\nduration: 1s\n"
        "buffers:\n" + "\n".join(bufs) + "\nstages:\n" + "\n".join(stages) + "\n"
    )
    p = Path(tempfile.mkdtemp()) / f"streams{n}.yaml"
    p.write_text(text)
    return str(p)


def measure(spec: str, seconds: float, repeat: int, fast_forward: bool) -> dict[str, float]:
    """Median over ``repeat`` runs: total and engine-only speed, jobs per simulated s."""
    totals, engines, walls, setups = [], [], [], []
    jobs = 0
    steady = None
    for _ in range(repeat):
        r = run_scenario(
            spec, duration_s=seconds, keep_trace=False, fast_forward=fast_forward
        ).result
        steady = r.fast_forward
        totals.append(r.speed)
        engines.append(r.engine_speed)
        walls.append(r.wall_s - r.setup_s)
        setups.append(r.setup_s)
        jobs = sum(s.jobs for s in r.stages)
        assert r.dropped == 0 and r.underflows == 0, "benchmark scenario must not saturate"
    run_wall = statistics.median(walls)
    return {
        "speed_total": statistics.median(totals),
        "speed_engine": statistics.median(engines),
        "setup_s": statistics.median(setups),
        "run_wall_s": run_wall,
        "jobs_per_sim_s": jobs / seconds,
        "us_per_job": run_wall / jobs * 1e6 if jobs else 0.0,
        "steady_from_s": steady.from_s if steady is not None else None,
    }


def main() -> None:
    """Measure and print."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    for mode, ff in (("fast-forward", True), ("full", False)):
        m = measure("default", args.seconds, args.repeat, ff)
        print(f"[{mode}] default scenario, {args.seconds:g} s simulated, median of {args.repeat}:")
        print(
            f"  {m['speed_engine']:.0f}x real time for the timed run alone, "
            f"{m['speed_total']:.0f}x including set-up ({m['setup_s']:.2f} s)"
        )
        where = f", steady from {m['steady_from_s']:g} s" if m["steady_from_s"] is not None else ""
        print(
            f"  {m['jobs_per_sim_s']:.0f} device jobs per simulated second, "
            f"{m['us_per_job']:.1f} us of wall time per job{where}"
        )

    for mode, ff in (("fast-forward", True), ("full", False)):
        print(f"[{mode}] camera streams (1080p30 each), {args.seconds / 2:g} s, timed run alone:")
        base = None
        for n in (4, 8, 16):
            s = measure(streams_scenario(n), args.seconds / 2, args.repeat, ff)
            wall_per_sim = 1 / s["speed_engine"]
            base = base or (n, wall_per_sim)
            growth = wall_per_sim / base[1]
            print(
                f"  {n:2d} streams: {s['speed_engine']:7.1f}x real time, "
                f"{s['jobs_per_sim_s']:5.0f} jobs/sim s, {s['us_per_job']:5.1f} us/job, "
                f"cost x{growth:.2f} for x{n / base[0]:.0f} streams (set-up {s['setup_s']:.2f} s)"
            )

    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        run_scenario("default", duration_s=args.seconds, keep_trace=False)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
