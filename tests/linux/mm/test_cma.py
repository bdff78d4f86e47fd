"""mm/cma.c rules as modelled by socmem.linux.mm.cma, and the PhysMem façade."""

from __future__ import annotations

import errno

import pytest

from socmem.errors import InputError, KernelError
from socmem.linux.mm import DramRange, PhysMem, ReservedRegion
from socmem.linux.mm.buddy import (
    MIGRATE_MOVABLE,
    MIGRATE_UNMOVABLE,
    PAGE_SHIFT,
    BuddyAllocator,
)
from socmem.linux.mm.cma import Cma, cma_alloc, cma_init_reserved_mem, cma_release

MB = 1 << 20


def area(
    base_pfn: int = 0x40200, pages: int = 2048, mem_pages: int = 8192, order_per_bit: int = 0
) -> tuple[BuddyAllocator, Cma]:
    """Memory [0x40000, 0x40000 + mem_pages), a CMA area of ``pages`` at ``base_pfn``."""
    b = BuddyAllocator([(0x40000, 0x40000 + mem_pages)], reserved=[(base_pfn, base_pfn + pages)])
    cma = cma_init_reserved_mem(
        base_pfn << PAGE_SHIFT, pages << PAGE_SHIFT, order_per_bit, "reserved"
    )
    assert cma.cma_activate_area(b) == 0
    b.check()
    return b, cma


@pytest.mark.parametrize(
    ("base", "size", "opb"),
    [(0x4010_0000, 4 * MB, 0), (0x4020_0000, 3 * MB, 0), (0x4020_0000, 4 * MB, 10), (0, 0, 0)],
)
def test_init_reserved_mem_alignment_einval(base: int, size: int, opb: int) -> None:
    with pytest.raises(KernelError) as ei:
        cma_init_reserved_mem(base, size, opb, "x")
    assert ei.value.errno == errno.EINVAL


def test_init_reserved_mem_ok_and_unnamed() -> None:
    cma = cma_init_reserved_mem(0x4020_0000, 2 * MB, 9, None, area_index=3)
    assert (cma.name, cma.base_pfn, cma.count, cma.order_per_bit) == ("cma3", 0x40200, 512, 9)


def test_aligned_mask_and_offset_absolute_pfn() -> None:
    b, cma = area(base_pfn=0x40200)  # 2 MiB aligned, not 4 MiB aligned
    assert cma.cma_bitmap_aligned_mask(10) == 1023
    assert cma.cma_bitmap_aligned_offset(10) == 0x200
    assert cma.cma_bitmap_aligned_mask(0) == 0
    pfn = cma.cma_alloc(16, 10)
    assert pfn == 0x40400  # first 4 MiB-aligned pfn in the area, not base + 0
    assert cma.cma_alloc(16, 0) == 0x40200
    b.check()


def test_order_per_bit_rounding() -> None:
    _b, cma = area(order_per_bit=2)
    assert cma.cma_bitmap_maxno() == 512
    assert cma.cma_bitmap_pages_to_bits(5) == 2
    assert cma.cma_bitmap_aligned_mask(1) == 0
    assert cma.cma_bitmap_aligned_mask(4) == 3
    p = cma.cma_alloc(5)
    assert p == 0x40200 and cma.used() == 8
    q = cma.cma_alloc(1)
    assert q == 0x40208


def test_ebusy_retry_past_pinned_page() -> None:
    b, cma = area()
    assert cma.borrow(1, movable=False, pfn=cma.base_pfn + 5) == [(cma.base_pfn + 5, 0)]
    pfn = cma.cma_alloc(256, 8)
    assert pfn == cma.base_pfn + 256  # start = bitmap_no + mask + 1
    assert cma.nr_busy_retries == 1
    events = [e for e, _ in cma.trace]
    assert events == ["cma_alloc_start", "cma_alloc_busy_retry", "cma_alloc_finish"]
    assert cma.trace[1][1]["pfn"] == cma.base_pfn
    assert cma.log == []
    b.check()


def test_movable_borrower_is_migrated_out() -> None:
    b, cma = area()
    blocks = cma.borrow(16, movable=True, pfn=cma.base_pfn, owner="page-cache")
    assert blocks == [(cma.base_pfn, 4)]
    pfn = cma.cma_alloc(64)
    assert pfn == cma.base_pfn
    old, new, order = b.migrations[-1]
    assert old == cma.base_pfn and order == 4
    assert not cma.base_pfn <= new < cma.base_pfn + 64
    blk = b.page_block(new)
    assert blk is not None and blk.owner == "page-cache"
    b.check()


