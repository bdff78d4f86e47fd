"""lib/scatterlist.c: sg_alloc_table_from_pages_segment merging, tables, iteration."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from socmem.errors import KernelError
from socmem.linux.dma.scatterlist import (
    PAGE_SIZE,
    Scatterlist,
    ScatterlistEntry,
    SgAppendTable,
    for_each_sgtable_dma_sg,
    for_each_sgtable_sg,
    sg_alloc_append_table_from_pages,
    sg_alloc_table,
    sg_alloc_table_from_pages,
    sg_alloc_table_from_pages_segment,
    sg_dma_len,
    sg_free_table,
    sg_nents,
    sg_nents_for_len,
    sgtable_dma_len_total,
)


def shape(sgt):
    return [(sg.page, sg.offset, sg.length) for sg in for_each_sgtable_sg(sgt)]


def test_contiguous_pages_merge_into_one_entry():
    sgt = sg_alloc_table_from_pages_segment(range(0x1000, 0x1010), 0, 16 * PAGE_SIZE, 1 << 20)
    assert shape(sgt) == [(0x1000, 0, 16 * PAGE_SIZE)]
    assert sgt.orig_nents == sgt.nents == 1
    assert sgt.sgl[-1].end
    assert sgt.sgl[0].phys == 0x1000 * PAGE_SIZE


def test_merge_stops_at_max_segment():
    # 64 KiB max segment: 16 pages per entry; 40 contiguous pages -> 16 + 16 + 8
    sgt = sg_alloc_table_from_pages_segment(range(100, 140), 0, 40 * PAGE_SIZE, 65536)
    assert shape(sgt) == [(100, 0, 65536), (116, 0, 65536), (132, 0, 8 * PAGE_SIZE)]


def test_max_segment_rounded_down_to_page_and_below_page_is_einval():
    sgt = sg_alloc_table_from_pages_segment(range(10), 0, 10 * PAGE_SIZE, 3 * PAGE_SIZE + 100)
    assert [sg.length for sg in sgt.sgl] == [3 * PAGE_SIZE] * 3 + [PAGE_SIZE]
    with pytest.raises(KernelError) as e:
        sg_alloc_table_from_pages_segment(range(4), 0, 4 * PAGE_SIZE, PAGE_SIZE - 1)
    assert e.value.errno == errno.EINVAL


def test_non_contiguous_pages_do_not_merge():
    pages = [5, 6, 9, 10, 11, 3]
    sgt = sg_alloc_table_from_pages(pages, 0, len(pages) * PAGE_SIZE)
    assert shape(sgt) == [(5, 0, 2 * PAGE_SIZE), (9, 0, 3 * PAGE_SIZE), (3, 0, PAGE_SIZE)]
    assert sg_nents(sgt.sgl) == 3


def test_offset_and_size_trim_first_and_last_entries():
    # 3 contiguous pages + 1 separate page, buffer starts 0x100 into the first page and
    # ends 0x200 into the last one
    size = 3 * PAGE_SIZE - 0x100 + 0x200
    sgt = sg_alloc_table_from_pages([7, 8, 9, 20], 0x100, size)
    assert shape(sgt) == [(7, 0x100, 3 * PAGE_SIZE - 0x100), (20, 0, 0x200)]
    assert sgt.size == size
    assert sgt.sgl[0].phys == 7 * PAGE_SIZE + 0x100


def test_first_chunk_counts_pages_not_offset():
    # the kernel's chunk counter ignores the offset: 2 pages per 8 KiB segment, the
    # first entry is 8 KiB - offset long
    sgt = sg_alloc_table_from_pages_segment([1, 2, 3, 4], 0x800, 4 * PAGE_SIZE - 0x800, 8192)
    assert shape(sgt) == [(1, 0x800, 8192 - 0x800), (3, 0, 8192)]


def test_one_object_per_segment_for_large_contiguous_buffer():
    pages = np.arange(0x80000, 0x80000 + 3072)  # 12 MiB, contiguous
    sgt = sg_alloc_table_from_pages(pages, 0, 3072 * PAGE_SIZE)
    assert sgt.orig_nents == 1 and len(sgt.sgl) == 1


def test_append_merges_into_previous_entry():
    app = SgAppendTable()
    sg_alloc_append_table_from_pages(app, [1, 2], 0, 2 * PAGE_SIZE, 1 << 20, left_pages=2)
    assert not app.sgt.sgl[-1].end
    sg_alloc_append_table_from_pages(app, [3, 9], 0, 2 * PAGE_SIZE, 1 << 20)
    assert shape(app.sgt) == [(1, 0, 3 * PAGE_SIZE), (9, 0, PAGE_SIZE)]
    assert app.sgt.orig_nents == 2 and app.sgt.sgl[-1].end and not app.sgt.sgl[0].end
    with pytest.raises(KernelError):
        sg_alloc_append_table_from_pages(app, [10], 0x10, PAGE_SIZE, 1 << 20)


def test_sg_alloc_table_and_free():
    sgt = sg_alloc_table(3)
    assert sgt.orig_nents == sgt.nents == 3 and sgt.sgl[2].end and not sgt.sgl[1].end
    sg_free_table(sgt)
    assert sgt.orig_nents == sgt.nents == 0 and sgt.sgl == []
    with pytest.raises(KernelError):
        sg_alloc_table(0)


def test_dma_side_iteration_uses_nents():
    sgt = sg_alloc_table_from_pages([1, 5, 9], 0, 3 * PAGE_SIZE)
    for i, sg in enumerate(sgt.sgl):
        sg.dma_address = 0x1000 * i
        sg.dma_length = PAGE_SIZE
    sgt.nents = 2  # as if an IOMMU had merged
    assert len(list(for_each_sgtable_dma_sg(sgt))) == 2
    assert len(list(for_each_sgtable_sg(sgt))) == 3
    assert sgtable_dma_len_total(sgt) == 2 * PAGE_SIZE
    assert sg_dma_len(sgt.sgl[0]) == PAGE_SIZE
    assert sg_nents_for_len(sgt.sgl, 2 * PAGE_SIZE + 1) == 3
    assert sg_nents_for_len(sgt.sgl, 4 * PAGE_SIZE) == -errno.EINVAL
    assert Scatterlist is ScatterlistEntry
