"""Carveout pools: ``lib/genalloc.c`` (``gen_pool``) and the ``lib/bitmap.c`` search it uses.

A carveout is a static reserved-memory region that is neither CMA nor ``no-map``: the
kernel never hands it to the buddy allocator, and a driver (or ``kernel/dma/coherent.c``
for ``shared-dma-pool`` regions without ``reusable``) sub-allocates it with a bitmap of
``2^min_alloc_order``-byte chunks.

Modelling choices:

* The bitmap is kept as a sorted list of set runs (:class:`RunBitmap`), so cost grows with
  the number of live allocations, not with the pool size; searches reproduce
  ``bitmap_find_next_zero_area_off()`` bit for bit.
* Chunks are searched most-recently-added first, as ``gen_pool_add_owner()`` links new
  chunks at the head of ``pool->chunks`` (``list_add_rcu``).
* ``gen_pool_alloc()`` returns ``0`` on failure, as the kernel does.
* Where the kernel ``BUG()``s (freeing an address outside every chunk, or bits that are
  not set, or destroying a pool with live allocations) socmem raises
  :class:`~socmem.errors.KernelError` with ``EINVAL`` (``EBUSY`` for destroy) *before*
  changing any state; the kernel may have cleared part of the bitmap before dying.
"""

from __future__ import annotations

import errno
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from socmem.errors import KernelError

__all__ = [
    "GenPool",
    "GenPoolChunk",
    "GenPoolDataAlign",
    "RunBitmap",
    "gen_pool_add",
    "gen_pool_alloc",
    "gen_pool_alloc_algo",
    "gen_pool_avail",
    "gen_pool_best_fit",
    "gen_pool_create",
    "gen_pool_first_fit",
    "gen_pool_first_fit_align",
    "gen_pool_first_fit_order_align",
    "gen_pool_free",
    "gen_pool_size",
]


