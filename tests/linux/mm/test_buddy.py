"""mm/page_alloc.c rules as modelled by socmem.linux.mm.buddy."""

from __future__ import annotations

import errno
import time

import pytest

from fixture_paths import FIXTURES
from socmem.errors import KernelError
from socmem.linux.mm.buddy import (
    GFP_DMA32,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MAX_ORDER,
    MIGRATE_CMA,
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    SZ_4G,
    ZONE_DMA32,
    ZONE_NORMAL,
    BuddyAllocator,
    ZoneLimits,
    arm64_zone_limits,
    find_buddy_pfn,
    pageblock_nr_pages,
)

FIXTURE = FIXTURES / "real-kernel/qemu-virt-smmuv3/proc-buddyinfo.txt"
G = 1 << 30
PFN_4G = SZ_4G >> 12


def one_block() -> BuddyAllocator:
    return BuddyAllocator([(0, 1024)])


def test_find_buddy_pfn_arithmetic() -> None:
    assert find_buddy_pfn(0, 0) == 1
    assert find_buddy_pfn(1, 0) == 0
    assert find_buddy_pfn(8, 3) == 0
    assert find_buddy_pfn(0x1200, 9) == 0x1000
    assert find_buddy_pfn(0x1000, 9) == 0x1200


def test_split_gives_lowest_part_and_upper_halves_back() -> None:
    b = one_block()
    assert b.zones[0].nr_free() == [0] * 10 + [1]
    assert b.alloc_pages(0) == 0
    assert b.zones[0].nr_free() == [1] * 10 + [0]
    # the upper halves are the order-k blocks at pfn 2^k
    assert b.zones[0].free_list_shape() == tuple((1 << k, k) for k in range(10))
    assert b.alloc_pages(0) == 1  # the order-0 buddy is next
    assert b.alloc_pages(2) == 4
    b.check()


def test_free_merges_back_to_max_order() -> None:
    b = one_block()
    initial = b.zones[0].free_list_shape()
    pfns = [b.alloc_pages(0) for _ in range(5)] + [b.alloc_pages(3)]
    for p in pfns[:5]:
        b.free_pages(p, 0)
    b.free_pages(pfns[5], 3)
    assert b.zones[0].free_list_shape() == initial
    b.check()


def test_no_merge_when_buddy_is_allocated() -> None:
    b = one_block()
    a0 = b.alloc_pages(0)
    a1 = b.alloc_pages(0)
    b.free_pages(a0, 0)
    assert b.zones[0].nr_free()[0] == 1
    b.free_pages(a1, 0)
    assert b.zones[0].nr_free() == [0] * 10 + [1]


def test_bad_free_and_order_limit() -> None:
    b = one_block()
    assert b.alloc_pages(MAX_ORDER) is None
    p = b.alloc_pages(1)
    with pytest.raises(KernelError) as ei:
        b.free_pages(p, 0)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError):
        b.free_pages(p + 1, 1)


def test_initial_blocks_are_max_order_and_setup_is_fast() -> None:
    t = time.perf_counter()
    b = BuddyAllocator([(0x40000, 0x40000 + (16 * G >> 12))])
    assert time.perf_counter() - t < 1.0
    assert sum(z.nr_free()[10] for z in b.zones) == 4096
    assert b.nr_free_pages == 16 * G >> 12


def test_zone_limits_honoured() -> None:
    # 3 GiB .. 5 GiB: half DMA32, half Normal
    b = BuddyAllocator([(3 * G >> 12, 5 * G >> 12)])
    assert [z.name for z in b.zones] == ["DMA32", "Normal"]
    p = b.alloc_pages_gfp(GFP_DMA32, 0)
    assert p is not None and p < PFN_4G
    p = b.alloc_pages_gfp(GFP_KERNEL, 0)
    assert p is not None and p >= PFN_4G  # highest zone first
    # exhaust DMA32: DMA32 requests then fail although Normal is free
    while b.alloc_pages(10, highest_zone=ZONE_DMA32) is not None:
        pass
    while b.alloc_pages(0, highest_zone=ZONE_DMA32) is not None:
        pass
    assert b.zone("DMA32").nr_free_pages == 0
    assert b.zone("Normal").nr_free_pages > 0
    b.check()


def test_normal_falls_back_to_dma32() -> None:
    b = BuddyAllocator([(PFN_4G - 1024, PFN_4G + 1024)])
    got = [b.alloc_pages(10, highest_zone=ZONE_NORMAL) for _ in range(3)]
    assert got[0] == PFN_4G and got[1] == PFN_4G - 1024 and got[2] is None


def test_arm64_zone_limits() -> None:
    # qemu virt: DRAM at 1 GiB; zone_dma_bits 32 → all of the low 4 GiB is ZONE_DMA
    lim = arm64_zone_limits(0x4000_0000, 0x4000_0000 + 2 * G)
    assert lim.dma == 0x4000_0000 + 2 * G and lim.dma32 == lim.dma
    b = BuddyAllocator([(0x40000, 0x40000 + (2 * G >> 12))], limits=lim)
    assert [z.name for z in b.zones] == ["DMA"]
    # Raspberry Pi 4: 30 bits → 1 GiB ZONE_DMA, DMA32 up to 4 GiB
    lim = arm64_zone_limits(0, 8 * G, zone_dma_bits=30)
    assert (lim.dma, lim.dma32) == (G, SZ_4G)
    # DRAM starting above 4 GiB: ZONE_DMA spans all memory
    lim = arm64_zone_limits(8 * G, 16 * G)
    assert lim.dma == 16 * G


