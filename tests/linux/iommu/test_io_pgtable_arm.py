"""Tests for socmem.linux.iommu.io_pgtable_arm.

The first half re-creates the kernel's own selftests, in both forms:

* ``arm_lpae_do_selftests()`` / ``arm_lpae_run_tests()`` in drivers/iommu/io-pgtable-arm.c
  (v6.1: oas fixed at 48, includes "Partial unmap" and "Remap of partial unmap"), and
* the KUnit ``io-pgtable-arm-selftests.c`` (latest: oas looped with ias <= oas, no
  partial unmap, plus "map/unmap the last largest supported page of the IAS"),

including the dummy TLB ops' checks (cookie identity, flushed size in pgsize_bitmap).
The second half covers errnos, descriptor encoding, split, table freeing, pgsize
restriction and ias/oas limits.
"""

from __future__ import annotations

import errno

import pytest

from socmem.errors import KernelError
from socmem.linux.iommu.io_pgtable import (
    ARM_64_LPAE_S1,
    ARM_64_LPAE_S2,
    IO_PGTABLE_QUIRK_ARM_NS,
    IO_PGTABLE_QUIRK_ARM_OUTER_WBWA,
    IO_PGTABLE_QUIRK_ARM_TTBR1,
    IO_PGTABLE_QUIRK_NO_WARN,
    IOMMU_CACHE,
    IOMMU_MMIO,
    IOMMU_NOEXEC,
    IOMMU_PRIV,
    IOMMU_READ,
    IOMMU_WRITE,
    SZ_1G,
    SZ_2G,
    SZ_2M,
    SZ_4K,
    SZ_16K,
    SZ_32M,
    SZ_64K,
    SZ_512M,
    IommuFlushOps,
    IommuIotlbGather,
    IoPgtableCfg,
)
from socmem.linux.iommu.io_pgtable_arm import (
    ARM_LPAE_MAIR_ATTR_IDX_CACHE,
    ARM_LPAE_MAIR_ATTR_IDX_DEV,
    ARM_LPAE_MAIR_ATTR_IDX_NC,
    LINUX_6_1,
    LINUX_LATEST,
    IoPgtableArm,
    alloc_io_pgtable_ops,
    arm_lpae_restrict_pgsizes,
    free_io_pgtable_ops,
)

PGSIZES = [SZ_4K | SZ_2M | SZ_1G, SZ_16K | SZ_32M, SZ_64K | SZ_512M]
ADDRESS_SIZES = [32, 36, 40, 42, 44, 48]
RWXC = IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE


def set_bits(bitmap: int) -> list[int]:
    """for_each_set_bit(), as sizes."""
    return [1 << j for j in range(64) if bitmap >> j & 1]


class DummyTlb:
    """The selftests' dummy_tlb_ops: check the cookie and the flushed size."""

    def __init__(self, cfg: IoPgtableCfg) -> None:
        self.cfg = cfg
        self.errors: list[str] = []
        self.flush_all = self.flush_walk = self.add_page = 0
        self.ops = IommuFlushOps(self._flush_all, self._flush_walk, self._add_page)

    def _flush_all(self, cookie: object) -> None:
        self.flush_all += 1
        if cookie is not self.cfg:
            self.errors.append("flush_all: cookie")

    def _check(self, size: int, cookie: object) -> None:
        if cookie is not self.cfg:
            self.errors.append("cookie")
        if not size & self.cfg.pgsize_bitmap:
            self.errors.append(f"size {size:#x} not in pgsize_bitmap")

    def _flush_walk(self, iova: int, size: int, granule: int, cookie: object) -> None:
        self.flush_walk += 1
        self._check(size, cookie)

    def _add_page(self, gather: object, iova: int, granule: int, cookie: object) -> None:
        self.add_page += 1
        self._check(granule, cookie)


