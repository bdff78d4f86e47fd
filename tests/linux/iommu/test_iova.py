"""Tests of the IOVA allocator model (drivers/iommu/iova.c, Linux 6.1).

One test per rule, then a replay of a real 6.1 arm64 kernel's IOVA history
(fixtures/real-kernel/qemu-virt-smmuv3-replay) in which every alloc_iova_fast result,
every rcache-versus-tree decision and every max32_alloc_size seen by alloc_iova must match.
"""

from __future__ import annotations

import errno
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fixture_paths import FIXTURES
from socmem.errors import KernelError
from socmem.linux.iommu.iova import (
    IOVA_ANCHOR,
    IOVA_MAG_SIZE,
    MAX_GLOBAL_MAGS,
    Iova,
    IovaDomain,
    order_base_2,
    roundup_pow_of_two,
)

DMA32 = 0x100000  # dma_32bit_pfn with a 4 KiB granule
LIMIT32 = DMA32 - 1  # inclusive limit_pfn of a 32-bit DMA mask


def dom(ncpus: int = 1, rcache: bool = True, start_pfn: int = 1) -> IovaDomain:
    return IovaDomain(4096, start_pfn, ncpus=ncpus, rcache=rcache)


# --------------------------------------------------------------------------- helpers


def test_log2_helpers() -> None:
    assert [order_base_2(n) for n in (1, 2, 3, 4, 5, 31, 32, 33, 64)] == [
        0,
        1,
        2,
        2,
        3,
        5,
        5,
        6,
        6,
    ]
    assert [roundup_pow_of_two(n) for n in (1, 2, 3, 5, 17, 32)] == [1, 2, 4, 8, 32, 32]


def test_init_iova_domain_state() -> None:
    d = dom()
    assert d.iova_shift() == 12
    assert d.dma_32bit_pfn == DMA32
    assert d.max32_alloc_size == DMA32
    assert d.cached_node is d.anchor and d.cached32_node is d.anchor
    assert d.anchor.pfn_lo == d.anchor.pfn_hi == IOVA_ANCHOR
    assert d.tree_size == 0
    assert IovaDomain(65536, 1).dma_32bit_pfn == 1 << 16
    with pytest.raises(KernelError) as exc:
        IovaDomain(3000, 1)
    assert exc.value.errno == errno.EINVAL


def test_iova_helpers() -> None:
    d = dom()
    assert d.iova_align(1) == 4096 and d.iova_align(4096) == 4096 and d.iova_align(4097) == 8192
    assert d.iova_offset(0x12345) == 0x345
    assert d.iova_pfn(0xFFFFF000) == 0xFFFFF
    assert d.iova_dma_addr(Iova(0xFFFFF, 0xFFFFF)) == 0xFFFFF000


# --------------------------------------------------------------------------- tree search


def test_top_down_from_limit() -> None:
    d = dom(rcache=False)
    a = d.alloc_iova(1, LIMIT32, True)
    b = d.alloc_iova(2, LIMIT32, True)
    c = d.alloc_iova(1, LIMIT32, True)
    assert a is not None and b is not None and c is not None
    assert (a.pfn_lo, a.pfn_hi) == (0xFFFFF, 0xFFFFF)
    # 2 granules aligned to 2 below 0xfffff: 0xffffc..0xffffd (0xffffe is skipped).
    assert (b.pfn_lo, b.pfn_hi) == (0xFFFFC, 0xFFFFD)
    # The search starts at the cached node (b), so the hole at 0xffffe is not reused.
    assert c.pfn_lo == 0xFFFFB
    assert d.cached32_node is c


def test_size_aligned_uses_roundup_pow_of_two() -> None:
    d = dom(rcache=False)
    a = d.alloc_iova(3, LIMIT32, True)
    assert a is not None and a.pfn_lo % 4 == 0 and a.size == 3
    assert a.pfn_lo == 0xFFFFC
    b = d.alloc_iova(5, LIMIT32, True)
    assert b is not None and b.pfn_lo % 8 == 0 and b.pfn_lo == 0xFFFF0
    c = d.alloc_iova(3, LIMIT32, False)  # unaligned: right below b
    assert c is not None and c.pfn_lo == 0xFFFED


