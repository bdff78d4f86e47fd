"""Scatterlists and sg tables: include/linux/scatterlist.h and lib/scatterlist.c (6.1).

* :class:`ScatterlistEntry` (alias :data:`Scatterlist`) is ``struct scatterlist``: a page
  (a pfn stands for ``struct page *``), ``offset``, ``length``, and the DMA side
  ``dma_address`` / ``dma_length`` (``CONFIG_NEED_SG_DMA_LENGTH``, always on for arm64)
  filled by ``dma_map_sg``. ``end`` is the ``SG_END`` bit of ``page_link``.
* :class:`SgTable` is ``struct sg_table``: ``sgl``, ``orig_nents`` (CPU-side entries) and
  ``nents`` (DMA-side entries after ``dma_map_sgtable``; may be fewer when an IOMMU
  merged segments). ``for_each_sgtable_sg`` walks ``orig_nents``,
  ``for_each_sgtable_dma_sg`` walks ``nents``.
* :func:`sg_alloc_append_table_from_pages` / :func:`sg_alloc_table_from_pages_segment`
  follow lib/scatterlist.c exactly: ``max_segment`` is rounded down to the page size
  (below one page is ``WARN_ON`` + -EINVAL); physically contiguous pages merge into one
  entry of at most ``max_segment`` bytes (the chunk counter ignores the first entry's
  ``offset``); the first entry starts at ``offset``; each entry's length is
  ``min(size_left, chunk_size)`` with ``size_left`` an ``unsigned long`` that may wrap.
  lib/scatterlist.c knows nothing of ``dma_parms->segment_boundary_mask``: the boundary
  rule is the DMA layer's (dma-iommu ``__finalise_sg``; swiotlb's
  ``iommu_is_span_boundary`` on slots), not the sg builder's.

Deviations: no chaining (``sgl`` is a Python list, so ``sg_next`` is ``i + 1`` and
``SG_MAX_SINGLE_ALLOC`` chunking does not exist); errno failures raise
:class:`~socmem.errors.KernelError` (the kernel returns ``-errno``). Cost: one object
per entry; contiguous pages never cost an object each (the chunking is vectorised).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from socmem.errors import KernelError

__all__ = [
    "PAGE_SIZE",
    "Scatterlist",
    "ScatterlistEntry",
    "SgAppendTable",
    "SgTable",
    "for_each_sg",
    "for_each_sgtable_dma_sg",
    "for_each_sgtable_sg",
    "sg_alloc_append_table_from_pages",
    "sg_alloc_table",
    "sg_alloc_table_from_pages",
    "sg_alloc_table_from_pages_segment",
    "sg_dma_address",
    "sg_dma_len",
    "sg_free_append_table",
    "sg_free_table",
    "sg_init_table",
    "sg_is_last",
    "sg_mark_end",
    "sg_nents",
    "sg_nents_for_len",
    "sg_page",
    "sg_phys",
    "sg_set_page",
    "sg_unmark_end",
    "sgtable_dma_len_total",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
UINT_MAX = (1 << 32) - 1
ULONG_MASK = (1 << 64) - 1


@dataclass(slots=True)
class ScatterlistEntry:
    """``struct scatterlist``: ``page`` is a pfn (None when unset), ``offset`` into it,
    ``length`` bytes; ``dma_address`` / ``dma_length`` as ``dma_map_sg`` leaves them.

    ``page_shift`` is the page size the pfn counts in (12 for 4 KiB pages).
    """

    page: int | None = None
    offset: int = 0
    length: int = 0
    dma_address: int = 0
    dma_length: int = 0
    end: bool = False
    page_shift: int = PAGE_SHIFT

    @property
    def phys(self) -> int:
        """``sg_phys()``: ``page_to_phys(sg_page(sg)) + sg->offset``."""
        if self.page is None:
            raise KernelError(errno.EINVAL, "sg_phys: entry has no page")
        return (self.page << self.page_shift) + self.offset


#: ``struct scatterlist`` under its kernel name.
Scatterlist = ScatterlistEntry


def sg_set_page(sg: ScatterlistEntry, page: int, length: int, offset: int) -> None:
    """``sg_set_page(sg, page, len, offset)``."""
    sg.page = page
    sg.length = length
    sg.offset = offset


def sg_page(sg: ScatterlistEntry) -> int | None:
    """``sg_page()``: the entry's pfn."""
    return sg.page


def sg_phys(sg: ScatterlistEntry) -> int:
    """``sg_phys()``."""
    return sg.phys


def sg_dma_address(sg: ScatterlistEntry) -> int:
    """``sg_dma_address()``."""
    return sg.dma_address