def run_tests_6_1(cfg: IoPgtableCfg, tlb: DummyTlb) -> None:
    """arm_lpae_run_tests() of v6.1, with __FAIL() as assert."""
    for fmt in (ARM_64_LPAE_S1, ARM_64_LPAE_S2):
        ops = alloc_io_pgtable_ops(fmt, cfg, cfg, behaviour=LINUX_6_1)
        assert ops is not None, "selftest: failed to allocate io pgtable ops"
        # Initial sanity checks: empty page tables shouldn't provide any translations.
        assert ops.iova_to_phys(42) == 0
        assert ops.iova_to_phys(SZ_1G + 42) == 0
        assert ops.iova_to_phys(SZ_2G + 42) == 0
        # Distinct mappings of different granule sizes.
        iova = 0
        for size in set_bits(cfg.pgsize_bitmap):
            assert ops.map(iova, iova, size, RWXC) == 0
            # Overlapping mappings
            assert ops.map(iova, iova + size, size, IOMMU_READ | IOMMU_NOEXEC) != 0
            assert ops.iova_to_phys(iova + 42) == iova + 42
            iova += SZ_1G
        # Partial unmap
        size = 1 << (cfg.pgsize_bitmap & -cfg.pgsize_bitmap).bit_length() - 1
        assert ops.unmap(SZ_1G + size, size) == size
        # Remap of partial unmap
        assert ops.map(SZ_1G + size, size, size, IOMMU_READ) == 0
        assert ops.iova_to_phys(SZ_1G + size + 42) == size + 42
        # Full unmap
        iova = 0
        for size in set_bits(cfg.pgsize_bitmap):
            assert ops.unmap(iova, size) == size
            assert ops.iova_to_phys(iova + 42) == 0
            # Remap full block
            assert ops.map(iova, iova, size, IOMMU_WRITE) == 0
            assert ops.iova_to_phys(iova + 42) == iova + 42
            iova += SZ_1G
        free_io_pgtable_ops(ops)
        assert ops.table_pages == 0 and ops.table_bytes == 0
        # selftest_running: the -EEXIST WARNs are silenced
        assert ops.warnings == []
    assert tlb.errors == []


def run_tests_latest(cfg: IoPgtableCfg, tlb: DummyTlb) -> None:
    """arm_lpae_run_tests() of io-pgtable-arm-selftests.c (KUnit, latest)."""
    for fmt in (ARM_64_LPAE_S1, ARM_64_LPAE_S2):
        ops = alloc_io_pgtable_ops(fmt, cfg, cfg, behaviour=LINUX_LATEST)
        assert ops is not None, "failed to allocate io pgtable ops"
        assert ops.iova_to_phys(42) == 0
        assert ops.iova_to_phys(SZ_1G + 42) == 0
        assert ops.iova_to_phys(SZ_2G + 42) == 0
        iova = 0
        for size in set_bits(cfg.pgsize_bitmap):
            assert ops.map_pages(iova, iova, size, 1, RWXC)[0] == 0
            assert ops.map_pages(iova, iova + size, size, 1, IOMMU_READ | IOMMU_NOEXEC)[0] != 0
            assert ops.iova_to_phys(iova + 42) == iova + 42
            iova += SZ_1G
        iova = 0
        for size in set_bits(cfg.pgsize_bitmap):
            assert ops.unmap_pages(iova, size, 1, None) == size
            assert ops.iova_to_phys(iova + 42) == 0
            assert ops.map_pages(iova, iova, size, 1, IOMMU_WRITE)[0] == 0
            assert ops.iova_to_phys(iova + 42) == iova + 42
            iova += SZ_1G
        # Map/unmap the last largest supported page of the IAS (concatenated PGDs).
        size = 1 << cfg.pgsize_bitmap.bit_length() - 1
        iova = (1 << cfg.ias) - size
        ret, mapped = ops.map_pages(iova, iova, size, 1, RWXC)
        assert ret == 0 and mapped == size
        assert ops.unmap_pages(iova, size, 1, None) == size
        free_io_pgtable_ops(ops)
        assert ops.table_pages == 0
        assert ops.warnings == []
    assert tlb.errors == []


