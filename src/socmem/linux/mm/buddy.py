"""The buddy page allocator: ``mm/page_alloc.c`` (Linux 6.1 semantics, 4 KiB pages).

What is modelled, and where it comes from:

* **Orders** ``0 .. MAX_ORDER-1`` with ``MAX_ORDER = 11`` (6.1 naming: the largest block is
  order 10 = 4 MiB). **Pageblocks** of ``pageblock_order = 9`` (2 MiB) carry a
  migratetype (``get_pageblock_migratetype``); free lists are per zone, per order, per
  migratetype (``struct free_area``), and are LIFO like the kernel's ``list_add`` heads.
* ``__rmqueue_smallest`` + ``expand``: take the smallest free block of the requested
  migratetype and give the upper halves back, one order at a time.
* ``__free_one_page``: merge with the buddy at ``pfn ^ (1 << order)``
  (``__find_buddy_pfn``) while it is a free block of the same order in the same zone; from
  ``pageblock_order`` up, blocks whose migratetypes are not both "mergeable"
  (``< MIGRATE_PCPTYPES``) do not merge, so CMA pageblocks never fuse with normal ones.
* ``__rmqueue`` for movable requests (``ALLOC_CMA``): first the 6.1 balance rule (take
  from CMA when more than half of the zone's free pages are CMA), then the movable lists,
  then ``__rmqueue_cma_fallback``, then ``__rmqueue_fallback``. Unmovable and reclaimable
  requests never see MIGRATE_CMA lists.
* ``__rmqueue_fallback`` / ``steal_suitable_fallback`` / ``move_freepages_block``: the
  ``fallbacks[]`` table, ``can_steal_fallback`` and the "half a pageblock of alike pages"
  rule that changes a pageblock's migratetype.
* Zones by physical address (``ZONE_DMA``, ``ZONE_DMA32``, ``ZONE_NORMAL``), the zonelist
  walk from the highest zone the gfp mask allows down to the lowest
  (``gfp_zone`` / ``get_page_from_freelist``).
* ``alloc_contig_range`` / ``free_contig_range`` (mm/page_alloc.c, mm/page_isolation.c)
  as CMA uses them: -EBUSY when an unmovable or pinned page sits in the range, movable
  pages are migrated elsewhere (-ENOMEM when no target page exists).

Not modelled (documented deviations): per-cpu page lists, watermarks and lowmem
reserves, ``ALLOC_NOFRAGMENT``, MIGRATE_HIGHATOMIC reserves, the "free to tail" heuristic
(``buddy_merge_likely``), guard pages, reclaim and compaction, NUMA (one node, 0).

Cost: free blocks live in dicts (per order and migratetype) plus a sorted list of block
heads per zone for range queries; nothing is kept per page, so a 16 GiB DRAM starts as
4096 order-10 blocks.
"""

from __future__ import annotations

import errno
import itertools
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from socmem.errors import KernelError
from socmem.linux.mm.genpool import RunBitmap

__all__ = [
    "GFP_DMA",
    "GFP_DMA32",
    "GFP_HIGHUSER_MOVABLE",
    "GFP_KERNEL",
    "GFP_USER",
    "MAX_ORDER",
    "MAX_ORDER_NR_PAGES",
    "MIGRATE_CMA",
    "MIGRATE_ISOLATE",
    "MIGRATE_MOVABLE",
    "MIGRATE_RECLAIMABLE",
    "MIGRATE_UNMOVABLE",
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "SZ_4G",
    "ZONE_DMA",
    "ZONE_DMA32",
    "ZONE_NORMAL",
    "__GFP_DMA",
    "__GFP_DMA32",
    "__GFP_HIGHMEM",
    "__GFP_MOVABLE",
    "__GFP_NOWARN",
    "__GFP_RECLAIMABLE",
    "AllocatedBlock",
    "BuddyAllocator",
    "FreeArea",
    "MigrateType",
    "Zone",
    "ZoneLimits",
    "ZoneType",
    "arm64_zone_limits",
    "find_buddy_pfn",
    "gfp_migratetype",
    "gfp_zone",
    "pageblock_nr_pages",
    "pageblock_order",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_ORDER = 11  # 6.1: orders 0..MAX_ORDER-1 (renamed MAX_PAGE_ORDER = 10 in 6.8)
MAX_ORDER_NR_PAGES = 1 << (MAX_ORDER - 1)
pageblock_order = 9  # arm64 4K: min(HUGETLB_PAGE_ORDER, MAX_ORDER - 1) = 9 (2 MiB)
pageblock_nr_pages = 1 << pageblock_order
SZ_4G = 1 << 32


class MigrateType(IntEnum):
    """``enum migratetype`` (include/linux/mmzone.h, 6.1 values)."""

    MIGRATE_UNMOVABLE = 0
    MIGRATE_MOVABLE = 1
    MIGRATE_RECLAIMABLE = 2
    MIGRATE_HIGHATOMIC = 3  # == MIGRATE_PCPTYPES
    MIGRATE_CMA = 4
    MIGRATE_ISOLATE = 5


MIGRATE_UNMOVABLE = MigrateType.MIGRATE_UNMOVABLE
MIGRATE_MOVABLE = MigrateType.MIGRATE_MOVABLE
MIGRATE_RECLAIMABLE = MigrateType.MIGRATE_RECLAIMABLE
MIGRATE_CMA = MigrateType.MIGRATE_CMA
MIGRATE_ISOLATE = MigrateType.MIGRATE_ISOLATE
MIGRATE_PCPTYPES = 3
MIGRATE_TYPES = 6

# mm/page_alloc.c fallbacks[] (6.1): CMA and ISOLATE are never fallback sources.
FALLBACKS: dict[int, tuple[MigrateType, ...]] = {
    MIGRATE_UNMOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),
    MIGRATE_MOVABLE: (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),
    MIGRATE_RECLAIMABLE: (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),
}


