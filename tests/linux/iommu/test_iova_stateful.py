"""Stateful model check of the IOVA allocator (drivers/iommu/iova.c, Linux 6.1).

Random interleavings of alloc_iova_fast/free_iova_fast on several CPUs, alloc_iova/
free_iova, and rcache flushes, in a small IOVA space so that failures, the max32
short-circuit, the retry path, magazine swaps and flushes all happen.  Invariants:
no two live ranges overlap; everything lies in [start_pfn, limit]; cached ranges are
still in the tree and not handed out twice; used + free == total; and after freeing
everything and flushing the caches only the reservations (and the anchor) remain.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from socmem.linux.iommu.iova import (
    IOVA_ANCHOR,
    ULONG_MAX,
    Iova,
    IovaDomain,
    roundup_pow_of_two,
)

NCPUS = 3
START_PFN = 1
LIMITS = (0x7F, 0x1FF, 0x3FF)  # inclusive limit_pfn values; 0x3ff is the top
TOP = LIMITS[-1]


def _tree_size_of(size: int) -> int:
    """Granules alloc_iova_fast really allocates for a request of ``size``."""
    return roundup_pow_of_two(size) if size < 32 else size


class LiteralIovaDomain(IovaDomain):
    """The top-down walk written literally: one rb_prev step at a time, no skipping, and
    the retry restarting from the anchor.  The model under test skips runs of nodes above
    the current limit with a bisection; both must always agree."""

    def _alloc_and_insert_iova_range(
        self, size: int, limit_pfn: int, size_aligned: bool
    ) -> Iova | None:
        mask = ULONG_MAX
        if size_aligned:
            mask = (mask << (size - 1).bit_length()) & ULONG_MAX
        high, low = limit_pfn, self.start_pfn
        if limit_pfn <= self.dma_32bit_pfn and size >= self.max32_alloc_size:
            return None
        start = self.cached32_node if limit_pfn <= self.dma_32bit_pfn else self.cached_node
        i = self._nodes.index(start)
        retry_pfn = start.pfn_hi
        retried = False
        while True:
            while True:
                high = min(high, self._nodes[i].pfn_lo)
                new = (high - size) & mask
                i -= 1
                if i < 0 or not (low <= new <= self._nodes[i].pfn_hi):
                    break
            if high < size or new < low:
                if low == self.start_pfn and retry_pfn < limit_pfn and not retried:
                    high, low, i, retried = limit_pfn, retry_pfn + 1, len(self._nodes) - 1, True
                    continue
                self.max32_alloc_size = size
                return None
            break
        node = Iova(new, new + size - 1)
        self._insert_node(i + 1, node)
        self._cached_rbnode_insert_update(node)
        return node


class IovaMachine(RuleBasedStateMachine):
    GRANULE = 4096  # dma_32bit_pfn = 0x100000: every limit here uses cached32_node

    def __init__(self) -> None:
        super().__init__()
        self.d = IovaDomain(self.GRANULE, START_PFN, ncpus=NCPUS)
        self.ref = LiteralIovaDomain(self.GRANULE, START_PFN, ncpus=NCPUS)
        # Live allocations made with alloc_iova_fast: pfn -> (requested size, node size).
        self.fast: dict[int, tuple[int, int]] = {}
        # Live allocations made with alloc_iova: pfn_lo -> node.
        self.tree: dict[int, Iova] = {}
        self.reserved: list[tuple[int, int]] = []

    @initialize(
        holes=st.lists(st.tuples(st.integers(0x10, TOP - 1), st.integers(1, 0x20)), max_size=3)
    )
    def reserve(self, holes: list[tuple[int, int]]) -> None:
        for lo, length in holes:
            hi = min(lo + length - 1, TOP)
            node = self.d.reserve_iova(lo, hi)
            self.ref.reserve_iova(lo, hi)
            # The node returned holds the top of the request (a remainder, or the node
            # that already covered it); every pfn of the request is now covered.
            assert node is not None and node.pfn_lo <= hi <= node.pfn_hi
            assert all(self.d.find_iova(p) is not None for p in range(lo, hi + 1))
        self.reserved = [(n.pfn_lo, n.pfn_hi) for n in self.d]

    @rule(
        size=st.one_of(st.integers(1, 8), st.integers(9, 70)),
        limit=st.sampled_from(LIMITS),
        flush=st.booleans(),
        cpu=st.integers(0, NCPUS - 1),
    )
    def alloc_fast(self, size: int, limit: int, flush: bool, cpu: int) -> None:
        pfn = self.d.alloc_iova_fast(size, limit, flush, cpu)
        assert self.ref.alloc_iova_fast(size, limit, flush, cpu) == pfn
        if pfn == 0:
            assert self.d.last_source is None
            return
        assert self.d.last_source in ("rcache", "tree")
        node_size = _tree_size_of(size)
        assert pfn >= START_PFN and pfn + node_size - 1 <= limit
        assert pfn % roundup_pow_of_two(node_size) == 0  # size-aligned
        node = self.d.find_iova(pfn)
        assert node is not None and node.pfn_lo == pfn and node.size == node_size
        assert pfn not in self.fast and pfn not in self.tree
        self.fast[pfn] = (size, node_size)

    @precondition(lambda self: self.fast)
    @rule(data=st.data(), cpu=st.integers(0, NCPUS - 1))
    def free_fast(self, data: st.DataObject, cpu: int) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.fast)))
        size, _ = self.fast.pop(pfn)
        self.d.free_iova_fast(pfn, size, cpu)
        self.ref.free_iova_fast(pfn, size, cpu)

    @rule(
        size=st.integers(1, 40),
        limit=st.sampled_from(LIMITS),
        aligned=st.booleans(),
    )
    def alloc_tree(self, size: int, limit: int, aligned: bool) -> None:
        node = self.d.alloc_iova(size, limit, aligned)
        ref = self.ref.alloc_iova(size, limit, aligned)
        assert (ref.pfn_lo if ref else None) == (node.pfn_lo if node else None)
        if node is None:
            return
        assert node.pfn_lo >= START_PFN and node.pfn_hi <= limit and node.size == size
        if aligned:
            assert node.pfn_lo % roundup_pow_of_two(size) == 0
        self.tree[node.pfn_lo] = node

    @precondition(lambda self: self.tree)
    @rule(data=st.data(), by_pfn=st.booleans())
    def free_tree(self, data: st.DataObject, by_pfn: bool) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.tree)))
        node = self.tree.pop(pfn)
        self.ref.free_iova(node.pfn_hi)
        if by_pfn:
            self.d.free_iova(node.pfn_hi)
        else:
            self.d.remove_iova(node)

    @rule(cpu=st.integers(0, NCPUS - 1))
    def flush_cpu(self, cpu: int) -> None:
        self.d.free_cpu_cached_iovas(cpu)
        self.ref.free_cpu_cached_iovas(cpu)

    @rule()
    def flush_global(self) -> None:
        self.d.free_global_cached_iovas()
        self.ref.free_global_cached_iovas()

    @rule()
    def drain(self) -> None:
        for d in (self.d, self.ref):
            for pfn, (size, _) in sorted(self.fast.items()):
                d.free_iova_fast(pfn, size, pfn % NCPUS)
            for node in self.tree.values():
                d.free_iova(node.pfn_lo)
            for cpu in range(NCPUS):
                d.free_cpu_cached_iovas(cpu)
            d.free_global_cached_iovas()
        self.fast.clear()
        self.tree.clear()
        assert [(n.pfn_lo, n.pfn_hi) for n in self.d] == self.reserved
        assert self.d.allocated_pages == 0 and self.d.cached_pfns() == []

    @invariant()
    def same_state_as_the_literal_walk(self) -> None:
        assert [(n.pfn_lo, n.pfn_hi) for n in self.d] == [(n.pfn_lo, n.pfn_hi) for n in self.ref]
        assert self.d.cached_node.pfn_lo == self.ref.cached_node.pfn_lo
        assert self.d.cached32_node.pfn_lo == self.ref.cached32_node.pfn_lo
        assert self.d.max32_alloc_size == self.ref.max32_alloc_size

    @invariant()
    def tree_is_sorted_disjoint_and_bounded(self) -> None:
        nodes = list(self.d)
        for a, b in itertools.pairwise(nodes):
            assert a.pfn_hi < b.pfn_lo
        for n in nodes:
            assert START_PFN <= n.pfn_lo <= n.pfn_hi <= TOP
        assert self.d._nodes[-1] is self.d.anchor and self.d.anchor.pfn_lo == IOVA_ANCHOR
        # The cached nodes are nodes of the tree.
        ids = {id(n) for n in self.d._nodes}
        assert id(self.d.cached_node) in ids and id(self.d.cached32_node) in ids

    @invariant()
    def live_and_cached_ranges_are_accounted(self) -> None:
        cached = self.d.cached_pfns()
        assert len(cached) == len(set(cached))
        for pfn in cached:
            node = self.d.find_iova(pfn)
            assert node is not None and node.pfn_lo == pfn and not node.reserved
            assert pfn not in self.fast and pfn not in self.tree
        expected = sorted(
            [(p, p + s - 1) for p, (_, s) in self.fast.items()]
            + [(n.pfn_lo, n.pfn_hi) for n in self.tree.values()]
            + [(p, self.d.find_iova(p).pfn_hi) for p in cached]  # type: ignore[union-attr]
            + self.reserved
        )
        assert [(n.pfn_lo, n.pfn_hi) for n in self.d] == expected
        assert self.d.allocated_pages == sum(n.size for n in self.d if not n.reserved)
        assert self.d.reserved_pages == sum(hi - lo + 1 for lo, hi in self.reserved)

    @invariant()
    def used_plus_free_is_total(self) -> None:
        for limit in LIMITS:
            total = limit - START_PFN + 1
            assert self.d.used_pages(limit) + self.d.free_pages(limit) == total
            assert self.d.largest_free_gap(limit) <= self.d.free_pages(limit)

    def teardown(self) -> None:
        self.drain()


class IovaMachineAbove32(IovaMachine):
    """A 2 GiB granule puts dma_32bit_pfn at 2: every limit takes the cached_node path,
    max32_alloc_size never short-circuits, and the retry restarts from the anchor."""

    GRANULE = 1 << 31


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
IovaMachine.TestCase.settings = _SETTINGS
IovaMachineAbove32.TestCase.settings = _SETTINGS
TestIovaStateful = IovaMachine.TestCase
TestIovaStatefulAbove32 = IovaMachineAbove32.TestCase
