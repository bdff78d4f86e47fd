"""Hypothesis stateful test: IoPgtableArm against a plain dict of leaves.

The reference model knows only leaves ``iova -> (paddr, size)`` and applies the kernel's
rules: -EEXIST when a leaf of the same or a larger size covers the target entry; a block
mapped where only smaller leaves live replaces them (the kernel frees that table); a
partial unmap of a block splits it level by level (6.1) or is refused (latest).
Invariants: the table's leaves are exactly the reference's, iova_to_phys agrees at
both ends of every leaf, the table accounting matches the tables reachable from the
PGD, and after tearing everything down every table is freed.

Note: leaf unmaps never free page tables in io-pgtable-arm.c; tables only go away when
an unmap at a table entry's block size clears them, or at free_io_pgtable_ops().  So
the "back to just the PGD" state is checked after free, not after the last unmap.
"""

from __future__ import annotations

import errno

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from socmem.linux.iommu.io_pgtable import (
    ARM_64_LPAE_S1,
    ARM_64_LPAE_S2,
    IO_PGTABLE_QUIRK_NO_WARN,
    IOMMU_CACHE,
    IOMMU_READ,
    IOMMU_WRITE,
    SZ_1G,
    SZ_2M,
    SZ_4K,
    SZ_16K,
    SZ_32M,
    SZ_64K,
    SZ_512M,
    IoPgtableCfg,
)
from socmem.linux.iommu.io_pgtable_arm import (
    LINUX_6_1,
    LINUX_LATEST,
    IoPgtableArm,
    _iopte_to_paddr,
    free_io_pgtable_ops,
)

CONFIGS = [SZ_4K | SZ_2M | SZ_1G, SZ_16K | SZ_32M, SZ_64K | SZ_512M]