def test_limit_respected_and_cached_nodes_per_limit() -> None:
    d = dom(rcache=False)
    hi = d.alloc_iova(4, (1 << 36) - 1, True)
    assert hi is not None and hi.pfn_hi == (1 << 36) - 1
    assert d.cached_node is hi and d.cached32_node is d.anchor
    lo = d.alloc_iova(4, 0xFFF, True)
    assert lo is not None and lo.pfn_hi <= 0xFFF and lo.pfn_lo == 0xFFC
    assert d.cached32_node is lo


def test_start_pfn_respected_and_exhaustion_returns_none() -> None:
    d = dom(rcache=False, start_pfn=0x10)
    got = d.alloc_iova(0x10, 0x1F, True)
    assert got is not None and (got.pfn_lo, got.pfn_hi) == (0x10, 0x1F)
    assert d.alloc_iova(1, 0x1F, True) is None
    assert d.alloc_iova(1, 0xF, True) is None  # limit below start_pfn


def test_retry_searches_above_cached_node() -> None:
    """After a failure below the cached node, the gap above it (up to limit) is searched."""
    d = dom(rcache=False)
    d.reserve_iova(0x1, 0x7FFFF)  # keep the low half out of the way
    a = d.alloc_iova(0x10, LIMIT32, True)
    b = d.alloc_iova(0x10, LIMIT32, True)
    assert a is not None and b is not None and b.pfn_lo == 0xFFFE0
    d.remove_iova(a)  # frees 0xffff0.., cached32 moves to the anchor (a was above b)
    assert d.cached32_node is d.anchor
    # Fill everything below b so that a walk from b fails, then retry finds a's hole.
    c = d.alloc_iova(0x10, LIMIT32, True)
    assert c is not None and c.pfn_lo == 0xFFFF0


def test_search_starts_at_cached_node_not_highest_gap() -> None:
    """Kernel quirk: a lower-limit allocation drags later full-limit ones down with it."""
    d = dom(rcache=False)
    a = d.alloc_iova(0x10, 0x7FFFF, True)
    assert a is not None and a.pfn_lo == 0x7FFF0 and d.cached32_node is a
    b = d.alloc_iova(0x10, LIMIT32, True)  # 0x80000..0xfffff is free, but ...
    assert b is not None and b.pfn_lo == 0x7FFE0  # ... the walk starts at a


def test_retry_above_cached_node_when_below_is_full() -> None:
    d = dom(rcache=False)
    d.reserve_iova(0x1, 0x7FFEF)
    a = d.alloc_iova(0x10, 0x7FFFF, True)
    assert a is not None and a.pfn_lo == 0x7FFF0
    # Walk from a finds nothing below it; retry_pfn (0x7ffff) < limit: search
    # [0x80000, 0xfffff] again from the first node at or above the limit.
    b = d.alloc_iova(0x10, LIMIT32, True)
    assert b is not None and b.pfn_lo == 0xFFFF0
    assert d.max32_alloc_size == DMA32  # a retry success records nothing


def test_max32_alloc_size_short_circuit_and_reset_on_free() -> None:
    d = dom(rcache=False)
    d.reserve_iova(0x1, 0xFFFEF)
    a = d.alloc_iova(0x10, LIMIT32, True)
    assert a is not None
    assert d.alloc_iova(4, LIMIT32, True) is None
    assert d.max32_alloc_size == 4
    walks = d.stats.tree_walk_steps
    assert d.alloc_iova(8, LIMIT32, True) is None  # >= 4: refused without walking
    assert d.stats.max32_short_circuits == 1 and d.stats.tree_walk_steps == walks
    # A 64-bit limit is not short-circuited.
    big = d.alloc_iova(8, (1 << 40) - 1, True)
    assert big is not None and big.pfn_hi == (1 << 40) - 1
    # Freeing a range starting above 4 GiB does not reset ...
    d.remove_iova(big)
    assert d.max32_alloc_size == 4
    # ... freeing one starting below 4 GiB does.
    d.free_iova(a.pfn_lo)
    assert d.max32_alloc_size == DMA32
    assert d.alloc_iova(8, LIMIT32, True) is not None


