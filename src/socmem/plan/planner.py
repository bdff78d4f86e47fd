"""The zero-copy allocation planner: how each shared buffer must be allocated, or why not.

For a pool shared by ``(master, usage)`` pairs, :func:`plan_pool` does what a gralloc
HAL / GBM backend does, for the whole SoC at once:

1. **intersect capabilities**: the pool's format must be readable/writable by every
   user; usages must be ones the master supports; modifiers are intersected (CPU users
   only read linear);
2. **combine constraints**: pitch, height and plane alignments by least common
   multiple, base alignment by maximum, ``max_pitch`` and DMA reach by minimum, needs by
   union (contiguity for masters without an IOMMU, protection, CPU access);
3. **choose** the modifier (compression when every party supports it, or when the pool
   asks for it), the layout (:mod:`socmem.plan.formats`), the heap (system, CMA, a
   carveout, protected: the kernel heaps of :mod:`socmem.linux.dmabuf.heaps`), CPU cache
   attributes and IOMMU mapping attributes — each with its reason;
4. **cost** it: footprint, per-frame cache maintenance, mapping cost, bandwidth raw vs
   compressed; and, when no heap satisfies everyone, name the conflicts and rank fixes
   (:mod:`socmem.plan.explain`).

Heap rules (the kernel's behaviour): the system heap hands out 1 MiB / 64 KiB / 4 KiB
chunks anywhere in DRAM (``GFP_HIGHUSER``), so only IOMMU-backed masters (or masters
taking that many DMA segments and reaching all of DRAM) can use it; the CMA heap gives
one contiguous run inside the default CMA area, aligned to ``min(get_order(size), 8)``
pages; carveout heaps one run inside their region; protected heaps a run in a
``secure`` region that only ``secure`` masters may attach and no CPU may map.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from socmem.linux.reserved_mem import layout_reserved_memory
from socmem.plan.explain import Conflict, Fix, fixes_for, rank_fixes
from socmem.plan.formats import (
    PAGE_SIZE,
    Layout,
    align,
    blob_layout,
    compute_layout,
    lcm,
    linear_pitch,
    modifier_supports,
)
from socmem.scenario.schema import BufferPool, Compression, Scenario, Stage, StageType
from socmem.soc.constraints import CpuAccess, Modifier, ResolvedConstraints, Usage
from socmem.soc.schema import Master, MasterKind, Soc

SYSTEM_HEAP_CHUNK = 1 << 20  # order-8 chunks of system_heap.c
UINT_MAX = 0xFFFF_FFFF
KERNEL_DEFAULT_MAX_SEG = 65536
CACHE_MAINTENANCE_BW = 24e9  # by-VA clean/invalidate, perf-anchors.md 4.10 (~0.5 ms / 12.4 MB)
PTE_MAP_COST = 0.58e-6  # seconds per 4 KiB page mapped, perf-anchors.md 3.19
_ACCESS_RANK = {CpuAccess.NEVER: 0, CpuAccess.RARELY: 1, CpuAccess.OFTEN: 2}


# -- users -------------------------------------------------------------------------------
@dataclass
class User:
    """One ``(master, usage)`` pair of a pool, with the stage and its frame rate."""

    stage: str
    master: str
    usage: Usage
    rate: float

    @property
    def writes(self) -> bool:
        """True for the producer."""
        return self.usage.writes


_KIND_USAGE = {
    MasterKind.CAMERA: (Usage.CAMERA_WRITE, Usage.CAMERA_WRITE),
    MasterKind.ISP: (Usage.ISP_READ, Usage.ISP_WRITE),
    MasterKind.NPU: (Usage.NPU_READ, Usage.NPU_WRITE),
    MasterKind.GPU: (Usage.GPU_SAMPLE, Usage.GPU_RENDER),
    MasterKind.VIDEO_CODEC: (Usage.ENCODER_READ, Usage.DECODER_WRITE),
    MasterKind.DISPLAY: (Usage.SCANOUT, Usage.SCANOUT),
}


def stage_usage(stage: Stage, kind: MasterKind | None, write: bool) -> Usage:
    """The gralloc-style usage of ``stage`` on a pool it reads (or writes)."""
    t = stage.type
    if t is StageType.CPU:
        return Usage.CPU_WRITE_OFTEN if write else Usage.CPU_READ_OFTEN
    if t is StageType.DISPLAY:
        return Usage.SCANOUT
    if t is StageType.ENCODE:
        return Usage.ENCODER_WRITE if write else Usage.ENCODER_READ
    if t is StageType.DECODE:
        return Usage.DECODER_WRITE if write else Usage.DECODER_READ
    if t is StageType.SOURCE and kind is MasterKind.CAMERA:
        return Usage.CAMERA_WRITE
    pair = _KIND_USAGE.get(kind) if kind is not None else None
    if pair is None:
        return Usage.DMA_WRITE if write else Usage.DMA_READ
    return pair[1] if write else pair[0]


def stage_rates(scenario: Scenario) -> dict[str, float]:
    """Frames per second of every stage (sources: fps; displays: refresh; others: their
    slowest input's producer rate divided by ``every``)."""
    rates: dict[str, float] = {}

    def rate(st: Stage, depth: int = 0) -> float:
        if st.name in rates:
            return rates[st.name]
        if st.type is StageType.SOURCE:
            r = float(st.fps or 30.0)
        elif st.type is StageType.DISPLAY:
            r = float(st.refresh or 60.0)
        else:
            ins = [p for pool in st.inputs for p in scenario.producers(pool)]
            r = min((rate(p, depth + 1) for p in ins if depth < 64), default=30.0) / st.every
        rates[st.name] = r
        return r

    for st in scenario.stages:
        rate(st)
    return rates


# -- one master as the planner sees it ---------------------------------------------------
@dataclass
class MasterView:
    """A user's master: constraints resolved, IOMMU and reach worked out."""

    name: str
    kind: MasterKind
    c: ResolvedConstraints
    iommu: bool
    coherent: bool
    secure: bool
    alignment: int
    reach: list[tuple[int, int]]
    iova_limit: int
    oas_limit: int
    max_seg: int
    page_sizes: list[int]
    is_cpu: bool = False

    @property
    def max_segments(self) -> int:
        """DMA segments the engine takes: 1 without an IOMMU unless stated otherwise."""
        if self.c.max_segments:
            return self.c.max_segments
        return 1 << 30 if self.iommu else 1

    def reaches(self, base: int, size: int) -> bool:
        """True if the device reaches ``[base, base+size)`` (directly or through its IOMMU)."""
        if self.is_cpu:
            return True
        if self.iommu:
            return base + size - 1 <= self.oas_limit
        return any(lo <= base and base + size <= hi for lo, hi in self.reach)


def master_view(soc: Soc, name: str) -> MasterView:
    """The planner's view of master ``name`` (``cpu`` is the CPU runtime)."""
    m = soc.master(name)
    if m is None:
        from socmem.soc.defaults import constraint_defaults

        return MasterView(
            name, MasterKind.CPU, constraint_defaults(MasterKind.CPU), False, True, True,
            1, [(0, 1 << 64)], (1 << 64) - 1, (1 << 64) - 1, UINT_MAX, [PAGE_SIZE], is_cpu=True,
        )  # fmt: skip
    return _view(soc, m)


def _view(soc: Soc, m: Master) -> MasterView:
    c = m.constraints.resolve(m.kind)
    if m.constraints.modifiers is None and m.traffic.compression:
        extra = [Modifier(x) for x in m.traffic.compression if x in Modifier._value2member_map_]
        c = ResolvedConstraints(**{**asdict(c), "modifiers": [*c.modifiers, *extra]})
    # iommu-map entries translate the PCI functions below a host bridge, not its own DMA
    iommu = bool(m.iommus) and not c.iommu_bypass
    ias, oas, sizes = 64, 64, [PAGE_SIZE]
    for sid in m.iommus or []:
        i = soc.iommu(sid.iommu)
        if i is not None:
            ias, oas = min(ias, i.ias), min(oas, i.oas)
            sizes = [s for s in i.page_sizes if s in (4096, 2 << 20, 1 << 30)] or [4096]
    return MasterView(
        name=m.name,
        kind=m.kind,
        c=c,
        iommu=iommu,
        coherent=m.dma_coherent,
        secure=m.secure,
        alignment=m.alignment,
        reach=m.phys_reach(),
        iova_limit=min(m.dma_limit, (1 << ias) - 1),
        oas_limit=(1 << oas) - 1,
        max_seg=c.driver_max_segment_size or m.max_segment_size,
        page_sizes=sizes,
    )


# -- heaps -------------------------------------------------------------------------------
@dataclass
class HeapInfo:
    """A dma-buf heap the booted kernel would register (see heaps.dma_heap_init)."""

    spec: str  # scenario spelling: system, cma, carveout:<r>, protected:<r>
    dma_heap: str  # /dev/dma_heap/<name>
    kind: str  # system, cma, carveout, protected
    base: int = 0
    size: int = 0

    @property
    def contiguous(self) -> bool:
        """One physically contiguous run per buffer."""
        return self.kind != "system"


def soc_heaps(soc: Soc) -> dict[str, HeapInfo]:
    """The heaps of ``soc`` by scenario spelling, with where their memory sits."""
    layout = layout_reserved_memory(soc)
    out = {"system": HeapInfo("system", "system", "system")}
    cma = soc.default_cma()
    if cma is not None and cma.name in layout.placed:
        base, size = layout.placed[cma.name]
        out["cma"] = HeapInfo("cma", cma.name, "cma", base, size)
    for r in soc.reserved_memory:
        if r.name not in layout.placed or r.is_cma:
            continue
        base, size = layout.placed[r.name]
        if r.secure and (r.reg and (not r.no_map or "shared-dma-pool" in r.compatible)):
            out[f"protected:{r.name}"] = HeapInfo(
                f"protected:{r.name}", f"protected,{r.name}", "protected", base, size
            )
        elif not r.secure and r.reg and not r.no_map and "shared-dma-pool" not in r.compatible:
            out[f"carveout:{r.name}"] = HeapInfo(
                f"carveout:{r.name}", r.name, "carveout", base, size
            )
    return out


def _dram_top(soc: Soc) -> int:
    return max(r.end for r in soc.dram.ranges)


def system_heap_chunks(size: int) -> int:
    """Chunks ``system_heap_allocate`` hands out for ``size`` bytes (orders 8, 4, 0)."""
    n, rem = 0, align(size, PAGE_SIZE)
    for chunk in (SYSTEM_HEAP_CHUNK, 64 << 10, PAGE_SIZE):
        n, rem = n + rem // chunk, rem % chunk
    return n


# -- plans -------------------------------------------------------------------------------
@dataclass
class IommuMapping:
    """How one IOMMU-backed user maps the buffer."""

    master: str
    prot: str
    page_sizes: list[str]
    iotlb_entries: int
    map_cost_s: float


@dataclass
class PoolPlan:
    """The plan of one pool: every choice with its reason, its costs, or its conflicts."""

    name: str
    feasible: bool
    users: list[User]
    format: str
    modifier: str
    layout: Layout
    heap: str
    dma_heap: str
    count: int
    cpu_caching: str
    alignment: int
    stride_alignment: int
    height_alignment: int
    iommu: list[IommuMapping] = field(default_factory=list)
    footprint: int = 0
    maintenance_per_frame_s: float = 0.0
    maintenance_bytes_per_frame: int = 0
    mapping_cost_per_buffer_s: float = 0.0
    bandwidth_raw: float = 0.0
    bandwidth_compressed: float = 0.0
    reasons: dict[str, str] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)
    fixes: list[Fix] = field(default_factory=list)
    protected: bool = False
    map_direction: str = "persistent"
    mapping_cost_per_frame_s: float = 0.0

    @property
    def size(self) -> int:
        """Bytes per buffer."""
        return self.layout.size

    @property
    def compressed(self) -> bool:
        """True when the chosen modifier compresses."""
        return Modifier(self.modifier).compressed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["users"] = [
            {"stage": u.stage, "master": u.master, "usage": u.usage.value, "rate": u.rate}
            for u in self.users
        ]
        d["size"] = self.size
        return d