def test_unmovable_borrower_can_be_a_pin_placed_anywhere() -> None:
    b, cma = area()
    got = cma.borrow(100, movable=True)
    assert got is not None and got[0][0] == cma.base_pfn
    assert cma.borrowed() == 100
    for pfn, order in got:
        b.free_pages(pfn, order)
    assert cma.borrowed() == 0
    b.check()


def test_failure_message_enomem_exact_text() -> None:
    _b, cma = area(pages=1024)
    assert cma.cma_alloc(1024) is not None
    assert cma.cma_alloc(256) is None
    assert cma.log == ["cma: cma_alloc: reserved: alloc failed, req-size: 256 pages, ret: -12"]
    assert cma.alloc_pages_success == 1024 and cma.alloc_pages_fail == 256
    assert cma.cma_alloc(256, no_warn=True) is None
    assert len(cma.log) == 1


def test_failure_message_ebusy_when_last_try_was_busy() -> None:
    _b, cma = area(pages=512)
    cma.borrow(1, movable=False, pfn=cma.base_pfn + 511)
    assert cma.cma_alloc(512) is None
    assert cma.log == ["cma: cma_alloc: reserved: alloc failed, req-size: 512 pages, ret: -16"]


def test_request_larger_than_area_fails_silently() -> None:
    _b, cma = area(pages=512)
    assert cma.cma_alloc(513) is None
    assert cma.log == []  # 6.1: goto out before the pr_err
    assert cma.alloc_pages_fail == 513


def test_debug_show_areas() -> None:
    _b, cma = area(pages=512)
    cma.debug = True
    cma.cma_alloc(100)
    cma.cma_alloc(500)
    assert cma.log[-1] == "cma: number of available pages: 412@100=> 412 free of 512 total pages"


def test_release_and_maxchunk() -> None:
    b, cma = area(pages=1024)
    a = cma.cma_alloc(256)
    c = cma.cma_alloc(256)
    d = cma.cma_alloc(256)
    assert (a, c, d) == (cma.base_pfn, cma.base_pfn + 256, cma.base_pfn + 512)
    assert cma.used() == 768 and cma.maxchunk() == 256
    assert cma_release(cma, c, 256) is True
    assert cma.maxchunk() == 256 and cma.used() == 512
    assert cma.cma_release(a, 256)
    assert cma.maxchunk() == 512
    assert cma.cma_release(0x40000, 1) is False  # not in the area
    with pytest.raises(KernelError):
        cma.cma_release(cma.base_pfn, 1)  # not allocated
    assert cma.cma_release(d, 256)
    assert cma.used() == 0 and cma.maxchunk() == 1024
    assert b.nr_free_cma_pages == 1024
    assert cma_alloc(None, 1) is None and cma_release(None, 1, 1) is False
    b.check()


def test_migration_enomem_restores_state() -> None:
    b, cma = area(pages=512, mem_pages=1024)  # 512 normal pages + 512 CMA
    cma.borrow(512, movable=True)
    while b.alloc_pages(0, MIGRATE_UNMOVABLE) is not None:
        pass
    before = b.zones[0].free_list_shape()
    assert cma.cma_alloc(8) is None
    assert cma.log[-1].endswith("ret: -12")
    assert b.zones[0].free_list_shape() == before
    assert cma.used() == 0
    b.check()


def test_movable_allocations_fall_into_cma_and_are_migrated() -> None:
    b, cma = area(pages=2048, mem_pages=4096)

    def in_cma(pfn: int) -> bool:
        return cma.base_pfn <= pfn < cma.base_pfn + cma.count

    got = [b.alloc_pages(0, MIGRATE_MOVABLE) for _ in range(3000)]
    assert all(p is not None for p in got)
    inside = [p for p in got if in_cma(p)]
    # 6.1 __rmqueue: CMA first whenever it holds more than half of the free pages
    assert 900 <= len(inside) <= 2048 and cma.borrowed() == len(inside)
    for p in got:
        if not in_cma(p):
            b.free_pages(p, 0)
    assert cma.cma_alloc(2048) == cma.base_pfn
    assert cma.borrowed() == 0 and len(b.migrations) == len(inside)
    assert all(not in_cma(new) for _old, new, _o in b.migrations)
    b.check()


