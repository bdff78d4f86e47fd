"""lib/genalloc.c rules as modelled by socmem.linux.mm.genpool."""

from __future__ import annotations

import errno

import pytest

from socmem.errors import KernelError
from socmem.linux.mm.genpool import (
    GenPoolDataAlign,
    RunBitmap,
    gen_pool_add,
    gen_pool_alloc,
    gen_pool_alloc_algo,
    gen_pool_avail,
    gen_pool_best_fit,
    gen_pool_create,
    gen_pool_first_fit_align,
    gen_pool_first_fit_order_align,
    gen_pool_free,
    gen_pool_size,
)

BASE = 0x1000_0000


def pool(size: int = 64 << 10, base: int = BASE):
    p = gen_pool_create(12)
    assert gen_pool_add(p, base, size) == 0
    return p


def test_first_fit_and_reuse() -> None:
    p = pool()
    a = gen_pool_alloc(p, 4096)
    b = gen_pool_alloc(p, 8192)
    assert (a, b) == (BASE, BASE + 0x1000)
    gen_pool_free(p, a, 4096)
    assert gen_pool_alloc(p, 12288) == BASE + 0x3000  # hole at a too small
    assert gen_pool_alloc(p, 4096) == BASE  # first fit reuses the hole


def test_size_rounding_and_avail() -> None:
    p = pool()
    assert gen_pool_size(p) == 64 << 10 and gen_pool_avail(p) == 64 << 10
    a = gen_pool_alloc(p, 100)
    assert gen_pool_avail(p) == (64 << 10) - 4096
    gen_pool_free(p, a, 100)
    assert gen_pool_avail(p) == 64 << 10


def test_failures_return_zero() -> None:
    p = pool()
    assert gen_pool_alloc(p, 0) == 0
    assert gen_pool_alloc(p, (64 << 10) + 1) == 0
    assert gen_pool_alloc(p, 64 << 10) == BASE
    assert gen_pool_alloc(p, 4096) == 0


def test_first_fit_align_is_absolute() -> None:
    p = pool(base=BASE + 0x1000)  # chunk not aligned to 16 KiB
    a = gen_pool_alloc_algo(p, 4096, gen_pool_first_fit_align, GenPoolDataAlign(0x4000))
    assert a == BASE + 0x4000
    b = gen_pool_alloc(p, 4096)
    assert b == BASE + 0x1000


def test_first_fit_order_align_is_chunk_relative() -> None:
    p = pool(base=BASE + 0x1000)
    gen_pool_alloc(p, 4096)
    a = gen_pool_alloc_algo(p, 3 * 4096, gen_pool_first_fit_order_align)
    assert a == BASE + 0x1000 + 4 * 4096  # rounded to 4 pages, aligned within the chunk


def test_best_fit_picks_smallest_hole() -> None:
    p = pool()
    addrs = [gen_pool_alloc(p, 4096) for _ in range(8)]
    gen_pool_free(p, addrs[1], 4096)  # 1-page hole
    gen_pool_free(p, addrs[3], 4096)
    gen_pool_free(p, addrs[4], 4096)  # 2-page hole
    assert gen_pool_alloc_algo(p, 8192, gen_pool_best_fit) == addrs[3]
    assert gen_pool_alloc_algo(p, 4096, gen_pool_best_fit) == addrs[1]


def test_newest_chunk_searched_first() -> None:
    p = pool(size=8192)
    gen_pool_add(p, 0x2000_0000, 8192)
    assert gen_pool_alloc(p, 4096) == 0x2000_0000
    assert gen_pool_size(p) == 16384


def test_bad_free_is_einval() -> None:
    p = pool()
    a = gen_pool_alloc(p, 8192)
    with pytest.raises(KernelError) as ei:
        gen_pool_free(p, 0x5000_0000, 4096)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError):
        gen_pool_free(p, a, 12288)  # third page not allocated
    with pytest.raises(KernelError):
        gen_pool_free(p, BASE + (60 << 10), 8192)  # runs past the chunk
    assert gen_pool_avail(p) == (64 << 10) - 8192  # unchanged
    with pytest.raises(KernelError) as ei:
        p.gen_pool_destroy()
    assert ei.value.errno == errno.EBUSY
    gen_pool_free(p, a + 4096, 4096)  # partial frees are allowed
    gen_pool_free(p, a, 4096)
    p.gen_pool_destroy()


def test_run_bitmap_find_next_zero_area_off() -> None:
    bm = RunBitmap(64)
    bm.set(0, 3)
    bm.set(10, 2)
    assert bm.find_next_zero_bit(0) == 3
    assert bm.find_next_bit(64, 3) == 10
    # offset 3, mask 7: index + 3 multiple of 8 → 5
    assert bm.find_next_zero_area_off(64, 0, 4, 7, 3) == 5
    assert bm.find_next_zero_area_off(64, 0, 8, 7, 3) == 13
    assert bm.find_next_zero_area_off(64, 0, 65, 0, 0) > 64
    bm.clear(1, 10)
    assert list(bm.runs()) == [(0, 1), (11, 12)]
    assert bm.largest_zero_run() == 52 and bm.weight() == 2