def migratetype_is_mergeable(mt: int) -> bool:
    """include/linux/mmzone.h ``migratetype_is_mergeable``: ``mt < MIGRATE_PCPTYPES``."""
    return mt < MIGRATE_PCPTYPES


class ZoneType(IntEnum):
    """``enum zone_type`` on arm64 (no HIGHMEM; ZONE_MOVABLE not modelled)."""

    ZONE_DMA = 0
    ZONE_DMA32 = 1
    ZONE_NORMAL = 2


ZONE_DMA = ZoneType.ZONE_DMA
ZONE_DMA32 = ZoneType.ZONE_DMA32
ZONE_NORMAL = ZoneType.ZONE_NORMAL
ZONE_NAMES = {ZONE_DMA: "DMA", ZONE_DMA32: "DMA32", ZONE_NORMAL: "Normal"}

# include/linux/gfp_types.h bit values (6.1)
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
__GFP_RECLAIMABLE = 0x10
__GFP_IO = 0x40
__GFP_FS = 0x80
__GFP_NOWARN = 0x2000
__GFP_DIRECT_RECLAIM = 0x400
__GFP_KSWAPD_RECLAIM = 0x800
__GFP_HARDWALL = 0x100000
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_USER = GFP_KERNEL | __GFP_HARDWALL
GFP_HIGHUSER_MOVABLE = GFP_USER | __GFP_HIGHMEM | __GFP_MOVABLE
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32


def gfp_zone(gfp: int) -> ZoneType:
    """include/linux/gfp.h ``gfp_zone``: the highest zone a gfp mask may use."""
    if gfp & __GFP_DMA and gfp & __GFP_DMA32:
        raise KernelError(errno.EINVAL, "gfp_zone: __GFP_DMA and __GFP_DMA32 together")
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32
    return ZONE_NORMAL  # __GFP_HIGHMEM / __GFP_MOVABLE → ZONE_NORMAL on arm64


def gfp_migratetype(gfp: int) -> MigrateType:
    """include/linux/gfp.h ``gfp_migratetype``."""
    if gfp & __GFP_MOVABLE and gfp & __GFP_RECLAIMABLE:
        raise KernelError(errno.EINVAL, "gfp_migratetype: movable and reclaimable together")
    if gfp & __GFP_MOVABLE:
        return MIGRATE_MOVABLE
    if gfp & __GFP_RECLAIMABLE:
        return MIGRATE_RECLAIMABLE
    return MIGRATE_UNMOVABLE


def find_buddy_pfn(pfn: int, order: int) -> int:
    """mm/internal.h ``__find_buddy_pfn``: ``pfn ^ (1 << order)``."""
    return pfn ^ (1 << order)


@dataclass(frozen=True)
class ZoneLimits:
    """Physical address limits of the zones (exclusive upper bounds, bytes).

    ``dma`` is the end of ``ZONE_DMA`` (``None``: no ZONE_DMA), ``dma32`` the end of
    ``ZONE_DMA32`` (``None``: no ZONE_DMA32); everything above is ``ZONE_NORMAL``.
    The default (no DMA, DMA32 below 4 GiB, Normal above) is the classic x86-64/arm64
    picture; for arm64 6.1 proper use :func:`arm64_zone_limits`.
    """

    dma: int | None = None
    dma32: int | None = SZ_4G

    def bounds(self) -> list[tuple[ZoneType, int, int | None]]:
        """``(zone, start_byte, end_byte | None)`` for each configured zone, low to high."""
        out: list[tuple[ZoneType, int, int | None]] = []
        lo = 0
        if self.dma is not None:
            out.append((ZONE_DMA, 0, self.dma))
            lo = self.dma
        if self.dma32 is not None:
            out.append((ZONE_DMA32, lo, max(lo, self.dma32)))
            lo = max(lo, self.dma32)
        out.append((ZONE_NORMAL, lo, None))
        return out


def arm64_zone_limits(dram_start: int, dram_end: int, zone_dma_bits: int = 32) -> ZoneLimits:
    """arch/arm64/mm/init.c (6.1) ``zone_sizes_init`` / ``max_zone_phys``.

    ``zone_dma_bits`` is ``min(32, dt_zone_dma_bits, acpi_zone_dma_bits)``: 32 unless the
    device tree's ``dma-ranges`` say a bus reaches less (Raspberry Pi 4: 30 → 1 GiB).
    ``max_zone_phys(bits)``: the mask ``2^bits - 1``, widened to all memory when DRAM
    starts above 4 GiB and to 4 GiB when DRAM starts above the mask, then capped at the
    end of DRAM. With the default 32 bits ZONE_DMA covers the low 4 GiB and ZONE_DMA32 is
    empty (which is why /proc/buddyinfo on arm64 shows "DMA", not "DMA32").
    """

    def max_zone_phys(bits: int) -> int:
        mask = (1 << bits) - 1
        if dram_start > 0xFFFF_FFFF:
            mask = (1 << 64) - 1
        elif dram_start > mask:
            mask = 0xFFFF_FFFF
        return min(mask, dram_end - 1) + 1

    dma = max_zone_phys(zone_dma_bits)
    dma32 = max(dma, max_zone_phys(32))
    return ZoneLimits(dma=dma, dma32=dma32)