def test_buddyinfo_format_matches_proc() -> None:
    b = BuddyAllocator([(0x40000, 0x40000 + (2 * G >> 12))], limits=arm64_zone_limits(G, 3 * G))
    counts = [4, 6, 4, 4, 6, 7, 1, 2, 4, 7, 466]
    for fa, n in zip(b.zones[0].free_area, counts, strict=True):
        fa.nr_free = n
    assert b.buddyinfo() == FIXTURE.read_text()
    line = BuddyAllocator([(0, 1024)]).buddyinfo()
    assert line == "Node 0, zone    DMA32 " + "     0 " * 10 + "     1 \n"


def cma_layout() -> BuddyAllocator:
    """4096 pages in DMA32; pageblocks 4..7 (pfn 2048..4095) are MIGRATE_CMA."""
    b = BuddyAllocator([(0, 4096)], reserved=[(2048, 4096)])
    for pfn in range(2048, 4096, pageblock_nr_pages):
        b.init_cma_reserved_pageblock(pfn)
    b.check()
    return b


def test_unmovable_never_lands_in_cma() -> None:
    b = cma_layout()
    got = []
    while (p := b.alloc_pages(0, MIGRATE_UNMOVABLE)) is not None:
        got.append(p)
    assert len(got) == 2048 and max(got) < 2048
    assert b.nr_free_cma_pages == 2048
    b.check()


def test_movable_borrows_cma_when_normal_exhausted() -> None:
    b = cma_layout()
    # use 1536 normal pages unmovably so CMA is > half of free memory? no: keep balance off
    while b.nr_free_pages - b.nr_free_cma_pages > 0:
        assert b.alloc_pages(0, MIGRATE_UNMOVABLE) is not None
    p = b.alloc_pages(3, MIGRATE_MOVABLE)
    assert p is not None and p >= 2048
    assert b.alloc_pages(0, MIGRATE_UNMOVABLE) is None
    b.check()


def test_movable_prefers_normal_while_cma_is_not_half_of_free() -> None:
    b = BuddyAllocator([(0, 8192)], reserved=[(6144, 8192)])
    for pfn in range(6144, 8192, pageblock_nr_pages):
        b.init_cma_reserved_pageblock(pfn)
    # free: 6144 normal + 2048 CMA → CMA is not more than half → normal first
    p = b.alloc_pages(0, MIGRATE_MOVABLE)
    assert p is not None and p < 6144


def test_cma_balance_rule_takes_cma_first_when_over_half_free() -> None:
    b = cma_layout()  # 2048 normal + 2048 CMA free: not over half
    assert b.alloc_pages(0, MIGRATE_UNMOVABLE) is not None  # now CMA > half
    p = b.alloc_pages(0, MIGRATE_MOVABLE)
    assert p is not None and p >= 2048


def test_cma_pageblocks_never_merge_with_normal() -> None:
    # pageblock 0 normal, pageblock 1 CMA: two order-9 blocks, not one order-10
    b = BuddyAllocator([(0, 1024)], reserved=[(512, 1024)])
    b.init_cma_reserved_pageblock(512)
    assert b.zones[0].nr_free()[9:] == [2, 0]
    b.check()


def test_unmovable_steals_a_movable_pageblock() -> None:
    b = one_block()
    p = b.alloc_pages(0, MIGRATE_UNMOVABLE)
    zone = b.zones[0]
    assert zone.get_pageblock_migratetype(p) == MIGRATE_UNMOVABLE
    # the other pageblock stays movable and a movable request uses it
    q = b.alloc_pages(0, MIGRATE_MOVABLE)
    assert zone.get_pageblock_migratetype(q) == MIGRATE_MOVABLE
    assert (p >> 9) != (q >> 9)
    b.check()


def test_holes_are_never_handed_out() -> None:
    b = BuddyAllocator([(0, 2048)], reserved=[(100, 300), (1024, 1536)])
    got = []
    while (p := b.alloc_pages(0)) is not None:
        got.append(p)
    assert len(got) == 2048 - 200 - 512
    assert not any(100 <= p < 300 or 1024 <= p < 1536 for p in got)
    assert b.managed_pages == 2048 - 712


def test_pin_blocks_free_and_contig_range() -> None:
    b = cma_layout()
    blocks = b.alloc_range(2100, 2101, MIGRATE_MOVABLE)
    assert blocks == [(2100, 0)]
    b.pin(2100)
    with pytest.raises(KernelError) as ei:
        b.free_pages(2100, 0)
    assert ei.value.errno == errno.EBUSY
    assert b.alloc_contig_range(2048, 2560, MIGRATE_CMA) == -errno.EBUSY
    b.unpin(2100)
    assert b.alloc_contig_range(2048, 2560, MIGRATE_CMA) == 0
    old, new, order = b.migrations[-1]
    assert old == 2100 and not 2048 <= new < 2560 and order == 0
    b.check()
    b.free_contig_range(2048, 512)
    with pytest.raises(KernelError):
        b.free_contig_range(2048, 1)
    b.check()


def test_zone_limits_default() -> None:
    assert ZoneLimits().bounds()[0][0] == ZONE_DMA32
    assert ZoneLimits().bounds()[-1][0] == ZONE_NORMAL
    assert GFP_HIGHUSER_MOVABLE & 0x08
