"""Device models: the engines of camera, ISP/NPU/GPU/scaler, codec, display and the CPU
runtime, written against the functional model (:mod:`socmem.linux`) and driven in time
by the engine (:mod:`socmem.sim.engine`).

A device model never moves bytes itself: every transfer is a flow on the shared DRAM
(:class:`~socmem.sim.fluid.FluidResource`) and every buffer, mapping, fence and CPU
access is an object or call of the functional model (:mod:`socmem.sim.allocation` sets
the buffers up).  Rules shared by all devices (each device's own rules are in its
module):

* **QoS.** A device's flows carry its master's QoS class and weight from the SoC
  description (``cpu`` flows are best effort, weight 1); a master's
  ``traffic.peak_bandwidth`` caps each of its flows.  With QoS off (scenario
  ``qos: false``) there are neither priorities nor weights: the interconnect serves
  requests in arrival order, which shares an overloaded DRAM in proportion to what each
  flow asks for, so every flow's weight is its own rate cap (:func:`flow_weight`) and
  an overload slows every master by the same factor, real-time ones included.
* **Pacing.** A job's transfers run concurrently with its compute and are paced over
  it (rate cap = bytes / compute time), so a job takes max(compute, memory time under
  contention).
* **Translation.** Traffic of a device behind an IOMMU costs IOTLB misses and walk
  reads: :func:`translation_traffic` (one call, the only place to change when the
  statistical TLB model lands).  Walk bytes are read by the same master and ride on its
  read flow (a separate small read flow for write-only jobs).
* **Serialisation.** Stages on one master (four ISP contexts, one NPU for four streams)
  share one job queue (:class:`MasterQueue`): one job at a time, first come first
  served.  Camera sources and display planes are independent hardware pipes and never
  queue.
* **Backpressure.** A consuming stage keeps at most :data:`MAX_WAITING` frames waiting
  per input; a newer frame makes it drop the oldest waiting one (metric ``dropped`` of
  that stage) instead of holding buffers its producer needs.
* **Time for the functional model.** Before any functional call a device brings the
  kernel's :class:`~socmem.linux.clock.ModelClock` to the engine's time
  (:meth:`SimContext.tick`), so findings and object histories carry simulated times.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.linux.dma.mapping import dma_sync_sgtable_for_cpu, dma_sync_sgtable_for_device
from socmem.scenario.schema import FaultKind, Scenario, Stage
from socmem.sim.engine import Engine, Event
from socmem.sim.fluid import Flow, FluidResource
from socmem.sim.qos import QosClass

if TYPE_CHECKING:
    from socmem.linux.device import Device
    from socmem.linux.kernel import Kernel
    from socmem.linux.process import UserSpace
    from socmem.sim.allocation import Access, Frame, PoolRuntime
    from socmem.sim.metrics import Recorder
    from socmem.soc.schema import Master, Soc

__all__ = [
    "CACHE_MAINT_BPS",
    "MAX_WAITING",
    "DeviceModel",
    "MasterQueue",
    "SimContext",
    "flow_weight",
    "make_device",
    "translation_traffic",
]

NS = 1_000_000_000
PAGE = 4096
WALK_BYTES = 64  # one last-level descriptor read per miss (perf-anchors §3.27)
MAX_WAITING = 2
CACHE_MAINT_BPS = 25e9  # clean/invalidate by VA: a 12.4 MB frame in ~0.5 ms (§4.10)

_QOS = {"realtime": QosClass.REALTIME, "high": QosClass.HIGH, "best-effort": QosClass.BEST_EFFORT}


def translation_traffic(uses_iommu: bool, nbytes: int) -> tuple[int, int]:
    """IOTLB ``(misses, walk read bytes)`` of a linear transfer of ``nbytes``.

    Stand-in until :mod:`socmem.sim.tlb` lands: one miss per 4 KiB page, 64 B of walk
    per miss (perf-anchors §3.27: no prefetch, one stream).
    """
    if not uses_iommu or nbytes <= 0:
        return 0, 0
    misses = -(-nbytes // PAGE)
    return misses, misses * WALK_BYTES


def flow_weight(qos_on: bool, weight: float, cap_bps: float | None, capacity_bps: float) -> float:
    """A flow's weight: the master's QoS weight, or with QoS off its demand (cap, GB/s)."""
    if qos_on:
        return weight
    return (cap_bps if cap_bps is not None else capacity_bps) / 1e9


@dataclass
class SimContext:
    """What every device model needs: engine, DRAM, kernel, pools, recorder."""

    engine: Engine
    dram: FluidResource
    kernel: Kernel
    soc: Soc
    scenario: Scenario
    pools: dict[str, PoolRuntime]
    recorder: Recorder
    userspace: UserSpace | None = None
    queues: dict[str, MasterQueue] = field(default_factory=dict)
    stream_fps: dict[str, float] = field(default_factory=dict)  # pool -> frames/s
    coherency: Any = None  # socmem.linux.coherency.CoherencyTracker, when attached
    translation: Any = None  # socmem.sim.runner.Translation (None: the stand-in)
    cpu_read_pools: set[str] = field(default_factory=set)  # pools a cpu stage reads
    end_ns: int = 0

    def tick(self) -> None:
        """Bring the functional model's clock to the engine's time."""
        clock = self.kernel.clock
        now = self.engine.now_ns
        if clock.now < now:
            clock.advance_to(now)

    def queue(self, master: str) -> MasterQueue:
        """The job queue of ``master`` (created on first use)."""
        q = self.queues.get(master)
        if q is None:
            q = self.queues[master] = MasterQueue(self.engine, master)
        return q

    def finding(
        self,
        kind: str,
        severity: Severity,
        message: str,
        subject: str = "",
        history: list[HistoryEvent] | None = None,
        **data: Any,
    ) -> Finding:
        """Record a simulator finding at the current simulated time."""
        return self.kernel.findings.add(
            Finding(
                kind,
                severity,
                message,
                subject=subject,
                time=self.engine.now_ns / NS,
                history=list(history or []),
                data=dict(data),
            )
        )


Job = Callable[[], Generator[Event, Any, Any]]


class MasterQueue:
    """One job at a time on a master, first come first served."""

    def __init__(self, engine: Engine, master: str) -> None:
        self.engine = engine
        self.master = master
        self.jobs: deque[Job] = deque()
        self._wake: Event | None = None
        self.busy = False
        self.max_len = 0
        engine.process(self._run())

    def put(self, job: Job) -> None:
        """Queue ``job`` (a generator function run when the master is free)."""
        self.jobs.append(job)
        if len(self.jobs) > self.max_len:
            self.max_len = len(self.jobs)
        if self._wake is not None:
            ev, self._wake = self._wake, None
            ev.succeed()

    def _run(self) -> Generator[Event, Any, Any]:
        while True:
            if not self.jobs:
                self._wake = self.engine.event()
                yield self._wake
                continue
            job = self.jobs.popleft()
            self.busy = True
            yield from job()
            self.busy = False


class DeviceModel:
    """Base of the device models: the stage, its master, QoS, faults and flow helpers."""

    kind = "device"

    def __init__(self, ctx: SimContext, stage: Stage) -> None:
        self.ctx = ctx
        self.stage = stage
        self.name = stage.name
        self.master_name = stage.master
        self.master: Master | None = ctx.soc.master(stage.master)
        self.dev: Device | None = (
            ctx.kernel.devices.get(stage.master) if stage.master != "cpu" else None
        )
        m = self.master
        self.qos = _QOS.get(m.qos_class.value, QosClass.BEST_EFFORT) if m else QosClass.BEST_EFFORT
        self.weight = float(m.qos_weight) if m else 1.0
        self.peak = m.traffic.peak_bandwidth if m and m.traffic.peak_bandwidth else None
        self.regulator = m.qos_regulator if m is not None else None
        self.uses_iommu = self.dev is not None and self.dev.uses_iommu_dma
        self.faults = [f for f in ctx.scenario.faults if f.stage == stage.name]
        self.jobs = 0

    # -- helpers ---------------------------------------------------------------------
    def fault(self, kind: FaultKind, index: int) -> bool:
        """True if fault ``kind`` applies to this stage's frame ``index``."""
        for f in self.faults:
            if f.kind is kind and (index == f.frame if f.once else index >= f.frame):
                return True
        return False

    def cap(self, nbytes: float, pace_ns: int) -> float | None:
        """Rate cap of a flow of ``nbytes`` paced over ``pace_ns`` (and the master's peak)."""
        cap = nbytes * NS / pace_ns if pace_ns > 0 else None
        if self.peak is not None:
            cap = self.peak if cap is None else min(cap, self.peak)
        return cap

    def walk_stall_ns(self) -> int:
        """IOTLB walk latency a job of this stage adds to its master (the statistical
        model's ``added_latency_ns``: misses × walk time / walks in flight), recorded per
        master.  Only processing stages (ISP, NPU, GPU, codecs) pay it: cameras and
        displays are real-time linear streams whose TCU prefetches the next translation
        table (perf-anchors.md 3.25), so their walks hide behind the transfer."""
        tr = self.ctx.translation
        if tr is None or not self.uses_iommu:
            return 0
        stall = int(tr.latency_ns(self.name))
        if stall:
            self.ctx.recorder.walk_stall(self.master_name, stall)
        return stall

    def flows(
        self,
        read_bytes: int,
        write_bytes: int,
        pace_ns: int,
        *,
        qos: QosClass | None = None,
        name: str | None = None,
        write_pace_ns: int | None = None,
    ) -> list[Flow]:
        """Start the read and write flows of one job (walk reads included)."""
        dram = self.ctx.dram
        qos = self.qos if qos is None else qos
        out: list[Flow] = []
        tr = self.ctx.translation
        if tr is not None:
            misses, walk = tr.cost(self.name, self.uses_iommu, read_bytes + write_bytes)
        else:
            misses, walk = translation_traffic(self.uses_iommu, read_bytes + write_bytes)
        if misses:
            self.ctx.recorder.translation(self.master_name, read_bytes + write_bytes, misses, walk)
        write_pace = pace_ns if write_pace_ns is None else write_pace_ns
        for nbytes, direction, pace in (
            (read_bytes + walk, "read", pace_ns),
            (write_bytes, "write", write_pace),
        ):
            if nbytes <= 0:
                continue
            cap = self.cap(nbytes, pace)
            weight = flow_weight(dram.qos, self.weight, cap, dram.capacity_bps)
            out.append(
                dram.transfer(
                    self.master_name,
                    nbytes,
                    direction,
                    qos,
                    weight,
                    cap_bps=cap,
                    regulator_bps=self.regulator,
                    name=name,
                )
            )
        return out

    def copy_in(self, frame: Frame, access: Access | None) -> Generator[Event, Any, int]:
        """Before a device reads ``frame``: the copy its access path needs (0 bytes if none)."""
        return (yield from self._copy(frame, access, for_device=True))

    def copy_out(self, frame: Frame, access: Access | None) -> Generator[Event, Any, int]:
        """After a device wrote ``frame`` elsewhere: the copy into the pool buffer."""
        return (yield from self._copy(frame, access, for_device=False))

    def _copy(
        self, frame: Frame, access: Access | None, for_device: bool
    ) -> Generator[Event, Any, int]:
        """The copy a non-zero-copy access path costs: swiotlb's bounce when the kernel
        does it, else a CPU memcpy; recorded with its reason."""
        if access is None or access.zero_copy:
            return 0
        n = frame.nbytes
        if access.bounce and access.sgt is not None and access.dev is not None:
            n = self._kernel_bounce(access, for_device=for_device) or n
        yield from self._cpu_copy(n)
        self.ctx.recorder.copy(
            frame.buffer.pool.spec.name,
            self.name,
            access.reason,
            n,
            _ns(n, self.ctx.soc.cpu.copy_bandwidth),
        )
        return n

    def _kernel_bounce(self, access: Access, for_device: bool) -> int:
        """Let the kernel bounce (dma_sync_*): the bytes swiotlb counts."""
        self.ctx.tick()
        pool = access.dev.direct.dma_io_tlb_mem or self.ctx.kernel.swiotlb  # type: ignore[union-attr]
        if pool is None:
            return 0
        before = sum(pool.bytes_bounced.values())
        if for_device:
            dma_sync_sgtable_for_device(access.dev, access.sgt, access.direction)  # type: ignore[arg-type]
        else:
            dma_sync_sgtable_for_cpu(access.dev, access.sgt, access.direction)  # type: ignore[arg-type]
        return int(sum(pool.bytes_bounced.values()) - before)

    def _cpu_copy(self, nbytes: int) -> Generator[Event, Any, None]:
        """A CPU memcpy of ``nbytes``: read + write flows on the ``cpu`` master."""
        bw = self.ctx.soc.cpu.copy_bandwidth
        dram = self.ctx.dram
        w = flow_weight(dram.qos, 1.0, bw, dram.capacity_bps)
        fl = [
            dram.transfer("cpu", nbytes, "read", QosClass.BEST_EFFORT, w, cap_bps=bw),
            dram.transfer("cpu", nbytes, "write", QosClass.BEST_EFFORT, w, cap_bps=bw),
        ]
        yield self.ctx.engine.all_of(fl)

    def start(self) -> None:  # pragma: no cover - overridden
        """Start the device's engine processes."""
        raise NotImplementedError