@pytest.mark.parametrize("ias", ADDRESS_SIZES)
@pytest.mark.parametrize("pgsize", PGSIZES, ids=["4K", "16K", "64K"])
def test_kernel_selftest_6_1(pgsize: int, ias: int) -> None:
    """arm_lpae_do_selftests(): pgsize x ias, oas = 48, coherent walk."""
    cfg = IoPgtableCfg(pgsize_bitmap=pgsize, ias=ias, oas=48, coherent_walk=True)
    cfg.quirks = IO_PGTABLE_QUIRK_NO_WARN  # stands for selftest_running
    tlb = DummyTlb(cfg)
    cfg.tlb = tlb.ops
    run_tests_6_1(cfg, tlb)
    assert tlb.flush_all == 2  # free_io_pgtable_ops, per format
    assert tlb.add_page > 0


@pytest.mark.parametrize("pgsize", PGSIZES, ids=["4K", "16K", "64K"])
def test_kernel_selftest_latest(pgsize: int) -> None:
    """KUnit arm_lpae_do_selftests(): pgsize x oas x (ias <= oas), NO_WARN quirk."""
    passed = 0
    for j, oas in enumerate(ADDRESS_SIZES):
        for ias in ADDRESS_SIZES[: j + 1]:
            cfg = IoPgtableCfg(
                pgsize_bitmap=pgsize, ias=ias, oas=oas, quirks=IO_PGTABLE_QUIRK_NO_WARN
            )
            tlb = DummyTlb(cfg)
            cfg.tlb = tlb.ops
            run_tests_latest(cfg, tlb)
            passed += 1
    assert passed == 21