@dataclass
class ScenarioPlan:
    """Plans of every pool of a scenario on an SoC."""

    scenario: str
    soc: str
    pools: dict[str, PoolPlan]

    @property
    def feasible(self) -> bool:
        """True when every pool can be shared without a copy."""
        return all(p.feasible for p in self.pools.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "scenario": self.scenario,
            "soc": self.soc,
            "feasible": self.feasible,
            "pools": {n: p.to_dict() for n, p in self.pools.items()},
        }

    def to_json(self) -> str:
        """The plan as JSON text."""
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"


class _Ctx:
    """Per-scenario state: heaps, the CMA budget consumed by earlier pools."""

    def __init__(self, soc: Soc) -> None:
        self.soc = soc
        self.heaps = soc_heaps(soc)
        self.used: dict[str, int] = {}
        self.views: dict[str, MasterView] = {}

    def view(self, name: str) -> MasterView:
        if name not in self.views:
            self.views[name] = master_view(self.soc, name)
        return self.views[name]


def pool_users(scenario: Scenario, soc: Soc, pool: BufferPool) -> list[User]:
    """The ``(master, usage)`` pairs of ``pool``: its producer, then its consumers."""
    rates = stage_rates(scenario)
    out = []
    for st, write in [(p, True) for p in scenario.producers(pool.name)] + [
        (c, False) for c in scenario.consumers(pool.name)
    ]:
        m = soc.master(st.master)
        out.append(
            User(st.name, st.master, stage_usage(st, m.kind if m else None, write), rates[st.name])
        )
    return out