@dataclass
class FreeArea:
    """``struct free_area``: one free list per migratetype (LIFO) and ``nr_free`` blocks."""

    free_list: list[dict[int, None]] = field(
        default_factory=lambda: [{} for _ in range(MIGRATE_TYPES)]
    )
    nr_free: int = 0


@dataclass
class AllocatedBlock:
    """A block handed out by the buddy allocator (what ``struct page`` flags would tell).

    ``migratetype`` is the requested migratetype (movable = LRU / migratable); ``pins``
    counts ``pin_user_pages``-style pins, which make a movable page unmigratable.
    """

    pfn: int
    order: int
    migratetype: MigrateType
    pins: int = 0
    owner: str = ""

    @property
    def nr_pages(self) -> int:
        """``1 << order``."""
        return 1 << self.order

    @property
    def movable(self) -> bool:
        """Migratable right now: a movable allocation with no pins."""
        return self.migratetype == MIGRATE_MOVABLE and self.pins == 0


class Zone:
    """``struct zone`` (include/linux/mmzone.h): free areas, pageblock migratetypes, counters.

    ``zone_start_pfn``/``zone_end_pfn`` are the span; ``present_pages`` counts DRAM inside
    the span; ``managed_pages`` counts the pages given to the buddy allocator.
    """

    def __init__(self, ztype: ZoneType, start_pfn: int, end_pfn: int) -> None:
        self.type = ztype
        self.name = ZONE_NAMES[ztype]
        self.zone_start_pfn = start_pfn
        self.zone_end_pfn = end_pfn
        self.present_pages = 0
        self.managed_pages = 0
        self.free_area = [FreeArea() for _ in range(MAX_ORDER)]
        self.nr_free_pages = 0
        self.nr_free_cma_pages = 0
        self._free: dict[int, tuple[int, int]] = {}  # head pfn -> (order, list migratetype)
        self._free_sorted: list[int] = []
        self._alloc: dict[int, AllocatedBlock] = {}
        self._alloc_sorted: list[int] = []
        self._pageblock_mt: dict[int, MigrateType] = {}  # pageblock index -> non-MOVABLE mt

    def __repr__(self) -> str:
        return (
            f"Zone({self.name}, pfn {self.zone_start_pfn:#x}-{self.zone_end_pfn:#x}, "
            f"managed {self.managed_pages}, free {self.nr_free_pages})"
        )

    @property
    def spanned_pages(self) -> int:
        """``zone->spanned_pages``."""
        return self.zone_end_pfn - self.zone_start_pfn

    def populated(self) -> bool:
        """``populated_zone()``: the zone has present pages."""
        return self.present_pages > 0

    def contains(self, pfn: int) -> bool:
        """``zone_spans_pfn()``."""
        return self.zone_start_pfn <= pfn < self.zone_end_pfn

    # -- pageblock migratetype -----------------------------------------------------------
    def get_pageblock_migratetype(self, pfn: int) -> MigrateType:
        """``get_pageblock_migratetype()``: boot default is MIGRATE_MOVABLE
        (``memmap_init_range``)."""
        return self._pageblock_mt.get(pfn >> pageblock_order, MIGRATE_MOVABLE)

    def set_pageblock_migratetype(self, pfn: int, mt: MigrateType) -> None:
        """``set_pageblock_migratetype()``."""
        idx = pfn >> pageblock_order
        if mt == MIGRATE_MOVABLE:
            self._pageblock_mt.pop(idx, None)
        else:
            self._pageblock_mt[idx] = mt

    # -- free list primitives ------------------------------------------------------------
    def _add_free(self, pfn: int, order: int, mt: int) -> None:
        self.free_area[order].free_list[mt][pfn] = None
        self.free_area[order].nr_free += 1
        self._free[pfn] = (order, mt)
        insort(self._free_sorted, pfn)
        self.nr_free_pages += 1 << order
        if mt == MIGRATE_CMA:
            self.nr_free_cma_pages += 1 << order

    def _del_free(self, pfn: int) -> tuple[int, int]:
        order, mt = self._free.pop(pfn)
        del self.free_area[order].free_list[mt][pfn]
        self.free_area[order].nr_free -= 1
        del self._free_sorted[bisect_left(self._free_sorted, pfn)]
        self.nr_free_pages -= 1 << order
        if mt == MIGRATE_CMA:
            self.nr_free_cma_pages -= 1 << order
        return order, mt

    def _move_to_free_list(self, pfn: int, mt: int) -> None:
        order, _old = self._del_free(pfn)
        self._add_free(pfn, order, mt)

    def _add_alloc(self, blk: AllocatedBlock) -> None:
        self._alloc[blk.pfn] = blk
        insort(self._alloc_sorted, blk.pfn)

    def _del_alloc(self, pfn: int) -> AllocatedBlock:
        blk = self._alloc.pop(pfn)
        del self._alloc_sorted[bisect_left(self._alloc_sorted, pfn)]
        return blk

    def free_blocks_in(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Free blocks ``(pfn, order, list_mt)`` overlapping ``[start, end)``, ascending."""
        out = []
        i = bisect_left(self._free_sorted, start - MAX_ORDER_NR_PAGES + 1)
        while i < len(self._free_sorted) and self._free_sorted[i] < end:
            pfn = self._free_sorted[i]
            order, mt = self._free[pfn]
            if pfn + (1 << order) > start:
                out.append((pfn, order, mt))
            i += 1
        return out

    def alloc_blocks_in(self, start: int, end: int) -> list[AllocatedBlock]:
        """Allocated blocks overlapping ``[start, end)``, ascending."""
        out = []
        i = bisect_left(self._alloc_sorted, start - MAX_ORDER_NR_PAGES + 1)
        while i < len(self._alloc_sorted) and self._alloc_sorted[i] < end:
            blk = self._alloc[self._alloc_sorted[i]]
            if blk.pfn + blk.nr_pages > start:
                out.append(blk)
            i += 1
        return out

    def free_runs(
        self, start: int | None = None, end: int | None = None
    ) -> Iterator[tuple[int, int]]:
        """Maximal runs of free pages ``(start_pfn, end_pfn)`` inside ``[start, end)``."""
        s0 = self.zone_start_pfn if start is None else start
        e0 = self.zone_end_pfn if end is None else end
        cur: list[int] | None = None
        for pfn, order, _mt in self.free_blocks_in(s0, e0):
            bs, be = max(pfn, s0), min(pfn + (1 << order), e0)
            if cur is not None and cur[1] == bs:
                cur[1] = be
            else:
                if cur is not None:
                    yield (cur[0], cur[1])
                cur = [bs, be]
        if cur is not None:
            yield (cur[0], cur[1])

    def nr_free(self) -> list[int]:
        """``free_area[order].nr_free`` for each order (the /proc/buddyinfo columns)."""
        return [fa.nr_free for fa in self.free_area]

    def nr_free_by_migratetype(self) -> dict[MigrateType, list[int]]:
        """Free blocks per migratetype per order (/proc/pagetypeinfo's first table)."""
        return {
            mt: [len(fa.free_list[mt]) for fa in self.free_area]
            for mt in MigrateType
            if mt != MigrateType.MIGRATE_HIGHATOMIC
        }

    def largest_free_order(self) -> int:
        """The highest order with a free block, -1 when the zone has no free memory."""
        for order in range(MAX_ORDER - 1, -1, -1):
            if self.free_area[order].nr_free:
                return order
        return -1

    def free_list_shape(self) -> tuple[tuple[int, int], ...]:
        """Sorted free blocks ``(pfn, order)``: equal shapes mean the same blocks are free
        (migratetypes may differ: stolen pageblocks keep their new type, as in the kernel)."""
        return tuple((p, self._free[p][0]) for p in self._free_sorted)


class BuddyAllocator:
    """The zoned buddy allocator of one node (mm/page_alloc.c).

    ``memory`` lists the present DRAM as ``(start_pfn, end_pfn)``; ``reserved`` lists pfn
    ranges that are never given to the allocator (carveouts, ``no-map``, and CMA areas
    until :meth:`init_cma_reserved_pageblock` hands their pageblocks over). ``limits``
    places the zone boundaries by physical address.
    """

    def __init__(
        self,
        memory: Iterable[tuple[int, int]],
        reserved: Iterable[tuple[int, int]] = (),
        limits: ZoneLimits | None = None,
    ) -> None:
        self.limits = limits or ZoneLimits()
        self.memory = sorted((s, e) for s, e in memory if e > s)
        self.reserved = sorted((s, e) for s, e in reserved if e > s)
        self.zones: list[Zone] = []
        self.contig = RunBitmap(1 << 52)  # pfns taken by alloc_contig_range
        self.migrations: list[tuple[int, int, int]] = []  # (old_pfn, new_pfn, order)
        self._free_area_init()
        for s, e in _subtract(self.memory, self.reserved):
            self._free_pages_memory(s, e)

    # -- setup ---------------------------------------------------------------------------
    def _free_area_init(self) -> None:
        """``free_area_init()``: zones spanning the DRAM between the configured limits."""
        if not self.memory:
            return
        lo_pfn, hi_pfn = self.memory[0][0], self.memory[-1][1]
        for ztype, sb, eb in self.limits.bounds():
            zs = max(lo_pfn, sb >> PAGE_SHIFT)
            ze = hi_pfn if eb is None else min(hi_pfn, eb >> PAGE_SHIFT)
            if ze <= zs:
                continue
            zone = Zone(ztype, zs, ze)
            zone.present_pages = sum(max(0, min(e, ze) - max(s, zs)) for s, e in self.memory)
            if zone.present_pages:
                self.zones.append(zone)

    def _free_pages_memory(self, start: int, end: int) -> None:
        """``memblock_free_all`` → ``__free_pages_memory``: maximal aligned chunks, each
        counted as managed and freed (and merged) like ``__free_pages_core``."""
        for zone in self.zones:
            s, e = max(start, zone.zone_start_pfn), min(end, zone.zone_end_pfn)
            if s < e:
                zone.managed_pages += e - s
                self._free_range(zone, s, e)

    def init_cma_reserved_pageblock(self, pfn: int) -> None:
        """mm/page_alloc.c ``init_cma_reserved_pageblock``: mark the pageblock MIGRATE_CMA
        and give its pages to the buddy allocator (``adjust_managed_page_count``)."""
        if pfn & (pageblock_nr_pages - 1):
            raise KernelError(errno.EINVAL, f"pfn {pfn:#x} is not pageblock aligned")
        zone = self.zone_for_pfn(pfn)
        if zone is None:
            raise KernelError(errno.EINVAL, f"pfn {pfn:#x} is not in any zone")
        zone.set_pageblock_migratetype(pfn, MIGRATE_CMA)
        zone.managed_pages += pageblock_nr_pages
        self._free_range(zone, pfn, pfn + pageblock_nr_pages)

    def free_reserved_range(self, start: int, end: int) -> None:
        """``free_reserved_page()`` over a range: reserved pages become ordinary memory."""
        for zone in self.zones:
            s, e = max(start, zone.zone_start_pfn), min(end, zone.zone_end_pfn)
            if s < e:
                for pb in range(s & ~(pageblock_nr_pages - 1), e, pageblock_nr_pages):
                    zone.set_pageblock_migratetype(pb, MIGRATE_MOVABLE)
                zone.managed_pages += e - s
                self._free_range(zone, s, e)

    # -- lookups -------------------------------------------------------------------------
    def zone_for_pfn(self, pfn: int) -> Zone | None:
        """``page_zone(pfn_to_page(pfn))``; None outside every zone span."""
        for zone in self.zones:
            if zone.contains(pfn):
                return zone
        return None

    def zone(self, name: str | ZoneType) -> Zone | None:
        """A zone by name (``"DMA32"``) or type; None when absent or unpopulated."""
        for zone in self.zones:
            if zone.name == name or zone.type == name:
                return zone
        return None

    def page_block(self, pfn: int) -> AllocatedBlock | None:
        """The allocated block containing ``pfn`` (None when free, reserved or contig)."""
        zone = self.zone_for_pfn(pfn)
        if zone is None:
            return None
        blocks = zone.alloc_blocks_in(pfn, pfn + 1)
        return blocks[0] if blocks else None

    def is_free(self, pfn: int) -> bool:
        """``PageBuddy`` of the block containing ``pfn``."""
        zone = self.zone_for_pfn(pfn)
        return bool(zone and zone.free_blocks_in(pfn, pfn + 1))

    # -- freeing -------------------------------------------------------------------------
    def _free_one_page(self, zone: Zone, pfn: int, order: int, mt: int) -> None:
        """``__free_one_page``: merge with free buddies, then add to the free list."""
        while order < MAX_ORDER - 1:
            buddy = find_buddy_pfn(pfn, order)
            info = zone._free.get(buddy)
            if info is None or info[0] != order:
                break
            if order >= pageblock_order:
                buddy_mt = zone.get_pageblock_migratetype(buddy)
                if mt != buddy_mt and (
                    not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)
                ):
                    break
            zone._del_free(buddy)
            pfn &= buddy
            order += 1
        zone._add_free(pfn, order, mt)

    def _free_range(self, zone: Zone, start: int, end: int) -> None:
        """Free ``[start, end)`` in maximal naturally aligned chunks (never spanning
        pageblocks of different migratetypes), each with ``__free_one_page``."""
        while start < end:
            order = min(MAX_ORDER - 1, (start & -start).bit_length() - 1 if start else 64)
            while start + (1 << order) > end:
                order -= 1
            mt = zone.get_pageblock_migratetype(start)
            if order > pageblock_order and any(
                zone.get_pageblock_migratetype(p) != mt
                for p in range(start, start + (1 << order), pageblock_nr_pages)
            ):
                order = pageblock_order
            self._free_one_page(zone, start, order, mt)
            start += 1 << order

    def free_pages(self, pfn: int, order: int) -> None:
        """``__free_pages(page, order)``: return a block obtained from :meth:`alloc_pages`.

        Freeing something that is not an allocated block of that order is the kernel's
        "BUG: Bad page state": raised as ``KernelError(EINVAL)``. Freeing a pinned block
        raises ``EBUSY`` (the pin would hold a reference; the page would not be freed).
        """
        zone = self.zone_for_pfn(pfn)
        blk = zone._alloc.get(pfn) if zone else None
        if zone is None or blk is None or blk.order != order:
            raise KernelError(errno.EINVAL, f"BUG: Bad page state: pfn:{pfn:x} order:{order}")
        if blk.pins:
            raise KernelError(errno.EBUSY, f"free_pages: pfn:{pfn:x} is pinned")
        zone._del_alloc(pfn)
        self._free_one_page(zone, pfn, order, zone.get_pageblock_migratetype(pfn))

    def split_page(self, pfn: int, order: int) -> None:
        """``split_page()``: turn an allocated ``2^order`` block into ``2^order`` order-0
        pages, each freed on its own later (as ``__iommu_dma_alloc_pages`` does)."""
        zone = self.zone_for_pfn(pfn)
        blk = zone._alloc.get(pfn) if zone else None
        if zone is None or blk is None or blk.order != order:
            raise KernelError(
                errno.EINVAL, f"split_page: pfn:{pfn:x} is not an order-{order} block"
            )
        zone._del_alloc(pfn)
        for i in range(1 << order):
            zone._add_alloc(AllocatedBlock(pfn + i, 0, blk.migratetype, blk.pins, blk.owner))

    # -- allocation ----------------------------------------------------------------------
    def _expand(self, zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        """``expand()``: give the upper halves back, one order at a time."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            zone._add_free(pfn + size, high, mt)

    def _rmqueue_smallest(self, zone: Zone, order: int, mt: int) -> int | None:
        """``__rmqueue_smallest``: smallest free block of ``mt`` that fits, split down."""
        for current in range(order, MAX_ORDER):
            fl = zone.free_area[current].free_list[mt]
            if fl:
                pfn = next(reversed(fl))  # the list head: most recently added
                zone._del_free(pfn)
                self._expand(zone, pfn, order, current, mt)
                return pfn
        return None

    @staticmethod
    def _can_steal_fallback(order: int, start_mt: int) -> bool:
        """``can_steal_fallback()``."""
        if order >= pageblock_order:
            return True
        return order >= pageblock_order // 2 or start_mt in (
            MIGRATE_RECLAIMABLE,
            MIGRATE_UNMOVABLE,
        )

    def _find_suitable_fallback(self, zone: Zone, order: int, start_mt: int) -> tuple[int, bool]:
        """``find_suitable_fallback(..., only_stealable=false)``: ``(fallback_mt, can_steal)``."""
        area = zone.free_area[order]
        if area.nr_free == 0:
            return -1, False
        for fmt in FALLBACKS[start_mt]:
            if area.free_list[fmt]:
                return fmt, self._can_steal_fallback(order, start_mt)
        return -1, False

    def _move_freepages_block(self, zone: Zone, pfn: int, mt: int) -> tuple[int, int]:
        """``move_freepages_block()``: move every free block of the pageblock to ``mt``;
        returns ``(free_pages_moved, movable_pages)``."""
        start = max(pfn & ~(pageblock_nr_pages - 1), zone.zone_start_pfn)
        end = min(start + pageblock_nr_pages, zone.zone_end_pfn)
        moved = 0
        for bpfn, border, _bmt in zone.free_blocks_in(start, end):
            if bpfn < start or bpfn + (1 << border) > end:
                continue
            zone._move_to_free_list(bpfn, mt)
            moved += 1 << border
        movable = 0
        for blk in zone.alloc_blocks_in(start, end):
            if blk.migratetype == MIGRATE_MOVABLE:
                movable += min(blk.pfn + blk.nr_pages, end) - max(blk.pfn, start)
        return moved, movable

    def _steal_suitable_fallback(
        self, zone: Zone, pfn: int, start_mt: int, whole_block: bool
    ) -> None:
        """``steal_suitable_fallback()``."""
        current_order = zone._free[pfn][0]
        old_block_type = zone.get_pageblock_migratetype(pfn)
        if current_order >= pageblock_order:
            # change_pageblock_range()
            for pb in range(pfn, pfn + (1 << current_order), pageblock_nr_pages):
                zone.set_pageblock_migratetype(pb, MigrateType(start_mt))
            zone._move_to_free_list(pfn, start_mt)
            return
        if not whole_block:
            zone._move_to_free_list(pfn, start_mt)
            return
        free_pages, movable_pages = self._move_freepages_block(zone, pfn, start_mt)
        if not free_pages:
            zone._move_to_free_list(pfn, start_mt)
            return
        if start_mt == MIGRATE_MOVABLE:
            alike = movable_pages
        elif old_block_type == MIGRATE_MOVABLE:
            alike = pageblock_nr_pages - (free_pages + movable_pages)
        else:
            alike = 0
        if free_pages + alike >= 1 << (pageblock_order - 1):
            zone.set_pageblock_migratetype(pfn, MigrateType(start_mt))

    def _rmqueue_fallback(self, zone: Zone, order: int, start_mt: int) -> bool:
        """``__rmqueue_fallback()``: steal from another migratetype (never from CMA)."""
        for current in range(MAX_ORDER - 1, order - 1, -1):
            fmt, can_steal = self._find_suitable_fallback(zone, current, start_mt)
            if fmt == -1:
                continue
            take = current
            if not can_steal and start_mt == MIGRATE_MOVABLE and current > order:
                # find_smallest: a movable request does not break up a large block it
                # cannot claim; take the smallest suitable one instead.
                for smaller in range(order, MAX_ORDER):
                    fmt, can_steal = self._find_suitable_fallback(zone, smaller, start_mt)
                    if fmt != -1:
                        take = smaller
                        break
            fl = zone.free_area[take].free_list[fmt]
            pfn = next(reversed(fl))
            self._steal_suitable_fallback(zone, pfn, start_mt, can_steal)
            return True
        return False

    def _rmqueue(self, zone: Zone, order: int, mt: int, alloc_cma: bool) -> int | None:
        """``__rmqueue()`` (6.1), including the CMA balance rule for ALLOC_CMA."""
        if alloc_cma and zone.nr_free_cma_pages > zone.nr_free_pages // 2:
            pfn = self._rmqueue_smallest(zone, order, MIGRATE_CMA)
            if pfn is not None:
                return pfn
        while True:
            pfn = self._rmqueue_smallest(zone, order, mt)
            if pfn is not None:
                return pfn
            if alloc_cma:
                pfn = self._rmqueue_smallest(zone, order, MIGRATE_CMA)
                if pfn is not None:
                    return pfn
            if not self._rmqueue_fallback(zone, order, mt):
                return None

    def _zonelist(self, highest: ZoneType) -> list[Zone]:
        return [z for z in reversed(self.zones) if z.type <= highest]

    def alloc_pages(
        self,
        order: int,
        migratetype: MigrateType = MIGRATE_UNMOVABLE,
        highest_zone: ZoneType = ZONE_NORMAL,
        owner: str = "",
    ) -> int | None:
        """``__alloc_pages()`` → ``get_page_from_freelist()``: a block of ``2^order`` pages.

        Zones are tried from ``highest_zone`` down (the zonelist); movable requests may
        use MIGRATE_CMA pageblocks (``ALLOC_CMA``), nothing else does. Returns the first
        pfn, or None (``order >= MAX_ORDER`` is the kernel's WARN + NULL).
        """
        if not 0 <= order < MAX_ORDER:
            return None
        if migratetype not in FALLBACKS:
            raise KernelError(errno.EINVAL, f"alloc_pages: bad migratetype {migratetype}")
        alloc_cma = migratetype == MIGRATE_MOVABLE
        for zone in self._zonelist(highest_zone):
            pfn = self._rmqueue(zone, order, migratetype, alloc_cma)
            if pfn is not None:
                zone._add_alloc(AllocatedBlock(pfn, order, MigrateType(migratetype), 0, owner))
                return pfn
        return None

    def alloc_pages_gfp(self, gfp: int, order: int, owner: str = "") -> int | None:
        """``alloc_pages(gfp, order)``: zone from ``gfp_zone``, type from ``gfp_migratetype``."""
        return self.alloc_pages(order, gfp_migratetype(gfp), gfp_zone(gfp), owner)

    def alloc_range(
        self,
        start: int,
        end: int,
        migratetype: MigrateType = MIGRATE_MOVABLE,
        pins: int = 0,
        owner: str = "",
    ) -> list[tuple[int, int]] | None:
        """Allocate exactly the free pages ``[start, end)`` as naturally aligned blocks.

        No kernel call does this; it injects state (page-cache pages that happen to sit
        at those pfns, or a pinned page inside a CMA area). Returns the ``(pfn, order)``
        blocks, or None (nothing changed) when some page is not free.
        """
        zone = self.zone_for_pfn(start)
        if zone is None or end <= start or end > zone.zone_end_pfn:
            return None
        if sum(min(e, end) - max(s, start) for s, e in zone.free_runs(start, end)) != end - start:
            return None
        self._carve(zone, start, end)
        blocks = []
        for pfn, order in _aligned_chunks(start, end):
            zone._add_alloc(AllocatedBlock(pfn, order, migratetype, pins, owner))
            blocks.append((pfn, order))
        return blocks

    def _carve(self, zone: Zone, start: int, end: int) -> list[tuple[int, int]]:
        """Take the free pages of ``[start, end)`` off the free lists (splitting blocks that
        straddle the edges, like ``isolate_single_pageblock``); returns the taken runs."""
        taken = []
        outside = []
        for pfn, order, _mt in zone.free_blocks_in(start, end):
            zone._del_free(pfn)
            bend = pfn + (1 << order)
            if pfn < start:
                outside.append((pfn, start))
            if bend > end:
                outside.append((end, bend))
            taken.append((max(pfn, start), min(bend, end)))
        for s, e in outside:
            self._free_range(zone, s, e)
        return taken

    # -- pins ----------------------------------------------------------------------------
    def pin(self, pfn: int, order: int = 0) -> None:
        """``pin_user_pages()`` on ``[pfn, pfn + 2^order)``: every allocated block touched
        gets a pin (a pinned page cannot be migrated: alloc_contig_range → -EBUSY)."""
        for blk in self._blocks_covering(pfn, order):
            blk.pins += 1

    def unpin(self, pfn: int, order: int = 0) -> None:
        """``unpin_user_pages()``: drop one pin from each block touched."""
        blocks = self._blocks_covering(pfn, order)
        if any(b.pins == 0 for b in blocks):
            raise KernelError(errno.EINVAL, f"unpin: pfn:{pfn:x} is not pinned")
        for blk in blocks:
            blk.pins -= 1

    def _blocks_covering(self, pfn: int, order: int) -> list[AllocatedBlock]:
        zone = self.zone_for_pfn(pfn)
        end = pfn + (1 << order)
        blocks = zone.alloc_blocks_in(pfn, end) if zone else []
        covered = sum(min(b.pfn + b.nr_pages, end) - max(b.pfn, pfn) for b in blocks)
        if covered != end - pfn:
            raise KernelError(errno.EINVAL, f"pin: pfn:{pfn:x} order:{order} not allocated")
        return blocks

    # -- contiguous ranges (CMA) ---------------------------------------------------------
    def alloc_contig_range(
        self, start: int, end: int, migratetype: MigrateType = MIGRATE_CMA
    ) -> int:
        """``alloc_contig_range()`` (mm/page_alloc.c, mm/page_isolation.c): 0 or -errno.

        * -EINVAL: the range is empty or not inside one zone.
        * -EBUSY: a page in the range is unmovable, pinned, or not a buddy page at all
          (reserved, already taken) — ``start_isolate_page_range``/``has_unmovable_pages``
          or ``test_pages_isolated`` would fail. Checked before anything moves (the kernel
          may have migrated some pages before meeting the pinned one).
        * -ENOMEM: no free page to migrate a movable page to.

        Movable pages are migrated (``__alloc_contig_migrate_range``) to pages allocated
        outside the range (``alloc_migration_target``: movable, CMA allowed); each move is
        appended to :attr:`migrations` and the block keeps its owner.
        """
        zone = self.zone_for_pfn(start)
        if zone is None or end <= start or end > zone.zone_end_pfn:
            return -errno.EINVAL
        blocks = zone.alloc_blocks_in(start, end)
        if any(not b.movable for b in blocks):
            return -errno.EBUSY
        free = sum(e - s for s, e in zone.free_runs(start, end))
        busy = sum(min(b.pfn + b.nr_pages, end) - max(b.pfn, start) for b in blocks)
        if free + busy != end - start:
            return -errno.EBUSY
        held = self._carve(zone, start, end)
        for blk in blocks:
            new = self._alloc_migration_target(blk)
            if new is None:
                for s, e in held:
                    self._free_range(zone, s, e)
                return -errno.ENOMEM
            old = zone._del_alloc(blk.pfn)
            bend = old.pfn + old.nr_pages
            held.append((max(old.pfn, start), min(bend, end)))
            if old.pfn < start:
                self._free_range(zone, old.pfn, start)
            if bend > end:
                self._free_range(zone, end, bend)
            self.migrations.append((old.pfn, new, old.order))
        self.contig.set(start, end - start)
        return 0

    def _alloc_migration_target(self, blk: AllocatedBlock) -> int | None:
        pfn = self.alloc_pages(blk.order, MIGRATE_MOVABLE, ZONE_NORMAL, blk.owner)
        return pfn

    def free_contig_range(self, pfn: int, nr_pages: int) -> None:
        """``free_contig_range()``: give back pages taken by :meth:`alloc_contig_range`.

        Freeing pages that were not taken is a bad-page BUG in the kernel:
        ``KernelError(EINVAL)`` here, with nothing changed.
        """
        zone = self.zone_for_pfn(pfn)
        if zone is None or nr_pages <= 0 or not self.contig.all_set(pfn, nr_pages):
            raise KernelError(errno.EINVAL, f"BUG: Bad page state: pfn:{pfn:x} nr_pages:{nr_pages}")
        self.contig.clear(pfn, nr_pages)
        self._free_range(zone, pfn, pfn + nr_pages)

    # -- reporting -----------------------------------------------------------------------
    def buddyinfo(self) -> str:
        """/proc/buddyinfo (mm/vmstat.c ``frag_show_print``): one line per populated zone,
        ``"Node %d, zone %8s "`` then ``"%6lu "`` per order, then a newline."""
        out = []
        for zone in self.zones:
            if not zone.populated():
                continue
            line = f"Node 0, zone {zone.name:>8s} "
            line += "".join(f"{n:6d} " for n in zone.nr_free())
            out.append(line + "\n")
        return "".join(out)

    def largest_free_order(self, zone: str | ZoneType) -> int:
        """Highest order with a free block in ``zone``; -1 when none (or no such zone)."""
        z = self.zone(zone)
        return -1 if z is None else z.largest_free_order()

    @property
    def managed_pages(self) -> int:
        """``totalram_pages()``: pages given to the buddy allocator."""
        return sum(z.managed_pages for z in self.zones)

    @property
    def nr_free_pages(self) -> int:
        """``NR_FREE_PAGES`` summed over zones."""
        return sum(z.nr_free_pages for z in self.zones)

    @property
    def nr_free_cma_pages(self) -> int:
        """``NR_FREE_CMA_PAGES`` summed over zones."""
        return sum(z.nr_free_cma_pages for z in self.zones)

    @property
    def nr_allocated_pages(self) -> int:
        """Pages in blocks handed out by :meth:`alloc_pages` (and injected ranges)."""
        return sum(b.nr_pages for z in self.zones for b in z._alloc.values())

    @property
    def nr_contig_pages(self) -> int:
        """Pages taken by :meth:`alloc_contig_range`."""
        return self.contig.weight()

    def allocated_blocks(self) -> list[AllocatedBlock]:
        """Every allocated block, ascending by pfn."""
        return [z._alloc[p] for z in self.zones for p in z._alloc_sorted]

    def check(self) -> None:
        """Consistency check (tests): no overlaps, counters agree, free blocks aligned and
        unmerged where they could merge, unmovable never in a CMA pageblock."""
        for zone in self.zones:
            spans: list[tuple[int, int, str]] = []
            total_free = 0
            cma_free = 0
            for pfn in zone._free_sorted:
                order, mt = zone._free[pfn]
                assert pfn % (1 << order) == 0, (pfn, order)
                assert pfn in zone.free_area[order].free_list[mt]
                total_free += 1 << order
                if mt == MIGRATE_CMA:
                    cma_free += 1 << order
                    assert zone.get_pageblock_migratetype(pfn) == MIGRATE_CMA
                spans.append((pfn, pfn + (1 << order), "free"))
            assert total_free == zone.nr_free_pages
            assert cma_free == zone.nr_free_cma_pages
            for order, fa in enumerate(zone.free_area):
                assert fa.nr_free == sum(len(fl) for fl in fa.free_list), order
            alloc = 0
            for blk in zone._alloc.values():
                if zone.get_pageblock_migratetype(blk.pfn) == MIGRATE_CMA:
                    assert blk.migratetype == MIGRATE_MOVABLE, blk
                alloc += blk.nr_pages
                spans.append((blk.pfn, blk.pfn + blk.nr_pages, "alloc"))
            contig = 0
            for s, e in self.contig.runs():
                s, e = max(s, zone.zone_start_pfn), min(e, zone.zone_end_pfn)
                if s < e:
                    contig += e - s
                    spans.append((s, e, "contig"))
            spans.sort()
            for a, b in itertools.pairwise(spans):
                assert a[1] <= b[0], (a, b)
            assert total_free + alloc + contig == zone.managed_pages, (
                zone.name,
                total_free,
                alloc,
                contig,
                zone.managed_pages,
            )


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus ``holes`` (both sorted half-open intervals)."""
    out = []
    for s, e in ranges:
        cur = s
        for hs, he in holes:
            if he <= cur or hs >= e:
                continue
            if hs > cur:
                out.append((cur, hs))
            cur = max(cur, he)
        if cur < e:
            out.append((cur, e))
    return out


def _aligned_chunks(start: int, end: int) -> Iterator[tuple[int, int]]:
    """Split ``[start, end)`` into maximal naturally aligned ``(pfn, order)`` chunks."""
    while start < end:
        order = (
            MAX_ORDER - 1 if start == 0 else min(MAX_ORDER - 1, (start & -start).bit_length() - 1)
        )
        while start + (1 << order) > end:
            order -= 1
        yield start, order
        start += 1 << order
