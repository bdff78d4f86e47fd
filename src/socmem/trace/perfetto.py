"""Export a kernel capture as a Perfetto-loadable Chrome JSON trace (Trace Event Format).

The output is ``{"traceEvents": [...], "displayTimeUnit": "ns"}`` with ``ts``/``dur`` in
microseconds (fractions keep the nanoseconds), streamed to disk while the analyses of
:mod:`socmem.trace.analyze` read the capture, so memory does not grow with its length.

Layout in ui.perfetto.dev (one process per subsystem, ``M`` metadata events name them):

* ``phases`` (pid 1): one ``X`` slice per ``trace_marker`` phase;
* ``IOMMU`` (pid 2): per device / domain a ``C`` counter ``mapped bytes <domain>`` and a
  thread whose ``i`` instants are the ``iommu:map`` / ``iommu:unmap`` events (args: iova,
  size).  Mapping lifetimes overlap without nesting, which ``X`` slices on one track
  cannot show, so the counter carries the lifetimes;
* ``SMMU faults`` (pid 3): ``i`` instants per fault group (dmesg SMMUv3 events,
  context faults, ``iommu:io_page_fault``), one thread per stream;
* ``dma_fence`` (pid 4): emit → signaled ``X`` slices on a thread per fence context
  (extra lanes ``#2``, ``#3`` ... when fences of a context overlap), and
  ``dma_fence_wait_start`` → ``wait_end`` slices on a thread per waiting task;
* ``CMA`` (pid 5): ``cma_alloc_start`` → ``cma_alloc_finish`` slices per area and a
  ``pages in use <area>`` counter.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import IO, Any

from socmem.outfile import open_atomic
from socmem.trace.analyze import TraceReport, analyze
from socmem.trace.bufinfo import BufInfo

__all__ = ["PerfettoWriter", "export_perfetto", "write_perfetto"]

PID_PHASES, PID_IOMMU, PID_FAULTS, PID_FENCE, PID_CMA = 1, 2, 3, 4, 5
_PROCESSES = {
    PID_PHASES: "phases",
    PID_IOMMU: "IOMMU",
    PID_FAULTS: "SMMU faults",
    PID_FENCE: "dma_fence",
    PID_CMA: "CMA",
}


def _us(ns: int) -> float:
    return ns / 1000.0


class PerfettoWriter:
    """Streams Trace Event Format events to a text file object; also an analysis sink."""

    def __init__(self, fh: IO[str], processes: Mapping[int, str] = _PROCESSES) -> None:
        self.fh = fh
        self.first = True
        self.events = 0
        self.tids: dict[tuple[int, str], int] = {}
        self.lanes: dict[tuple[int, str], list[int]] = {}  # busy-until per lane, ns
        fh.write('{"displayTimeUnit": "ns", "traceEvents": [\n')
        for pid, name in processes.items():
            self.process(pid, name)

    def process(self, pid: int, name: str) -> None:
        """Name process ``pid`` and sort it by its pid in the Perfetto UI."""
        meta = {"ph": "M", "pid": pid, "tid": 0, "ts": 0}
        self.emit({**meta, "name": "process_name", "args": {"name": name}})
        self.emit({**meta, "name": "process_sort_index", "args": {"sort_index": pid}})

    def emit(self, ev: dict[str, Any]) -> None:
        """Write one event."""
        if not self.first:
            self.fh.write(",\n")
        self.first = False
        self.fh.write(json.dumps(ev, separators=(",", ":")))
        self.events += 1

    def tid(self, pid: int, name: str) -> int:
        """The thread id of track ``name`` in ``pid`` (named by an ``M`` event on first use)."""
        key = (pid, name)
        t = self.tids.get(key)
        if t is None:
            t = self.tids[key] = len([k for k in self.tids if k[0] == pid]) + 1
            self.emit(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": t,
                    "ts": 0,
                    "args": {"name": name},
                }
            )
        return t

    def lane(self, pid: int, name: str, start_ns: int, end_ns: int) -> int:
        """A tid of track ``name`` free at ``start_ns`` (slices of one thread must nest)."""
        lanes = self.lanes.setdefault((pid, name), [])
        for i, busy in enumerate(lanes):
            if busy <= start_ns:
                lanes[i] = end_ns
                return self.tid(pid, name if i == 0 else f"{name} #{i + 1}")
        lanes.append(end_ns)
        i = len(lanes) - 1
        return self.tid(pid, name if i == 0 else f"{name} #{i + 1}")

    def slice(
        self,
        pid: int,
        track: str,
        name: str,
        start_ns: int,
        end_ns: int,
        args: dict[str, Any] | None = None,
    ) -> None:
        """An ``X`` complete event on a free lane of ``track``."""
        end_ns = max(end_ns, start_ns)
        self.emit(
            {
                "ph": "X",
                "name": name,
                "pid": pid,
                "tid": self.lane(pid, track, start_ns, end_ns),
                "ts": _us(start_ns),
                "dur": _us(end_ns - start_ns),
                "args": args or {},
            }
        )

    def __call__(self, kind: str, f: dict[str, Any]) -> None:
        """The analysis sink: turn each streamed record into events."""
        if kind in ("map", "unmap"):
            dom = f["domain"]
            ts = _us(f["ts_ns"])
            tid = self.tid(PID_IOMMU, dom)
            args = {"iova": hex(f["iova"]), "size": f["size"]}
            if "paddr" in f:
                args["paddr"] = hex(f["paddr"])
            self.emit(
                {
                    "ph": "i",
                    "s": "t",
                    "name": f"{kind} {f['size']}",
                    "pid": PID_IOMMU,
                    "tid": tid,
                    "ts": ts,
                    "args": args,
                }
            )
            self.emit(
                {
                    "ph": "C",
                    "name": f"mapped bytes {dom}",
                    "pid": PID_IOMMU,
                    "tid": 0,
                    "ts": ts,
                    "args": {"bytes": max(0, f["live_bytes"])},
                }
            )
        elif kind == "fence":
            self.slice(
                PID_FENCE,
                f["timeline"],
                f"seqno {f['seqno']}",
                f["start_ns"],
                f["end_ns"],
                {"seqno": f["seqno"]},
            )
        elif kind == "fence_wait":
            self.slice(
                PID_FENCE,
                f"wait {f['task']}-{f['pid']}",
                f"wait {f['timeline']} seqno {f['seqno']}",
                f["start_ns"],
                f["end_ns"],
                {"seqno": f["seqno"], "timeline": f["timeline"]},
            )
        elif kind == "cma":
            name = f"cma_alloc {f['count']} pages" + (" FAILED" if f["failed"] else "")
            self.slice(
                PID_CMA,
                f"cma {f['area']}",
                name,
                f["start_ns"],
                f["end_ns"],
                {"pfn": hex(f["pfn"]), "count": f["count"], "failed": f["failed"]},
            )
            self.emit(
                {
                    "ph": "C",
                    "name": f"pages in use {f['area']}",
                    "pid": PID_CMA,
                    "tid": 0,
                    "ts": _us(f["end_ns"]),
                    "args": {"pages": f["pages_in_use"]},
                }
            )

    def finish(self, rep: TraceReport) -> None:
        """Phases and faults (known only at the end), then close the JSON."""
        for ph in rep.phases:
            if ph["start_s"] is None or ph["end_s"] is None:
                continue
            s, e = round(ph["start_s"] * 1e9), round(ph["end_s"] * 1e9)
            self.slice(PID_PHASES, "phases", ph["name"], s, e, {"events": ph["events"]})
        for fx in rep.faults:
            track = f"stream {fx.stream_id:#x}" if fx.stream_id is not None else "faults"
            if fx.device:
                track += f" {fx.device}"
            ts = round((fx.first_time or rep.start_s or 0.0) * 1e9)
            self.emit(
                {
                    "ph": "i",
                    "s": "p",
                    "name": f"{fx.event} {fx.iova_page:#x} x{fx.count}",
                    "pid": PID_FAULTS,
                    "tid": self.tid(PID_FAULTS, track),
                    "ts": _us(ts),
                    "args": {
                        "verdict": fx.verdict,
                        "explanation": fx.explanation,
                        "iovas": [hex(x) for x in fx.iovas],
                    },
                }
            )
        self.fh.write("\n]}\n")


def write_perfetto(
    traces: Iterable[Any],
    fh: IO[str],
    *,
    dmesg: Any | None = None,
    bufinfo: BufInfo | None = None,
) -> TraceReport:
    """Analyse ``traces`` and stream the Perfetto JSON to ``fh``; returns the report."""
    w = PerfettoWriter(fh)
    rep = analyze(traces, dmesg=dmesg, bufinfo=bufinfo, sink=w)
    w.finish(rep)
    return rep


def export_perfetto(
    traces: Iterable[Any],
    output: str | os.PathLike[str],
    *,
    force: bool = False,
    dmesg: Any | None = None,
) -> TraceReport:
    """Write the Perfetto JSON to ``output`` atomically; refuse to replace it without ``force``."""
    with open_atomic(output, force) as fh:
        rep = write_perfetto(traces, fh, dmesg=dmesg)
    return rep
