"""``socmem run``: build a run from a scenario and an SoC, run it, collect the results.

:func:`run_scenario` does, in order:

1. load and check the scenario against the SoC (:mod:`socmem.scenario.loader`);
2. boot the functional model (:meth:`Kernel.boot <socmem.linux.kernel.Kernel.boot>`),
   probe the drivers (:func:`probe_drivers`), attach the CPU cache model
   (:func:`~socmem.linux.coherency.track_coherency`), register the dma-buf heaps and
   user space;
3. build the timing model: one :class:`~socmem.sim.engine.Engine`, the DRAM as a
   :class:`~socmem.sim.fluid.FluidResource` of ``dram.achievable_bandwidth`` (QoS from
   the scenario unless overridden);
4. allocate every pool and set up every access path (:mod:`socmem.sim.allocation`),
   estimate translation costs per stream (:class:`Translation`, from
   :mod:`socmem.sim.tlb`), start one device model per stage (:mod:`socmem.devices`);
5. run in 1 % steps (progress callback, memory footprint samples), watching the
   hyperperiod boundaries: once the pipeline repeats itself the rest of the run is
   extrapolated (:mod:`socmem.sim.fastforward`; ``fast_forward=False`` simulates it all);
6. collect a :class:`~socmem.sim.metrics.RunResult`, including the closed-form
   bandwidth per master (:func:`closed_form_bandwidth`) the cross-checks compare with.
"""

from __future__ import annotations

import gc
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from socmem.devices import NS, SimContext, make_device, translation_traffic
from socmem.linux.dmabuf.heaps import dma_heaps_for_kernel
from socmem.linux.kernel import Kernel
from socmem.linux.process import UserSpace
from socmem.plan import plan_scenario
from socmem.plan.prove import apply_driver_dma_parms
from socmem.scenario.loader import LoadedScenario, check_against_soc, load_scenario
from socmem.scenario.schema import BufferPool, Scenario, Stage, StageType
from socmem.sim.allocation import PoolRuntime, allocate_pool
from socmem.sim.engine import Engine
from socmem.sim.fastforward import SteadyState, hyperperiod_ns
from socmem.sim.fluid import FluidResource
from socmem.sim.metrics import (
    BandwidthStat,
    CopyStat,
    FastForwardStat,
    LatencyStat,
    Recorder,
    RunResult,
    StageStat,
    TlbStat,
    weighted_percentile,
)
from socmem.soc.loader import load_soc
from socmem.soc.schema import Soc

__all__ = ["Run", "Translation", "closed_form_bandwidth", "probe_drivers", "run_scenario"]

#: Read bursts a DMA master keeps in flight through its TBU (Arm MMU-500 TRM: 128
#: outstanding reads per TBU; perf-anchors.md 3.22): the window over which its page-table
#: walks overlap, so the stall a job pays is misses × walk time / pages in flight.
OUTSTANDING_BURSTS = 128


def probe_drivers(kernel: Kernel) -> list[str]:
    """What the multimedia drivers do at probe for DMA: ``dma_set_max_seg_size()`` to the
    segment size their constraints name (media drivers lift the 64 KiB default to
    ``UINT_MAX``: :func:`socmem.plan.prove.apply_driver_dma_parms`, the rule the planner's
    proofs use too).  Returns log lines."""
    before = {name: dev.max_segment_size for name, dev in kernel.devices.items()}
    apply_driver_dma_parms(kernel)
    return [
        f"{name}: dma_set_max_seg_size({dev.max_segment_size:#x})"
        for name, dev in kernel.devices.items()
        if dev.max_segment_size != before[name]
    ]