# ------------------------------------------------------------------------------ helpers
def make(fmt=ARM_64_LPAE_S1, pgsize=SZ_4K | SZ_2M | SZ_1G, ias=48, oas=48, **kw) -> IoPgtableArm:
    quirks = kw.pop("quirks", 0)
    coherent = kw.pop("coherent_walk", True)
    cfg = IoPgtableCfg(
        pgsize_bitmap=pgsize, ias=ias, oas=oas, quirks=quirks, coherent_walk=coherent
    )
    return IoPgtableArm(fmt, cfg, cfg, **kw)


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize(
    ("pgsize", "ias", "fmt", "levels", "start", "pgd_entries"),
    [
        (SZ_4K, 48, ARM_64_LPAE_S1, 4, 0, 512),
        (SZ_4K, 32, ARM_64_LPAE_S1, 3, 1, 4),
        (SZ_4K, 39, ARM_64_LPAE_S1, 3, 1, 512),
        (SZ_4K, 40, ARM_64_LPAE_S1, 4, 0, 2),
        (SZ_4K, 40, ARM_64_LPAE_S2, 3, 1, 1024),  # L0 concatenated: 2 pages at L1
        (SZ_4K, 42, ARM_64_LPAE_S2, 3, 1, 4096),  # 8 pages
        (SZ_4K, 44, ARM_64_LPAE_S2, 4, 0, 32),  # 32 > 16: no concatenation
        (SZ_16K, 48, ARM_64_LPAE_S2, 3, 1, 4096),
        (SZ_16K, 36, ARM_64_LPAE_S1, 2, 2, 2048),
        (SZ_64K, 48, ARM_64_LPAE_S1, 3, 1, 64),
        (SZ_64K, 42, ARM_64_LPAE_S1, 2, 2, 8192),
    ],
)
def test_geometry_6_1(pgsize, ias, fmt, levels, start, pgd_entries) -> None:
    ops = make(fmt, pgsize, ias)
    assert (ops.levels, ops.start_level, ops.pgd_size // 8) == (levels, start, pgd_entries)


def test_s2_concatenation_latest_only_when_mandatory() -> None:
    # 4K, ias 40, oas 48: not mandatory in the latest kernel -> 4 levels, 2-entry L0
    ops = make(ARM_64_LPAE_S2, SZ_4K, 40, 48, behaviour=LINUX_LATEST)
    assert (ops.start_level, ops.pgd_size // 8) == (0, 2)
    # 4K, oas 40: mandatory (R_SRKBC) -> start at L1 with 2 concatenated tables
    ops = make(ARM_64_LPAE_S2, SZ_4K, 40, 40, behaviour=LINUX_LATEST)
    assert (ops.start_level, ops.pgd_size // 8) == (1, 1024)
    # 16K, ias 48: mandatory (R_DXBSH)
    ops = make(ARM_64_LPAE_S2, SZ_16K, 48, 48, behaviour=LINUX_LATEST)
    assert (ops.start_level, ops.pgd_size // 8) == (1, 4096)
    # 16K, ias 40, oas 40: start level 1 -> 2 (16 concatenated tables)
    ops = make(ARM_64_LPAE_S2, SZ_16K, 40, 40, behaviour=LINUX_LATEST)
    assert (ops.start_level, ops.pgd_size // 8) == (2, 16 * 2048)


def test_s2_vtcr_and_s1_tcr() -> None:
    ops = make(ARM_64_LPAE_S2, SZ_4K, 40, 40)
    s2 = ops.cfg.arm_lpae_s2_cfg
    assert (s2.tsz, s2.ps, s2.tg, s2.sl) == (24, 2, 0, ~(1 + 1) & 3)
    assert s2.vttbr == ops.pgd_pa
    ops = make(ARM_64_LPAE_S1, SZ_64K, 48, 48, coherent_walk=False)
    s1 = ops.cfg.arm_lpae_s1_cfg
    assert (s1.tsz, s1.ips, s1.tg, s1.sh, s1.irgn, s1.orgn) == (16, 5, 1, 2, 0, 0)
    assert s1.mair == 0xF4_04_FF_44
    ttbr1 = make(quirks=IO_PGTABLE_QUIRK_ARM_TTBR1)
    assert ttbr1.cfg.arm_lpae_s1_cfg.tg == 2  # TG1_4K


# ------------------------------------------------------------------------ restriction
@pytest.mark.parametrize(
    ("bitmap", "oas", "page_size", "expect"),
    [
        (SZ_4K | SZ_64K | SZ_2M | SZ_512M | SZ_1G, 48, SZ_4K, SZ_4K | SZ_2M | SZ_1G),
        (SZ_16K | SZ_2M | SZ_32M | SZ_1G, 48, SZ_4K, SZ_16K | SZ_32M),
        (SZ_64K | SZ_512M | (1 << 42), 48, SZ_4K, SZ_64K | SZ_512M),
        (SZ_64K | SZ_512M | (1 << 42), 52, SZ_4K, SZ_64K | SZ_512M | (1 << 42)),
        # CPU PAGE_SIZE 64K, IOMMU offers 4K and 16K: largest smaller granule wins
        (SZ_4K | SZ_16K | SZ_2M | SZ_32M, 48, SZ_64K, SZ_16K | SZ_32M),
        # CPU PAGE_SIZE 16K, IOMMU offers 4K|64K: the smaller one (4K)
        (SZ_4K | SZ_64K | SZ_2M, 48, SZ_16K, SZ_4K | SZ_2M),
        (SZ_2M, 48, SZ_4K, 0),
    ],
)
def test_restrict_pgsizes(bitmap, oas, page_size, expect) -> None:
    cfg = IoPgtableCfg(pgsize_bitmap=bitmap, ias=52, oas=oas)
    arm_lpae_restrict_pgsizes(cfg, page_size)
    assert cfg.pgsize_bitmap == expect


def test_ias_oas_limits() -> None:
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_4K | SZ_2M, ias=52, oas=52)
    ops = alloc_io_pgtable_ops(ARM_64_LPAE_S1, cfg)
    assert ops is not None and (cfg.ias, cfg.oas) == (48, 48)  # clamped for 4K
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_64K, ias=52, oas=52)
    ops = alloc_io_pgtable_ops(ARM_64_LPAE_S1, cfg)
    assert ops is not None and (cfg.ias, cfg.oas) == (52, 52)
    assert cfg.pgsize_bitmap == SZ_64K  # 4TB only if offered
    # oas without an IPS encoding -> NULL
    assert alloc_io_pgtable_ops(ARM_64_LPAE_S1, IoPgtableCfg(pgsize_bitmap=SZ_4K, oas=39)) is None
    # no usable granule -> NULL
    assert alloc_io_pgtable_ops(ARM_64_LPAE_S1, IoPgtableCfg(pgsize_bitmap=SZ_2M)) is None
    # NS quirk is stage-1 only; OUTER_WBWA with coherent walk is refused
    s2 = IoPgtableCfg(pgsize_bitmap=SZ_4K, quirks=IO_PGTABLE_QUIRK_ARM_NS)
    assert alloc_io_pgtable_ops(ARM_64_LPAE_S2, s2) is None
    owb = IoPgtableCfg(pgsize_bitmap=SZ_4K, quirks=IO_PGTABLE_QUIRK_ARM_OUTER_WBWA)
    assert alloc_io_pgtable_ops(ARM_64_LPAE_S1, owb) is None
    owb.coherent_walk = False
    assert alloc_io_pgtable_ops(ARM_64_LPAE_S1, owb) is not None
    with pytest.raises(KernelError) as exc:
        make(pgsize=SZ_2M)
    assert exc.value.errno == errno.EINVAL


def test_52bit_pa_folding_64k() -> None:
    ops = make(pgsize=SZ_64K | SZ_512M, ias=52, oas=52)
    pa = (0xA << 48) | 0x1234_0000
    assert ops.map(0x10000, pa, SZ_64K, IOMMU_READ) == 0
    lvl, pte = ops.pte_at(0x10000)
    assert pte >> 48 & 0xF == 0  # PA[51:48] is not stored in place...
    assert pte >> 12 & 0xF == 0xA  # ...but folded into PTE[15:12]
    assert ops.iova_to_phys(0x10042) == pa | 0x42
    assert ops.decode(pte, lvl).oa == pa


# ---------------------------------------------------------------------------- errnos
def test_errnos() -> None:
    ops = make(ias=36, oas=40)
    assert ops.map_pages(0, 0, SZ_64K, 1, IOMMU_READ) == (-errno.EINVAL, 0)  # not in bitmap
    assert ops.map_pages(0, 0, 0, 1, IOMMU_READ) == (-errno.EINVAL, 0)
    assert ops.map_pages(0x800, 0, SZ_4K, 1, IOMMU_READ) == (-errno.EINVAL, 0)  # misaligned
    assert ops.map_pages(0, 0x1000, SZ_2M, 1, IOMMU_READ) == (-errno.EINVAL, 0)
    assert ops.map_pages(1 << 36, 0, SZ_4K, 1, IOMMU_READ) == (-errno.ERANGE, 0)
    assert ops.map_pages(0, 1 << 40, SZ_4K, 1, IOMMU_READ) == (-errno.ERANGE, 0)
    assert ops.map_pages((1 << 64) - SZ_4K, 0, SZ_4K, 1, IOMMU_READ) == (-errno.ERANGE, 0)
    # -ERANGE is checked before the no-access shortcut, as in the kernel
    assert ops.map_pages(1 << 36, 0, SZ_4K, 1, 0) == (-errno.ERANGE, 0)
    n_warn = len(ops.warnings)
    assert n_warn == 8
    # no access: 6.1 returns 0 and maps nothing
    assert ops.map_pages(0, 0, SZ_4K, 1, IOMMU_CACHE) == (0, 0)
    assert ops.iova_to_phys(0) == 0 and ops.table_pages == 1
    latest = make(ias=36, oas=40, behaviour=LINUX_LATEST)
    assert latest.map_pages(0, 0, SZ_4K, 1, IOMMU_NOEXEC) == (-errno.EINVAL, 0)
    # -EEXIST with a WARN (no NO_WARN quirk) and the mapping unchanged
    assert ops.map_pages(0x1000, 0x5000, SZ_4K, 1, IOMMU_READ) == (0, SZ_4K)
    before = ops.pte_at(0x1000)
    assert ops.map_pages(0x1000, 0x9000, SZ_4K, 1, IOMMU_WRITE) == (-errno.EEXIST, 0)
    assert ops.pte_at(0x1000) == before and ops.iova_to_phys(0x1000) == 0x5000
    assert "EEXIST" in ops.warnings[-1]
    # a block over an existing leaf below it? the 2M entry is a table: see test below.
    # a page under an existing block -> -EEXIST from the walk
    assert ops.map(SZ_1G, SZ_1G, SZ_1G, IOMMU_READ) == 0
    assert ops.map(SZ_1G + SZ_2M, 0, SZ_4K, IOMMU_READ) == -errno.EEXIST
    # unmap of nothing -> 0 with a WARN; bad pgsize / pgcount -> 0
    n = len(ops.warnings)
    assert ops.unmap_pages(SZ_2G, SZ_4K, 1) == 0
    assert ops.unmap_pages(0x1000, SZ_64K, 1) == 0
    assert ops.unmap_pages(0x1000, SZ_4K, 0) == 0
    assert len(ops.warnings) == n + 3
    # ENOMEM from a custom allocator
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_4K, ias=36, oas=40)
    budget = [1]

    def alloc(cookie, size, gfp):
        if not budget[0]:
            return None
        budget[0] -= 1
        return 0x8000_0000

    cfg.alloc = alloc
    small = IoPgtableArm(ARM_64_LPAE_S1, cfg)
    assert small.map_pages(0, 0, SZ_4K, 1, IOMMU_READ) == (-errno.ENOMEM, 0)


def test_no_warn_quirk_silences_eexist() -> None:
    ops = make(quirks=IO_PGTABLE_QUIRK_NO_WARN)
    ops.map(0, 0, SZ_4K, IOMMU_READ)
    assert ops.map(0, 0, SZ_4K, IOMMU_READ) == -errno.EEXIST
    assert ops.warnings == []


def test_ttbr1_iova_range() -> None:
    ops = make(ias=39, quirks=IO_PGTABLE_QUIRK_ARM_TTBR1)
    top = (1 << 64) - (1 << 39)  # lowest TTBR1 address
    assert ops.map_pages(top + SZ_2M, 0x4000_0000, SZ_2M, 1, IOMMU_READ) == (0, SZ_2M)
    assert ops.iova_to_phys(top + SZ_2M + 5) == 0x4000_0005
    assert ops.map_pages(SZ_2M, 0, SZ_2M, 1, IOMMU_READ)[0] == -errno.ERANGE  # TTBR0 range
    assert ops.unmap_pages(top + SZ_2M, SZ_2M, 1) == SZ_2M


# --------------------------------------------------------------------------- encoding
def attrs(fmt, prot, **kw):
    ops = make(fmt, **kw)
    assert ops.map(SZ_2M, 0x8000_0000, SZ_2M, prot) == 0
    lvl, pte = ops.pte_at(SZ_2M + 0x1234)
    assert lvl == 2
    return pte, ops.decode(pte, lvl)


def test_s1_encoding() -> None:
    pte, d = attrs(ARM_64_LPAE_S1, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE)
    assert d.kind == "block" and d.oa == 0x8000_0000 and pte & 3 == 1
    assert d.attr_idx == ARM_LPAE_MAIR_ATTR_IDX_CACHE and d.mem_type == "normal-wb"
    assert d.sh == "inner" and d.af and d.ng and d.ap_unpriv and not d.ap_rdonly
    assert d.writable and not d.xn and not d.ns
    assert pte == 0x8000_0000 | 1 | 1 << 2 | 1 << 6 | 3 << 8 | 1 << 10 | 1 << 11
    _, d = attrs(ARM_64_LPAE_S1, IOMMU_READ)
    assert d.attr_idx == ARM_LPAE_MAIR_ATTR_IDX_NC and d.mem_type == "normal-nc"
    assert d.sh == "outer" and d.ap_rdonly and not d.writable
    _, d = attrs(ARM_64_LPAE_S1, IOMMU_WRITE | IOMMU_MMIO | IOMMU_CACHE | IOMMU_NOEXEC)
    assert d.attr_idx == ARM_LPAE_MAIR_ATTR_IDX_DEV and d.mem_type == "device"
    assert d.xn and d.sh == "inner" and d.writable  # write-only is RW at stage 1
    _, d = attrs(ARM_64_LPAE_S1, IOMMU_READ | IOMMU_PRIV, quirks=IO_PGTABLE_QUIRK_ARM_NS)
    assert not d.ap_unpriv and d.ns
    ops = make(quirks=IO_PGTABLE_QUIRK_ARM_NS)
    ops.map(0, 0, SZ_4K, IOMMU_READ)
    lvl, pte = ops.pte_at(0)
    assert lvl == 3 and pte & 3 == 3 and ops.decode(pte, 3).kind == "page"
    assert ops.decode(ops._pgd[0], 0).nstable  # table descriptors carry NSTable


def test_s2_encoding() -> None:
    _, d = attrs(ARM_64_LPAE_S2, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE)
    assert d.stage == 2 and d.memattr == 0xF and d.mem_type == "normal-wb"
    assert d.readable and d.writable and d.sh == "inner" and d.af and not d.ng
    _, d = attrs(ARM_64_LPAE_S2, IOMMU_WRITE)
    assert d.memattr == 0x5 and not d.readable and d.writable  # true write-only at S2
    _, d = attrs(ARM_64_LPAE_S2, IOMMU_READ | IOMMU_MMIO | IOMMU_NOEXEC)
    assert d.memattr == 0x1 and d.mem_type == "device" and d.xn and d.sh == "outer"


def test_noncoherent_walk_syncs_and_sw_sync_bit() -> None:
    ops = make(ias=39, coherent_walk=False)
    ops.map(0, 0, SZ_4K, IOMMU_READ)
    assert ops.pte_syncs >= 3  # two table installs + the leaf
    assert ops.decode(ops._pgd[0], 1).sw_sync
    coherent = make(ias=39)
    coherent.map(0, 0, SZ_4K, IOMMU_READ)
    assert coherent.pte_syncs == 0


# -------------------------------------------------------------------- batching, split
def test_map_pages_stops_at_table_end() -> None:
    ops = make(ias=39)
    ret, mapped = ops.map_pages(SZ_2M - 3 * SZ_4K, 0x10_0000, SZ_4K, 10, IOMMU_READ)
    assert (ret, mapped) == (0, 3 * SZ_4K)  # the rest is in the next leaf table
    ret, mapped = ops.map_pages(SZ_2M, 0x10_3000, SZ_4K, 7, IOMMU_READ)
    assert (ret, mapped) == (0, 7 * SZ_4K)
    for i in range(10):
        assert ops.iova_to_phys(SZ_2M - 3 * SZ_4K + i * SZ_4K) == 0x10_0000 + i * SZ_4K
    assert ops.unmap_pages(SZ_2M - 3 * SZ_4K, SZ_4K, 10) == 3 * SZ_4K
    # -EEXIST for any of the entries: nothing of this call is written
    assert ops.map_pages(SZ_2M + 6 * SZ_4K, 0, SZ_4K, 4, IOMMU_READ) == (-errno.EEXIST, 0)
    assert ops.iova_to_phys(SZ_2M + 7 * SZ_4K) == 0


@pytest.mark.parametrize("fmt", [ARM_64_LPAE_S1, ARM_64_LPAE_S2])
def test_split_block_unmap(fmt) -> None:
    gather = IommuIotlbGather()
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_4K | SZ_2M | SZ_1G, ias=40, oas=40)
    seen: list[tuple[int, int]] = []
    cfg.tlb = IommuFlushOps(tlb_add_page=lambda g, iova, gr, c: seen.append((iova, gr)))
    ops = IoPgtableArm(fmt, cfg)
    prot = IOMMU_READ | IOMMU_CACHE | IOMMU_NOEXEC
    assert ops.map(SZ_1G, 0x40_0000_0000, SZ_1G, prot) == 0
    _, blk = ops.pte_at(SZ_1G)
    tables = ops.table_pages
    # unmap 4K in the middle of the 1G block: split 1G -> 2M blocks -> 4K pages
    hole = SZ_1G + 5 * SZ_2M + 3 * SZ_4K
    assert ops.unmap_pages(hole, SZ_4K, 2, gather) == 2 * SZ_4K
    assert seen == [(hole, SZ_4K), (hole + SZ_4K, SZ_4K)]
    assert ops.table_pages == tables + 2
    assert ops.iova_to_phys(hole) == 0 and ops.iova_to_phys(hole + SZ_4K + 7) == 0
    assert ops.iova_to_phys(hole + 2 * SZ_4K) == 0x40_0000_0000 + 5 * SZ_2M + 5 * SZ_4K
    assert ops.iova_to_phys(SZ_1G) == 0x40_0000_0000
    assert ops.iova_to_phys(2 * SZ_1G - 1) == 0x40_0000_0000 + SZ_1G - 1
    # the pieces keep the block's attributes
    for iova, lvl in ((SZ_1G, 2), (hole - SZ_4K, 3)):
        level, pte = ops.pte_at(iova)
        assert level == lvl
        assert pte & 0x0060_0000_0000_0FFC == blk & 0x0060_0000_0000_0FFC
    assert sum(1 for _ in ops.leaves()) == 511 + 510
    # remap the hole, then unmap the 1G range at once: frees both tables
    assert ops.map_pages(hole, 0x1000, SZ_4K, 2, IOMMU_READ) == (0, 2 * SZ_4K)
    assert ops.unmap_pages(SZ_1G, SZ_1G, 1) == SZ_1G
    assert ops.table_pages == tables and ops.iova_to_phys(hole) == 0
    assert ops.warnings == []


def test_partial_unmap_refused_latest() -> None:
    ops = make(ias=40, behaviour=LINUX_LATEST)
    ops.map(SZ_2M, 0, SZ_2M, IOMMU_READ)
    assert ops.unmap_pages(SZ_2M + SZ_4K, SZ_4K, 1) == 0
    assert ops.unmap_pages(SZ_2M + 2 * SZ_4K, SZ_4K, 1) == 0
    assert ops.warnings == ["Unmap of a partial large IOPTE is not allowed"]  # WARN_ONCE
    assert ops.iova_to_phys(SZ_2M + SZ_4K) == SZ_4K


def test_tables_freed_only_by_large_unmap() -> None:
    """Leaf unmaps never free tables; unmapping a table entry at block size does."""
    walks: list[tuple[int, int, int]] = []
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_4K | SZ_2M | SZ_1G, ias=48, oas=48)
    cfg.tlb = IommuFlushOps(tlb_flush_walk=lambda i, s, g, c: walks.append((i, s, g)))
    ops = IoPgtableArm(ARM_64_LPAE_S1, cfg)
    assert ops.table_pages == 1 and ops.table_bytes == SZ_4K
    ops.map_pages(SZ_1G, 0, SZ_4K, 4, IOMMU_READ)
    assert ops.table_pages == 4  # pgd + L1 + L2 + L3
    assert ops.unmap_pages(SZ_1G, SZ_4K, 4) == 4 * SZ_4K
    assert ops.table_pages == 4 and ops.table_bytes == 4 * SZ_4K
    # unmapping the 2M entry (a table) frees the L3 table and flushes the walk
    assert ops.unmap_pages(SZ_1G, SZ_2M, 1) == SZ_2M
    assert ops.table_pages == 3 and walks == [(SZ_1G, SZ_2M, SZ_4K)]
    # a block mapped over a table replaces it (the kernel frees the old table)
    ops.map_pages(2 * SZ_1G, 0, SZ_4K, 1, IOMMU_READ)
    assert ops.table_pages == 5
    assert ops.map(2 * SZ_1G, SZ_1G, SZ_1G, IOMMU_READ) == 0
    assert ops.table_pages == 3 and ops.iova_to_phys(2 * SZ_1G + 5) == SZ_1G + 5
    free_io_pgtable_ops(ops)
    assert ops.table_pages == 0 and ops.tables_allocated == ops.tables_freed


def test_memory_grows_with_mappings_not_iova_space() -> None:
    small = make(ias=32)
    big = make(ias=48)
    for ops in (small, big):
        ops.map_pages(0x1000_0000, 0, SZ_4K, 64, IOMMU_READ)
    assert big.table_pages == 4 and small.table_pages == 3
    assert sum(len(t) for t in big._tables.values()) == 64 + 3