def _ns(nbytes: float, bps: float) -> int:
    return int(nbytes * NS / bps) if bps > 0 else 0


def make_device(ctx: SimContext, stage: Stage) -> DeviceModel:
    """The device model for ``stage`` (by stage type)."""
    from socmem.devices.camera import Camera
    from socmem.devices.codec import Decoder, Encoder
    from socmem.devices.cpu import CpuRuntime
    from socmem.devices.display import Display
    from socmem.devices.processor import Processor
    from socmem.scenario.schema import StageType

    kinds: dict[StageType, type[DeviceModel]] = {
        StageType.SOURCE: Camera,
        StageType.PROCESS: Processor,
        StageType.ENCODE: Encoder,
        StageType.DECODE: Decoder,
        StageType.DISPLAY: Display,
        StageType.CPU: CpuRuntime,
    }
    return kinds[stage.type](ctx, stage)


class ProducerMixin:
    """Frames a stage writes: acquire, fence, publish at start; signal and release at end."""

    ctx: SimContext
    name: str
    _fences: Any = None

    def begin_frame(
        self, pool: PoolRuntime, buf: Any, origin: str, seq: int, t0_ns: int, nbytes: int
    ) -> Frame:
        """Create the frame's fence and publish it to the pool's consumers."""
        from socmem.sim.allocation import Frame, StageFences, attach_fence

        ctx = self.ctx
        ctx.tick()
        if self._fences is None:
            driver = getattr(self, "master_name", "socmem")
            self._fences = StageFences(ctx.kernel, self.name, driver)
        frame = Frame(buf, origin, seq, t0_ns, self.name, nbytes=nbytes)
        frame.start_ns = ctx.engine.now_ns
        frame.fence = self._fences.next_fence()
        attach_fence(frame, pool.spec.sync)
        pool.publish(frame)
        return frame

    def end_frame(self, pool: PoolRuntime, frame: Frame) -> None:
        """Signal the frame's fence and drop the producer's reference."""
        from socmem.sim.allocation import signal_frame

        ctx = self.ctx
        ctx.tick()
        signal_frame(frame, ctx.engine.now_ns)
        pool.release(frame.buffer)


