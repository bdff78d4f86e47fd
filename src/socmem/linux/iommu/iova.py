"""The IOVA allocator: a model of drivers/iommu/iova.c as it is in Linux 6.1.

The model is meant to return, call for call, the pfn a real 6.1 kernel returns, so it
keeps the kernel's state and its quirks rather than an idealised allocator:

* the rbtree of allocated ranges, with the anchor node at ``IOVA_ANCHOR`` (``~0UL``) as
  its last element, is a sorted Python list of ``pfn_lo`` plus a parallel list of
  :class:`Iova` nodes (``bisect``); ``rb_prev``/``rb_next`` are index steps.  Cost grows
  with the number of live ranges, never with the size of the IOVA space;
* ``cached_node`` / ``cached32_node`` are references to nodes, updated exactly as
  ``__cached_rbnode_insert_update()`` and ``__cached_rbnode_delete_update()`` do, and the
  top-down search (``__alloc_and_insert_iova_range()``) starts at the cached node, not at
  the true highest gap, with the 6.1 retry (``retry_pfn``/``iova_find_limit()``);
* ``max32_alloc_size``: after a failure of size *n* (for any limit: the kernel records it
  unconditionally), any request of size >= *n* with a limit at or below 4 GiB fails at
  once, until a range starting below 4 GiB is freed;
* the per-CPU range caches (``loaded``/``prev`` magazines of ``IOVA_MAG_SIZE`` = 127 pfns,
  a depot of at most ``MAX_GLOBAL_MAGS`` = 32 full magazines per order, the order being
  ``order_base_2(size)`` < ``IOVA_RANGE_CACHE_MAX_SIZE`` = 6) with the 6.1 magazine
  rules: the swap-to-pop ``iova_magazine_pop()`` that takes the newest pfn fitting the
  limit, the ``prev``/``loaded`` swap on get (``prev`` non-empty) and on insert (``prev``
  not full), the depot LIFO, and the magazine handed back to the tree when the depot is
  full.  Newer kernels (6.7+) changed the depot to a list with a shrink timer; that is
  *not* modelled.

Documented deviations (the kernel would misbehave; we refuse or stop instead):

* a size of 0 raises ``KernelError(EINVAL)`` (the kernel shifts by 64: undefined);
* the restart of the top-down walk is taken at most once.  In the kernel a cached node
  ending exactly at ``start_pfn - 1`` would make it restart forever;
* ``remove_iova()`` of the anchor, or of a node not in this domain, raises
  ``KernelError(EINVAL)``;
* memory allocation (``alloc_iova_mem``, ``iova_magazine_alloc``) never fails.

Units are the kernel's: pfns of ``granule`` bytes; ``limit_pfn`` arguments are inclusive.
"""

from __future__ import annotations

import errno
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from socmem.errors import KernelError

__all__ = [
    "IOVA_ANCHOR",
    "IOVA_MAG_SIZE",
    "IOVA_RANGE_CACHE_MAX_SIZE",
    "MAX_GLOBAL_MAGS",
    "ULONG_MAX",
    "Iova",
    "IovaDomain",
    "IovaStats",
    "order_base_2",
    "roundup_pow_of_two",
]

ULONG_MAX = (1 << 64) - 1
"""``~0UL`` on a 64-bit kernel: pfn arithmetic wraps modulo 2**64 like C's."""
IOVA_ANCHOR = ULONG_MAX
"""pfn_lo == pfn_hi of the anchor node that sits above the usable space."""
IOVA_RANGE_CACHE_MAX_SIZE = 6
"""log2 of the largest cached range, plus one: orders 0..5 (1..32 granules) are cached."""
IOVA_MAG_SIZE = 127
"""pfns per magazine in 6.1 (chosen so that ``struct iova_magazine`` is 1 KiB)."""
MAX_GLOBAL_MAGS = 32
"""Full magazines the 6.1 depot of one order can hold."""

Source = Literal["rcache", "tree"]


def order_base_2(n: int) -> int:
    """``order_base_2()`` from include/linux/log2.h: ceil(log2(n)), 0 for n <= 1."""
    return 0 if n <= 1 else (n - 1).bit_length()


def roundup_pow_of_two(n: int) -> int:
    """``roundup_pow_of_two()`` from include/linux/log2.h (n >= 1)."""
    return 1 << (n - 1).bit_length()


