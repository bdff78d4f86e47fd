"""Physical memory of the modelled kernel: buddy allocator, CMA, reserved-memory carveouts.

* :mod:`socmem.linux.mm.buddy` — mm/page_alloc.c: zones, free areas, migratetypes.
* :mod:`socmem.linux.mm.cma` — mm/cma.c: contiguous areas over MIGRATE_CMA pageblocks.
* :mod:`socmem.linux.mm.genpool` — lib/genalloc.c: pools for static carveouts.

:class:`PhysMem` builds all three from DRAM ranges and reserved regions the way boot
does (drivers/of/of_reserved_mem.c ``fdt_init_reserved_mem``, kernel/dma/contiguous.c
``rmem_cma_setup``, kernel/dma/coherent.c ``rmem_dma_setup``, mm/cma.c
``cma_init_reserved_areas``, mm/memblock.c ``memblock_free_all``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from socmem.errors import InputError, KernelError
from socmem.linux.mm.buddy import (
    MAX_ORDER,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    PAGE_SHIFT,
    PAGE_SIZE,
    ZONE_NORMAL,
    BuddyAllocator,
    MigrateType,
    ZoneLimits,
    ZoneType,
    arm64_zone_limits,
)
from socmem.linux.mm.cma import MAX_CMA_AREAS, Cma, cma_init_reserved_mem
from socmem.linux.mm.genpool import (
    GenPool,
    gen_pool_create,
    gen_pool_first_fit_order_align,
)

__all__ = [
    "MAX_ORDER",
    "MIGRATE_MOVABLE",
    "MIGRATE_UNMOVABLE",
    "PAGE_SIZE",
    "BuddyAllocator",
    "Cma",
    "DramRange",
    "GenPool",
    "MemorySummary",
    "PhysMem",
    "ReservedRegion",
    "ZoneLimits",
    "arm64_zone_limits",
]

RegionKind = Literal["cma", "carveout", "no-map", "coherent-pool"]
REGION_KINDS = ("cma", "carveout", "no-map", "coherent-pool")
SZ_1M = 1 << 20


@dataclass(frozen=True)
class DramRange:
    """One bank of DRAM (a ``/memory`` ``reg`` entry): physical base and size in bytes."""

    base: int
    size: int


@dataclass(frozen=True)
class ReservedRegion:
    """A ``/reserved-memory`` child, reduced to what the kernel acts on.

    ``kind``: ``"cma"`` (shared-dma-pool + reusable), ``"carveout"`` (reserved, mapped,
    driver-managed), ``"no-map"`` (never mapped, never handed out), ``"coherent-pool"``
    (shared-dma-pool without reusable: a per-device ``dma_alloc_coherent`` pool).
    ``cma_default`` is ``linux,cma-default``.
    """

    name: str
    base: int
    size: int
    kind: RegionKind
    cma_default: bool = False


@dataclass
class MemorySummary:
    """What :meth:`PhysMem.summary` reports (bytes unless named ``*_pages``)."""

    dram_total: int
    managed: int
    free: int
    zones: list[dict[str, object]] = field(default_factory=list)
    cma: list[dict[str, object]] = field(default_factory=list)
    carveouts: list[dict[str, object]] = field(default_factory=list)
    no_map: list[dict[str, object]] = field(default_factory=list)

    def format(self) -> str:
        """A plain-text table for people."""
        mib = SZ_1M
        lines = [
            f"DRAM {self.dram_total / mib:.0f} MiB, managed {self.managed / mib:.1f} MiB, "
            f"free {self.free / mib:.1f} MiB"
        ]
        for z in self.zones:
            lines.append(
                f"  zone {z['name']:>6}: managed {z['managed'] / mib:9.1f} MiB  "  # type: ignore[operator]
                f"free {z['free'] / mib:9.1f} MiB  largest free order {z['largest_free_order']}"  # type: ignore[operator]
            )
        for c in self.cma:
            lines.append(
                f"  cma {c['name']}{' (default)' if c['default'] else ''}: "
                f"size {c['size'] / mib:.1f} MiB  used {c['used'] / mib:.1f} MiB  "  # type: ignore[operator]
                f"free {c['free'] / mib:.1f} MiB  maxchunk {c['maxchunk'] / mib:.1f} MiB  "  # type: ignore[operator]
                f"borrowed {c['borrowed'] / mib:.1f} MiB"  # type: ignore[operator]
            )
        for p in self.carveouts:
            lines.append(
                f"  {p['kind']} {p['name']}: size {p['size'] / mib:.1f} MiB  "  # type: ignore[operator]
                f"used {p['used'] / mib:.1f} MiB  free {p['free'] / mib:.1f} MiB"  # type: ignore[operator]
            )
        for n in self.no_map:
            lines.append(f"  no-map {n['name']}: {n['size'] / mib:.1f} MiB at {n['base']:#x}")  # type: ignore[operator]
        return "\n".join(lines)


class PhysMem:
    """Physical memory after boot: the buddy allocator, CMA areas and carveout pools.

    Built from DRAM banks and reserved regions as ``fdt_init_reserved_mem`` and
    ``memblock_free_all`` would leave them:

    * every reserved region is kept out of the buddy allocator (``memblock_reserve`` /
      ``memblock_mark_nomap``);
    * ``cma`` regions go through ``rmem_cma_setup``: misaligned ones print
      ``Reserved memory: incorrect alignment of CMA region`` and, as
      ``fdt_init_reserved_mem`` does on a failed init, are given back as ordinary memory
      (``node %s compatible matching fail``); the others become CMA areas whose
      pageblocks the buddy allocator gets as MIGRATE_CMA; ``cma_default`` sets
      :attr:`default_cma` (the last one wins, as in the kernel);
    * ``carveout`` regions get a :class:`GenPool` (page granularity, first fit);
    * ``coherent-pool`` regions get a :class:`GenPool` with
      ``gen_pool_first_fit_order_align``, the closest genalloc algorithm to
      kernel/dma/coherent.c's ``bitmap_find_free_region`` (callers round sizes up to a
      power of two pages, as ``dma_alloc_from_coherent`` does with ``get_order``);
    * ``no-map`` regions are holes: no allocator, no pool, nothing hands them out.

    Input problems (overlaps, regions outside DRAM, unaligned banks) raise
    :class:`~socmem.errors.InputError`; kernel messages accumulate in :attr:`log`.
    """

    def __init__(
        self,
        dram: list[DramRange],
        reserved: list[ReservedRegion] | tuple[ReservedRegion, ...] = (),
        limits: ZoneLimits | None = None,
        max_cma_areas: int = MAX_CMA_AREAS,
    ) -> None:
        self.dram = sorted(dram, key=lambda d: d.base)
        self.regions = sorted(reserved, key=lambda r: r.base)
        self.log: list[str] = []
        self.cma_areas: dict[str, Cma] = {}
        self.default_cma: Cma | None = None
        self.pools: dict[str, GenPool] = {}
        self.no_map: list[ReservedRegion] = []
        self._validate()
        mem = [(d.base >> PAGE_SHIFT, (d.base + d.size) >> PAGE_SHIFT) for d in self.dram]
        held = [
            (r.base >> PAGE_SHIFT, (r.base + r.size + PAGE_SIZE - 1) >> PAGE_SHIFT)
            for r in self.regions
        ]
        self.buddy = BuddyAllocator(mem, held, limits)
        for r in self.regions:
            self._setup_region(r, max_cma_areas)
        for cma in self.cma_areas.values():  # core_initcall(cma_init_reserved_areas)
            cma.cma_activate_area(self.buddy)
            self.log.extend(cma.log)
            cma.log.clear()

    def _validate(self) -> None:
        for i, d in enumerate(self.dram):
            if d.size <= 0 or d.base % PAGE_SIZE or d.size % PAGE_SIZE:
                raise InputError(
                    "DRAM bank must be page aligned and non-empty",
                    where=f"dram[{i}]",
                    expected=f"base and size multiples of {PAGE_SIZE:#x}",
                )
        for a, b in zip(self.dram, self.dram[1:], strict=False):
            if a.base + a.size > b.base:
                raise InputError("DRAM banks overlap", where=f"dram {b.base:#x}")
        seen: set[str] = set()
        for r in self.regions:
            if r.kind not in REGION_KINDS:
                raise InputError(
                    f"unknown reserved region kind {r.kind!r}",
                    where=r.name,
                    expected=" | ".join(REGION_KINDS),
                )
            if r.name in seen:
                raise InputError("duplicate reserved region name", where=r.name)
            seen.add(r.name)
            if r.size <= 0 or not any(
                d.base <= r.base and r.base + r.size <= d.base + d.size for d in self.dram
            ):
                raise InputError(
                    f"region {r.base:#x}+{r.size:#x} is not inside one DRAM bank", where=r.name
                )
        for ra, rb in zip(self.regions, self.regions[1:], strict=False):
            if ra.base + ra.size > rb.base:
                raise InputError(f"reserved region overlaps {ra.name}", where=rb.name)

    def _setup_region(self, r: ReservedRegion, max_cma_areas: int) -> None:
        if r.kind == "no-map":
            self.no_map.append(r)
        elif r.kind == "carveout":
            pool = gen_pool_create(PAGE_SHIFT, name=r.name)
            pool.gen_pool_add(r.base, r.size)
            self.pools[r.name] = pool
        elif r.kind == "coherent-pool":
            pool = gen_pool_create(PAGE_SHIFT, name=r.name)
            pool.gen_pool_set_algo(gen_pool_first_fit_order_align)
            pool.gen_pool_add(r.base, r.size)
            self.pools[r.name] = pool
            self.log.append(
                f"Reserved memory: created DMA memory pool at {r.base:#018x}, "
                f"size {r.size // SZ_1M} MiB"
            )
        else:
            self._setup_cma(r, max_cma_areas)

    def _setup_cma(self, r: ReservedRegion, max_cma_areas: int) -> None:
        """kernel/dma/contiguous.c ``rmem_cma_setup``."""
        err: KernelError | None = None
        if len(self.cma_areas) >= max_cma_areas:
            self.log.append("cma: Not enough slots for CMA reserved regions!")
            err = KernelError(28, "ENOSPC")
        else:
            try:
                cma = cma_init_reserved_mem(r.base, r.size, 0, r.name, len(self.cma_areas))
            except KernelError as exc:
                self.log.append("Reserved memory: incorrect alignment of CMA region")
                err = exc
        if err is not None:
            self.log.append(f"OF: reserved mem: node {r.name} compatible matching fail")
            self.buddy.free_reserved_range(
                r.base >> PAGE_SHIFT, (r.base + r.size + PAGE_SIZE - 1) >> PAGE_SHIFT
            )
            return
        self.cma_areas[r.name] = cma
        if r.cma_default:
            self.default_cma = cma
        self.log.append(
            f"Reserved memory: created CMA memory pool at {r.base:#018x}, "
            f"size {r.size // SZ_1M} MiB"
        )

    # -- convenience ---------------------------------------------------------------------
    def alloc_pages(
        self,
        order: int,
        migratetype: MigrateType = MIGRATE_UNMOVABLE,
        highest_zone: ZoneType = ZONE_NORMAL,
        owner: str = "",
    ) -> int | None:
        """:meth:`BuddyAllocator.alloc_pages`."""
        return self.buddy.alloc_pages(order, migratetype, highest_zone, owner)

    def free_pages(self, pfn: int, order: int) -> None:
        """:meth:`BuddyAllocator.free_pages`."""
        self.buddy.free_pages(pfn, order)

    def region_of(self, addr: int) -> ReservedRegion | None:
        """The reserved region containing physical address ``addr``."""
        for r in self.regions:
            if r.base <= addr < r.base + r.size:
                return r
        return None

    def buddyinfo(self) -> str:
        """/proc/buddyinfo text."""
        return self.buddy.buddyinfo()

    def summary(self) -> MemorySummary:
        """Totals, per-zone free memory, per-CMA-area and per-pool usage."""
        b = self.buddy
        s = MemorySummary(
            dram_total=sum(d.size for d in self.dram),
            managed=b.managed_pages * PAGE_SIZE,
            free=b.nr_free_pages * PAGE_SIZE,
        )
        for z in b.zones:
            s.zones.append(
                {
                    "name": z.name,
                    "start": z.zone_start_pfn << PAGE_SHIFT,
                    "end": z.zone_end_pfn << PAGE_SHIFT,
                    "present": z.present_pages * PAGE_SIZE,
                    "managed": z.managed_pages * PAGE_SIZE,
                    "free": z.nr_free_pages * PAGE_SIZE,
                    "free_cma": z.nr_free_cma_pages * PAGE_SIZE,
                    "largest_free_order": z.largest_free_order(),
                    "nr_free": z.nr_free(),
                }
            )
        for c in self.cma_areas.values():
            s.cma.append(
                {
                    "name": c.name,
                    "base": c.cma_get_base(),
                    "size": c.cma_get_size(),
                    "used": c.used() * PAGE_SIZE,
                    "free": (c.count - c.used()) * PAGE_SIZE,
                    "maxchunk": c.maxchunk() * PAGE_SIZE,
                    "borrowed": c.borrowed() * PAGE_SIZE,
                    "default": c is self.default_cma,
                    "alloc_pages_success": c.alloc_pages_success,
                    "alloc_pages_fail": c.alloc_pages_fail,
                }
            )
        kinds = {r.name: r.kind for r in self.regions}
        for name, p in self.pools.items():
            size = p.gen_pool_size()
            s.carveouts.append(
                {
                    "name": name,
                    "kind": kinds[name],
                    "base": min(c.start_addr for c in p.chunks),
                    "size": size,
                    "used": size - p.gen_pool_avail(),
                    "free": p.gen_pool_avail(),
                    "largest_free": p.largest_free(),
                }
            )
        for r in self.no_map:
            s.no_map.append({"name": r.name, "base": r.base, "size": r.size})
        return s
