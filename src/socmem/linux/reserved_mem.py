"""Placing /reserved-memory at boot: drivers/of/of_reserved_mem.c, as the SoC describes it.

Static regions (``reg``) are taken where they are.  Dynamic ones (``size`` with optional
``alignment`` and ``alloc-ranges``) are placed like ``__reserved_mem_alloc_size()``
does it: memblock allocates top-down, inside each alloc-range in turn (or anywhere in
DRAM without one), aligned to ``alignment`` (CMA regions at least to the pageblock,
``CMA_MIN_ALIGNMENT_BYTES``), avoiding everything reserved so far.  A region that does
not fit is reported with the kernel's ``failed to allocate memory for node`` line and
left out, as the kernel leaves it out.

The result is the list of :class:`socmem.linux.mm.ReservedRegion` that
:class:`socmem.linux.mm.PhysMem` boots from, and the log lines the kernel prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from socmem.linux.mm import DramRange, RegionKind
from socmem.linux.mm import ReservedRegion as MmRegion
from socmem.soc.schema import ReservedKind, ReservedRegion, Soc

PAGE_SIZE = 4096
CMA_MIN_ALIGNMENT_BYTES = 4 << 20  # pageblock (2 MiB) ... MAX_ORDER block (4 MiB) in 6.1


@dataclass
class ReservedLayout:
    """Where every reserved region ended up, and what boot printed about them."""

    regions: list[MmRegion] = field(default_factory=list)
    placed: dict[str, tuple[int, int]] = field(default_factory=dict)
    restricted: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def mm_kind(region: ReservedRegion) -> RegionKind:
    """How :class:`PhysMem` treats a region of the SoC description."""
    kind = region.kind
    if kind is ReservedKind.CMA:
        return "cma"
    if kind is ReservedKind.COHERENT_POOL:
        return "coherent-pool"
    return "no-map" if region.no_map else "carveout"


def _free_gaps(
    dram: list[DramRange], taken: list[tuple[int, int]], lo: int, hi: int
) -> list[tuple[int, int]]:
    """Free ``[start, end)`` gaps of DRAM inside ``[lo, hi)``, highest first."""
    gaps = []
    for d in dram:
        start, end = max(d.base, lo), min(d.base + d.size, hi)
        cursor = start
        for t0, t1 in sorted(taken):
            if t1 <= cursor or t0 >= end:
                continue
            if t0 > cursor:
                gaps.append((cursor, t0))
            cursor = max(cursor, t1)
        if cursor < end:
            gaps.append((cursor, end))
    return sorted(gaps, reverse=True)


def _place(
    dram: list[DramRange], taken: list[tuple[int, int]], region: ReservedRegion
) -> int | None:
    size = -(-(region.size or 0) // PAGE_SIZE) * PAGE_SIZE
    align = max(region.alignment or PAGE_SIZE, PAGE_SIZE)
    if region.is_cma:
        align = max(align, CMA_MIN_ALIGNMENT_BYTES)
    windows = [(r.base, r.end) for r in region.alloc_ranges] or [(0, 1 << 64)]
    for lo, hi in windows:
        for g0, g1 in _free_gaps(dram, taken, lo, hi):
            base = (g1 - size) // align * align
            if base >= g0 and size:
                return base
    return None


def layout_reserved_memory(soc: Soc) -> ReservedLayout:
    """Place every enabled reserved region of ``soc`` the way the kernel would at boot."""
    out = ReservedLayout()
    dram = [DramRange(r.base, r.size) for r in soc.dram.ranges]

    def inside_dram(base: int, size: int) -> bool:
        return any(d.base <= base and base + size <= d.base + d.size for d in dram)

    regions = soc.effective_reserved_memory()
    taken: list[tuple[int, int]] = []
    for region in regions:  # static ones first, as fdt_scan_reserved_mem
        for r in region.reg:
            if not inside_dram(r.base, r.size):
                out.log.append(
                    f"OF: reserved mem: {region.name} at {r.base:#x} is outside DRAM; "
                    "not managed by the page allocator"
                )
                continue
            taken.append((r.base, r.end))
            out.placed.setdefault(region.name, (r.base, r.size))
            out.regions.append(
                MmRegion(
                    name=region.name if len(region.reg) == 1 else f"{region.name}#{len(taken)}",
                    base=r.base,
                    size=r.size,
                    kind=mm_kind(region),
                    cma_default=region.cma_default,
                )
            )
    for region in regions:
        if region.reg:
            continue
        base = _place(dram, taken, region)
        if base is None:
            out.log.append(f"OF: reserved mem: failed to allocate memory for node '{region.name}'")
            continue
        size = -(-(region.size or 0) // PAGE_SIZE) * PAGE_SIZE
        taken.append((base, base + size))
        out.placed[region.name] = (base, size)
        out.regions.append(
            MmRegion(
                name=region.name,
                base=base,
                size=size,
                kind=mm_kind(region),
                cma_default=region.cma_default,
            )
        )
    for region in regions:
        if region.kind is ReservedKind.RESTRICTED_DMA_POOL and region.name in out.placed:
            out.restricted.append(region.name)
    return out