class RunBitmap:
    """A bitmap of ``nbits`` bits stored as sorted, disjoint, coalesced runs of set bits.

    Mirrors the ``lib/bitmap.c`` / ``lib/find_bit.c`` helpers the kernel's CMA and genalloc
    use (``find_next_zero_bit``, ``find_next_bit``, ``bitmap_set``, ``bitmap_clear``,
    ``bitmap_weight``, ``bitmap_find_next_zero_area_off``) with cost proportional to the
    number of set runs.
    """

    __slots__ = ("_ends", "_starts", "nbits")

    def __init__(self, nbits: int) -> None:
        self.nbits = nbits
        self._starts: list[int] = []
        self._ends: list[int] = []

    def runs(self) -> Iterator[tuple[int, int]]:
        """Set runs as half-open ``(start, end)`` bit intervals, ascending."""
        return iter(zip(self._starts, self._ends, strict=True))

    def zero_runs(self) -> Iterator[tuple[int, int]]:
        """Clear runs as half-open ``(start, end)`` bit intervals, ascending."""
        pos = 0
        for s, e in zip(self._starts, self._ends, strict=True):
            if s > pos:
                yield (pos, s)
            pos = e
        if pos < self.nbits:
            yield (pos, self.nbits)

    def find_next_zero_bit(self, start: int, size: int | None = None) -> int:
        """``find_next_zero_bit(map, size, start)``: first clear bit ``>= start``, else size."""
        size = self.nbits if size is None else size
        if start >= size:
            return size
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return min(self._ends[i], size)
        return start

    def find_next_bit(self, size: int, start: int) -> int:
        """``find_next_bit(map, size, start)``: first set bit in ``[start, size)``, else size."""
        if start >= size:
            return size
        i = bisect_right(self._ends, start)
        if i < len(self._starts) and self._starts[i] < size:
            return max(self._starts[i], start)
        return size

    def set(self, start: int, nr: int) -> None:
        """``bitmap_set(map, start, nr)``."""
        if nr <= 0:
            return
        s, e = start, start + nr
        i = bisect_left(self._ends, s)
        j = bisect_right(self._starts, e)
        if i < j:
            s = min(s, self._starts[i])
            e = max(e, self._ends[j - 1])
        self._starts[i:j] = [s]
        self._ends[i:j] = [e]

    def clear(self, start: int, nr: int) -> None:
        """``bitmap_clear(map, start, nr)``."""
        if nr <= 0:
            return
        s, e = start, start + nr
        i = bisect_right(self._ends, s)
        j = bisect_left(self._starts, e)
        if i >= j:
            return
        ns: list[int] = []
        ne: list[int] = []
        if self._starts[i] < s:
            ns.append(self._starts[i])
            ne.append(s)
        if self._ends[j - 1] > e:
            ns.append(e)
            ne.append(self._ends[j - 1])
        self._starts[i:j] = ns
        self._ends[i:j] = ne

    def count_set(self, start: int = 0, nr: int | None = None) -> int:
        """Number of set bits in ``[start, start + nr)`` (``bitmap_weight`` on a window)."""
        e = self.nbits if nr is None else start + nr
        total = 0
        i = bisect_right(self._ends, start)
        while i < len(self._starts) and self._starts[i] < e:
            total += min(self._ends[i], e) - max(self._starts[i], start)
            i += 1
        return total

    def weight(self) -> int:
        """``bitmap_weight(map, nbits)``."""
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def all_set(self, start: int, nr: int) -> bool:
        """True when every bit in ``[start, start + nr)`` is set."""
        return self.count_set(start, nr) == nr

    def largest_zero_run(self) -> int:
        """Longest run of clear bits (what CMA debugfs ``maxchunk`` reports, in bits)."""
        return max((e - s for s, e in self.zero_runs()), default=0)

    def find_next_zero_area_off(
        self, size: int, start: int, nr: int, align_mask: int, align_offset: int
    ) -> int:
        """``bitmap_find_next_zero_area_off()`` from lib/bitmap.c.

        Returns the first index ``>= start`` such that ``index + align_offset`` is a
        multiple of ``align_mask + 1`` and ``[index, index + nr)`` is clear; when there is
        none, a value ``> size`` (the kernel returns ``end``).
        """
        while True:
            index = self.find_next_zero_bit(start, size)
            index = ((index + align_offset + align_mask) & ~align_mask) - align_offset
            end = index + nr
            if end > size:
                return end
            i = self.find_next_bit(end, index)
            if i < end:
                start = i + 1
                continue
            return index

    def find_next_zero_area(self, size: int, start: int, nr: int, align_mask: int) -> int:
        """``bitmap_find_next_zero_area()``: the ``_off`` variant with offset 0."""
        return self.find_next_zero_area_off(size, start, nr, align_mask, 0)


@dataclass
class GenPoolDataAlign:
    """``struct genpool_data_align``: the ``data`` of :func:`gen_pool_first_fit_align`."""

    align: int


GenpoolAlgo = Callable[[RunBitmap, int, int, int, Any, "GenPool", int], int]


def gen_pool_first_fit(
    map: RunBitmap, size: int, start: int, nr: int, data: Any, pool: GenPool, start_addr: int
) -> int:
    """lib/genalloc.c ``gen_pool_first_fit``: the first clear run of ``nr`` bits."""
    return map.find_next_zero_area(size, start, nr, 0)


def gen_pool_first_fit_align(
    map: RunBitmap, size: int, start: int, nr: int, data: Any, pool: GenPool, start_addr: int
) -> int:
    """lib/genalloc.c ``gen_pool_first_fit_align``: first fit at an *address* aligned to
    ``data.align`` bytes (the chunk's own start address is taken into account)."""
    order = pool.min_alloc_order
    align = data.align
    align_mask = ((align + (1 << order) - 1) >> order) - 1
    align_off = (start_addr & (align - 1)) >> order
    return map.find_next_zero_area_off(size, start, nr, align_mask, align_off)


def gen_pool_first_fit_order_align(
    map: RunBitmap, size: int, start: int, nr: int, data: Any, pool: GenPool, start_addr: int
) -> int:
    """lib/genalloc.c ``gen_pool_first_fit_order_align``: aligned (within the chunk) to the
    allocation size rounded up to a power of two."""
    align_mask = (1 << (nr - 1).bit_length()) - 1 if nr > 1 else 0
    return map.find_next_zero_area(size, start, nr, align_mask)