def _fls_long(x: int) -> int:
    """``fls_long()``: 1-based index of the most significant set bit, 0 for 0."""
    return x.bit_length()


@dataclass(eq=False, slots=True)
class Iova:
    """One node of the IOVA rbtree: ``struct iova`` (include/linux/iova.h).

    ``pfn_lo``/``pfn_hi`` are inclusive.  ``reserved`` is ours (the kernel does not tell a
    reservation from an allocation); it only feeds the statistics.  Nodes compare by
    identity, as the kernel compares ``struct iova *``.
    """

    pfn_lo: int
    pfn_hi: int
    reserved: bool = False

    @property
    def size(self) -> int:
        """Number of granules covered (``iova_size()``)."""
        return self.pfn_hi - self.pfn_lo + 1

    def __repr__(self) -> str:
        kind = " reserved" if self.reserved else ""
        return f"Iova({self.pfn_lo:#x}..{self.pfn_hi:#x}{kind})"


@dataclass(slots=True)
class _CpuRcache:
    """``struct iova_cpu_rcache``: the two magazines of one CPU for one order."""

    loaded: list[int] = field(default_factory=list)
    prev: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Rcache:
    """``struct iova_rcache`` (6.1): a depot array and the per-CPU magazines."""

    depot: list[list[int]]
    cpu_rcaches: list[_CpuRcache]


@dataclass
class IovaStats:
    """Counters for what-if reports.  Per-CPU lists are indexed by CPU number."""

    rcache_hits: list[int]
    """``alloc_iova_fast()`` calls served by the CPU's range cache."""
    rcache_misses: list[int]
    """``alloc_iova_fast()`` calls of a cacheable size that went to the tree."""
    uncached_allocs: list[int]
    """``alloc_iova_fast()`` calls too large to be cached (order >= 6)."""
    rcache_inserts: list[int]
    """``free_iova_fast()`` calls whose range went into the CPU's range cache."""
    tree_allocs: int = 0
    """Successful ``alloc_iova()`` calls (ranges inserted by the top-down search)."""
    tree_alloc_failures: int = 0
    """Failed ``alloc_iova()`` calls (including max32 short-circuits)."""
    max32_short_circuits: int = 0
    """Failures taken at once because ``size >= max32_alloc_size``."""
    tree_walk_steps: int = 0
    """Nodes visited by the top-down walks (the kernel's ``rb_prev`` steps)."""
    tree_frees: int = 0
    """Ranges removed from the tree (free_iova, __free_iova, magazine flushes)."""
    fast_failures: int = 0
    """``alloc_iova_fast()`` calls that returned 0."""
    flush_retries: int = 0
    """``alloc_iova_fast()`` failures that flushed every rcache and retried."""
    depot_pushes: int = 0
    """Full magazines moved into a depot."""
    depot_pops: int = 0
    """Full magazines taken out of a depot by a CPU."""
    depot_overflows: int = 0
    """Full magazines freed back to the tree because the depot was full."""
    magazine_free_warnings: int = 0
    """Cached pfns with no tree node when a magazine was flushed (the kernel WARNs)."""