def test_failure_records_max32_even_for_64bit_limits() -> None:
    d = dom(rcache=False)
    assert d.alloc_iova(1 << 20, (1 << 20) + 5, True) is None
    assert d.max32_alloc_size == 1 << 20  # the kernel records it unconditionally


def test_cached_node_delete_update() -> None:
    d = dom(rcache=False)
    a = d.alloc_iova(1, LIMIT32, True)
    b = d.alloc_iova(1, LIMIT32, True)
    c = d.alloc_iova(1, LIMIT32, True)
    assert a is not None and b is not None and c is not None
    d.remove_iova(b)  # b above cached32 (c): cached32 := rb_next(b) = a
    assert d.cached32_node is a
    d.remove_iova(c)  # c below cached32: unchanged
    assert d.cached32_node is a
    nxt = d.alloc_iova(1, LIMIT32, True)  # walk from a: lands right below it
    assert nxt is not None and nxt.pfn_lo == 0xFFFFE


def test_find_iova_and_free_iova() -> None:
    d = dom(rcache=False)
    a = d.alloc_iova(8, LIMIT32, True)
    assert a is not None
    assert d.find_iova(a.pfn_lo) is a and d.find_iova(a.pfn_hi) is a
    assert d.find_iova(a.pfn_lo - 1) is None
    d.free_iova(a.pfn_lo + 3)  # any pfn inside the range frees it
    assert d.find_iova(a.pfn_lo) is None and d.tree_size == 0
    d.free_iova(12345)  # nothing there: no-op
    with pytest.raises(KernelError):
        d.remove_iova(a)
    with pytest.raises(KernelError):
        d.remove_iova(d.anchor)


def test_reserve_iova_insert_contain_grow_and_extend() -> None:
    d = dom(rcache=False)
    r1 = d.reserve_iova(0x100, 0x1FF)
    assert r1 is not None and (r1.pfn_lo, r1.pfn_hi) == (0x100, 0x1FF) and r1.reserved
    # Wholly inside an existing node: that node is returned, nothing is added.
    assert d.reserve_iova(0x120, 0x130) is r1 and d.tree_size == 1
    # Starts below an existing node: the node grows down, no new node.
    assert d.reserve_iova(0x80, 0x150) is r1
    assert (r1.pfn_lo, r1.pfn_hi) == (0x80, 0x1FF) and d.tree_size == 1
    assert d.find_iova(0x80) is r1
    # Sticks out above: the remainder is a new node right above.
    r2 = d.reserve_iova(0x1F0, 0x2FF)
    assert r2 is not None and r2 is not r1 and (r2.pfn_lo, r2.pfn_hi) == (0x200, 0x2FF)
    # Spans two nodes and a hole: first grows nothing, remainder above the last.
    r3 = d.reserve_iova(0x400, 0x4FF)
    assert r3 is not None
    r4 = d.reserve_iova(0x250, 0x5FF)
    assert r4 is not None and (r4.pfn_lo, r4.pfn_hi) == (0x500, 0x5FF)
    assert d.reserved_pages == 0x600 - 0x80
    # Reservations do not move the cached nodes.
    assert d.cached32_node is d.anchor and d.cached_node is d.anchor
    # Nonsensical pfns (beyond 64-bit addresses) are refused.
    assert d.reserve_iova(0, 1 << 60) is None


def test_reserve_inside_allocation_returns_it() -> None:
    d = dom(rcache=False)
    a = d.alloc_iova(16, LIMIT32, True)
    assert a is not None
    assert d.reserve_iova(a.pfn_lo + 1, a.pfn_lo + 2) is a


def test_allocations_avoid_reservations() -> None:
    d = dom(rcache=False)
    d.reserve_iova(0xFFF00, 0xFFFFF)
    a = d.alloc_iova(4, LIMIT32, True)
    assert a is not None and a.pfn_hi < 0xFFF00 and a.pfn_lo == 0xFFEFC