def unmap_in_flight(
    model: DeviceModel, access: Access | None, flow: Flow, kind: FaultKind, is_write: bool
) -> None:
    """Fault injection: unmap (or detach) ``access`` while ``flow`` still moves bytes, then
    let the device's next access reach the bus: the SMMU faults it, or without an IOMMU
    it lands in freed memory (finding ``sim.dma-after-free``)."""
    from socmem.linux.dmabuf.dma_buf import dma_buf_detach, dma_buf_unmap_attachment

    ctx = model.ctx
    if access is None or access.attach is None or access.sgt is None or access.dev is None:
        return
    if not flow.live:
        return
    ctx.tick()
    done = int(flow.bytes_done)
    dma_buf_unmap_attachment(access.attach, access.sgt, access.direction)
    if kind is FaultKind.RELEASE_EARLY:
        dma_buf_detach(access.attach.dmabuf, access.attach)
    offset = min(done, max(flow.size - 1, 0)) & ~(PAGE - 1)
    phys = ctx.kernel.device_dma(access.dev, access.iova + offset, is_write)
    what = "released its buffer" if kind is FaultKind.RELEASE_EARLY else "unmapped its buffer"
    history = list(access.attach.dmabuf.history) if access.attach.dmabuf is not None else []
    if phys is None:
        ctx.finding(
            "sim.dma-fault-after-unmap",
            Severity.ERROR,
            f"{model.name}: {access.device} {what} with {flow.size - done} bytes of DMA in "
            f"flight; the next access to iova {access.iova + offset:#x} faulted in the SMMU",
            subject=access.device,
            history=history,
            fault=kind.value,
        )
    else:
        ctx.finding(
            "sim.dma-after-free",
            Severity.ERROR,
            f"{model.name}: {access.device} {what} with {flow.size - done} bytes of DMA in "
            f"flight; without an IOMMU the device keeps "
            f"{'writing' if is_write else 'reading'} physical {phys:#x}: silent corruption",
            subject=access.device,
            history=history,
            fault=kind.value,
        )
    access.pending_restore = kind


def restore_access(model: DeviceModel, access: Access | None) -> None:
    """After an injected unmap/release: attach and map again for the next frames."""
    from socmem.linux.dma.scatterlist import SgTable
    from socmem.linux.dmabuf.dma_buf import IS_ERR, dma_buf_attach, dma_buf_map_attachment

    if access is None or access.pending_restore is None:
        return
    model.ctx.tick()
    if access.pending_restore is FaultKind.RELEASE_EARLY:
        att = dma_buf_attach(access.attach.dmabuf, access.dev)
        if IS_ERR(att):
            return
        access.attach = att
    sgt = dma_buf_map_attachment(access.attach, access.direction)
    if isinstance(sgt, SgTable):
        access.sgt = sgt
        access.iova = sgt.sgl[0].dma_address if sgt.sgl else 0
    access.pending_restore = None