def test_activation_fails_across_zones() -> None:
    pfn4g = 1 << 20
    b = BuddyAllocator([(pfn4g - 1024, pfn4g + 1024)], reserved=[(pfn4g - 512, pfn4g + 512)])
    cma = cma_init_reserved_mem((pfn4g - 512) << PAGE_SHIFT, 4 * MB, 0, "straddle")
    assert cma.cma_activate_area(b) == -errno.EINVAL
    assert cma.log == ["cma: CMA area straddle could not be activated"]
    assert cma.count == 0 and cma.cma_alloc(1) is None
    assert b.nr_free_pages == 2048 and b.nr_free_cma_pages == 0
    b.check()


def dram() -> list[DramRange]:
    return [DramRange(0x4000_0000, 1 << 30)]


def test_physmem_builds_everything() -> None:
    pm = PhysMem(
        dram(),
        [
            ReservedRegion("linux,cma", 0x5000_0000, 64 * MB, "cma", cma_default=True),
            ReservedRegion("fw", 0x4800_0000, 16 * MB, "no-map"),
            ReservedRegion("vpu", 0x4900_0000, 32 * MB, "carveout"),
            ReservedRegion("dsp-pool", 0x4B00_0000, 4 * MB, "coherent-pool"),
        ],
    )
    assert pm.default_cma is pm.cma_areas["linux,cma"]
    assert "Reserved memory: created CMA memory pool at 0x0000000050000000, size 64 MiB" in pm.log
    s = pm.summary()
    assert s.managed == (1 << 30) - 16 * MB - 32 * MB - 4 * MB
    assert s.cma[0]["size"] == 64 * MB and s.cma[0]["default"]
    assert {p["name"] for p in s.carveouts} == {"vpu", "dsp-pool"}
    assert pm.pools["vpu"].gen_pool_alloc(1 * MB) == 0x4900_0000
    assert "no-map fw" in s.format()
    pm.buddy.check()


def test_no_map_is_never_handed_out() -> None:
    pm = PhysMem(
        [DramRange(0x4000_0000, 16 * MB)],
        [
            ReservedRegion("fw", 0x4040_0000, 2 * MB, "no-map"),
            ReservedRegion("cma", 0x4080_0000, 4 * MB, "cma"),
            ReservedRegion("co", 0x40E0_0000, 1 * MB, "carveout"),
        ],
    )
    lo, hi = 0x40400, 0x40600
    pages = []
    while (p := pm.alloc_pages(0, MIGRATE_MOVABLE)) is not None:
        pages.append(p)
    cma = pm.cma_areas["cma"]
    assert not any(lo <= p < hi for p in pages)
    assert not any(0x40E00 <= p < 0x40F00 for p in pages)
    for p in pages:
        pm.free_pages(p, 0)
    assert cma.cma_alloc(1024) == 0x40800
    assert pm.region_of(0x4040_1000).name == "fw"


def test_physmem_misaligned_cma_becomes_ordinary_memory() -> None:
    pm = PhysMem(
        [DramRange(0x4000_0000, 64 * MB)], [ReservedRegion("bad", 0x4010_0000, 4 * MB, "cma")]
    )
    assert pm.log == [
        "Reserved memory: incorrect alignment of CMA region",
        "OF: reserved mem: node bad compatible matching fail",
    ]
    assert pm.cma_areas == {} and pm.buddy.managed_pages == 64 * MB >> PAGE_SHIFT
    pm.buddy.check()


def test_physmem_input_errors() -> None:
    with pytest.raises(InputError):
        PhysMem(dram(), [ReservedRegion("x", 0x1000, 4096, "carveout")])
    with pytest.raises(InputError):
        PhysMem(
            dram(),
            [
                ReservedRegion("a", 0x4000_0000, 2 * MB, "carveout"),
                ReservedRegion("b", 0x4010_0000, 2 * MB, "no-map"),
            ],
        )
    with pytest.raises(InputError):
        PhysMem(dram(), [ReservedRegion("a", 0x4000_0000, 2 * MB, "weird")])  # type: ignore[arg-type]
