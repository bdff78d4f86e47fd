"""The CPU side: a user-space process reading the buffers of its input pools.

Rules:

* The process (``process_name``, default the stage name) is a
  :class:`~socmem.linux.process.Process` holding an fd on every buffer it reads, so
  per-process dma-buf accounting (``dmabuf_dump``) sees it.  One frame at a time (one
  thread), after the producer's fence signals (same waiting and backpressure rules as
  :mod:`socmem.devices.processor`).
* Per frame: ``dma_buf_begin_cpu_access(DMA_FROM_DEVICE)`` (the exporter syncs every
  mapped attachment for the CPU: invalidation for a non-coherent producer), read the
  frame's valid bytes at ``soc.cpu.copy_bandwidth`` (a ``cpu`` read flow; CPU time),
  ``dma_buf_end_cpu_access``, release.  Cache-maintenance CPU time comes from the cache
  model's cost (:meth:`~socmem.linux.coherency.CoherencyTracker.estimated_ns`) when the
  coherency tracker is attached, else from the bytes the DMA layer synced
  (``Device.stats``) at :data:`~socmem.devices.CACHE_MAINT_BPS`; it runs before the read.
* The CPU's loads go through the cache model (``cpu_read``), so stale lines are found
  by the coherency tracker, not by this module.  The producer's DMA write of a frame is
  applied to the cache model (``device_write``, through the SMMU page by page) only for
  frames the CPU reads *without* ``begin_cpu_access``: with it, the invalidation makes
  the write irrelevant to the CPU, and replaying every frame's write page by page would
  cost per byte.
* ``skip-cache-sync``: the read happens without begin/end_cpu_access; the coherency
  tracker reports the stale read (``coherency.*``).  Without a tracker, a finding
  ``sim.skip-cache-sync`` is made when the producer is non-coherent.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from socmem.check.finding import Severity
from socmem.devices import CACHE_MAINT_BPS, NS, flow_weight
from socmem.devices.processor import PipelineStage, _Job
from socmem.linux.dma.types import DMA_FROM_DEVICE
from socmem.linux.dmabuf.dma_buf import dma_buf_begin_cpu_access, dma_buf_end_cpu_access
from socmem.scenario.schema import FaultKind
from socmem.sim.engine import Event
from socmem.sim.qos import QosClass

__all__ = ["CpuRuntime"]


class CpuRuntime(PipelineStage):
    """A ``cpu`` stage: a user-space process consuming frames."""

    kind = "cpu"

    def start(self) -> None:
        """Spawn the process, give it fds on its buffers, subscribe to the pools."""
        super().start()
        ctx = self.ctx
        pname = self.stage.process_name or self.name
        self.queue = ctx.queue(f"cpu/{pname}")
        self.process = None
        if ctx.userspace is not None:
            self.process = ctx.userspace.spawn(pname)
            for p in self.inputs + self.outputs:
                for b in p.buffers:
                    if b.dmabuf is not None:
                        self.process.install(b.dmabuf.file.get_file())

    def _maint_state(self) -> float:
        tracker = getattr(self.ctx, "coherency", None)
        if tracker is not None:
            return float(tracker.estimated_ns())
        total = 0
        for d in self.ctx.kernel.devices.values():
            st = d.stats
            total += st.get("sync_for_cpu_bytes", 0) + st.get("sync_for_device_bytes", 0)
        return float(total)

    def _maint_ns(self, before: float, after: float) -> tuple[int, int]:
        """``(ns, bytes)`` of the maintenance between two states."""
        if getattr(self.ctx, "coherency", None) is not None:
            return int(after - before), 0
        nbytes = int(after - before)
        return int(nbytes * NS / CACHE_MAINT_BPS), nbytes

    def _run(self, job: _Job) -> Generator[Event, Any, None]:
        if job.cancelled:
            return
        ctx = self.ctx
        engine = ctx.engine
        rec = ctx.recorder
        frame = job.frame
        pool = job.pool
        assert frame is not None and pool is not None
        self.waiting[pool.spec.name].remove(job)
        self.n_waiting -= 1
        start = engine.now_ns
        ctx.tick()
        dmabuf = frame.buffer.dmabuf
        skip = self.fault(FaultKind.SKIP_CACHE_SYNC, job.index)
        before = self._maint_state()
        if not skip and dmabuf is not None:
            dma_buf_begin_cpu_access(dmabuf, DMA_FROM_DEVICE)
        maint_ns, maint_bytes = self._maint_ns(before, self._maint_state())
        if maint_ns:
            yield engine.timeout(maint_ns)
        ctx.tick()
        self._cpu_read(frame, skip)
        bw = ctx.soc.cpu.copy_bandwidth
        nbytes = frame.nbytes
        if nbytes > 0:
            w = flow_weight(ctx.dram.qos, 1.0, bw, ctx.dram.capacity_bps)
            yield ctx.dram.transfer("cpu", nbytes, "read", QosClass.BEST_EFFORT, w, cap_bps=bw)
        ctx.tick()
        if not skip and dmabuf is not None:
            before = self._maint_state()
            dma_buf_end_cpu_access(dmabuf, DMA_FROM_DEVICE)
            ns2, b2 = self._maint_ns(before, self._maint_state())
            maint_ns += ns2
            maint_bytes += b2
            if ns2:
                yield engine.timeout(ns2)
        rec.cache_maint_ns += maint_ns
        rec.cache_maint_bytes += maint_bytes
        rec.cpu_read_ns += int(nbytes * NS / bw) if bw else 0
        self.jobs += 1
        rec.jobs[self.name] += 1
        end = engine.now_ns
        rec.slice(
            "cpu",
            self.name,
            f"{self.name} {frame.origin}#{frame.seq}",
            start,
            end,
            frame.slice_id,
            pool=pool.spec.name,
            bytes=nbytes,
            cache_maintenance_us=maint_ns / 1000,
        )
        rec.latencies[self.name].append(end - frame.t0_ns)
        pool.release(frame.buffer)

    def _producer_write(self, frame: Any) -> None:
        """Tell the cache model the producer's device wrote the frame (see module rules)."""
        producer = self.ctx.scenario.stage(frame.producer)
        if producer is None:
            return
        acc = frame.buffer.accesses.get(producer.master)
        if acc is not None and acc.dev is not None and acc.zero_copy and frame.nbytes:
            self.ctx.coherency.device_write(acc.dev, acc.iova, frame.nbytes)

    def _cpu_read(self, frame: Any, skip: bool) -> None:
        """The CPU's loads, through the cache model when there is one."""
        tracker = getattr(self.ctx, "coherency", None)
        buf = frame.buffer
        if tracker is not None and buf.dmabuf is not None:
            if skip:
                self._producer_write(frame)
            heap_buf = buf.dmabuf.priv
            remaining = frame.nbytes
            for pfn, n in heap_buf.pfn_runs():
                if remaining <= 0:
                    break
                size = min(n * 4096, remaining)
                tracker.cpu_read(pfn * 4096, size)
                remaining -= size
            return
        if not skip:
            return
        producer = self.ctx.scenario.stage(frame.producer)
        dev = self.ctx.kernel.devices.get(producer.master) if producer is not None else None
        if dev is not None and not dev.coherent:
            history = list(buf.dmabuf.history) if buf.dmabuf is not None else []
            self.ctx.finding(
                "sim.skip-cache-sync",
                Severity.ERROR,
                f"{self.name}: read {buf.label} written by non-coherent {dev.name} without "
                "DMA_BUF_IOCTL_SYNC(SYNC_START): the CPU may see stale cache lines",
                subject=buf.label,
                history=history,
            )
