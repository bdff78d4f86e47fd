"""The Contiguous Memory Allocator: ``mm/cma.c`` (Linux 6.1 semantics).

A CMA area is a reserved, pageblock-aligned range whose pageblocks are handed to the
buddy allocator as MIGRATE_CMA (``cma_activate_area`` → ``init_cma_reserved_pageblock``),
so movable allocations may borrow them; ``cma_alloc`` takes a range back with
``alloc_contig_range``, migrating movable borrowers away and retrying elsewhere on
-EBUSY (a pinned or otherwise unmigratable page).

Bookkeeping follows the kernel: one bitmap bit per ``2^order_per_bit`` pages
(``cma_bitmap_maxno``), alignment mask and offset in absolute pfn terms
(``cma_bitmap_aligned_mask`` / ``cma_bitmap_aligned_offset``), the search with
``bitmap_find_next_zero_area_off``, ``start = bitmap_no + mask + 1`` after -EBUSY.
Counters are those of ``/sys/kernel/mm/cma/<name>/`` (``alloc_pages_success``,
``alloc_pages_fail``; ``release_pages_success`` arrived after 6.1 and is kept anyway) and
of debugfs (``used``, ``maxchunk``).

Messages go to :attr:`Cma.log` with the ``cma: `` pr_fmt prefix; ``pr_err_ratelimited``
is not rate limited here. Trace events (``cma_alloc_start``, ``cma_alloc_busy_retry``,
``cma_alloc_finish``, ``cma_release``) are appended to :attr:`Cma.trace` as
``(event, fields)``; ``errorno`` on ``cma_alloc_finish`` is a post-6.1 field, included.

Deviations: ``cma_init_reserved_mem`` returns the area or raises
:class:`~socmem.errors.KernelError` (the kernel returns ``-errno`` and fills
``res_cma``); the ``memblock_is_region_reserved`` check is the caller's
(:class:`socmem.linux.mm.PhysMem` reserves the region); unnamed areas are
``cma%d`` (the 6.1 kernel appends a stray newline).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from socmem.errors import KernelError
from socmem.linux.mm.buddy import (
    MIGRATE_MOVABLE,
    PAGE_SHIFT,
    BuddyAllocator,
    pageblock_nr_pages,
)
from socmem.linux.mm.genpool import RunBitmap

__all__ = [
    "CMA_MIN_ALIGNMENT_BYTES",
    "CMA_MIN_ALIGNMENT_PAGES",
    "MAX_CMA_AREAS",
    "Cma",
    "cma_alloc",
    "cma_init_reserved_mem",
    "cma_release",
]

CMA_MIN_ALIGNMENT_PAGES = pageblock_nr_pages  # include/linux/cma.h (5.18+)
CMA_MIN_ALIGNMENT_BYTES = CMA_MIN_ALIGNMENT_PAGES << PAGE_SHIFT
MAX_CMA_AREAS = 7  # CONFIG_CMA_AREAS default without NUMA (19 with NUMA)
ULONG_MAX = (1 << 64) - 1


@dataclass
class Cma:
    """``struct cma`` (mm/cma.h): one contiguous area and its allocation bitmap."""

    name: str
    base_pfn: int
    count: int
    order_per_bit: int
    bitmap: RunBitmap | None = None
    buddy: BuddyAllocator | None = None
    debug: bool = False  # CONFIG_CMA_DEBUG: cma_debug_show_areas() after a failure
    log: list[str] = field(default_factory=list)
    trace: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    alloc_pages_success: int = 0
    alloc_pages_fail: int = 0
    release_pages_success: int = 0
    nr_busy_retries: int = 0

    # -- geometry helpers (mm/cma.c) -----------------------------------------------------
    def cma_bitmap_maxno(self) -> int:
        """``cma_bitmap_maxno()``: ``count >> order_per_bit``."""
        return self.count >> self.order_per_bit

    def cma_bitmap_aligned_mask(self, align_order: int) -> int:
        """``cma_bitmap_aligned_mask()``: 0 when ``align_order <= order_per_bit``."""
        if align_order <= self.order_per_bit:
            return 0
        return (1 << (align_order - self.order_per_bit)) - 1

    def cma_bitmap_aligned_offset(self, align_order: int) -> int:
        """``cma_bitmap_aligned_offset()``: ``base_pfn`` modulo the alignment, in bits, so
        that returned pfns are aligned in absolute terms."""
        return (self.base_pfn & ((1 << align_order) - 1)) >> self.order_per_bit

    def cma_bitmap_pages_to_bits(self, pages: int) -> int:
        """``cma_bitmap_pages_to_bits()``: pages rounded up to whole bits."""
        step = 1 << self.order_per_bit
        return ((pages + step - 1) // step * step) >> self.order_per_bit

    @property
    def end_pfn(self) -> int:
        """One past the last pfn of the area."""
        return self.base_pfn + self.count

    def cma_get_base(self) -> int:
        """``cma_get_base()``: physical base address."""
        return self.base_pfn << PAGE_SHIFT

    def cma_get_size(self) -> int:
        """``cma_get_size()``: bytes."""
        return self.count << PAGE_SHIFT

    # -- activation ----------------------------------------------------------------------
    def cma_activate_area(self, buddy: BuddyAllocator) -> int:
        """``cma_activate_area()``: allocate the bitmap, check the area lies in one zone,
        give every pageblock to the buddy allocator as MIGRATE_CMA. 0 or -EINVAL.

        On failure the kernel prints ``CMA area %s could not be activated``, hands the
        pages to the buddy allocator as ordinary memory and sets ``count = 0``.
        """
        self.bitmap = RunBitmap(self.cma_bitmap_maxno())
        zone = buddy.zone_for_pfn(self.base_pfn)
        if zone is None or self.end_pfn > zone.zone_end_pfn:
            self.log.append(f"cma: CMA area {self.name} could not be activated")
            buddy.free_reserved_range(self.base_pfn, self.end_pfn)
            self.count = 0
            self.bitmap = None
            return -errno.EINVAL
        self.buddy = buddy
        for pfn in range(self.base_pfn, self.end_pfn, pageblock_nr_pages):
            buddy.init_cma_reserved_pageblock(pfn)
        return 0

    # -- allocation ----------------------------------------------------------------------
    def _debug_show_areas(self) -> None:
        """``cma_debug_show_areas()`` (CONFIG_CMA_DEBUG)."""
        assert self.bitmap is not None
        pieces = []
        total = 0
        for s, e in self.bitmap.zero_runs():
            nr = (e - s) << self.order_per_bit
            pieces.append(f"{'+' if total else ''}{nr}@{s}")
            total += nr
        self.log.append(
            "cma: number of available pages: "
            + "".join(pieces)
            + f"=> {total} free of {self.count} total pages"
        )

    def cma_alloc(self, count: int, align: int = 0, no_warn: bool = False) -> int | None:
        """``cma_alloc(cma, count, align, no_warn)``: the first pfn of ``count`` contiguous
        pages aligned to ``2^align`` pages (absolute pfn), or None.

        Failure (unless ``no_warn``) logs
        ``cma: cma_alloc: <name>: alloc failed, req-size: <count> pages, ret: <ret>``
        where ``ret`` is the last error (-ENOMEM, or -EBUSY when the last try was busy).
        """
        pfn = ULONG_MAX
        found: int | None = None
        ret = -errno.ENOMEM
        if not self.count or self.bitmap is None or self.buddy is None:
            return self._account(None, count)
        self.trace.append(("cma_alloc_start", {"name": self.name, "count": count, "align": align}))
        if not count:
            return self._account(None, count)
        mask = self.cma_bitmap_aligned_mask(align)
        offset = self.cma_bitmap_aligned_offset(align)
        bitmap_maxno = self.cma_bitmap_maxno()
        bitmap_count = self.cma_bitmap_pages_to_bits(count)
        if bitmap_count > bitmap_maxno:
            return self._account(None, count)
        start = 0
        while True:
            bitmap_no = self.bitmap.find_next_zero_area_off(
                bitmap_maxno, start, bitmap_count, mask, offset
            )
            if bitmap_no >= bitmap_maxno:
                break
            self.bitmap.set(bitmap_no, bitmap_count)
            pfn = self.base_pfn + (bitmap_no << self.order_per_bit)
            ret = self.buddy.alloc_contig_range(pfn, pfn + count)
            if ret == 0:
                found = pfn
                break
            self.bitmap.clear(bitmap_no, bitmap_count)
            if ret != -errno.EBUSY:
                break
            self.nr_busy_retries += 1
            self.trace.append(
                (
                    "cma_alloc_busy_retry",
                    {"name": self.name, "pfn": pfn, "count": count, "align": align},
                )
            )
            start = bitmap_no + mask + 1
        self.trace.append(
            (
                "cma_alloc_finish",
                {
                    "name": self.name,
                    "pfn": pfn,
                    "count": count,
                    "align": align,
                    "errorno": 0 if found is not None else ret,
                },
            )
        )
        if found is None and not no_warn:
            self.log.append(
                f"cma: cma_alloc: {self.name}: alloc failed, req-size: {count} pages, ret: {ret}"
            )
            if self.debug:
                self._debug_show_areas()
        return self._account(found, count)

    def _account(self, pfn: int | None, count: int) -> int | None:
        """``count_vm_event(CMA_ALLOC_SUCCESS/FAIL)`` + ``cma_sysfs_account_*_pages``."""
        if pfn is not None:
            self.alloc_pages_success += count
        else:
            self.alloc_pages_fail += count
        return pfn

    def cma_pages_valid(self, pfn: int, count: int) -> bool:
        """``cma_pages_valid()``: does ``pfn`` start inside this area?"""
        return self.count > 0 and self.base_pfn <= pfn < self.end_pfn

    def cma_release(self, pfn: int, count: int) -> bool:
        """``cma_release(cma, pages, count)``: False when ``pfn`` is not in the area.

        ``VM_BUG_ON(pfn + count > end)`` and freeing pages that were not allocated (a
        bad-page BUG) raise ``KernelError(EINVAL)`` with nothing changed.
        """
        if not self.cma_pages_valid(pfn, count):
            return False
        if pfn + count > self.end_pfn:
            raise KernelError(errno.EINVAL, f"cma_release: {self.name}: range past area end")
        assert self.buddy is not None and self.bitmap is not None
        self.buddy.free_contig_range(pfn, count)
        bitmap_no = (pfn - self.base_pfn) >> self.order_per_bit
        self.bitmap.clear(bitmap_no, self.cma_bitmap_pages_to_bits(count))
        self.release_pages_success += count
        self.trace.append(("cma_release", {"name": self.name, "pfn": pfn, "count": count}))
        return True

    # -- state injection -----------------------------------------------------------------
    def borrow(
        self, count: int, movable: bool = True, pfn: int | None = None, owner: str = "borrower"
    ) -> list[tuple[int, int]] | None:
        """Put ``count`` pages of this area in the hands of a buddy-allocator borrower.

        Models page-cache / anonymous pages that landed in MIGRATE_CMA pageblocks.
        ``movable=False`` models a borrower that cannot be migrated: in 6.1 the only such
        pages in a CMA pageblock are movable pages that are pinned (GUP, in-flight I/O),
        so the blocks are recorded as movable with one pin. ``pfn`` places them exactly;
        otherwise the lowest free pages of the area are used. Returns ``(pfn, order)``
        blocks (free them with ``buddy.free_pages``), or None when not enough free pages.
        """
        if self.buddy is None or count <= 0:
            return None
        pins = 0 if movable else 1
        if pfn is not None:
            if pfn < self.base_pfn or pfn + count > self.end_pfn:
                return None
            return self.buddy.alloc_range(pfn, pfn + count, MIGRATE_MOVABLE, pins, owner)
        zone = self.buddy.zone_for_pfn(self.base_pfn)
        assert zone is not None
        runs = []
        need = count
        for s, e in zone.free_runs(self.base_pfn, self.end_pfn):
            take = min(need, e - s)
            runs.append((s, s + take))
            need -= take
            if not need:
                break
        if need:
            return None
        blocks: list[tuple[int, int]] = []
        for s, e in runs:
            got = self.buddy.alloc_range(s, e, MIGRATE_MOVABLE, pins, owner)
            assert got is not None
            blocks.extend(got)
        return blocks

    # -- statistics ----------------------------------------------------------------------
    def used(self) -> int:
        """debugfs ``used``: set bits × ``2^order_per_bit`` pages."""
        return 0 if self.bitmap is None else self.bitmap.weight() << self.order_per_bit

    def maxchunk(self) -> int:
        """debugfs ``maxchunk``: the longest free run, in pages."""
        if self.bitmap is None:
            return 0
        return self.bitmap.largest_zero_run() << self.order_per_bit

    def available(self) -> int:
        """sysfs ``available_pages`` (newer kernels): pages not taken by ``cma_alloc``."""
        return self.count - self.used()

    def borrowed(self) -> int:
        """Pages of the area currently held by buddy-allocator borrowers."""
        if self.buddy is None:
            return 0
        zone = self.buddy.zone_for_pfn(self.base_pfn)
        assert zone is not None
        return sum(
            min(b.pfn + b.nr_pages, self.end_pfn) - max(b.pfn, self.base_pfn)
            for b in zone.alloc_blocks_in(self.base_pfn, self.end_pfn)
        )


def cma_init_reserved_mem(
    base: int, size: int, order_per_bit: int = 0, name: str | None = None, area_index: int = 0
) -> Cma:
    """``cma_init_reserved_mem()``: describe an already reserved range as a CMA area.

    6.1 checks, each ``-EINVAL`` (raised as ``KernelError``): ``size`` non-zero,
    ``CMA_MIN_ALIGNMENT_PAGES`` aligned to ``1 << order_per_bit``, and
    ``base | size`` aligned to ``CMA_MIN_ALIGNMENT_BYTES`` (one pageblock, 2 MiB).
    ``area_index`` names unnamed areas (``cma%d``). Call :meth:`Cma.cma_activate_area`
    to hand the pages to the buddy allocator.
    """
    if not size:
        raise KernelError(errno.EINVAL, "cma_init_reserved_mem: size is 0")
    if order_per_bit < 0 or CMA_MIN_ALIGNMENT_PAGES % (1 << order_per_bit):
        raise KernelError(errno.EINVAL, "cma_init_reserved_mem: order_per_bit too large")
    if (base | size) % CMA_MIN_ALIGNMENT_BYTES:
        raise KernelError(
            errno.EINVAL,
            f"cma_init_reserved_mem: base {base:#x} / size {size:#x} not aligned to "
            f"{CMA_MIN_ALIGNMENT_BYTES:#x}",
        )
    return Cma(
        name=name if name else f"cma{area_index}",
        base_pfn=base >> PAGE_SHIFT,
        count=size >> PAGE_SHIFT,
        order_per_bit=order_per_bit,
    )


def cma_alloc(cma: Cma | None, count: int, align: int = 0, no_warn: bool = False) -> int | None:
    """``cma_alloc()``: see :meth:`Cma.cma_alloc`; None for a NULL area."""
    return None if cma is None else cma.cma_alloc(count, align, no_warn)


def cma_release(cma: Cma | None, pfn: int | None, count: int) -> bool:
    """``cma_release()``: False for a NULL area or page."""
    if cma is None or pfn is None:
        return False
    return cma.cma_release(pfn, count)