def plan_pool(scenario: Scenario, soc: Soc, pool: BufferPool, ctx: _Ctx | None = None) -> PoolPlan:
    """Plan ``pool`` of ``scenario`` on ``soc`` (module docstring)."""
    ctx = ctx or _Ctx(soc)
    users = pool_users(scenario, soc, pool)
    views = {u.master: ctx.view(u.master) for u in users}
    devs = [v for v in views.values() if not v.is_cpu]
    conflicts: list[Conflict] = []
    reasons: dict[str, str] = {}
    producer = next((u for u in users if u.writes), None)
    pname = producer.master if producer else "?"

    # usages and formats
    for u in users:
        v = views[u.master]
        if not v.is_cpu and v.c.usages and u.usage not in v.c.usages:
            conflicts.append(Conflict(
                "usage", u.master, f"usages {[x.value for x in v.c.usages]}", u.stage,
                f"stage needs {u.usage.value}",
                f"{u.master} does not support {u.usage.value} (it supports "
                f"{', '.join(x.value for x in v.c.usages)})",
            ))  # fmt: skip
    if pool.is_image:
        for v in devs:
            if not v.c.supports_format(pool.format):
                conflicts.append(Conflict(
                    "format", v.name, f"formats {v.c.formats}", pname,
                    f"writes {pool.format}",
                    f"{v.name} cannot read or write {pool.format} (supports "
                    f"{', '.join(v.c.formats)})",
                ))  # fmt: skip

    # combined alignment
    stride_al = lcm(*(v.c.stride_alignment for v in devs)) if devs else 1
    height_al = lcm(*(v.c.height_alignment for v in devs)) if devs else 1
    plane_al = lcm(*(v.c.plane_alignment for v in devs)) if devs else 1
    base_al = max([PAGE_SIZE, *(v.alignment for v in devs)])
    if devs:
        who = ", ".join(f"{v.name} {v.c.stride_alignment}" for v in devs)
        reasons["stride"] = f"pitch aligned to lcm({who}) = {stride_al} bytes"
        reasons["height"] = (
            f"rows padded to lcm of height alignments = {height_al} "
            f"({', '.join(f'{v.name} {v.c.height_alignment}' for v in devs)})"
        )

    # modifier
    modifier = Modifier.LINEAR
    common = set(Modifier)
    for v in views.values():
        common &= {Modifier.LINEAR} if v.is_cpu else set(v.c.modifiers)
    wanted = {Compression.AFBC: Modifier.AFBC, Compression.UBWC: Modifier.UBWC}.get(
        pool.compression
    )
    if not pool.is_image:
        reasons["modifier"] = "byte buffer: no pixel layout"
    elif wanted is not None:
        modifier = wanted
        for v in views.values():
            if wanted not in (set() if v.is_cpu else set(v.c.modifiers)):
                conflicts.append(Conflict(
                    "modifier",
                    v.name,
                    "modifiers "
                    f"{[m.value for m in ([] if v.is_cpu else v.c.modifiers)] or ['linear']}",
                    "pool", f"compression: {wanted.value}",
                    f"{v.name} cannot read {wanted.value}-compressed {pool.format} "
                    "(the pool asks for compression)",
                ))  # fmt: skip
        reasons["modifier"] = f"{wanted.value}: the pool asks for it"
    else:
        compressing = [
            m
            for m in (Modifier.UBWC, Modifier.AFBC)
            if m in common and modifier_supports(m, pool.format)
        ]
        if compressing:
            modifier = compressing[0]
            reasons["modifier"] = (
                f"{modifier.value}: every user reads it (compression saves bandwidth)"
            )
        elif Modifier.LINEAR in common:
            blockers = [
                v.name
                for v in views.values()
                if v.is_cpu or not any(m.compressed for m in v.c.modifiers)
            ]
            reasons["modifier"] = "linear: " + (
                f"{', '.join(blockers)} read linear only"
                if blockers
                else "no common compressed modifier"
            )
        elif Modifier.TILED in common:
            modifier = Modifier.TILED
            reasons["modifier"] = "tiled: the only modifier every user supports"
        else:
            conflicts.append(Conflict(
                "modifier", devs[0].name if devs else "?", "modifiers", "others",
                "modifiers", "no format modifier is supported by every user: "
                + "; ".join(f"{v.name}: {[m.value for m in v.c.modifiers]}" for v in devs),
            ))  # fmt: skip

    # layout
    if pool.is_image:
        try:
            layout = compute_layout(
                pool.format, pool.width or 0, pool.height or 0, modifier,
                stride_alignment=stride_al, height_alignment=height_al, plane_alignment=plane_al,
            )  # fmt: skip
        except ValueError:
            layout = compute_layout(
                pool.format, pool.width or 0, pool.height or 0, Modifier.LINEAR,
                stride_alignment=stride_al, height_alignment=height_al, plane_alignment=plane_al,
            )  # fmt: skip
        for v in devs:
            if v.c.fixed_pitch and modifier is Modifier.LINEAR:
                own = linear_pitch(pool.format, pool.width or 0, v.c.stride_alignment)
                if own != layout.stride:
                    other = max(devs, key=lambda x: x.c.stride_alignment)
                    conflicts.append(Conflict(
                        "pitch",
                        v.name,
                        f"fixed pitch ALIGN(width*cpp, {v.c.stride_alignment}) = {own}",
                        other.name, f"stride alignment {other.c.stride_alignment}",
                        f"{v.name} accesses lines at a fixed pitch of {own} bytes; {other.name} "
                        f"needs a pitch multiple of {other.c.stride_alignment} ({own} is not)",
                    ))  # fmt: skip
            if v.c.max_pitch and layout.stride > v.c.max_pitch:
                conflicts.append(Conflict(
                    "pitch", v.name, f"max pitch {v.c.max_pitch}", "pool",
                    f"pitch {layout.stride}",
                    f"{v.name} cannot program a pitch of {layout.stride} bytes "
                    f"(max {v.c.max_pitch})",
                ))  # fmt: skip
    else:
        layout = blob_layout(pool.frame_bytes, base_al)
    size = align(layout.size, PAGE_SIZE)
    layout.size = size

    # protection and CPU access
    protected = pool.heap.startswith("protected") or any(v.c.protected_only for v in devs)
    cpu_read = max(
        (v.c.cpu_read for v in devs), key=_ACCESS_RANK.__getitem__, default=CpuAccess.NEVER
    )
    cpu_write = max(
        (v.c.cpu_write for v in devs), key=_ACCESS_RANK.__getitem__, default=CpuAccess.NEVER
    )
    for u in users:
        if u.usage.is_cpu:
            acc = CpuAccess.OFTEN if "often" in u.usage.value else CpuAccess.RARELY
            if u.writes:
                cpu_write = max(cpu_write, acc, key=_ACCESS_RANK.__getitem__)
            else:
                cpu_read = max(cpu_read, acc, key=_ACCESS_RANK.__getitem__)
    cpu_users = [u.master for u in users if u.usage.is_cpu] + [
        f"{v.name} runtime"
        for v in devs
        if v.c.cpu_read is not CpuAccess.NEVER or v.c.cpu_write is not CpuAccess.NEVER
    ]
    if protected:
        why = (
            "the pool asks for a protected heap"
            if pool.heap.startswith("protected")
            else (
                "protected-only masters: " + ", ".join(v.name for v in devs if v.c.protected_only)
            )
        )
        reasons["protected"] = why
        for v in devs:
            if not v.secure:
                conflicts.append(Conflict(
                    "protected", v.name, "not a secure master", "pool", "protected memory",
                    f"{v.name} may not access protected memory ({why})",
                ))  # fmt: skip
        for who in cpu_users:
            conflicts.append(Conflict(
                "protected", who.split()[0], f"CPU access ({who})", "pool", "protected memory",
                f"{who} wants to read/write the buffer on the CPU, but protected memory has no "
                "CPU mapping (mmap/begin_cpu_access: -EPERM)",
            ))  # fmt: skip

    # heap
    count = pool.count
    need = size * count
    heap_order = _heap_order(ctx, devs, pool, protected, users, size)
    heap_conflicts: dict[str, list[Conflict]] = {
        h: _heap_problems(ctx, ctx.heaps[h], devs, size, need, base_al)
        for h in heap_order
        if h in ctx.heaps
    }
    chosen = next((h for h in heap_order if h in heap_conflicts and not heap_conflicts[h]), None)
    if pool.heap != "auto" and pool.heap not in ctx.heaps:
        conflicts.append(Conflict(
            "heap", "pool", f"heap {pool.heap}", soc.name, f"heaps {sorted(ctx.heaps)}",
            f"{soc.name} has no heap {pool.heap!r} (heaps: {', '.join(sorted(ctx.heaps))})",
        ))  # fmt: skip
    if chosen is None:
        first = next((h for h in heap_order if h in heap_conflicts), None)
        if first is not None:
            conflicts.extend(heap_conflicts[first])
        elif not any(c.kind == "heap" for c in conflicts):
            conflicts.append(Conflict(
                "contiguity",
                ", ".join(v.name for v in devs if not v.iommu) or "?",
                "needs contiguous memory",
                soc.name, "no CMA pool or carveout",
                f"{', '.join(v.name for v in devs if not v.iommu)} "
                "need physically contiguous memory "
                f"(no IOMMU) but {soc.name} has no CMA pool or usable carveout",
            ))  # fmt: skip
        heap = first or "cma"
    else:
        heap = chosen
    info = ctx.heaps.get(heap, HeapInfo(heap, heap.replace(":", ","), heap.split(":")[0]))
    reasons["heap"] = _heap_reason(info, devs, pool, chosen is not None, heap_order)
    if chosen is not None and info.contiguous:
        ctx.used[heap] = ctx.used.get(heap, 0) + need

    # CPU caching
    noncoh = [v.name for v in devs if not v.coherent]
    maint_bytes = 0
    if protected:
        caching, why = "none", "protected: no CPU mapping exists"
    elif cpu_read is CpuAccess.NEVER and cpu_write is CpuAccess.NEVER:
        caching, why = (
            "none",
            "no CPU access: no CPU mapping; device-to-device frames need no CPU syncs",
        )
    elif not noncoh:
        caching, why = (
            "cached",
            "every device user is IO-coherent: cached, no maintenance (IOMMU_CACHE)",
        )
    elif cpu_read is CpuAccess.OFTEN:
        caching = "cached+maintenance"
        why = (f"CPU reads often: cached (uncached reads are 5x slower, perf-anchors 4.6) with "
               f"DMA_BUF_IOCTL_SYNC invalidation for non-coherent {', '.join(noncoh)}")  # fmt: skip
        maint_bytes = layout.payload_bytes + layout.meta_bytes
    elif cpu_write is CpuAccess.OFTEN:
        caching = "write-combined"
        why = (
            f"CPU writes often, non-coherent readers {', '.join(noncoh)}: "
            "write-combine, no clean needed"
        )
    else:
        caching, why = (
            "write-combined",
            "CPU access is rare: write-combined avoids per-frame maintenance",
        )
    reasons["cpu_caching"] = why
    rate = producer.rate if producer else 30.0
    maint_s = maint_bytes / CACHE_MAINTENANCE_BW

    # attachment directions
    map_direction = "persistent"
    cpu_reads = any(u.usage.is_cpu and not u.writes for u in users)
    if cpu_reads and any(not u.writes and not u.usage.is_cpu for u in users) and not protected:
        map_direction = "per-job"
        reasons["map_direction"] = (
            "device readers map per job (DMA_TO_DEVICE, unmapped before the CPU reads): the "
            "heaps' begin_cpu_access(DMA_FROM_DEVICE) syncs every mapped attachment, and "
            "dma-debug flags a sync whose direction differs from the mapping's; mapping them "
            "DMA_BIDIRECTIONAL instead makes two writable mappings (cacheline overlap, EEXIST)"
        )
    else:
        reasons["map_direction"] = (
            "mapped once per buffer: producer DMA_FROM_DEVICE, readers DMA_TO_DEVICE"
        )

    # IOMMU mappings
    mappings = []
    for u in users:
        v = views[u.master]
        if v.is_cpu or not v.iommu:
            continue
        blocks = info.contiguous and (2 << 20) in v.page_sizes and size >= 2 << 20
        entries = (size >> 21) + ((size & ((2 << 20) - 1)) >> 12) if blocks else size >> 12
        prot = "IOMMU_WRITE" if u.writes else "IOMMU_READ"
        if v.coherent:
            prot += "|IOMMU_CACHE"
        sizes = ["4K", "2M"] if blocks else ["4K"]
        mappings.append(IommuMapping(u.master, prot, sizes, entries, (size >> 12) * PTE_MAP_COST))
    if mappings:
        reasons["iommu"] = (
            "contiguous heap: 2 MiB blocks where the run is 2 MiB aligned (fewer IOTLB misses)"
            if info.contiguous
            else "system heap chunks are 1 MiB: 4 KiB pages only"
        ) + "; IOMMU_CACHE for coherent masters"

    # bandwidth
    comp = Modifier(layout.modifier).compressed
    ratio = pool.compression_ratio
    raw = sum(layout.payload_bytes * u.rate for u in users if not u.usage.is_cpu)
    compressed = sum(layout.access_bytes(comp, ratio) * u.rate for u in users if not u.usage.is_cpu)

    plan = PoolPlan(
        name=pool.name, feasible=not conflicts, users=users, format=layout.format,
        modifier=layout.modifier, layout=layout, heap=heap, dma_heap=info.dma_heap, count=count,
        cpu_caching=caching, alignment=base_al, stride_alignment=stride_al,
        height_alignment=height_al, iommu=mappings, footprint=size * count,
        maintenance_per_frame_s=maint_s, maintenance_bytes_per_frame=maint_bytes,
        mapping_cost_per_buffer_s=sum(m.map_cost_s for m in mappings), bandwidth_raw=raw,
        bandwidth_compressed=compressed, reasons=reasons, conflicts=conflicts, protected=protected,
        map_direction=map_direction,
        mapping_cost_per_frame_s=sum(
            m.map_cost_s for m in mappings
            if map_direction == "per-job" and not m.prot.startswith("IOMMU_WRITE")
        ),
    )  # fmt: skip
    if conflicts:
        plan.fixes = rank_fixes(fixes_for(plan, ctx, views, rate), soc.dram.achievable_bandwidth)
    return plan