# --------------------------------------------------------------------------- rcache


def test_alloc_iova_fast_rounds_small_sizes_only() -> None:
    d = dom()
    assert d.alloc_iova_fast(3, LIMIT32, False) == 0xFFFFC
    assert d.find_iova(0xFFFFC).size == 4  # type: ignore[union-attr]
    pfn = d.alloc_iova_fast(33, LIMIT32, False)  # >= 32: not rounded, aligned to 64
    node = d.find_iova(pfn)
    assert node is not None and node.size == 33 and pfn % 64 == 0
    assert d.last_source == "tree" and d.last_alloc_iova_calls == 1
    assert d.stats.uncached_allocs[0] == 1


def test_rcache_is_lifo_per_cpu() -> None:
    d = dom(ncpus=2)
    pfns = [d.alloc_iova_fast(1, LIMIT32, False, cpu=0) for _ in range(3)]
    for pfn in pfns:
        d.free_iova_fast(pfn, 1, cpu=0)
    assert d.tree_size == 3  # cached ranges stay in the tree
    # CPU 1 has nothing cached: it goes to the tree.
    other = d.alloc_iova_fast(1, LIMIT32, False, cpu=1)
    assert d.last_source == "tree" and other not in pfns
    # CPU 0 gets its pfns back, last freed first.
    got = [d.alloc_iova_fast(1, LIMIT32, False, cpu=0) for _ in range(3)]
    assert got == pfns[::-1]
    assert d.last_source == "rcache" and d.last_alloc_iova_calls == 0
    assert d.stats.rcache_hits == [3, 0] and d.stats.rcache_misses == [3, 1]


def test_rcache_order_uses_unrounded_free_size() -> None:
    d = dom()
    pfn = d.alloc_iova_fast(3, LIMIT32, False)
    d.free_iova_fast(pfn, 3)  # order_base_2(3) == 2, the same cache as size 4
    assert d.alloc_iova_fast(4, LIMIT32, False) == pfn and d.last_source == "rcache"


def test_large_ranges_are_never_cached() -> None:
    d = dom()
    pfn = d.alloc_iova_fast(64, LIMIT32, False)
    d.free_iova_fast(pfn, 64)
    assert d.tree_size == 0 and d.cached_pfns() == []
    pfn = d.alloc_iova_fast(33, LIMIT32, False)
    d.free_iova_fast(pfn, 33)
    assert d.tree_size == 0


def test_rcache_pop_respects_limit_and_swaps() -> None:
    d = dom()
    high = d.alloc_iova_fast(1, LIMIT32, False)
    mid = d.alloc_iova_fast(1, LIMIT32, False)
    low = d.alloc_iova_fast(1, 0xFFF, False)
    for pfn in (low, high, mid):
        d.free_iova_fast(pfn, 1)
    # Newest fitting the limit is low (mid and high are above 0xfff).
    assert d.alloc_iova_fast(1, 0xFFF, False) == low
    # low's slot was filled by swapping in the last (mid): order is now [mid, high].
    assert d.cached_pfns() == [mid, high]
    # Nothing fits a limit below everything cached: falls to the tree.
    assert d.alloc_iova_fast(1, 0x7FF, False) == 0x7FF and d.last_source == "tree"


def test_magazine_swap_when_loaded_full() -> None:
    d = dom()
    n = IOVA_MAG_SIZE + 1
    pfns = [d.alloc_iova_fast(1, LIMIT32, False) for _ in range(n)]
    for pfn in pfns:
        d.free_iova_fast(pfn, 1)
    rc = d.rcaches[0].cpu_rcaches[0]  # type: ignore[index]
    # The 128th insert found loaded full and prev empty: swapped, then pushed.
    assert len(rc.prev) == IOVA_MAG_SIZE and rc.loaded == [pfns[-1]]
    assert d.alloc_iova_fast(1, LIMIT32, False) == pfns[-1]
    # loaded is now empty: the get swaps prev in, and pops its newest.
    assert d.alloc_iova_fast(1, LIMIT32, False) == pfns[-2]
    assert rc.prev == [] and len(rc.loaded) == IOVA_MAG_SIZE - 1


