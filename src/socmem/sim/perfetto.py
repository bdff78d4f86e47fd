"""The run's timeline as a Perfetto-loadable Chrome JSON trace (Trace Event Format).

Reuses :class:`socmem.trace.perfetto.PerfettoWriter` (streaming writer, named tracks,
lanes so that overlapping slices of one track never mis-nest).  Layout in
ui.perfetto.dev:

* process ``masters`` (pid 10): a track per master (lanes ``#2`` … when a master has
  overlapping jobs, e.g. two camera ports on one CSI block); one ``X`` slice per job
  (camera frame, ISP/NPU/codec job, display scan-out, CPU read) with its bytes;
* fence flows: an ``s`` → ``f`` flow event (arrow) from the producer job that signalled
  a frame's fence to each consumer job that waited for it (binding to the enclosing
  slices, ``bp: e``);
* process ``DRAM`` (pid 11): ``C`` counters of bandwidth per master (GB/s, read +
  write) and of DRAM utilisation (%);
* process ``findings`` (pid 12): an ``i`` instant per finding;
* a fast-forwarded run (:mod:`socmem.sim.fastforward`): the slices and counters cover
  the simulated part; one ``X`` slice on the ``fast-forward`` track of ``masters``
  spans the extrapolated tail, named after the run's fast-forward summary.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from socmem.outfile import open_atomic
from socmem.trace.perfetto import PerfettoWriter

if TYPE_CHECKING:
    from pathlib import Path

    from socmem.sim.runner import Run

__all__ = ["write_run_trace"]

PID_MASTERS, PID_DRAM, PID_FINDINGS = 10, 11, 12


def _us(ns: float) -> float:
    return ns / 1000.0


def write_run_trace(run: Run, path: str | Path, force: bool = False) -> int:
    """Write the trace of ``run`` to ``path`` (atomically); returns the number of events."""
    with open_atomic(path, force) as fh:
        w = PerfettoWriter(fh, {PID_MASTERS: "masters", PID_DRAM: "DRAM", PID_FINDINGS: "findings"})
        rec = run.ctx.recorder
        where: dict[int, tuple[int, float, float]] = {}  # slice id -> (tid, ts, end)
        for s in sorted(rec.slices, key=lambda x: (x.start_ns, x.id)):
            tid = w.lane(PID_MASTERS, s.master, s.start_ns, max(s.end_ns, s.start_ns))
            args: dict[str, Any] = {"stage": s.stage, **s.args}
            w.emit(
                {
                    "ph": "X",
                    "name": s.name,
                    "cat": s.stage,
                    "pid": PID_MASTERS,
                    "tid": tid,
                    "ts": _us(s.start_ns),
                    "dur": _us(max(s.end_ns - s.start_ns, 0)),
                    "args": args,
                }
            )
            where[s.id] = (tid, _us(s.start_ns), _us(s.end_ns))
        flow_id = 0
        for s in rec.slices:
            src = where.get(s.waited_on) if s.waited_on else None
            dst = where.get(s.id)
            if src is None or dst is None:
                continue
            flow_id += 1
            w.emit(
                {
                    "ph": "s",
                    "name": "fence",
                    "cat": "fence",
                    "id": flow_id,
                    "pid": PID_MASTERS,
                    "tid": src[0],
                    "ts": max(src[2] - 0.001, src[1]),
                }
            )
            w.emit(
                {
                    "ph": "f",
                    "bp": "e",
                    "name": "fence",
                    "cat": "fence",
                    "id": flow_id,
                    "pid": PID_MASTERS,
                    "tid": dst[0],
                    "ts": dst[1],
                }
            )
        _counters(w, run)
        ff = run.result.fast_forward
        if ff is not None:
            w.emit(
                {
                    "ph": "X",
                    "name": f"fast-forward: {ff.summary()}",
                    "cat": "fast-forward",
                    "pid": PID_MASTERS,
                    "tid": w.tid(PID_MASTERS, "fast-forward"),
                    "ts": _us(ff.from_s * 1e9),
                    "dur": _us(ff.extrapolated_s * 1e9),
                    "args": {
                        "periods": ff.periods,
                        "hyperperiod_ms": ff.hyperperiod_s * 1e3,
                        "identical_periods": ff.identical,
                    },
                }
            )
        for f in run.result.findings:
            w.emit(
                {
                    "ph": "i",
                    "s": "p",
                    "name": f.kind,
                    "pid": PID_FINDINGS,
                    "tid": w.tid(PID_FINDINGS, str(f.severity)),
                    "ts": _us((f.time or 0.0) * 1e9),
                    "args": {"message": f.message, "subject": f.subject},
                }
            )
        fh.write("\n]}\n")
        return w.events


def _counters(w: PerfettoWriter, run: Run) -> None:
    """Bandwidth per master (change points of the fluid rate series) and utilisation."""
    per_master: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
    for (master, direction), acc in run.dram.accounts.items():
        for t, v in zip(acc.rate.times, acc.rate.values, strict=True):
            per_master[master].append((t, v, direction))
    for master, pts in sorted(per_master.items()):
        cur = {"read": 0.0, "write": 0.0}
        pts.sort(key=lambda p: p[0])
        tid = w.tid(PID_DRAM, f"{master} GB/s")
        i = 0
        while i < len(pts):
            t = pts[i][0]
            while i < len(pts) and pts[i][0] == t:
                cur[pts[i][2]] = pts[i][1]
                i += 1
            w.emit(
                {
                    "ph": "C",
                    "name": f"{master} GB/s",
                    "pid": PID_DRAM,
                    "tid": tid,
                    "ts": _us(t),
                    "args": {
                        "read": round(cur["read"] / 1e9, 4),
                        "write": round(cur["write"] / 1e9, 4),
                    },
                }
            )
    util = run.dram.utilisation
    for t, v in zip(util.times, util.values, strict=True):
        w.emit(
            {
                "ph": "C",
                "name": "DRAM utilisation %",
                "pid": PID_DRAM,
                "tid": 0,
                "ts": _us(t),
                "args": {"util": round(v * 100, 3)},
            }
        )