def _heap_order(
    ctx: _Ctx,
    devs: list[MasterView],
    pool: BufferPool,
    protected: bool,
    users: list[User],
    size: int,
) -> list[str]:
    if pool.heap != "auto":
        return [pool.heap]
    heaps = ctx.heaps
    if protected:
        return [h for h in heaps if h.startswith("protected:")]
    contig_needed = any(not v.iommu and v.max_segments < system_heap_chunks(size) for v in devs)
    scanout = any(u.usage is Usage.SCANOUT for u in users)
    carve = [h for h in heaps if h.startswith("carveout:")]
    if contig_needed:
        return ["cma", *carve] if "cma" in heaps else carve
    if scanout and "cma" in heaps:
        return ["cma", "system"]
    return ["system", "cma"] if "cma" in heaps else ["system"]


def _heap_problems(
    ctx: _Ctx, h: HeapInfo, devs: list[MasterView], size: int, need: int, base_al: int
) -> list[Conflict]:
    out: list[Conflict] = []
    top = _dram_top(ctx.soc)
    for v in devs:
        if h.kind == "system":
            nents = system_heap_chunks(size)
            if not v.iommu and v.max_segments < nents:
                out.append(Conflict(
                    "contiguity", v.name, f"max {v.max_segments} DMA segment(s), no IOMMU",
                    "system heap", f"{nents} chunks (1 MiB/64 KiB/4 KiB)",
                    f"{v.name} has no IOMMU and takes {v.max_segments} DMA segment(s): it needs "
                    f"physically contiguous memory, the system heap gives {nents} chunks",
                ))  # fmt: skip
            elif not v.iommu and not v.reaches(
                min(r.base for r in ctx.soc.dram.ranges),
                top - min(r.base for r in ctx.soc.dram.ranges),
            ):
                out.append(Conflict(
                    "reach", v.name, f"DMA reach {_fmt_reach(v)}", "system heap",
                    "pages anywhere in DRAM",
                    f"{v.name} (no IOMMU) reaches only {_fmt_reach(v)}; "
                    f"system heap pages may lie up to {top:#x}",
                ))  # fmt: skip
            elif v.iommu and top - 1 > v.oas_limit:
                out.append(Conflict(
                    "reach", v.name, f"IOMMU output size {v.oas_limit + 1:#x}", "system heap",
                    f"DRAM up to {top:#x}",
                    f"{v.name}'s IOMMU outputs {v.oas_limit.bit_length()}-bit addresses; "
                    f"DRAM ends at {top:#x}",
                ))  # fmt: skip
            if min(v.max_seg, UINT_MAX) < min(size, SYSTEM_HEAP_CHUNK):
                out.append(_seg_conflict(v, min(size, SYSTEM_HEAP_CHUNK), "system heap"))
        else:
            if not v.reaches(h.base, h.size):
                out.append(Conflict(
                    "reach", v.name,
                    f"DMA reach {_fmt_reach(v)}" + ("" if v.iommu else " (no IOMMU: "
                    f"{v.reach and 'dma mask/dma-ranges'})"),
                    h.spec, f"{h.dma_heap} at [{h.base:#x}, {h.base + h.size:#x})",
                    f"{v.name} cannot reach {h.dma_heap} at [{h.base:#x}, {h.base + h.size:#x}): "
                    f"it reaches {_fmt_reach(v)}" + ("" if v.iommu else " and has no IOMMU"),
                ))  # fmt: skip
            if min(v.max_seg, UINT_MAX - PAGE_SIZE + 1) < size:
                out.append(_seg_conflict(v, size, h.spec))
    if h.contiguous and ctx.used.get(h.spec, 0) + need > h.size:
        out.append(Conflict(
            "capacity", "pool", f"{need >> 20} MiB", h.spec, f"{h.size >> 20} MiB "
            f"({ctx.used.get(h.spec, 0) >> 20} MiB taken by earlier pools)",
            f"{h.dma_heap} holds {h.size >> 20} MiB, "
            f"{ctx.used.get(h.spec, 0) >> 20} MiB already planned; "
            f"this pool needs {need >> 20} MiB more",
        ))  # fmt: skip
    return out