def test_depot_push_pop_and_overflow() -> None:
    d = dom()
    per_cpu = 2 * IOVA_MAG_SIZE
    n = per_cpu + MAX_GLOBAL_MAGS * IOVA_MAG_SIZE
    pfns = [d.alloc_iova_fast(1, LIMIT32, False) for _ in range(n + IOVA_MAG_SIZE)]
    for pfn in pfns[:n]:
        d.free_iova_fast(pfn, 1)
    depot = d.rcaches[0].depot  # type: ignore[index]
    assert len(depot) == MAX_GLOBAL_MAGS and d.stats.depot_pushes == MAX_GLOBAL_MAGS
    assert d.stats.depot_overflows == 0
    # One more full magazine: the depot is full, so it goes back to the tree.
    before = d.tree_size
    for pfn in pfns[n:]:
        d.free_iova_fast(pfn, 1)
    assert d.stats.depot_overflows == 1 and d.tree_size == before - IOVA_MAG_SIZE
    # Drain the CPU's two magazines, then the depot hands over its newest magazine.
    for _ in range(2 * IOVA_MAG_SIZE):
        assert d.alloc_iova_fast(1, LIMIT32, False)
    newest_depot_mag = list(depot[-1])
    assert d.alloc_iova_fast(1, LIMIT32, False) == newest_depot_mag[-1]
    assert d.stats.depot_pops == 1 and len(depot) == MAX_GLOBAL_MAGS - 1


def test_flush_on_failure_and_retry() -> None:
    d = dom(ncpus=2, start_pfn=0x100)
    # A tiny space: 0x100..0x1ff under a limit of 0x1ff.
    limit = 0x1FF
    pfns = []
    while True:
        pfn = d.alloc_iova_fast(16, limit, False, cpu=1)
        if not pfn:
            break
        pfns.append(pfn)
    assert len(pfns) == 16 and d.last_source is None
    for pfn in pfns[:4]:
        d.free_iova_fast(pfn, 16, cpu=1)  # parked in CPU 1's cache
    # A 32-granule request on CPU 0: the tree is full, no flush -> 0 ...
    assert d.alloc_iova_fast(32, limit, False, cpu=0) == 0
    assert d.last_alloc_iova_calls == 1 and d.stats.fast_failures == 2
    # ... with flush_rcache every CPU's cache goes back to the tree, then one retry.
    got = d.alloc_iova_fast(32, limit, True, cpu=0)
    assert got and d.last_source == "tree" and d.last_alloc_iova_calls == 2
    assert d.stats.flush_retries == 1 and d.cached_pfns() == []


def test_free_cached_iovas_return_everything() -> None:
    d = dom(ncpus=2)
    d.reserve_iova(0x10000, 0x3EFEF)
    pfns = [
        (d.alloc_iova_fast(size, LIMIT32, False, cpu=cpu), size, cpu)
        for cpu in (0, 1)
        for size in (1, 2, 3, 8, 32, 40)
        for _ in range(50)
    ]
    for pfn, size, cpu in pfns:
        d.free_iova_fast(pfn, size, cpu=cpu)
    assert d.tree_size > 1
    d.free_cpu_cached_iovas(0)
    d.free_cpu_cached_iovas(1)
    d.free_global_cached_iovas()
    assert d.tree_size == 1 and d.allocated_pages == 0
    assert d.max32_alloc_size == DMA32


def test_exhaustion_returns_zero() -> None:
    d = dom(start_pfn=1)
    assert d.alloc_iova_fast(1 << 20, LIMIT32, True) == 0
    assert d.alloc_iova_fast(1, 0, True) == 0


def test_no_rcache_domain_goes_to_tree() -> None:
    d = dom(rcache=False)
    pfn = d.alloc_iova_fast(1, LIMIT32, False)
    d.free_iova_fast(pfn, 1)
    assert d.tree_size == 0 and d.last_source == "tree"