class PgtableMachine(RuleBasedStateMachine):
    ops: IoPgtableArm

    @initialize(
        bitmap=st.sampled_from(CONFIGS),
        fmt=st.sampled_from([ARM_64_LPAE_S1, ARM_64_LPAE_S2]),
        behaviour=st.sampled_from([LINUX_6_1, LINUX_LATEST]),
    )
    def setup(self, bitmap: int, fmt, behaviour) -> None:
        cfg = IoPgtableCfg(pgsize_bitmap=bitmap, ias=40, oas=40, quirks=IO_PGTABLE_QUIRK_NO_WARN)
        self.ops = IoPgtableArm(fmt, cfg, behaviour=behaviour)
        self.sizes = [1 << j for j in range(64) if bitmap >> j & 1]
        self.largest = self.sizes[-1]
        self.ref: dict[int, tuple[int, int]] = {}  # iova -> (paddr, size)

    # -- reference helpers -------------------------------------------------------
    def overlapping(self, start: int, size: int) -> list[int]:
        end = start + size
        return [va for va, (_, sz) in self.ref.items() if va < end and start < va + sz]

    def leaf_table_room(self, iova: int, size: int) -> int:
        lvl = self.ops._size_to_level[size]
        idx = (iova >> self.ops._shift[lvl]) & self.ops._mask[lvl]
        ppt = self.ops.ptes_per_table
        return ppt - (idx & (ppt - 1))

    # -- rules ---------------------------------------------------------------------
    @rule(
        data=st.data(),
        region=st.integers(0, 3),
        slot=st.integers(0, 7),
        pgcount=st.integers(1, 4),
        prot=st.sampled_from([IOMMU_READ, IOMMU_WRITE, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE]),
    )
    def map_pages(self, data, region: int, slot: int, pgcount: int, prot: int) -> None:
        size = data.draw(st.sampled_from(self.sizes))
        iova = (region * self.largest // 2) // size * size + slot * size
        paddr = data.draw(st.integers(0, (1 << 40) // size - 64)) * size
        ret, mapped = self.ops.map_pages(iova, paddr, size, pgcount, prot)
        n = min(pgcount, self.leaf_table_room(iova, size))
        expect = 0
        for i in range(n):
            va = iova + i * size
            hits = self.overlapping(va, size)
            if any(self.ref[h][1] >= size for h in hits):
                expect = -errno.EEXIST
                break
            for h in hits:  # smaller leaves under a table: replaced by the block
                del self.ref[h]
        assert ret == expect, (ret, expect)
        if ret == 0:
            assert mapped == n * size
            for i in range(n):
                self.ref[iova + i * size] = (paddr + i * size, size)
        else:
            assert mapped == 0

    @precondition(lambda self: self.ref)
    @rule(data=st.data(), count=st.integers(1, 3))
    def unmap_live(self, data, count: int) -> None:
        iova = data.draw(st.sampled_from(sorted(self.ref)))
        size = self.ref[iova][1]
        n = min(count, self.leaf_table_room(iova, size))
        done = 0
        for i in range(n):  # the kernel stops at the first empty entry (WARN)
            if self.ref.get(iova + i * size, (0, 0))[1] != size:
                break
            done += 1
        if done < n and self.ops._size_to_level[size] < 3:
            return  # an entry may hold a (possibly empty) table: kernel clears it too
        assert self.ops.unmap_pages(iova, size, count) == done * size
        for i in range(done):
            del self.ref[iova + i * size]

    @precondition(lambda self: any(sz > SZ_64K for _, sz in self.ref.values()))
    @rule(data=st.data())
    def unmap_part_of_block(self, data) -> None:
        blocks = sorted(va for va, (_, sz) in self.ref.items() if sz > self.sizes[0])
        if not blocks:
            return
        base = data.draw(st.sampled_from(blocks))
        paddr, bsize = self.ref[base]
        size = data.draw(st.sampled_from([s for s in self.sizes if s < bsize]))
        iova = base + data.draw(st.integers(0, bsize // size - 1)) * size
        got = self.ops.unmap_pages(iova, size, 1)
        if not self.ops.behaviour.split_on_partial_unmap:
            assert got == 0
            return
        assert got == size
        # split level by level, as arm_lpae_split_blk_unmap() does
        del self.ref[base]
        cur_va, cur_pa, cur_sz = base, paddr, bsize
        lvl = self.ops._size_to_level[bsize]
        while cur_sz > size:
            lvl += 1
            child = self.ops._bsize[lvl]
            for off in range(0, cur_sz, child):
                if cur_va + off <= iova < cur_va + off + child:
                    nxt = (cur_va + off, cur_pa + off)
                else:
                    self.ref[cur_va + off] = (cur_pa + off, child)
            cur_va, cur_pa = nxt
            cur_sz = child

    @rule(slot=st.integers(0, 7))
    def unmap_nothing(self, slot: int) -> None:
        iova = 16 * self.largest + slot * self.sizes[0]  # never mapped there
        assert self.ops.unmap_pages(iova, self.sizes[0], 1) == 0

    # -- invariants ----------------------------------------------------------------
    @invariant()
    def leaves_match_reference(self) -> None:
        g = self.ops.granule
        got = {va: (_iopte_to_paddr(pte, g), sz) for va, sz, _, pte in self.ops.leaves()}
        assert got == self.ref

    @invariant()
    def translations_agree(self) -> None:
        items = sorted(self.ref.items())
        for va, (pa, sz) in items[:: max(1, len(items) // 32)]:
            assert self.ops.iova_to_phys(va) == pa
            assert self.ops.iova_to_phys(va + sz - 1) == pa + sz - 1
        assert self.ops.iova_to_phys(16 * self.largest + 42) == 0

    @invariant()
    def accounting(self) -> None:
        ops = self.ops
        assert ops.table_pages == len(ops._tables) == ops.tables_allocated - ops.tables_freed

    def teardown(self) -> None:
        ops = getattr(self, "ops", None)
        if ops is None:
            return
        for va, (_, sz) in sorted(self.ref.items()):
            assert ops.unmap_pages(va, sz, 1) == sz
        assert next(ops.leaves(), None) is None
        for va in self.ref:
            assert ops.iova_to_phys(va) == 0
        free_io_pgtable_ops(ops)
        assert ops.table_pages == 0 and ops.table_bytes == 0


PgtableMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestPgtableMachine = PgtableMachine.TestCase