def gen_pool_best_fit(
    map: RunBitmap, size: int, start: int, nr: int, data: Any, pool: GenPool, start_addr: int
) -> int:
    """lib/genalloc.c ``gen_pool_best_fit``: the smallest clear run that fits ``nr`` bits."""
    start_bit = size
    length = size + 1
    index = map.find_next_zero_area(size, start, nr, 0)
    while index < size:
        next_bit = map.find_next_bit(size, index + nr)
        if next_bit - index < length:
            length = next_bit - index
            start_bit = index
            if length == nr:
                return start_bit
        index = map.find_next_zero_area(size, next_bit + 1, nr, 0)
    return start_bit


@dataclass
class GenPoolChunk:
    """``struct gen_pool_chunk``: one added range and its allocation bitmap."""

    start_addr: int
    end_addr: int  # inclusive, as in the kernel
    phys_addr: int
    avail: int
    bits: RunBitmap

    @property
    def size(self) -> int:
        """``chunk_size()``: ``end_addr - start_addr + 1``."""
        return self.end_addr - self.start_addr + 1


@dataclass
class GenPool:
    """``struct gen_pool`` (lib/genalloc.c): a special-purpose memory pool.

    ``name`` is socmem's label for reports (the kernel's ``pool->name`` is optional too).
    """

    min_alloc_order: int
    nid: int = -1
    name: str = ""
    algo: GenpoolAlgo = gen_pool_first_fit
    data: Any = None
    chunks: list[GenPoolChunk] = field(default_factory=list)  # search order (head first)

    def gen_pool_add_virt(self, virt: int, phys: int, size: int, nid: int = -1) -> int:
        """``gen_pool_add_virt()``/``gen_pool_add_owner()``: add a chunk; 0 or -ENOMEM."""
        nbits = size >> self.min_alloc_order
        if size <= 0 or nbits <= 0:
            # The kernel would allocate a zero-bit chunk; nothing can ever come from it.
            return -errno.ENOMEM if size < 0 else 0
        chunk = GenPoolChunk(
            start_addr=virt,
            end_addr=virt + size - 1,
            phys_addr=phys,
            avail=size,
            bits=RunBitmap(nbits),
        )
        self.chunks.insert(0, chunk)  # list_add_rcu(): new chunks are searched first
        return 0

    def gen_pool_add(self, addr: int, size: int, nid: int = -1) -> int:
        """``gen_pool_add()``: add memory whose virtual and physical address are equal."""
        return self.gen_pool_add_virt(addr, addr, size, nid)

    def gen_pool_set_algo(self, algo: GenpoolAlgo | None, data: Any = None) -> None:
        """``gen_pool_set_algo()``: ``None`` restores ``gen_pool_first_fit``."""
        self.algo = algo or gen_pool_first_fit
        self.data = data

    def gen_pool_alloc_algo(self, size: int, algo: GenpoolAlgo, data: Any = None) -> int:
        """``gen_pool_alloc_algo_owner()``: allocate ``size`` bytes with ``algo``; 0 on failure."""
        if size <= 0:
            return 0
        order = self.min_alloc_order
        nbits = (size + (1 << order) - 1) >> order
        for chunk in self.chunks:
            if size > chunk.avail:
                continue
            end_bit = chunk.size >> order
            start_bit = algo(chunk.bits, end_bit, 0, nbits, data, self, chunk.start_addr)
            if start_bit >= end_bit or start_bit + nbits > end_bit:
                continue
            chunk.bits.set(start_bit, nbits)
            chunk.avail -= nbits << order
            return chunk.start_addr + (start_bit << order)
        return 0

    def gen_pool_alloc(self, size: int) -> int:
        """``gen_pool_alloc()``: allocate with the pool's algorithm; 0 on failure."""
        return self.gen_pool_alloc_algo(size, self.algo, self.data)

    def _find_chunk(self, addr: int) -> GenPoolChunk | None:
        for chunk in self.chunks:
            if chunk.start_addr <= addr <= chunk.end_addr:
                return chunk
        return None

    def gen_pool_free(self, addr: int, size: int) -> None:
        """``gen_pool_free_owner()``: give back ``size`` bytes at ``addr``.

        The kernel ``BUG()``s when ``addr`` is in no chunk, when the range runs past the
        chunk, or when any of its bits was not allocated; socmem raises
        ``KernelError(EINVAL)`` instead, leaving the pool unchanged.
        """
        order = self.min_alloc_order
        nbits = (size + (1 << order) - 1) >> order
        chunk = self._find_chunk(addr)
        if chunk is None:
            raise KernelError(errno.EINVAL, f"gen_pool_free: {addr:#x} is not in the pool")
        if addr + size - 1 > chunk.end_addr:
            raise KernelError(errno.EINVAL, f"gen_pool_free: {addr:#x}+{size:#x} past chunk end")
        start_bit = (addr - chunk.start_addr) >> order
        if not chunk.bits.all_set(start_bit, nbits):
            raise KernelError(errno.EINVAL, f"gen_pool_free: {addr:#x}+{size:#x} was not allocated")
        chunk.bits.clear(start_bit, nbits)
        chunk.avail += nbits << order

    def gen_pool_avail(self) -> int:
        """``gen_pool_avail()``: free bytes over all chunks."""
        return sum(c.avail for c in self.chunks)

    def gen_pool_size(self) -> int:
        """``gen_pool_size()``: total bytes over all chunks."""
        return sum(c.size for c in self.chunks)

    def gen_pool_has_addr(self, start: int, size: int) -> bool:
        """``gen_pool_has_addr()``: is ``[start, start + size)`` inside one chunk?"""
        end = start + size - 1
        return any(c.start_addr <= start and end <= c.end_addr for c in self.chunks)

    def gen_pool_virt_to_phys(self, addr: int) -> int:
        """``gen_pool_virt_to_phys()``: -1 when ``addr`` is in no chunk."""
        chunk = self._find_chunk(addr)
        return -1 if chunk is None else chunk.phys_addr + (addr - chunk.start_addr)

    def gen_pool_destroy(self) -> None:
        """``gen_pool_destroy()``: the kernel BUGs on outstanding allocations (→ EBUSY)."""
        for chunk in self.chunks:
            if chunk.bits.weight():
                raise KernelError(errno.EBUSY, "gen_pool_destroy: pool has live allocations")
        self.chunks.clear()

    def allocated_runs(self) -> list[tuple[int, int]]:
        """Allocated address ranges ``(start, end)`` (coalesced), for reports and checks."""
        out = []
        for chunk in self.chunks:
            for s, e in chunk.bits.runs():
                out.append(
                    (
                        chunk.start_addr + (s << self.min_alloc_order),
                        chunk.start_addr + (e << self.min_alloc_order),
                    )
                )
        return sorted(out)

    def largest_free(self) -> int:
        """Largest free run in bytes over all chunks (no kernel equivalent; for reports)."""
        best = 0
        for chunk in self.chunks:
            best = max(best, chunk.bits.largest_zero_run() << self.min_alloc_order)
        return best


