"""Stateful model checks (hypothesis) for the buddy allocator, CMA and gen_pool."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from socmem.linux.mm.buddy import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    PAGE_SHIFT,
    ZONE_DMA32,
    ZONE_NORMAL,
    BuddyAllocator,
    ZoneLimits,
    pageblock_nr_pages,
)
from socmem.linux.mm.cma import cma_init_reserved_mem
from socmem.linux.mm.genpool import (
    GenPoolDataAlign,
    gen_pool_best_fit,
    gen_pool_create,
    gen_pool_first_fit,
    gen_pool_first_fit_align,
    gen_pool_first_fit_order_align,
)

SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# 12 MiB of pfns with a zone boundary in the middle, a hole and a 4 MiB CMA area.
MEM = (0, 3072)
HOLE = (100, 612)
CMA = (2048, 3072)
LIMITS = ZoneLimits(dma=None, dma32=1536 << PAGE_SHIFT)


def build() -> BuddyAllocator:
    b = BuddyAllocator([MEM], reserved=[HOLE, CMA], limits=LIMITS)
    for pfn in range(CMA[0], CMA[1], pageblock_nr_pages):
        b.init_cma_reserved_pageblock(pfn)
    return b


class BuddyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.b = build()
        self.initial = [z.free_list_shape() for z in self.b.zones]
        self.live: list[tuple[int, int, int]] = []
        self.total = self.b.managed_pages

    @rule(
        order=st.integers(0, 10),
        mt=st.sampled_from([MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE]),
        zone=st.sampled_from([ZONE_DMA32, ZONE_NORMAL]),
    )
    def alloc(self, order: int, mt: int, zone: int) -> None:
        pfn = self.b.alloc_pages(order, mt, zone)  # type: ignore[arg-type]
        if pfn is None:
            return
        assert pfn % (1 << order) == 0
        assert not HOLE[0] <= pfn < HOLE[1]
        if zone == ZONE_DMA32:
            assert pfn + (1 << order) <= 1536
        if CMA[0] <= pfn < CMA[1]:
            assert mt == MIGRATE_MOVABLE
        self.live.append((pfn, order, mt))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10_000))
    def free(self, i: int) -> None:
        pfn, order, _mt = self.live.pop(i % len(self.live))
        self.b.free_pages(pfn, order)

    @invariant()
    def consistent(self) -> None:
        self.b.check()
        spans = sorted((p, p + (1 << o)) for p, o, _ in self.live)
        for a, c in itertools.pairwise(spans):
            assert a[1] <= c[0]
        used = sum(1 << o for _p, o, _ in self.live)
        assert used + self.b.nr_free_pages == self.total

    def teardown(self) -> None:
        for pfn, order, _ in self.live:
            self.b.free_pages(pfn, order)
        assert [z.free_list_shape() for z in self.b.zones] == self.initial


class CmaMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.b = BuddyAllocator([MEM], reserved=[HOLE, CMA], limits=LIMITS)
        self.cma = cma_init_reserved_mem(CMA[0] << PAGE_SHIFT, 4 << 20, 0, "reserved")
        assert self.cma.cma_activate_area(self.b) == 0
        self.initial = [z.free_list_shape() for z in self.b.zones]
        self.allocs: list[tuple[int, int]] = []
        self.borrowed: dict[str, int] = {}  # owner -> pages
        self.n = 0

    @rule(count=st.integers(1, 400), align=st.integers(0, 9))
    def cma_alloc(self, count: int, align: int) -> None:
        pfn = self.cma.cma_alloc(count, align, no_warn=True)
        if pfn is None:
            return
        assert pfn % (1 << align) == 0
        assert CMA[0] <= pfn and pfn + count <= CMA[1]
        self.allocs.append((pfn, count))

    @precondition(lambda self: self.allocs)
    @rule(i=st.integers(0, 10_000))
    def cma_release(self, i: int) -> None:
        pfn, count = self.allocs.pop(i % len(self.allocs))
        assert self.cma.cma_release(pfn, count)

    @rule(order=st.integers(0, 6))
    def movable_alloc(self, order: int) -> None:
        owner = f"b{self.n}"
        self.n += 1
        if self.b.alloc_pages(order, MIGRATE_MOVABLE, owner=owner) is not None:
            self.borrowed[owner] = 1 << order

    @rule(count=st.integers(1, 64), movable=st.booleans())
    def borrow(self, count: int, movable: bool) -> None:
        owner = f"b{self.n}"
        self.n += 1
        if self.cma.borrow(count, movable=movable, owner=owner):
            self.borrowed[owner] = count

    @precondition(lambda self: self.borrowed)
    @rule(i=st.integers(0, 10_000))
    def free_borrowed(self, i: int) -> None:
        owner = sorted(self.borrowed)[i % len(self.borrowed)]
        del self.borrowed[owner]
        # migrated blocks moved but kept their owner: follow them
        for blk in self.b.allocated_blocks():
            if blk.owner == owner:
                blk.pins = 0
                self.b.free_pages(blk.pfn, blk.order)

    @invariant()
    def consistent(self) -> None:
        self.b.check()
        spans = sorted((p, p + c) for p, c in self.allocs)
        for a, c in itertools.pairwise(spans):
            assert a[1] <= c[0]
        assert self.cma.used() == sum(c for _p, c in self.allocs)
        assert self.b.nr_contig_pages == self.cma.used()
        # borrowers tracked here are exactly the allocated blocks of the buddy
        assert sum(self.borrowed.values()) == self.b.nr_allocated_pages

    def teardown(self) -> None:
        # borrowed pfns may have moved (migration): free what the buddy holds
        for blk in self.b.allocated_blocks():
            blk.pins = 0
            self.b.free_pages(blk.pfn, blk.order)
        for pfn, count in self.allocs:
            self.cma.cma_release(pfn, count)
        assert [z.free_list_shape() for z in self.b.zones] == self.initial
        assert self.cma.maxchunk() == self.cma.count


class GenPoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = gen_pool_create(12)
        self.pool.gen_pool_add(0x8000_1000, 256 << 10)
        self.pool.gen_pool_add(0x9000_0000, 64 << 10)
        self.total = self.pool.gen_pool_size()
        self.live: list[tuple[int, int]] = []

    @rule(
        size=st.integers(1, 80 << 10),
        algo=st.sampled_from(["first", "align", "order", "best"]),
        align_shift=st.integers(12, 16),
    )
    def alloc(self, size: int, algo: str, align_shift: int) -> None:
        fn = {
            "first": gen_pool_first_fit,
            "align": gen_pool_first_fit_align,
            "order": gen_pool_first_fit_order_align,
            "best": gen_pool_best_fit,
        }[algo]
        addr = self.pool.gen_pool_alloc_algo(size, fn, GenPoolDataAlign(1 << align_shift))
        if addr == 0:
            return
        if algo == "align":
            assert addr % (1 << align_shift) == 0
        self.live.append((addr, size))

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10_000))
    def free(self, i: int) -> None:
        addr, size = self.live.pop(i % len(self.live))
        self.pool.gen_pool_free(addr, size)

    @invariant()
    def consistent(self) -> None:
        rounded = [(a, a + ((s + 4095) & ~4095)) for a, s in self.live]
        spans = sorted(rounded)
        for a, c in itertools.pairwise(spans):
            assert a[1] <= c[0]
        assert self.pool.gen_pool_avail() + sum(e - s for s, e in rounded) == self.total

    def teardown(self) -> None:
        for addr, size in self.live:
            self.pool.gen_pool_free(addr, size)
        assert self.pool.gen_pool_avail() == self.total
        assert self.pool.allocated_runs() == []


TestBuddyMachine = BuddyMachine.TestCase
TestBuddyMachine.settings = SETTINGS
TestCmaMachine = CmaMachine.TestCase
TestCmaMachine.settings = SETTINGS
TestGenPoolMachine = GenPoolMachine.TestCase
TestGenPoolMachine.settings = SETTINGS