def sg_dma_len(sg: ScatterlistEntry) -> int:
    """``sg_dma_len()`` (``CONFIG_NEED_SG_DMA_LENGTH``: the ``dma_length`` field)."""
    return sg.dma_length


def sg_mark_end(sg: ScatterlistEntry) -> None:
    """``sg_mark_end()``: set ``SG_END``."""
    sg.end = True


def sg_unmark_end(sg: ScatterlistEntry) -> None:
    """``sg_unmark_end()``."""
    sg.end = False


def sg_is_last(sg: ScatterlistEntry) -> bool:
    """``sg_is_last()``."""
    return sg.end


def sg_init_table(nents: int, page_shift: int = PAGE_SHIFT) -> list[ScatterlistEntry]:
    """``sg_init_table()``: ``nents`` zeroed entries, the last one marked as the end."""
    sgl = [ScatterlistEntry(page_shift=page_shift) for _ in range(nents)]
    if sgl:
        sgl[-1].end = True
    return sgl


def sg_nents(sgl: Sequence[ScatterlistEntry], start: int = 0) -> int:
    """``sg_nents()``: entries from ``start`` up to and including the end marker."""
    n = 0
    for sg in sgl[start:]:
        n += 1
        if sg.end:
            break
    return n


def sg_nents_for_len(sgl: Sequence[ScatterlistEntry], length: int) -> int:
    """``sg_nents_for_len()``: entries needed to cover ``length`` bytes, or ``-EINVAL``."""
    if not sgl:
        return -errno.EINVAL
    total = 0
    for n, sg in enumerate(sgl, 1):
        total += sg.length
        if total >= length:
            return n
        if sg.end:
            break
    return -errno.EINVAL


def for_each_sg(sgl: Sequence[ScatterlistEntry], nents: int) -> Iterator[ScatterlistEntry]:
    """``for_each_sg(sgl, sg, nents, i)``."""
    for i in range(nents):
        yield sgl[i]


@dataclass
class SgTable:
    """``struct sg_table``: ``sgl``, ``orig_nents`` (CPU entries), ``nents`` (DMA entries)."""

    sgl: list[ScatterlistEntry] = field(default_factory=list)
    orig_nents: int = 0
    nents: int = 0

    def __len__(self) -> int:
        return self.orig_nents

    @property
    def size(self) -> int:
        """Sum of the CPU-side lengths over ``orig_nents`` entries."""
        return sum(sg.length for sg in self.sgl[: self.orig_nents])


def for_each_sgtable_sg(sgt: SgTable) -> Iterator[ScatterlistEntry]:
    """``for_each_sgtable_sg()``: the CPU side, ``orig_nents`` entries."""
    return for_each_sg(sgt.sgl, sgt.orig_nents)


def for_each_sgtable_dma_sg(sgt: SgTable) -> Iterator[ScatterlistEntry]:
    """``for_each_sgtable_dma_sg()``: the DMA side, ``nents`` entries."""
    return for_each_sg(sgt.sgl, sgt.nents)


def sgtable_dma_len_total(sgt: SgTable) -> int:
    """Total ``sg_dma_len`` over the DMA side (``nents`` entries)."""
    return sum(sg.dma_length for sg in sgt.sgl[: sgt.nents])


def sg_alloc_table(nents: int, page_shift: int = PAGE_SHIFT) -> SgTable:
    """``sg_alloc_table(sgt, nents, gfp)``: ``nents`` blank entries, ``orig_nents`` and
    ``nents`` both set to ``nents`` (``__sg_alloc_table``). ``nents == 0``: -EINVAL."""
    if nents <= 0:
        raise KernelError(errno.EINVAL, "sg_alloc_table: nents == 0")
    return SgTable(sg_init_table(nents, page_shift), nents, nents)


def sg_free_table(sgt: SgTable) -> None:
    """``sg_free_table()``: drop the entries; ``orig_nents`` and ``nents`` become 0."""
    sgt.sgl = []
    sgt.orig_nents = 0
    sgt.nents = 0


@dataclass
class SgAppendTable:
    """``struct sg_append_table``: the table, the last entry (``prv``), ``total_nents``."""

    sgt: SgTable = field(default_factory=SgTable)
    prv: ScatterlistEntry | None = None
    total_nents: int = 0


def sg_free_append_table(sgt_append: SgAppendTable) -> None:
    """``sg_free_append_table()``."""
    sg_free_table(sgt_append.sgt)
    sgt_append.prv = None
    sgt_append.total_nents = 0