def gen_pool_create(min_alloc_order: int, nid: int = -1, name: str = "") -> GenPool:
    """``gen_pool_create()``: a pool allocating in ``2^min_alloc_order``-byte chunks."""
    return GenPool(min_alloc_order=min_alloc_order, nid=nid, name=name)


def gen_pool_add(pool: GenPool, addr: int, size: int, nid: int = -1) -> int:
    """``gen_pool_add()``."""
    return pool.gen_pool_add(addr, size, nid)


def gen_pool_alloc(pool: GenPool, size: int) -> int:
    """``gen_pool_alloc()``."""
    return pool.gen_pool_alloc(size)


def gen_pool_alloc_algo(pool: GenPool, size: int, algo: GenpoolAlgo, data: Any = None) -> int:
    """``gen_pool_alloc_algo()``."""
    return pool.gen_pool_alloc_algo(size, algo, data)


def gen_pool_free(pool: GenPool, addr: int, size: int) -> None:
    """``gen_pool_free()``."""
    pool.gen_pool_free(addr, size)


def gen_pool_avail(pool: GenPool) -> int:
    """``gen_pool_avail()``."""
    return pool.gen_pool_avail()


def gen_pool_size(pool: GenPool) -> int:
    """``gen_pool_size()``."""
    return pool.gen_pool_size()