def test_put_iova_domain() -> None:
    d = dom()
    d.reserve_iova(0x10, 0x20)
    d.free_iova_fast(d.alloc_iova_fast(1, LIMIT32, False), 1)
    d.put_iova_domain()
    assert d.tree_size == 0 and d.rcaches is None and d.cached_pfns() == []


def test_statistics_and_fragmentation() -> None:
    d = dom(rcache=False)
    d.reserve_iova(0x10000, 0x3EFEF)
    assert d.bytes_reserved == (0x3EFEF - 0x10000 + 1) * 4096
    a = d.alloc_iova(16, LIMIT32, True)
    b = d.alloc_iova(16, LIMIT32, True)
    assert a is not None and b is not None
    assert d.allocated_pages == 32 and d.bytes_allocated == 32 * 4096
    assert d.largest_free_gap() == 0xFFFDF - 0x3EFF0 + 1
    d.remove_iova(a)
    total = LIMIT32 - d.start_pfn + 1
    assert d.used_pages() + d.free_pages() == total
    assert d.largest_free_gap(0xFFFF) == 0xFFFF
    assert d.stats.tree_allocs == 2 and d.stats.tree_frees == 1


# --------------------------------------------------------------------------- replay

FIXTURE = FIXTURES / "real-kernel/qemu-virt-smmuv3-replay/trace.txt"

_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<flags>\S+)\s+"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+\((?P<site>[^)]*)\)\s*(?P<args>.*)$"
)
_EVENTS = {
    "init_iova_domain",
    "reserve_iova",
    "alloc_iova_fast",
    "alloc_iova_fast_ret",
    "alloc_iova",
    "alloc_iova_ret",
    "free_iova_fast",
    "free_iova",
}


@dataclass
class _Ev:
    event: str
    pid: int
    cpu: int
    args: dict[str, int]
    lineno: int


def _parse(path: Path) -> list[_Ev]:
    """A tiny ftrace reader for the iova.c kprobes of this fixture (numbers only)."""
    out = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            m = _LINE.match(line)
            if not m or m["event"] not in _EVENTS:
                continue
            args = {}
            for kv in m["args"].split():
                key, _, value = kv.partition("=")
                args[key] = int(value, 0)
            out.append(_Ev(m["event"], int(m["pid"]), int(m["cpu"]), args, lineno))
    return out


@dataclass
class _DomainResult:
    fast_calls: int = 0
    fast_matched: int = 0
    source_matched: int = 0
    tree_calls_kernel: int = 0
    tree_calls_model: int = 0
    max32_matched: int = 0
    tree_ret_matched: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    iovad: int
    predicted: int
    model_tree_calls: int
    model_tree_log: list[tuple[int, int, int, int]]
    kernel_tree_calls: int = 0