def _chunks(pfns: np.ndarray, max_pages: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices of the chunks lib/scatterlist.c builds: maximal runs of
    consecutive pfns, each cut every ``max_pages`` pages."""
    n = len(pfns)
    breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
    run_starts = np.concatenate(([0], breaks)).astype(np.int64)
    run_ends = np.concatenate((breaks, [n])).astype(np.int64)
    pieces = (run_ends - run_starts + max_pages - 1) // max_pages
    total = int(pieces.sum())
    first_piece = np.repeat(np.cumsum(pieces) - pieces, pieces)
    starts = np.repeat(run_starts, pieces) + (np.arange(total) - first_piece) * max_pages
    ends = np.minimum(starts + max_pages, np.repeat(run_ends, pieces))
    return starts, ends


def sg_alloc_append_table_from_pages(
    sgt_append: SgAppendTable,
    pages: Sequence[int] | np.ndarray,
    offset: int,
    size: int,
    max_segment: int,
    left_pages: int = 0,
    page_size: int = PAGE_SIZE,
) -> None:
    """``sg_alloc_append_table_from_pages()`` (lib/scatterlist.c, 6.1).

    Appends ``pages`` (pfns) to ``sgt_append``: first pages contiguous with the previous
    last entry are merged into it (whole pages, while it stays within ``max_segment``;
    a non-zero ``offset`` when appending is ``WARN_ON`` + -EINVAL), then the rest are
    chunked as :func:`sg_alloc_table_from_pages_segment` does. ``left_pages`` is how
    many pages later calls will add: the end marker is set only when it is 0.
    """
    page_shift = page_size.bit_length() - 1
    if page_size <= 0 or page_size & (page_size - 1):
        raise KernelError(errno.EINVAL, f"page size {page_size} is not a power of two")
    max_segment = max_segment & ~(page_size - 1)  # ALIGN_DOWN(max_segment, PAGE_SIZE)
    if max_segment < page_size:
        raise KernelError(errno.EINVAL, "WARN_ON(max_segment < PAGE_SIZE)")
    pfns = np.asarray(pages, dtype=np.int64)
    sgt = sgt_append.sgt
    s = sgt_append.prv
    if s is not None:
        if offset:
            raise KernelError(errno.EINVAL, "WARN_ON(offset) when appending to an sg table")
        assert s.page is not None
        paddr = ((s.page << page_shift) + s.offset + s.length) // page_size
        k = 0
        while k < len(pfns) and int(pfns[k]) == paddr:
            if s.length + page_size > max_segment:
                break
            s.length += page_size
            paddr += 1
            k += 1
        pfns = pfns[k:]
        if not len(pfns):
            if not left_pages:
                sg_mark_end(s)
            return
    elif not len(pfns):
        raise KernelError(errno.EINVAL, "sg_alloc_append_table_from_pages: no pages")
    starts, ends = _chunks(pfns, max_segment // page_size)
    if s is not None:
        sg_unmark_end(s)  # get_next_sg() on a table that already has entries
    size &= ULONG_MASK
    for st, en in zip(starts.tolist(), ends.tolist(), strict=True):
        chunk_size = ((en - st) << page_shift) - offset
        s = ScatterlistEntry(int(pfns[st]), offset, min(size, chunk_size), page_shift=page_shift)
        sgt.sgl.append(s)
        size = (size - chunk_size) & ULONG_MASK
        offset = 0
    added = len(starts)
    sgt.nents += added
    sgt.orig_nents = sgt.nents
    sgt_append.total_nents += added
    sgt_append.prv = s
    if not left_pages and s is not None:
        sg_mark_end(s)


def sg_alloc_table_from_pages_segment(
    pages: Sequence[int] | np.ndarray,
    offset: int,
    size: int,
    max_segment: int,
    page_size: int = PAGE_SIZE,
) -> SgTable:
    """``sg_alloc_table_from_pages_segment(sgt, pages, n_pages, offset, size,
    max_segment, gfp)``: an :class:`SgTable` whose entries merge physically contiguous
    pages up to ``max_segment`` bytes (rounded down to the page size)."""
    append = SgAppendTable()
    sg_alloc_append_table_from_pages(append, pages, offset, size, max_segment, 0, page_size)
    return append.sgt


def sg_alloc_table_from_pages(
    pages: Sequence[int] | np.ndarray, offset: int, size: int, page_size: int = PAGE_SIZE
) -> SgTable:
    """``sg_alloc_table_from_pages()``: the segment variant with ``max_segment = UINT_MAX``."""
    return sg_alloc_table_from_pages_segment(pages, offset, size, UINT_MAX, page_size)
