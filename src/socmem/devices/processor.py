"""Processing engines: ISP, scaler, NPU, GPU (``process`` stages), and the job logic the
codecs (:mod:`socmem.devices.codec`) share.

Rules:

* **One job per input frame.** Every frame of every input is one job (an NPU fed by
  four streams runs four inferences per frame period); ``every: N`` keeps one frame in
  N per input and releases the others at once.
* **Waiting for the producer.** A job becomes ready when its input's fence signals
  (explicit: the ``sync_file`` handed along; implicit: the dma-buf's ``dma_resv``), then
  queues on its master (:class:`~socmem.devices.MasterQueue`: one job at a time per
  master).  At most :data:`~socmem.devices.MAX_WAITING` frames wait per input; a newer
  one drops the oldest (metric ``dropped``).
* **Output buffers.** A job starting needs a free buffer in each output pool; none free
  → the master waits (metric ``buffer_wait_ms``; its queue grows: ``backlog_max``).
* **The job.** Read the input frame (+ ``weights``) and write each output frame
  concurrently with the compute (``compute``, else pixels / the master's
  ``traffic.pixel_rate``); flows are paced over the compute time, so the job takes
  max(compute, memory time under contention).  Outputs are published with their fences
  at job start and signalled at the end.
* **Fault injection.** ``skip-fence-wait``: the job is queued without waiting; if it
  starts before the producer's fence signalled, a finding ``sim.fence-race`` carries
  both timelines.  ``unmap-before-dma-done`` / ``release-early``: see
  :func:`socmem.devices.unmap_in_flight`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from functools import partial
from typing import Any

from socmem.check.finding import HistoryEvent, Severity
from socmem.devices import (
    MAX_WAITING,
    NS,
    DeviceModel,
    ProducerMixin,
    restore_access,
    unmap_in_flight,
)
from socmem.linux.dmabuf.fence import DmaFenceCb, dma_fence_add_callback
from socmem.scenario.schema import FaultKind
from socmem.sim.allocation import Buffer, Frame, PoolRuntime, consumer_fence
from socmem.sim.engine import Event

__all__ = ["PipelineStage", "Processor"]


@dataclass(eq=False, slots=True)
class _Job:
    pool: PoolRuntime | None
    frame: Frame | None
    index: int
    skip_wait: bool
    cancelled: bool = False
    ready_ns: int = 0


class PipelineStage(ProducerMixin, DeviceModel):
    """A stage that turns input frames into output frames on a queued master."""

    kind = "process"

    def start(self) -> None:
        """Subscribe to the input pools (or start a frame clock without inputs)."""
        ctx = self.ctx
        self.inputs = [ctx.pools[p] for p in self.stage.inputs]
        self.outputs = [ctx.pools[p] for p in self.stage.outputs]
        self.queue = ctx.queue(self.master_name)
        self.waiting: dict[str, deque[_Job]] = {p.spec.name: deque() for p in self.inputs}
        self.counts: dict[str, int] = {p.spec.name: 0 for p in self.inputs}
        self.index = 0
        self.n_waiting = 0  # Σ len(waiting): the stage's backlog
        streams = {
            x
            for p in self.inputs
            for s in ctx.scenario.producers(p.spec.name)
            for x in ctx.recorder.streams.get(s.name, s.name).split(",")
        }
        ctx.recorder.streams[self.name] = ",".join(sorted(streams)) or self.name
        for p in self.inputs:
            p.subscribe(self.name, partial(self._on_frame, p))
        if not self.inputs:
            ctx.engine.process(self._clock(float(self.stage.fps or 30.0)))

    # -- arrivals --------------------------------------------------------------------
    def _clock(self, fps: float) -> Generator[Event, Any, None]:
        engine = self.ctx.engine
        seq = 0
        t0 = engine.now_ns
        while True:
            job = _Job(None, None, seq, False, ready_ns=engine.now_ns)
            self.queue.put(partial(self._run, job))
            seq += 1
            yield engine.timeout(max(t0 + round(seq * NS / fps) - engine.now_ns, 0))

    def _on_frame(self, pool: PoolRuntime, frame: Frame) -> None:
        name = pool.spec.name
        n = self.counts[name]
        self.counts[name] = n + 1
        if n % self.stage.every:
            pool.release(frame.buffer)
            return
        idx = self.index
        self.index += 1
        job = _Job(pool, frame, idx, self.fault(FaultKind.SKIP_FENCE_WAIT, idx))
        if job.skip_wait:
            self._ready(job)
            return
        self.ctx.tick()
        fence = consumer_fence(frame, pool.spec.sync)
        if fence is None or dma_fence_add_callback(
            fence, DmaFenceCb(), lambda _f, _cb: self._ready(job)
        ):
            self._ready(job)

    def _ready(self, job: _Job) -> None:
        assert job.pool is not None
        rec = self.ctx.recorder
        job.ready_ns = self.ctx.engine.now_ns
        waiting = self.waiting[job.pool.spec.name]
        if len(waiting) >= MAX_WAITING:
            old = waiting.popleft()
            old.cancelled = True
            self.n_waiting -= 1
            rec.drops[self.name] += 1
            assert old.pool is not None and old.frame is not None
            old.pool.release(old.frame.buffer)
        waiting.append(job)
        self.n_waiting += 1
        if self.n_waiting > rec.backlog_max[self.name]:
            rec.backlog_max[self.name] = self.n_waiting
        self.queue.put(partial(self._run, job))

    # -- what a job moves (overridden by codecs) -------------------------------------------
    def traffic(self, frame: Frame | None) -> tuple[int, list[int], list[int], int]:
        """``(read bytes, write bytes per output, valid bytes per output, compute ns)``."""
        st = self.stage
        nin = frame.nbytes if frame is not None else 0
        writes = [p.spec.transfer_bytes for p in self.outputs]
        return nin + int(st.weights), writes, list(writes), self.compute_ns(frame)

    def compute_ns(self, frame: Frame | None) -> int:
        """``compute``, else input pixels / the master's pixel rate (0: memory-bound)."""
        if self.stage.compute is not None:
            return round(float(self.stage.compute) * NS)
        rate = self.master.traffic.pixel_rate if self.master is not None else None
        pixels = 0
        if frame is not None:
            pixels = frame.buffer.pool.spec.pixels
        elif self.outputs:
            pixels = self.outputs[0].spec.pixels
        if rate and pixels:
            return int(pixels * NS / rate)
        return 0

    # -- the job ---------------------------------------------------------------------
    def _run(self, job: _Job) -> Generator[Event, Any, None]:
        if job.cancelled:
            return
        ctx = self.ctx
        engine = ctx.engine
        rec = ctx.recorder
        frame = job.frame
        if job.pool is not None:
            self.waiting[job.pool.spec.name].remove(job)
            self.n_waiting -= 1
        t_q = engine.now_ns
        outs: list[Buffer] = []
        for pool in self.outputs:
            buf = pool.try_acquire()
            if buf is None:
                buf = yield pool.acquire()
            outs.append(buf)
        rec.buffer_wait_ns[self.name] += engine.now_ns - t_q
        start = engine.now_ns
        if frame is not None and job.skip_wait and not frame.signalled:
            self._race(job)
        reads, writes, valid, compute = self.traffic(frame)
        origin = frame.origin if frame is not None else self.name
        seq = frame.seq if frame is not None else job.index
        t0 = frame.t0_ns if frame is not None else job.ready_ns
        out_frames = [
            self.begin_frame(pool, buf, origin, seq, t0, nb)
            for pool, buf, nb in zip(self.outputs, outs, valid, strict=True)
        ]
        acc_in = frame.buffer.accesses.get(self.master_name) if frame is not None else None
        if frame is not None:
            yield from self.copy_in(frame, acc_in)
        flows = self.flows(reads, sum(writes), compute, name=f"{self.name}#{job.index}")
        fault = next(
            (
                k
                for k in (FaultKind.UNMAP_BEFORE_DMA_DONE, FaultKind.RELEASE_EARLY)
                if self.fault(k, job.index)
            ),
            None,
        )
        if fault is not None and flows:
            # the input mapping goes away while the read is in flight
            target = (
                acc_in
                if acc_in is not None
                else (outs[0].accesses.get(self.master_name) if outs else None)
            )
            is_write = acc_in is None
            f = flows[0] if not is_write else flows[-1]
            engine.schedule(
                engine.now_ns + max(compute, 2) // 2,
                unmap_in_flight,
                self,
                target,
                f,
                fault,
                is_write,
            )
        events: list[Event] = list(flows)
        if compute:
            events.append(engine.timeout(compute))
        yield engine.all_of(events)
        stall = self.walk_stall_ns()
        if stall:  # page-table walks the master could not overlap with its transfers
            yield engine.timeout(stall)
        for of, buf in zip(out_frames, outs, strict=True):
            yield from self.copy_out(of, buf.accesses.get(self.master_name))
        restore_access(self, acc_in)
        for buf in outs:
            restore_access(self, buf.accesses.get(self.master_name))
        self.jobs += 1
        rec.jobs[self.name] += 1
        end = engine.now_ns
        sid = rec.slice(
            self.master_name,
            self.name,
            f"{self.name} {origin}#{seq}",
            start,
            end,
            frame.slice_id if frame is not None else 0,
            input=job.pool.spec.name if job.pool is not None else "",
            read_bytes=reads,
            write_bytes=sum(writes),
            compute_us=compute / 1000,
        )
        rec.latencies[self.name].append(end - t0)
        for pool, of in zip(self.outputs, out_frames, strict=True):
            of.slice_id = sid
            self.end_frame(pool, of)
        if job.pool is not None and frame is not None:
            job.pool.release(frame.buffer)

    def _race(self, job: _Job) -> None:
        """The job starts before its input's fence signalled: report, with both
        timelines, once the fence signals (so the producer's end is in the history)."""
        frame = job.frame
        assert frame is not None and job.pool is not None
        now = self.ctx.engine.now_ns
        fence = frame.fence

        def report(_f: object = None, _cb: object = None) -> None:
            history = list(fence.history) if fence is not None else []
            history.append(HistoryEvent(frame.start_ns / NS, "producer-start", frame.producer))
            history.append(
                HistoryEvent(now / NS, "consumer-start", f"{self.name} reads without waiting")
            )
            history.sort(key=lambda h: h.time)
            fname = fence.name() if fence is not None else "?"
            done = frame.done_ns if frame.done_ns is not None else self.ctx.engine.now_ns
            self.ctx.finding(
                "sim.fence-race",
                Severity.ERROR,
                f"{self.name}: started reading {frame.buffer.label} (frame {frame.seq} of "
                f"{frame.origin}) at {now / 1e6:.3f} ms, {(done - now) / 1e6:.3f} ms before "
                f"{frame.producer}'s fence {fname} signalled: it read a frame still being "
                "written",
                subject=frame.buffer.label,
                history=history,
                producer=frame.producer,
                producer_start_ns=frame.start_ns,
                producer_signal_ns=done,
                consumer=self.name,
                consumer_start_ns=now,
            )

        if fence is None or dma_fence_add_callback(fence, DmaFenceCb(), report):
            report()


class Processor(PipelineStage):
    """A ``process`` stage: ISP, scaler, NPU inference, GPU composition."""

    kind = "process"
