"""Display controller: one plane scanning its input pool out at the refresh rate.

Rules:

* At every vsync (``1/refresh``, absolute times) the plane latches the newest frame of
  its input whose fence has signalled; it keeps holding the frame it shows until a newer
  one is latched (the frame is being scanned), and releases frames superseded before
  they were ever shown.  No new frame: the previous one is scanned again.
* Scan-out reads the latched frame as a real-time flow that must finish within the
  active period (:data:`ACTIVE_FRACTION` of the refresh period: 2160 active of 2250
  total lines for 4K); its rate cap is frame bytes / active time.
* **Underflow**: the flow completes later than the ideal scan-out by more than the
  line buffer's slack (``latency_budget``, default :data:`DEFAULT_BUDGET_S`,
  perf-anchors §7.11) — metric and finding ``sim.display-underflow``.
* Frame latency of a display: the vsync that first shows the frame minus its capture.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from socmem.check.finding import Severity
from socmem.devices import NS, DeviceModel
from socmem.sim.allocation import Frame
from socmem.sim.engine import Event

__all__ = ["ACTIVE_FRACTION", "DEFAULT_BUDGET_S", "Display"]

ACTIVE_FRACTION = 2160 / 2250
DEFAULT_BUDGET_S = 20e-6


class Display(DeviceModel):
    """A ``display`` stage."""

    kind = "display"

    def start(self) -> None:
        """Subscribe to the input pool and start the vsync clock."""
        ctx = self.ctx
        self.pool = ctx.pools[self.stage.inputs[0]]
        self.refresh = float(self.stage.refresh or 60.0)
        budget = self.stage.latency_budget
        self.budget_ns = round(float(budget if budget is not None else DEFAULT_BUDGET_S) * NS)
        self.pending: deque[Frame] = deque()
        self.current: Frame | None = None
        self.copied: set[int] = set()
        streams = {
            ctx.recorder.streams.get(s.name, s.name)
            for s in ctx.scenario.producers(self.pool.spec.name)
        }
        ctx.recorder.streams[self.name] = ",".join(sorted(streams))
        self.pool.subscribe(self.name, self.pending.append)
        ctx.engine.process(self._vsync())

    def _vsync(self) -> Generator[Event, Any, None]:
        engine = self.ctx.engine
        rec = self.ctx.recorder
        seq = 0
        t_start = engine.now_ns
        while True:
            now = engine.now_ns
            newest = None
            for f in self.pending:
                if f.signalled:
                    newest = f
            if newest is not None:
                while self.pending[0] is not newest:
                    self.pool.release(self.pending.popleft().buffer)
                self.pending.popleft()
                if self.current is not None:
                    self.pool.release(self.current.buffer)
                self.current = newest
                rec.latencies[self.name].append(now - newest.t0_ns)
            if self.current is not None:
                engine.process(self._scan(self.current, seq, now))
            seq += 1
            nxt = t_start + round(seq * NS / self.refresh)
            yield engine.timeout(max(nxt - engine.now_ns, 0))

    def _scan(self, frame: Frame, seq: int, t: int) -> Generator[Event, Any, None]:
        ctx = self.ctx
        engine = ctx.engine
        rec = ctx.recorder
        access = frame.buffer.accesses.get(self.master_name)
        if access is not None and not access.zero_copy and id(frame) not in self.copied:
            self.copied.add(id(frame))
            yield from self.copy_in(frame, access)
        t_scan = engine.now_ns
        active = round(NS / self.refresh * ACTIVE_FRACTION)
        nbytes = frame.nbytes
        flows = self.flows(nbytes, 0, active, name=f"{self.name}#{seq}")
        yield engine.all_of(flows)
        end = engine.now_ns
        late = end - (t_scan + active)
        if late > rec.worst_display_lateness_ns[self.name]:
            rec.worst_display_lateness_ns[self.name] = late
        self.jobs += 1
        rec.jobs[self.name] += 1
        rec.slice(
            self.master_name,
            self.name,
            f"{self.name} scan {seq}",
            t,
            end,
            frame.slice_id,
            frame=f"{frame.origin}#{frame.seq}",
            bytes=nbytes,
            late_us=late / 1000,
        )
        if late > self.budget_ns:
            rec.underflows[self.name] += 1
            ctx.finding(
                "sim.display-underflow",
                Severity.ERROR,
                f"{self.name}: underflow at vsync {seq}: scan-out of {nbytes} bytes finished "
                f"{late / 1000:.1f} us late (line-buffer slack {self.budget_ns / 1000:.1f} us)",
                subject=self.name,
                vsync=seq,
                late_ns=late,
            )