# -- translation ---------------------------------------------------------------------------
class Translation:
    """IOTLB cost per stage and job, estimated once per run from :mod:`socmem.sim.tlb`
    (the streams of one SMMU share its IOTLB); the stand-in of one miss per page when the
    estimate is not available."""

    def __init__(self) -> None:
        self.per_stage: dict[str, tuple[float, float, float, float]] = {}
        self.source = "stand-in: 1 miss per 4 KiB page, 64 B walk (perf-anchors 3.27)"

    def cost(self, stage: str, uses_iommu: bool, nbytes: int) -> tuple[int, int]:
        """``(misses, walk read bytes)`` of a job moving ``nbytes``."""
        if not uses_iommu or nbytes <= 0:
            return 0, 0
        e = self.per_stage.get(stage)
        if e is None:
            return translation_traffic(True, nbytes)
        ref, misses, walk, _lat = e
        k = nbytes / ref
        return round(misses * k), round(walk * k)

    def latency_ns(self, stage: str) -> float:
        """Walk latency added per job (reported, overlapped with the transfer)."""
        e = self.per_stage.get(stage)
        return e[3] if e else 0.0

    def estimate(
        self,
        kernel: Kernel,
        soc: Soc,
        jobs: dict[str, int],
        leaves: dict[str, dict[int, int]] | None = None,
    ) -> None:
        """Fill the table from the statistical TLB model (``jobs``: stage → bytes per job;
        ``leaves``: stage → bytes mapped per leaf size, read off the real page tables)."""
        try:
            from socmem.sim.tlb import StreamPattern, TlbConfig, estimate_misses
        except ImportError:  # pragma: no cover - the stand-in stays
            return
        groups: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for stage, nbytes in jobs.items():
            master = stage.split("@", 1)[1]
            m = soc.master(master)
            dev = kernel.devices.get(master)
            if m is None or dev is None or not dev.uses_iommu_dma or not m.iommus or nbytes <= 0:
                continue
            groups[m.iommus[0].iommu].append((stage.split("@", 1)[0], master, nbytes))
        for iommu_name, streams in groups.items():
            iommu = soc.iommu(iommu_name)
            if iommu is None:
                continue
            pats = [
                StreamPattern(
                    name=s,
                    bytes=n,
                    pattern="linear",
                    master=m,
                    leaf_bytes=(leaves or {}).get(s) or None,
                    outstanding=OUTSTANDING_BURSTS,
                )
                for s, m, n in streams
            ]
            for (s, _m, n), e in zip(
                streams, estimate_misses(pats, TlbConfig.from_iommu(iommu)), strict=True
            ):
                self.per_stage[s] = (float(n), e.misses, e.walk_read_bytes(), e.added_latency_ns)
        if self.per_stage:
            self.source = (
                "socmem.sim.tlb statistical IOTLB model (linear streams; leaf sizes read off "
                "the IOMMU page tables of each stage's buffers)"
            )


def stage_leaves(st: Stage, pools: dict[str, PoolRuntime]) -> dict[int, int]:
    """Bytes per IOMMU leaf size over the first buffer of every pool ``st`` touches, as
    mapped for ``st``'s master (CMA buffers get 2 MiB blocks, system-heap ones 4 KiB)."""
    from socmem.sim.tlb import leaf_histogram

    hist: dict[int, int] = defaultdict(int)
    for name in (*st.inputs, *st.outputs):
        pool = pools.get(name)
        if pool is None or not pool.buffers:
            continue
        acc = pool.buffers[0].accesses.get(st.master)
        if acc is None or not acc.uses_iommu or acc.sgt is None:
            continue
        domain = acc.dev.domain if acc.dev is not None else None
        if domain is None or domain.ops is None:
            continue
        size = sum(s.dma_length for s in acc.sgt.sgl[: acc.sgt.nents])
        for leaf, n in leaf_histogram(domain.ops, acc.iova, size).items():
            hist[leaf] += n
    return dict(hist)


# -- closed form ---------------------------------------------------------------------------
def stream_rates(scenario: Scenario) -> dict[str, float]:
    """Frames per second published on each pool (sources at ``fps``, processing stages at
    the sum of their input rates / ``every``; decoders without input at ``fps``)."""
    rates: dict[str, float] = {}
    order = list(scenario.stages)
    for _ in range(len(order) + 1):
        for st in order:
            r = _stage_rate(st, rates)
            if r is None:
                continue
            for p in st.outputs:
                rates[p] = r
    return rates