class IovaDomain:
    """``struct iova_domain``: models drivers/iommu/iova.c (Linux 6.1).

    ``IovaDomain(granule, start_pfn, ncpus, rcache)`` is ``init_iova_domain()`` followed,
    when ``rcache`` is true, by ``iova_domain_init_rcaches()`` (what dma-iommu does).
    Without range caches, ``alloc_iova_fast()``/``free_iova_fast()`` go straight to the
    tree.

    After each ``alloc_iova_fast()``, :attr:`last_source` says whether the result came from
    the range cache (``"rcache"``), from the tree (``"tree"``) or was a failure (``None``),
    and :attr:`last_alloc_iova_calls` how many ``alloc_iova()`` calls it made (0, 1, or 2
    after a flush-and-retry), which is what a kprobe on ``alloc_iova`` would count.
    """

    def __init__(self, granule: int, start_pfn: int, ncpus: int = 1, rcache: bool = True) -> None:
        if granule <= 0 or granule & (granule - 1):
            raise KernelError(errno.EINVAL, f"init_iova_domain: granule {granule} not a power of 2")
        if ncpus < 1:
            raise ValueError("ncpus must be >= 1")
        if start_pfn < 0:
            raise ValueError("start_pfn must be >= 0")
        self.granule = granule
        self.start_pfn = start_pfn
        self.ncpus = ncpus
        self.dma_32bit_pfn = 1 << (32 - self.iova_shift())
        self.max32_alloc_size = self.dma_32bit_pfn
        self.anchor = Iova(IOVA_ANCHOR, IOVA_ANCHOR, reserved=True)
        # The rbtree, in order: keys[i] == nodes[i].pfn_lo.  The anchor is always last.
        self._keys: list[int] = [IOVA_ANCHOR]
        self._nodes: list[Iova] = [self.anchor]
        self.cached_node: Iova = self.anchor
        self.cached32_node: Iova = self.anchor
        self.rcaches: list[_Rcache] | None = None
        if rcache:
            self.rcaches = [
                _Rcache(depot=[], cpu_rcaches=[_CpuRcache() for _ in range(ncpus)])
                for _ in range(IOVA_RANGE_CACHE_MAX_SIZE)
            ]
        self.stats = IovaStats(
            rcache_hits=[0] * ncpus,
            rcache_misses=[0] * ncpus,
            uncached_allocs=[0] * ncpus,
            rcache_inserts=[0] * ncpus,
        )
        self.last_source: Source | None = None
        self.last_alloc_iova_calls = 0
        self._allocated_pages = 0
        self._reserved_pages = 0

    # ------------------------------------------------------------------ helpers (iova.h)

    def iova_shift(self) -> int:
        """``iova_shift()``: log2 of the granule."""
        return self.granule.bit_length() - 1

    def iova_mask(self) -> int:
        """``iova_mask()``: granule - 1."""
        return self.granule - 1

    def iova_offset(self, iova: int) -> int:
        """``iova_offset()``: the byte offset of an address inside its granule."""
        return iova & (self.granule - 1)

    def iova_align(self, size: int) -> int:
        """``iova_align()``: a byte size rounded up to the granule."""
        return (size + self.granule - 1) & ~(self.granule - 1)

    def iova_dma_addr(self, iova: Iova) -> int:
        """``iova_dma_addr()``: the bus address of a node's first granule."""
        return iova.pfn_lo << self.iova_shift()

    def iova_pfn(self, iova: int) -> int:
        """``iova_pfn()``: the pfn of a bus address."""
        return iova >> self.iova_shift()

    # ------------------------------------------------------------------ tree primitives

    def _index_of(self, node: Iova) -> int:
        i = bisect_left(self._keys, node.pfn_lo)
        if i < len(self._nodes) and self._nodes[i] is node:
            return i
        raise KernelError(errno.EINVAL, f"iova {node!r} is not in this domain")

    def _first_hi_ge(self, pfn: int) -> int:
        """Index of the lowest node with ``pfn_hi >= pfn`` (the anchor at worst)."""
        j = bisect_left(self._keys, pfn)
        if j > 0 and self._nodes[j - 1].pfn_hi >= pfn:
            return j - 1
        return j

    def _insert_node(self, index: int, node: Iova) -> None:
        self._keys.insert(index, node.pfn_lo)
        self._nodes.insert(index, node)
        if node.reserved:
            self._reserved_pages += node.size
        else:
            self._allocated_pages += node.size

    def _cached_rbnode_insert_update(self, new: Iova) -> None:
        """Models ``__cached_rbnode_insert_update()``."""
        if new.pfn_hi < self.dma_32bit_pfn:
            self.cached32_node = new
        else:
            self.cached_node = new

    def _remove(self, free: Iova) -> None:
        """Models ``remove_iova()``: ``__cached_rbnode_delete_update()`` then ``rb_erase()``."""
        if free is self.anchor:
            raise KernelError(errno.EINVAL, "remove_iova: the anchor node cannot be freed")
        i = self._index_of(free)
        successor = self._nodes[i + 1]  # rb_next(): never NULL, the anchor is last
        cached32 = self.cached32_node
        if free is cached32 or (
            free.pfn_hi < self.dma_32bit_pfn and free.pfn_lo >= cached32.pfn_lo
        ):
            self.cached32_node = successor
        if free.pfn_lo < self.dma_32bit_pfn:
            self.max32_alloc_size = self.dma_32bit_pfn
        if free.pfn_lo >= self.cached_node.pfn_lo:
            self.cached_node = successor
        del self._keys[i]
        del self._nodes[i]
        if free.reserved:
            self._reserved_pages -= free.size
        else:
            self._allocated_pages -= free.size
        self.stats.tree_frees += 1

    # ------------------------------------------------------------------ tree allocator

    def _alloc_and_insert_iova_range(
        self, size: int, limit_pfn: int, size_aligned: bool
    ) -> Iova | None:
        """Models ``__alloc_and_insert_iova_range()``; ``limit_pfn`` is exclusive here.

        The walk is the kernel's: from the cached node, step to ``rb_prev`` while the
        candidate ``(high_pfn - size) & align_mask`` does not clear the node below; on
        failure, if the search started from ``start_pfn`` and the cached node lies below
        the limit, search once more in ``[cached->pfn_hi + 1, limit)`` from the first node
        at or above the limit.  Runs of nodes wholly above the current ``high_pfn`` are
        skipped with one bisection: the kernel would visit them without changing
        ``high_pfn`` or the candidate, so the outcome is the same.
        """
        align_mask = ULONG_MAX
        if size_aligned:
            align_mask = (align_mask << _fls_long(size - 1)) & ULONG_MAX
        high_pfn = limit_pfn
        low_pfn = self.start_pfn
        if limit_pfn <= self.dma_32bit_pfn and size >= self.max32_alloc_size:
            self.stats.max32_short_circuits += 1
            return None

        nodes = self._nodes
        start = self.cached32_node if limit_pfn <= self.dma_32bit_pfn else self.cached_node
        i = self._index_of(start)
        retry_pfn = start.pfn_hi
        retried = False
        steps = 0
        while True:
            if nodes[i].pfn_lo >= high_pfn:
                i = min(i, self._first_hi_ge(high_pfn))
            while True:  # the kernel's do { } while
                lo = nodes[i].pfn_lo
                if lo < high_pfn:
                    high_pfn = lo
                new_pfn = (high_pfn - size) & align_mask
                i -= 1
                steps += 1
                if i < 0:
                    break
                below = nodes[i]
                if not (new_pfn <= below.pfn_hi and new_pfn >= low_pfn):
                    break
            if high_pfn < size or new_pfn < low_pfn:
                if low_pfn == self.start_pfn and retry_pfn < limit_pfn and not retried:
                    high_pfn = limit_pfn
                    low_pfn = retry_pfn + 1
                    i = self._first_hi_ge(limit_pfn)  # iova_find_limit()
                    retried = True
                    continue
                self.max32_alloc_size = size
                self.stats.tree_walk_steps += steps
                return None
            break
        self.stats.tree_walk_steps += steps
        new = Iova(new_pfn, new_pfn + size - 1)
        # nodes[i] (if any) ends below new_pfn, nodes[i + 1] starts above new.pfn_hi.
        self._insert_node(i + 1, new)
        self._cached_rbnode_insert_update(new)
        return new

    def alloc_iova(self, size: int, limit_pfn: int, size_aligned: bool) -> Iova | None:
        """Models ``alloc_iova()`` in drivers/iommu/iova.c (Linux 6.1).

        Searches top-down from the cached node for ``size`` granules ending at or below
        ``limit_pfn`` (inclusive) and at or above ``start_pfn``; with ``size_aligned`` the
        start is aligned to ``roundup_pow_of_two(size)``.  Returns the new node or None.
        """
        if size <= 0:
            raise KernelError(errno.EINVAL, f"alloc_iova: size {size}")
        new = self._alloc_and_insert_iova_range(size, (limit_pfn + 1) & ULONG_MAX, size_aligned)
        if new is None:
            self.stats.tree_alloc_failures += 1
        else:
            self.stats.tree_allocs += 1
        return new

    def find_iova(self, pfn: int) -> Iova | None:
        """Models ``find_iova()``: the node whose range contains ``pfn``, or None."""
        i = bisect_right(self._keys, pfn) - 1
        if i >= 0:
            node = self._nodes[i]
            if pfn <= node.pfn_hi:
                return node
        return None

    def remove_iova(self, iova: Iova) -> None:
        """Models ``__free_iova()``: remove a node (from ``alloc_iova``/``reserve_iova``)."""
        self._remove(iova)

    def free_iova(self, pfn: int) -> None:
        """Models ``free_iova()``: free the node containing ``pfn``; no-op if there is none."""
        node = self.find_iova(pfn)
        if node is not None:
            self._remove(node)

    # ------------------------------------------------------------------ reservations

    def reserve_iova(self, pfn_lo: int, pfn_hi: int) -> Iova | None:
        """Models ``reserve_iova()`` in drivers/iommu/iova.c (Linux 6.1).

        Walks the nodes in order.  An overlapping node is grown downwards to ``pfn_lo``
        if it starts above it, and the rest of the request continues above it; a request
        wholly inside one node returns that node (even an allocation).  The remainder is
        inserted as a new node, which is what is returned.  The cached nodes and
        ``max32_alloc_size`` are not touched.  Returns None for pfns beyond the address
        width (the kernel WARNs).
        """
        if (pfn_hi | pfn_lo) > (ULONG_MAX >> self.iova_shift()):
            return None
        nodes = self._nodes
        # Nodes ending below pfn_lo can neither overlap nor end an overlap run.
        i = self._first_hi_ge(pfn_lo)
        overlap = False
        while i < len(nodes):
            node = nodes[i]
            if pfn_lo <= node.pfn_hi and pfn_hi >= node.pfn_lo:
                if pfn_lo < node.pfn_lo:  # __adjust_overlap_range() grows the node
                    grown = node.pfn_lo - pfn_lo
                    node.pfn_lo = pfn_lo
                    self._keys[i] = pfn_lo
                    if node.reserved:
                        self._reserved_pages += grown
                    else:
                        self._allocated_pages += grown
                if pfn_hi > node.pfn_hi:
                    pfn_lo = node.pfn_hi + 1
                if pfn_lo >= node.pfn_lo and pfn_hi <= node.pfn_hi:
                    return node
                overlap = True
            elif overlap:
                break
            i += 1
        new = Iova(pfn_lo, pfn_hi, reserved=True)
        j = bisect_left(self._keys, pfn_lo)
        if j < len(self._keys) and self._keys[j] == pfn_lo:
            # iova_insert_rbtree() WARNs and leaves the node out of the tree.
            return new
        self._insert_node(j, new)
        return new

    # ------------------------------------------------------------------ range caches

    def _check_cpu(self, cpu: int) -> None:
        if not 0 <= cpu < self.ncpus:
            raise ValueError(f"cpu {cpu} out of range 0..{self.ncpus - 1}")

    def _magazine_free_pfns(self, mag: list[int]) -> None:
        """Models ``iova_magazine_free_pfns()``: free every pfn, first pushed first."""
        for pfn in mag:
            node = self.find_iova(pfn)
            if node is None:
                self.stats.magazine_free_warnings += 1
                continue
            self._remove(node)
        mag.clear()

    @staticmethod
    def _magazine_pop(mag: list[int], limit_pfn: int) -> int:
        """Models ``iova_magazine_pop()``: the newest pfn <= limit, swapped out; else 0."""
        i = len(mag) - 1
        while mag[i] > limit_pfn:
            if i == 0:
                return 0
            i -= 1
        pfn = mag[i]
        mag[i] = mag[-1]
        mag.pop()
        return pfn

    def _iova_rcache_get(self, size: int, limit_pfn: int, cpu: int) -> int:
        """Models ``iova_rcache_get()`` + ``__iova_rcache_get()``; limit is exclusive."""
        log_size = order_base_2(size)
        if log_size >= IOVA_RANGE_CACHE_MAX_SIZE or self.rcaches is None:
            return 0
        rcache = self.rcaches[log_size]
        cpu_rcache = rcache.cpu_rcaches[cpu]
        if cpu_rcache.loaded:
            pass
        elif cpu_rcache.prev:
            cpu_rcache.loaded, cpu_rcache.prev = cpu_rcache.prev, cpu_rcache.loaded
        elif rcache.depot:
            cpu_rcache.loaded = rcache.depot.pop()
            self.stats.depot_pops += 1
        else:
            return 0
        return self._magazine_pop(cpu_rcache.loaded, (limit_pfn - size) & ULONG_MAX)

    def _iova_rcache_insert(self, pfn: int, size: int, cpu: int) -> bool:
        """Models ``iova_rcache_insert()`` + ``__iova_rcache_insert()`` (6.1 depot)."""
        log_size = order_base_2(size)
        if log_size >= IOVA_RANGE_CACHE_MAX_SIZE or self.rcaches is None:
            return False
        rcache = self.rcaches[log_size]
        cpu_rcache = rcache.cpu_rcaches[cpu]
        mag_to_free: list[int] | None = None
        if len(cpu_rcache.loaded) < IOVA_MAG_SIZE:
            pass
        elif len(cpu_rcache.prev) < IOVA_MAG_SIZE:
            cpu_rcache.loaded, cpu_rcache.prev = cpu_rcache.prev, cpu_rcache.loaded
        else:
            if len(rcache.depot) < MAX_GLOBAL_MAGS:
                rcache.depot.append(cpu_rcache.loaded)
                self.stats.depot_pushes += 1
            else:
                mag_to_free = cpu_rcache.loaded
                self.stats.depot_overflows += 1
            cpu_rcache.loaded = []
        cpu_rcache.loaded.append(pfn)
        if mag_to_free is not None:
            self._magazine_free_pfns(mag_to_free)
        return True

    def alloc_iova_fast(self, size: int, limit_pfn: int, flush_rcache: bool, cpu: int = 0) -> int:
        """Models ``alloc_iova_fast()`` in drivers/iommu/iova.c (Linux 6.1).

        Sizes below 32 granules are rounded up to a power of two; the CPU's range cache
        for that order is tried first (newest fitting pfn), then ``alloc_iova(...,
        size_aligned=True)``.  On failure with ``flush_rcache``, every CPU's magazines and
        the depots are freed back to the tree and the tree is tried once more.  Returns
        the first pfn, or 0 on failure (the kernel's convention).
        """
        self._check_cpu(cpu)
        if size <= 0:
            raise KernelError(errno.EINVAL, f"alloc_iova_fast: size {size}")
        if size < (1 << (IOVA_RANGE_CACHE_MAX_SIZE - 1)):
            size = roundup_pow_of_two(size)
        self.last_alloc_iova_calls = 0
        cacheable = order_base_2(size) < IOVA_RANGE_CACHE_MAX_SIZE and self.rcaches is not None
        pfn = self._iova_rcache_get(size, (limit_pfn + 1) & ULONG_MAX, cpu)
        if pfn:
            self.stats.rcache_hits[cpu] += 1
            self.last_source = "rcache"
            return pfn
        if cacheable:
            self.stats.rcache_misses[cpu] += 1
        else:
            self.stats.uncached_allocs[cpu] += 1
        while True:
            self.last_alloc_iova_calls += 1
            new = self.alloc_iova(size, limit_pfn, True)
            if new is not None:
                self.last_source = "tree"
                return new.pfn_lo
            if not flush_rcache:
                self.last_source = None
                self.stats.fast_failures += 1
                return 0
            flush_rcache = False
            self.stats.flush_retries += 1
            for c in range(self.ncpus):
                self.free_cpu_cached_iovas(c)
            self.free_global_cached_iovas()

    def free_iova_fast(self, pfn: int, size: int, cpu: int = 0) -> None:
        """Models ``free_iova_fast()``: into the CPU's range cache, else ``free_iova()``.

        ``size`` is the unrounded size the caller allocated with; its order picks the
        cache, so 33..63 granules (order 6) always go back to the tree.
        """
        self._check_cpu(cpu)
        if self._iova_rcache_insert(pfn, size, cpu):
            self.stats.rcache_inserts[cpu] += 1
            return
        self.free_iova(pfn)

    def free_cpu_cached_iovas(self, cpu: int) -> None:
        """Models ``free_cpu_cached_iovas()``: empty one CPU's loaded then prev magazines."""
        self._check_cpu(cpu)
        if self.rcaches is None:
            return
        for rcache in self.rcaches:
            cpu_rcache = rcache.cpu_rcaches[cpu]
            self._magazine_free_pfns(cpu_rcache.loaded)
            self._magazine_free_pfns(cpu_rcache.prev)

    def free_global_cached_iovas(self) -> None:
        """Models ``free_global_cached_iovas()``: empty the depots, oldest magazine first."""
        if self.rcaches is None:
            return
        for rcache in self.rcaches:
            for mag in rcache.depot:
                self._magazine_free_pfns(mag)
            rcache.depot.clear()

    def put_iova_domain(self) -> None:
        """Models ``put_iova_domain()``: drop the range caches and every node.

        Cached ranges are dropped with the caches (not freed one by one), as in the
        kernel.  The domain is left with only its anchor and no range caches.
        """
        self.rcaches = None
        self._keys = [IOVA_ANCHOR]
        self._nodes = [self.anchor]
        self.cached_node = self.anchor
        self.cached32_node = self.anchor
        self._allocated_pages = 0
        self._reserved_pages = 0

    # ------------------------------------------------------------------ inspection

    def __iter__(self) -> Iterator[Iova]:
        """The nodes in address order, without the anchor."""
        return iter(self._nodes[:-1])

    def __len__(self) -> int:
        """Number of nodes in the tree, without the anchor."""
        return len(self._nodes) - 1

    @property
    def tree_size(self) -> int:
        """Number of nodes in the tree, without the anchor (allocated, cached, reserved)."""
        return len(self._nodes) - 1

    @property
    def allocated_pages(self) -> int:
        """Granules in allocated nodes, including ranges parked in the range caches."""
        return self._allocated_pages

    @property
    def reserved_pages(self) -> int:
        """Granules in nodes created by ``reserve_iova()``."""
        return self._reserved_pages

    @property
    def bytes_allocated(self) -> int:
        """:attr:`allocated_pages` in bytes."""
        return self._allocated_pages << self.iova_shift()

    @property
    def bytes_reserved(self) -> int:
        """:attr:`reserved_pages` in bytes."""
        return self._reserved_pages << self.iova_shift()

    def cached_pfns(self, cpu: int | None = None) -> list[int]:
        """pfns parked in the range caches (one CPU's, or all CPUs' and the depots')."""
        if self.rcaches is None:
            return []
        out: list[int] = []
        for rcache in self.rcaches:
            cpus = rcache.cpu_rcaches if cpu is None else [rcache.cpu_rcaches[cpu]]
            for cpu_rcache in cpus:
                out.extend(cpu_rcache.loaded)
                out.extend(cpu_rcache.prev)
            if cpu is None:
                for mag in rcache.depot:
                    out.extend(mag)
        return out

    def free_ranges(self, limit_pfn: int | None = None) -> Iterator[tuple[int, int]]:
        """Free ``(pfn_lo, pfn_hi)`` ranges in ``[start_pfn, limit_pfn]``, low to high."""
        limit = self.dma_32bit_pfn - 1 if limit_pfn is None else limit_pfn
        cursor = self.start_pfn
        for node in self._nodes:
            if cursor > limit:
                return
            if node.pfn_hi < cursor:
                continue
            if node.pfn_lo > cursor:
                yield cursor, min(node.pfn_lo - 1, limit)
            cursor = node.pfn_hi + 1
        # The anchor ends the list, so the loop always returns above.

    def free_pages(self, limit_pfn: int | None = None) -> int:
        """Free granules in ``[start_pfn, limit_pfn]`` (default: below 4 GiB)."""
        return sum(hi - lo + 1 for lo, hi in self.free_ranges(limit_pfn))

    def used_pages(self, limit_pfn: int | None = None) -> int:
        """Granules of ``[start_pfn, limit_pfn]`` covered by nodes (default: below 4 GiB)."""
        limit = self.dma_32bit_pfn - 1 if limit_pfn is None else limit_pfn
        total = 0
        for node in self._nodes[:-1]:
            lo = max(node.pfn_lo, self.start_pfn)
            hi = min(node.pfn_hi, limit)
            if hi >= lo:
                total += hi - lo + 1
        return total

    def largest_free_gap(self, limit_pfn: int | None = None) -> int:
        """Fragmentation measure: the largest free run in ``[start_pfn, limit_pfn]``."""
        return max((hi - lo + 1 for lo, hi in self.free_ranges(limit_pfn)), default=0)

    def __repr__(self) -> str:
        return (
            f"IovaDomain(granule={self.granule}, start_pfn={self.start_pfn:#x}, "
            f"nodes={self.tree_size}, allocated={self._allocated_pages}, "
            f"reserved={self._reserved_pages})"
        )
