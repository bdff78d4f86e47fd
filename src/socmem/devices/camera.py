"""Camera source: a sensor + CSI receiver writing frames into its output pool.

Rules:

* Every ``1/fps`` (absolute times ``seq / fps``, no drift) the camera needs a free
  buffer of its output pool (free = no consumer still holds it).  None free: the frame
  is **dropped** (metric, and a finding ``sim.camera-drop``, warning, with the pool's
  state).
* The frame is published to the consumers with its write fence when the readout starts
  (:mod:`socmem.sim.allocation`), then written as a real-time flow whose rate cap is the
  sensor readout: frame bytes over :data:`READOUT_FRACTION` of the frame period (the
  rest is vertical blanking).  When the last byte is written the fence signals.
* A camera that cannot reach its buffer writes a staging buffer and the CPU copies the
  frame into the pool buffer (:mod:`socmem.sim.allocation` explains when).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from socmem.check.finding import Severity
from socmem.devices import NS, DeviceModel, ProducerMixin, restore_access, unmap_in_flight
from socmem.scenario.schema import FaultKind
from socmem.sim.engine import Event

__all__ = ["READOUT_FRACTION", "Camera"]

READOUT_FRACTION = 0.9


class Camera(ProducerMixin, DeviceModel):
    """A ``source`` stage."""

    kind = "camera"

    def start(self) -> None:
        """Start the frame clock."""
        self.pool = self.ctx.pools[self.stage.outputs[0]]
        self.fps = float(self.stage.fps or 30.0)
        self.ctx.recorder.streams[self.name] = self.name
        self.ctx.engine.process(self._clock())

    def _clock(self) -> Generator[Event, Any, None]:
        engine = self.ctx.engine
        seq = 0
        t_start = engine.now_ns
        while True:
            now = engine.now_ns
            buf = self.pool.try_acquire()
            if buf is None:
                self._drop(seq)
            else:
                engine.process(self._frame(buf, seq, now))
            seq += 1
            nxt = t_start + round(seq * NS / self.fps)
            yield engine.timeout(max(nxt - engine.now_ns, 0))

    def _drop(self, seq: int) -> None:
        rec = self.ctx.recorder
        rec.drops[self.name] += 1
        held = ", ".join(
            f"{b.index}:{b.refs} ref{'s' if b.refs != 1 else ''}" for b in self.pool.buffers
        )
        self.ctx.finding(
            "sim.camera-drop",
            Severity.WARNING,
            f"{self.name}: frame {seq} dropped: no free buffer in pool "
            f"{self.pool.spec.name} ({len(self.pool.buffers)} buffers, held: {held or 'none'})",
            subject=self.name,
            frame=seq,
            pool=self.pool.spec.name,
        )

    def _frame(self, buf: Any, seq: int, t0: int) -> Generator[Event, Any, None]:
        ctx = self.ctx
        engine = ctx.engine
        spec = self.pool.spec
        nbytes = spec.transfer_bytes
        frame = self.begin_frame(self.pool, buf, self.name, seq, t0, nbytes)
        access = buf.accesses.get(self.master_name)
        period = round(NS / self.fps)
        readout = int(period * READOUT_FRACTION)
        flows = self.flows(0, nbytes, readout, name=f"{self.name}#{seq}")
        fault = next(
            (
                k
                for k in (FaultKind.UNMAP_BEFORE_DMA_DONE, FaultKind.RELEASE_EARLY)
                if self.fault(k, seq)
            ),
            None,
        )
        if fault is not None:
            wflow = flows[-1]
            engine.schedule(
                engine.now_ns + readout // 2, unmap_in_flight, self, access, wflow, fault, True
            )
        yield engine.all_of(flows)
        yield from self.copy_out(frame, access)
        restore_access(self, access)
        self.jobs += 1
        ctx.recorder.jobs[self.name] += 1
        frame.slice_id = ctx.recorder.slice(
            self.master_name,
            self.name,
            f"{self.name} frame {seq}",
            t0,
            engine.now_ns,
            pool=spec.name,
            buffer=buf.index,
            bytes=nbytes,
        )
        ctx.recorder.latencies[self.name].append(engine.now_ns - t0)
        self.end_frame(self.pool, frame)