def _stage_rate(st: Stage, rates: dict[str, float]) -> float | None:
    if st.type is StageType.SOURCE:
        return float(st.fps or 30.0)
    if not st.inputs:
        return float(st.fps or 30.0)
    if any(p not in rates for p in st.inputs):
        return None
    return sum(rates[p] for p in st.inputs) / st.every


def valid_bytes(scenario: Scenario, rates: dict[str, float]) -> dict[str, int]:
    """Bytes a frame of each pool carries (a bitstream: bitrate / frame rate)."""
    out: dict[str, int] = {}
    for b in scenario.buffers:
        out[b.name] = b.transfer_bytes
        prod = scenario.producers(b.name)
        if prod and prod[0].type is StageType.ENCODE and not b.is_image:
            st = prod[0]
            fin = sum(rates.get(p, 0.0) for p in st.inputs[:1]) / st.every or float(st.fps or 30)
            out[b.name] = min(int(float(st.bitrate or 0.0) / fin), b.frame_bytes)
    return out


def job_bytes(scenario: Scenario, rates: dict[str, float]) -> dict[str, tuple[float, int, int]]:
    """Per stage: ``(jobs per second, read bytes per job, write bytes per job)``."""
    vb = valid_bytes(scenario, rates)
    pools: dict[str, BufferPool] = {b.name: b for b in scenario.buffers}
    out: dict[str, tuple[float, int, int]] = {}
    for st in scenario.stages:
        t = st.type
        outs = sum(pools[p].transfer_bytes for p in st.outputs)
        if t is StageType.SOURCE:
            out[st.name] = (float(st.fps or 30.0), 0, outs)
        elif t is StageType.DISPLAY:
            out[st.name] = (float(st.refresh or 60.0), vb[st.inputs[0]], 0)
        elif t is StageType.CPU:
            r = sum(rates.get(p, 0.0) for p in st.inputs) / st.every
            rd = sum(rates.get(p, 0.0) * vb[p] for p in st.inputs) / st.every
            out[st.name] = (r, int(rd / r) if r else 0, 0)
        elif t is StageType.ENCODE:
            p = st.inputs[0]
            r = sum(rates.get(q, 0.0) for q in st.inputs) / st.every
            n = vb[p]
            out[st.name] = (r, n * (1 + st.reference_frames), n + sum(vb[o] for o in st.outputs))
        elif t is StageType.DECODE:
            r = (
                (sum(rates.get(q, 0.0) for q in st.inputs) / st.every)
                if st.inputs
                else float(st.fps or 30.0)
            )
            frame_b = pools[st.outputs[0]].transfer_bytes
            bits = (
                vb[st.inputs[0]]
                if st.inputs
                else int(float(st.bitrate or 0.0) / float(st.fps or 30.0))
            )
            out[st.name] = (r, bits + frame_b * st.reference_frames, outs)
        else:
            r = (
                sum(rates.get(q, 0.0) for q in st.inputs) / st.every
                if st.inputs
                else float(st.fps or 30.0)
            )
            n = vb[st.inputs[0]] if st.inputs else 0
            out[st.name] = (r, n + int(st.weights), outs)
    return out


def closed_form_bandwidth(
    scenario: Scenario, translation: Translation, uses_iommu: dict[str, bool]
) -> dict[str, float]:
    """Bytes/s per master (read + write): pixels × bytes per pixel × rate (what each
    stage moves per frame, times its frame rate), plus the IOTLB walks."""
    rates = stream_rates(scenario)
    out: dict[str, float] = defaultdict(float)
    jb = job_bytes(scenario, rates)
    for st in scenario.stages:
        r, rd, wr = jb[st.name]
        _m, walk = translation.cost(st.name, uses_iommu.get(st.master, False), rd + wr)
        out[st.master] += r * (rd + wr + walk)
    return dict(out)