def _seg_conflict(v: MasterView, seg: int, heap: str) -> Conflict:
    return Conflict(
        "segment-size",
        v.name,
        f"max_segment_size {v.max_seg}",
        heap,
        f"segments of {seg} bytes",
        f"{v.name}'s dma_parms allow {v.max_seg}-byte segments; {heap} gives {seg}-byte ones "
        "(dma-debug: mapping sg segment longer than device claims to support)",
    )


def _fmt_reach(v: MasterView) -> str:
    if v.iommu:
        return f"any address below {v.oas_limit + 1:#x} through its IOMMU"
    return ", ".join(f"[{lo:#x}, {hi:#x})" for lo, hi in v.reach) or "nothing"


def _heap_reason(
    info: HeapInfo, devs: list[MasterView], pool: BufferPool, ok: bool, order: list[str]
) -> str:
    if pool.heap != "auto":
        return f"{info.spec}: the pool asks for it"
    nommu = [v.name for v in devs if not v.iommu]
    if info.kind == "protected":
        return f"{info.spec}: protected buffer, secure region {info.dma_heap.split(',')[-1]}"
    if info.kind == "system":
        return (
            "system: every device user translates through an IOMMU; "
            "CMA stays free for those who need it"
        )
    if nommu:
        return (f"{info.spec} ({info.dma_heap}): {', '.join(nommu)} "
                "have no IOMMU and need physically "
                f"contiguous memory inside their DMA reach")  # fmt: skip
    return (f"{info.spec} ({info.dma_heap}): scan-out buffer; contiguous memory lets the SMMU use "
            "2 MiB blocks (fewer IOTLB misses for a real-time reader)")  # fmt: skip


# -- scenario ----------------------------------------------------------------------------
def plan_scenario(scenario: Scenario, soc: Soc) -> ScenarioPlan:
    """Plan every pool of ``scenario`` on ``soc``; pools needing contiguous memory first."""
    ctx = _Ctx(soc)
    plans: dict[str, PoolPlan] = {}

    def needs_contig(p: BufferPool) -> int:
        ms = [ctx.view(u.master) for u in pool_users(scenario, soc, p)]
        return 0 if any(not m.iommu and not m.is_cpu for m in ms) else 1

    for pool in sorted(scenario.buffers, key=needs_contig):
        plans[pool.name] = plan_pool(scenario, soc, pool, ctx)
    return ScenarioPlan(scenario.name, soc.name, {b.name: plans[b.name] for b in scenario.buffers})


def choose_heap(pool: BufferPool, scenario: Scenario, soc: Soc) -> str:
    """The heap the planner chooses for ``pool`` (scenario spelling: ``system``, ``cma``,
    ``carveout:<region>``, ``protected:<region>``); a drop-in for the simulator."""
    return plan_scenario(scenario, soc).pools[pool.name].heap