def _replay(events: list[_Ev]) -> dict[int, _DomainResult]:
    domains: dict[int, IovaDomain] = {}
    results: dict[int, _DomainResult] = defaultdict(_DomainResult)
    stacks: dict[tuple[int, int], list[_Pending]] = defaultdict(list)
    tree_stacks: dict[tuple[int, int], list[tuple[_Pending, tuple[int, int, int, int]]]] = (
        defaultdict(list)
    )
    last_fast_free: dict[tuple[int, int], tuple[int, int, bool]] = {}
    tree_log: list[tuple[int, int, int, int]] = []

    def wrap(d: IovaDomain) -> None:
        inner = d.alloc_iova

        def logged(size: int, limit_pfn: int, size_aligned: bool) -> Iova | None:
            before = d.max32_alloc_size
            new = inner(size, limit_pfn, size_aligned)
            tree_log.append((size, limit_pfn, before, new.pfn_lo if new else 0))
            return new

        d.alloc_iova = logged  # type: ignore[method-assign]

    for ev in events:
        a = ev.args
        key = (ev.pid, ev.cpu)
        if ev.event == "init_iova_domain":
            d = IovaDomain(a["granule"], a["start_pfn"], ncpus=2)
            wrap(d)
            domains[a["iovad"]] = d
        elif ev.event == "reserve_iova":
            domains[a["iovad"]].reserve_iova(a["pfn_lo"], a["pfn_hi"])
        elif ev.event == "alloc_iova_fast":
            d = domains[a["iovad"]]
            tree_log.clear()
            pfn = d.alloc_iova_fast(a["size"], a["limit_pfn"], bool(a["flush_rcache"]), ev.cpu)
            stacks[key].append(_Pending(a["iovad"], pfn, d.last_alloc_iova_calls, list(tree_log)))
        elif ev.event == "alloc_iova":
            pending = stacks[key][-1]
            assert pending.iovad == a["iovad"], f"line {ev.lineno}: nested alloc_iova"
            res = results[a["iovad"]]
            res.tree_calls_kernel += 1
            idx = pending.kernel_tree_calls
            pending.kernel_tree_calls += 1
            if idx < len(pending.model_tree_log):
                size, limit, max32, got = pending.model_tree_log[idx]
                if (size, limit, max32) == (a["size"], a["limit_pfn"], a["max32_alloc_size"]):
                    res.max32_matched += 1
                tree_stacks[key].append((pending, pending.model_tree_log[idx]))
            else:
                res.mismatches.append(f"line {ev.lineno}: kernel went to the tree, model not")
        elif ev.event == "alloc_iova_ret":
            if tree_stacks[key]:
                pending, (_, _, _, got) = tree_stacks[key].pop()
                if got == a["pfn_lo"] or (got == 0 and a["iova"] == 0):
                    results[pending.iovad].tree_ret_matched += 1
        elif ev.event == "alloc_iova_fast_ret":
            pending = stacks[key].pop()
            res = results[pending.iovad]
            res.fast_calls += 1
            res.tree_calls_model += pending.model_tree_calls
            if pending.predicted == a["pfn"]:
                res.fast_matched += 1
            else:
                res.mismatches.append(
                    f"line {ev.lineno}: kernel pfn {a['pfn']:#x}, model {pending.predicted:#x}"
                )
            if pending.kernel_tree_calls == pending.model_tree_calls:
                res.source_matched += 1
        elif ev.event == "free_iova_fast":
            d = domains[a["iovad"]]
            cached = order_base_2(a["size"]) < 6
            d.free_iova_fast(a["pfn"], a["size"], ev.cpu)
            last_fast_free[key] = (a["iovad"], a["pfn"], cached)
        elif ev.event == "free_iova":
            prior = last_fast_free.pop(key, None)
            if prior is not None and prior[:2] == (a["iovad"], a["pfn"]):
                # Nested in free_iova_fast: the model already freed it, and must agree
                # that the range was not cacheable.
                if prior[2]:
                    results[a["iovad"]].mismatches.append(
                        f"line {ev.lineno}: kernel freed to the tree, model cached it"
                    )
            else:
                domains[a["iovad"]].free_iova(a["pfn"])
    return dict(results)


@pytest.fixture(scope="module")
def replay() -> dict[int, _DomainResult]:
    if not FIXTURE.exists():
        pytest.skip("replay fixture not available")
    return _replay(_parse(FIXTURE))


def test_replay_every_alloc_iova_fast_matches_the_kernel(
    replay: dict[int, _DomainResult],
) -> None:
    assert sum(r.fast_calls for r in replay.values()) == 1734
    for iovad, res in replay.items():
        assert res.mismatches == [], f"iovad {iovad:#x}: {res.mismatches[:5]}"
        assert res.fast_matched == res.fast_calls


def test_replay_rcache_versus_tree_decisions_match(replay: dict[int, _DomainResult]) -> None:
    assert sum(r.tree_calls_kernel for r in replay.values()) == 628
    for res in replay.values():
        assert res.source_matched == res.fast_calls
        assert res.tree_calls_model == res.tree_calls_kernel
        # Every alloc_iova saw the same size, limit and max32_alloc_size, returned the same.
        assert res.max32_matched == res.tree_calls_kernel
        assert res.tree_ret_matched == res.tree_calls_kernel