def common_period_ns(scenario: Scenario) -> int | None:
    """The scenario's common frame period (1 / gcd of all rates) if the rates are whole
    numbers of Hz, else None."""
    freqs: list[Fraction] = []
    for st in scenario.stages:
        f = (
            st.fps
            if st.type is StageType.SOURCE
            else st.refresh
            if st.type is StageType.DISPLAY
            else None
        )
        if f is not None:
            fr = Fraction(float(f)).limit_denominator(1000)
            if fr.denominator != 1:
                return None
            freqs.append(fr)
    if not freqs:
        return None
    g = 0
    for f in freqs:
        g = math.gcd(g, int(f))
    for st in scenario.stages:  # decimation lengthens the period
        if st.every > 1:
            g = math.gcd(g, 0) if g == 0 else g
    return round(NS / g) if g else None


# -- the run -------------------------------------------------------------------------------
@dataclass
class Run:
    """A finished run: the result plus the live objects the reports read."""

    result: RunResult
    ctx: SimContext
    dram: FluidResource
    heaps: Any
    loaded: LoadedScenario
    soc: Soc
    log: list[str] = field(default_factory=list)


def run_scenario(
    spec: str | LoadedScenario | None = None,
    *,
    soc: str | Soc | None = None,
    duration_s: float | None = None,
    qos: bool | None = None,
    progress: Callable[[float], None] | None = None,
    keep_trace: bool = True,
    coherency: bool = True,
    fast_forward: bool = True,
) -> Run:
    """Run a scenario (built-in name, file, or loaded) on an SoC; see the module docs."""
    wall0 = time.perf_counter()
    loaded = spec if isinstance(spec, LoadedScenario) else load_scenario(spec)
    scenario = loaded.scenario
    soc_obj = soc if isinstance(soc, Soc) else load_soc(soc or scenario.soc)
    check_against_soc(loaded, soc_obj)
    duration = float(duration_s if duration_s is not None else scenario.duration)
    qos_on = scenario.qos if qos is None else qos

    kernel = Kernel.boot(soc_obj)
    log = probe_drivers(kernel)
    tracker = None
    if coherency:
        try:
            from socmem.linux.coherency import track_coherency

            tracker = track_coherency(kernel)
        except ImportError:  # pragma: no cover
            tracker = None
    heaps = dma_heaps_for_kernel(kernel)
    userspace = UserSpace(kernel.core)
    userspace.add_devnodes(heaps.devnodes())

    engine = Engine()
    dram = FluidResource(engine, soc_obj.dram.achievable_bandwidth, qos=qos_on, record_flows=False)
    recorder = Recorder(keep_slices=keep_trace)
    pools: dict[str, PoolRuntime] = {}
    heap_of: dict[str, str] = {}
    plan = plan_scenario(scenario, soc_obj)
    for b in scenario.buffers:
        heap_name = b.heap if b.heap != "auto" else plan.pools[b.name].heap
        heap_of[b.name] = heap_name
        pools[b.name] = PoolRuntime(b, heap_name, engine)
    ctx = SimContext(
        engine=engine,
        dram=dram,
        kernel=kernel,
        soc=soc_obj,
        scenario=scenario,
        pools=pools,
        recorder=recorder,
        userspace=userspace,
        coherency=tracker,
    )
    ctx.stream_fps = stream_rates(scenario)
    ctx.cpu_read_pools = {
        p for st in scenario.stages if st.type is StageType.CPU for p in st.inputs
    }
    for b in scenario.buffers:
        prod = scenario.producers(b.name)
        allocate_pool(
            pools[b.name],
            heaps,
            kernel,
            prod[0].master if prod else None,
            [c.master for c in scenario.consumers(b.name)],
        )
    translation = Translation()
    rates = stream_rates(scenario)
    jb = job_bytes(scenario, rates)
    translation.estimate(
        kernel,
        soc_obj,
        {f"{st.name}@{st.master}": jb[st.name][1] + jb[st.name][2] for st in scenario.stages},
        {st.name: stage_leaves(st, pools) for st in scenario.stages},
    )
    ctx.translation = translation
    devices = [make_device(ctx, st) for st in scenario.stages]
    for d in devices:
        d.start()

    footprint: dict[str, list[tuple[float, int]]] = defaultdict(list)
    end_ns = round(duration * NS)
    ctx.end_ns = end_ns
    # The set-up built hundreds of thousands of long-lived objects (page tables, IOVA
    # trees, sg tables); keep the cyclic GC from rescanning them during the run.
    gc.collect()
    gc.freeze()
    setup = time.perf_counter() - wall0
    period = hyperperiod_ns(scenario) if fast_forward else None
    steady = (
        SteadyState(ctx, dram, period, end_ns, lambda: _footprint_now(kernel, heaps))
        if period
        else None
    )
    try:
        ff = _advance(engine, end_ns, footprint, kernel, heaps, progress, steady)
    finally:
        gc.unfreeze()
    ctx.tick()
    wall = time.perf_counter() - wall0
    result = _collect(
        ctx,
        dram,
        heaps,
        translation,
        footprint,
        heap_of,
        duration,
        qos_on,
        wall,
        engine,
        steady.sync_extra if steady is not None else {},
    )
    result.setup_s = setup
    result.fast_forward = ff
    if ff is not None:
        result.notes.append(f"fast-forward: {ff.summary()}")
    result.notes.extend(log)
    result.notes.append(f"translation: {translation.source}")
    if tracker is not None:
        result.notes.append("cache model: socmem.linux.coherency tracker attached")
    return Run(result, ctx, dram, heaps, loaded, soc_obj, log)


def _advance(
    engine: Engine,
    end_ns: int,
    footprint: dict[str, list[tuple[float, int]]],
    kernel: Kernel,
    heaps: Any,
    progress: Callable[[float], None] | None,
    steady: SteadyState | None = None,
) -> FastForwardStat | None:
    """Run the engine to ``end_ns`` in 1 % steps (progress and footprint samples),
    stopping at the hyperperiod boundaries for ``steady`` to watch; once it reports a
    steady state the run is extended from there (the footprint, part of the steady
    state's signature, keeps its value) and its :class:`FastForwardStat` returned."""
    steps = 100
    stops: dict[int, list[int]] = defaultdict(list)  # time -> step numbers (0: boundary)
    for i in range(1, steps + 1):
        stops[end_ns * i // steps].append(i)
    if steady is not None:
        for b in steady.boundaries():
            stops[b].append(0)
    ff: FastForwardStat | None = None
    for t in sorted(stops):
        if ff is None:
            engine.run(t)
        for i in sorted(stops[t], reverse=True):
            if i == 0:
                if ff is None and steady is not None and steady.observe(t):
                    ff = steady.extend(t)
                continue
            if i == 1 or i % 5 == 0 or i == steps:
                _sample_footprint(footprint, kernel, heaps, t)
            if progress is not None:
                progress(i / steps)
    return ff


def _footprint_now(kernel: Kernel, heaps: Any) -> dict[str, int]:
    """Bytes held now per heap, CMA area, carveout and swiotlb."""
    out: dict[str, int] = {}
    for h in heaps.heaps:
        out[f"heap {h.name}"] = int(h.live_bytes)
    for name, cma in kernel.mem.cma_areas.items():
        out[f"cma {name}"] = int(cma.used()) * 4096
    for name, pool in kernel.mem.pools.items():
        out[f"carveout {name}"] = int(pool.gen_pool_size() - pool.gen_pool_avail())
    if kernel.swiotlb is not None:
        out["swiotlb"] = int(kernel.swiotlb.mem_used()) * 2048
    return out


def _sample_footprint(
    fp: dict[str, list[tuple[float, int]]], kernel: Kernel, heaps: Any, t_ns: int
) -> None:
    t = t_ns / NS
    for k, v in _footprint_now(kernel, heaps).items():
        fp[k].append((t, v))


def _collect(
    ctx: SimContext,
    dram: FluidResource,
    heaps: Any,
    translation: Translation,
    footprint: dict[str, list[tuple[float, int]]],
    heap_of: dict[str, str],
    duration: float,
    qos_on: bool,
    wall: float,
    engine: Engine,
    sync_extra: dict[str, int],
) -> RunResult:
    scenario = ctx.scenario
    soc = ctx.soc
    rec = ctx.recorder
    end = ctx.end_ns
    period = common_period_ns(scenario)
    if period:
        k0 = math.ceil(end * 0.25 / period)
        k1 = end // period
        if k1 - k0 < 1:
            k0, k1 = 0, max(k1, 1)
        w0, w1 = k0 * period, min(k1 * period, end)
    else:
        w0, w1 = end // 4, end
    if w1 <= w0:
        w0, w1 = 0, end
    qos_of = {m.name: m.qos_class.value for m in soc.masters}
    bw: list[BandwidthStat] = []
    for (master, direction), acc in sorted(dram.accounts.items()):
        bw.append(
            BandwidthStat(
                master=master,
                direction=direction,
                average_bps=acc.average_bps(0, end),
                peak_bps=acc.peak_bps(),
                bytes=acc.bytes_between(0, end),
                steady_bps=acc.average_bps(w0, w1),
                qos=qos_of.get(master, "best-effort"),
            )
        )
    uses_iommu = {name: d.uses_iommu_dma for name, d in ctx.kernel.devices.items()}
    closed = closed_form_bandwidth(scenario, translation, uses_iommu)
    lat: list[LatencyStat] = []
    samples: dict[str, list[float]] = {}
    for st in scenario.stages:
        v = rec.latencies.get(st.name, [])
        ms = [x / 1e6 for x in v]
        samples[st.name] = ms
        m, extra = rec.latency_repeat.get(st.name, (0, 0))
        weights = [1] * (len(ms) - m) + [1 + extra] * m
        lat.append(
            LatencyStat(
                st.name,
                rec.streams.get(st.name, st.name),
                len(ms) + m * extra,
                round(weighted_percentile(ms, weights, 50), 4),
                round(weighted_percentile(ms, weights, 99), 4),
                round(max(ms), 4) if ms else 0.0,
            )
        )
    stages = [
        StageStat(
            st.name,
            st.type.value,
            st.master,
            rec.jobs.get(st.name, 0),
            rec.drops.get(st.name, 0),
            rec.underflows.get(st.name, 0),
            max(rec.backlog_max.get(st.name, 0), 0),
            round(rec.buffer_wait_ns.get(st.name, 0) / 1e6, 3),
        )
        for st in scenario.stages
    ]
    copies = [
        CopyStat(pool, stage, reason, int(v[0]), int(v[1]), round(v[2] / 1e6, 3))
        for (pool, stage, reason), v in sorted(rec.copies.items())
    ]
    tlb = []
    for master, (beats, misses, walk, stall) in sorted(rec.tlb.items()):
        tlb.append(
            TlbStat(
                master,
                beats,
                misses,
                round(1 - misses / beats, 5) if beats else 1.0,
                walk,
                walk / duration if duration else 0.0,
                round(stall / 1e6, 3),
            )
        )
    zero = 0
    copy_paths: list[dict[str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for pool in ctx.pools.values():
        for b in pool.buffers:
            for path in b.accesses.values():
                if path.zero_copy:
                    zero += 1
                elif (pool.spec.name, path.device, path.reason) not in seen:
                    seen.add((pool.spec.name, path.device, path.reason))
                    copy_paths.append(
                        {"pool": pool.spec.name, "device": path.device, "reason": path.reason}
                    )
        if pool.alloc_error:
            copy_paths.append({"pool": pool.spec.name, "device": "-", "reason": pool.alloc_error})
    util = dram.utilisation
    maint_cpu_ms = rec.cache_maint_ns / 1e6
    cache = {
        "cpu_ms": round(maint_cpu_ms, 4),
        "cpu_share": round(rec.cache_maint_ns / (duration * NS), 6) if duration else 0.0,
        "bytes": rec.cache_maint_bytes,
        "cpu_read_ms": round(rec.cpu_read_ns / 1e6, 4),
        "sync_for_cpu_bytes": sync_extra.get("sync_for_cpu_bytes", 0)
        + sum(d.stats.get("sync_for_cpu_bytes", 0) for d in ctx.kernel.devices.values()),
        "sync_for_device_bytes": sync_extra.get("sync_for_device_bytes", 0)
        + sum(d.stats.get("sync_for_device_bytes", 0) for d in ctx.kernel.devices.values()),
    }
    series = _series(dram, end)
    return RunResult(
        scenario=scenario.name,
        soc=soc.name,
        duration_s=duration,
        qos=qos_on,
        wall_s=wall,
        events=engine.events_processed,
        dram_capacity_bps=dram.capacity_bps,
        dram_peak_bps=soc.dram.peak_bandwidth,
        dram_utilisation_avg=round(util.mean(0, end), 6),
        dram_utilisation_peak=round(util.max(), 6),
        steady_window_s=(w0 / NS, w1 / NS),
        bandwidth=bw,
        closed_form_bps={k: round(v, 1) for k, v in sorted(closed.items())},
        latency=lat,
        stages=stages,
        copies=copies,
        tlb=tlb,
        footprint=dict(footprint),
        footprint_peak={k: max(v for _t, v in pts) for k, pts in footprint.items()},
        cache_maintenance=cache,
        heaps=heap_of,
        zero_copy_paths=zero,
        copy_paths=copy_paths,
        findings=list(ctx.kernel.findings),
        series=series,
        latency_samples=samples,
        mapping=_mapping_summary(ctx),
    )


MAP_NS_PER_PAGE = 580  # iommu_map_sg, 4 KiB pages (perf-anchors 3.17 / §8)
MAP_NS_PER_CALL = 2000


def _mapping_summary(ctx: SimContext) -> dict[str, float]:
    """DMA mappings of the run: made once at set-up (buffers stay mapped, so no map or
    unmap per frame), with the SMMU invalidations counted by the functional model and a
    CPU-time estimate (perf-anchors §8: 2 µs per call + 0.58 µs per 4 KiB page)."""
    calls = 0
    pages = 0
    for pool in ctx.pools.values():
        for b in pool.buffers:
            for acc in b.accesses.values():
                if acc.sgt is not None:
                    calls += 1
                    if acc.uses_iommu:
                        pages += -(-pool.spec.frame_bytes // 4096)
    tlbi = 0
    for drv in ctx.kernel.iommu_drivers.values():
        smmu = getattr(drv, "smmu", None)
        tlbi += int(getattr(smmu, "tlbi_commands", 0) or 0)
    return {
        "map_calls": calls,
        "iommu_pages_mapped": pages,
        "smmu_tlbi_commands": tlbi,
        "setup_cpu_ms": round((calls * MAP_NS_PER_CALL + pages * MAP_NS_PER_PAGE) / 1e6, 3),
        "per_frame_maps": 0,
    }


def _series(dram: FluidResource, end: int, buckets: int = 200) -> dict[str, Any]:
    """Bandwidth per master and DRAM utilisation, averaged over ``buckets`` intervals."""
    edges = [end * i // buckets for i in range(buckets + 1)]
    t = [e / NS for e in edges[:-1]]
    widths = np.diff(np.asarray(edges, dtype=np.float64)) / NS
    widths[widths <= 0] = math.inf
    per_master: dict[str, Any] = {}
    for (master, _d), acc in dram.accounts.items():
        avg = acc.rate.integrals(edges) / widths
        per_master[master] = per_master[master] + avg if master in per_master else avg
    util = dram.utilisation.integrals(edges) / widths
    return {
        "t_s": t,
        "bandwidth_bps": {
            k: [round(x, 1) for x in v.tolist()] for k, v in sorted(per_master.items())
        },
        "dram_utilisation": [round(x, 5) for x in util.tolist()],
    }
