"""ARM LPAE io-pgtable: a functional model of drivers/iommu/io-pgtable-arm.c.

Formats ``ARM_64_LPAE_S1`` and ``ARM_64_LPAE_S2`` with 4K, 16K and 64K granules.  The
tables hold real 64-bit descriptors (type, AP/S2AP, AttrIndx/MemAttr, SH, AF, nG, XN,
NS, NSTable, SW_SYNC) and real geometry (start level, PGD size, stage-2 concatenation),
so an SMMU walker model can read them as the hardware would.

Storage is sparse: every table is a ``dict`` of index -> descriptor holding only the
non-zero entries, and tables are created only on the paths that are mapped, so memory
grows with the mappings, never with the size of the IOVA space (DESIGN.md).

Two kernel behaviours are modelled (:class:`LpaeBehaviour`):

* :data:`LINUX_6_1` (default): partial unmap of a block splits it
  (``arm_lpae_split_blk_unmap()``); ``map_pages()`` with neither IOMMU_READ nor
  IOMMU_WRITE returns 0 and maps nothing; stage-2 concatenates the PGD whenever the
  walk would start at level 0 with at most 16 PGD entries.
* :data:`LINUX_LATEST` (v6.15-era mainline): partial unmap of a block is refused with
  ``WARN_ONCE("Unmap of a partial large IOPTE is not allowed")`` and returns 0 (v6.13,
  commit 33729a5fc0ca); no-access map returns -EINVAL; stage-2 concatenates only where
  Arm DDI0487 makes it mandatory (``arm_lpae_concat_mandatory()``).

Documented deviations from the kernel:

* ``map_pages()`` / ``unmap_pages()`` refuse an iova (and paddr) not aligned to pgsize
  with -EINVAL / 0 and a warning (``check_alignment=True``).  The kernel's io-pgtable
  does not check this; ``iommu_map()`` / ``__iommu_unmap()`` do ("unaligned: iova ...")
  before calling it, and a direct misaligned call silently corrupts the mapping.
  Pass ``check_alignment=False`` for the raw kernel behaviour.
* ``IO_PGTABLE_QUIRK_NO_WARN`` is accepted in the 6.1 behaviour too, standing in for
  6.1's ``selftest_running`` (which silenced the -EEXIST WARN in the selftests).
* The fix "iommu/io-pgtable-arm: Fix stage-2 map/unmap for concatenated tables"
  (``arm_lpae_max_entries()``, backported to 6.1.y) is always applied.
* Concurrency (cmpxchg on table install) is not modelled: installs always win.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from socmem.errors import KernelError
from socmem.linux.iommu.io_pgtable import (
    GFP_ATOMIC,
    GFP_KERNEL,
    IO_PGTABLE_QUIRK_ARM_HD,
    IO_PGTABLE_QUIRK_ARM_NS,
    IO_PGTABLE_QUIRK_ARM_OUTER_WBWA,
    IO_PGTABLE_QUIRK_ARM_S2FWB,
    IO_PGTABLE_QUIRK_ARM_TTBR1,
    IO_PGTABLE_QUIRK_NO_WARN,
    IOMMU_CACHE,
    IOMMU_MMIO,
    IOMMU_NOEXEC,
    IOMMU_PRIV,
    IOMMU_READ,
    IOMMU_WRITE,
    SZ_1G,
    SZ_2M,
    SZ_4K,
    SZ_16K,
    SZ_32M,
    SZ_64K,
    SZ_512M,
    IommuIotlbGather,
    IoPgtableCfg,
    IoPgtableFmt,
)

__all__ = [
    "ARM_LPAE_MAIR_ATTR_IDX_CACHE",
    "ARM_LPAE_MAIR_ATTR_IDX_DEV",
    "ARM_LPAE_MAIR_ATTR_IDX_INC_OCACHE",
    "ARM_LPAE_MAIR_ATTR_IDX_NC",
    "LINUX_6_1",
    "LINUX_LATEST",
    "ArmLpaePte",
    "IoPgtableArm",
    "LpaeBehaviour",
    "alloc_io_pgtable_ops",
    "arm_lpae_restrict_pgsizes",
    "decode_pte",
    "free_io_pgtable_ops",
]

ARM_LPAE_MAX_ADDR_BITS = 52
ARM_LPAE_S2_MAX_CONCAT_PAGES = 16
ARM_LPAE_MAX_LEVELS = 4

# --- descriptor bits (arm_lpae_iopte) ---------------------------------------------------
ARM_LPAE_PTE_TYPE_MASK = 0x3
ARM_LPAE_PTE_TYPE_BLOCK = 1
ARM_LPAE_PTE_TYPE_TABLE = 3
ARM_LPAE_PTE_TYPE_PAGE = 3
ARM_LPAE_PTE_ADDR_MASK = ((1 << 48) - 1) & ~((1 << 12) - 1)  # GENMASK_ULL(47, 12)

ARM_LPAE_PTE_NSTABLE = 1 << 63
ARM_LPAE_PTE_XN = 3 << 53
ARM_LPAE_PTE_DBM = 1 << 51
ARM_LPAE_PTE_AF = 1 << 10
ARM_LPAE_PTE_SH_NS = 0 << 8
ARM_LPAE_PTE_SH_OS = 2 << 8
ARM_LPAE_PTE_SH_IS = 3 << 8
ARM_LPAE_PTE_NS = 1 << 5
ARM_LPAE_PTE_VALID = 1 << 0
ARM_LPAE_PTE_ATTR_LO_MASK = 0x3FF << 2
ARM_LPAE_PTE_ATTR_HI_MASK = ARM_LPAE_PTE_XN | ARM_LPAE_PTE_DBM
ARM_LPAE_PTE_ATTR_MASK = ARM_LPAE_PTE_ATTR_LO_MASK | ARM_LPAE_PTE_ATTR_HI_MASK
ARM_LPAE_PTE_SW_SYNC = 1 << 55

# Stage 1
ARM_LPAE_PTE_AP_UNPRIV = 1 << 6
ARM_LPAE_PTE_AP_RDONLY = 2 << 6
ARM_LPAE_PTE_ATTRINDX_SHIFT = 2
ARM_LPAE_PTE_nG = 1 << 11

# Stage 2
ARM_LPAE_PTE_HAP_FAULT = 0 << 6
ARM_LPAE_PTE_HAP_READ = 1 << 6
ARM_LPAE_PTE_HAP_WRITE = 2 << 6
ARM_LPAE_PTE_MEMATTR_OIWB = 0xF << 2
ARM_LPAE_PTE_MEMATTR_NC = 0x5 << 2
ARM_LPAE_PTE_MEMATTR_DEV = 0x1 << 2
ARM_LPAE_PTE_MEMATTR_FWB_WB = 0x6 << 2

# --- MAIR --------------------------------------------------------------------------------
ARM_LPAE_MAIR_ATTR_DEVICE = 0x04
ARM_LPAE_MAIR_ATTR_NC = 0x44
ARM_LPAE_MAIR_ATTR_INC_OWBRWA = 0xF4
ARM_LPAE_MAIR_ATTR_WBRWA = 0xFF
ARM_LPAE_MAIR_ATTR_IDX_NC = 0
ARM_LPAE_MAIR_ATTR_IDX_CACHE = 1
ARM_LPAE_MAIR_ATTR_IDX_DEV = 2
ARM_LPAE_MAIR_ATTR_IDX_INC_OCACHE = 3

# --- TCR / VTCR field values (io-pgtable-arm.h) -----------------------------------------
ARM_LPAE_TCR_TG0_4K = 0
ARM_LPAE_TCR_TG0_64K = 1
ARM_LPAE_TCR_TG0_16K = 2
ARM_LPAE_TCR_TG1_16K = 1
ARM_LPAE_TCR_TG1_4K = 2
ARM_LPAE_TCR_TG1_64K = 3
ARM_LPAE_TCR_SH_NS = 0
ARM_LPAE_TCR_SH_OS = 2
ARM_LPAE_TCR_SH_IS = 3
ARM_LPAE_TCR_RGN_NC = 0
ARM_LPAE_TCR_RGN_WBWA = 1
ARM_LPAE_TCR_RGN_WT = 2
ARM_LPAE_TCR_RGN_WB = 3
ARM_LPAE_VTCR_SL0_MASK = 0x3
ARM_LPAE_TCR_PS = {32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5, 52: 6}

# Where the default table allocator places page-table pages (model physical addresses).
_TABLE_PA_BASE = 0x4000_0000


@dataclass(frozen=True)
class LpaeBehaviour:
    """Which kernel's io-pgtable-arm.c to follow where mainline changed behaviour.

    * ``split_on_partial_unmap``: arm_lpae_split_blk_unmap() (removed in v6.13).
    * ``noaccess_map_einval``: map_pages() without READ/WRITE returns -EINVAL (newer
      mainline) instead of 0.
    * ``s2_concat``: ``"small-pgd"`` (concatenate when starting at level 0 with <= 16 PGD
      entries) or ``"mandatory"`` (arm_lpae_concat_mandatory(), v6.15-era).
    """

    name: str
    split_on_partial_unmap: bool
    noaccess_map_einval: bool
    s2_concat: str


LINUX_6_1 = LpaeBehaviour("6.1", True, False, "small-pgd")
LINUX_LATEST = LpaeBehaviour("latest", False, True, "mandatory")


def _fls(x: int) -> int:
    return x.bit_length() - 1


def _ffs(x: int) -> int:
    return (x & -x).bit_length() - 1


def arm_lpae_restrict_pgsizes(cfg: IoPgtableCfg, page_size: int = SZ_4K) -> None:
    """Models arm_lpae_restrict_pgsizes() in drivers/iommu/io-pgtable-arm.c.

    Picks the granule (the CPU ``page_size`` if offered, else the largest smaller one,
    else the smallest larger one), keeps only that granule's block sizes in
    ``cfg.pgsize_bitmap`` and clamps ``cfg.ias`` / ``cfg.oas`` (48, or 52 with 64K).
    """
    bitmap = cfg.pgsize_bitmap
    page_mask = ~(page_size - 1)
    if bitmap & page_size:
        granule = page_size
    elif bitmap & ~page_mask:
        granule = 1 << _fls(bitmap & ~page_mask)
    elif bitmap & page_mask:
        granule = 1 << _ffs(bitmap & page_mask)
    else:
        granule = 0
    max_addr_bits = 48
    if granule == SZ_4K:
        page_sizes = SZ_4K | SZ_2M | SZ_1G
    elif granule == SZ_16K:
        page_sizes = SZ_16K | SZ_32M
    elif granule == SZ_64K:
        max_addr_bits = 52
        page_sizes = SZ_64K | SZ_512M
        if cfg.oas > 48:
            page_sizes |= 1 << 42  # 4TB
    else:
        page_sizes = 0
    cfg.pgsize_bitmap &= page_sizes
    cfg.ias = min(cfg.ias, max_addr_bits)
    cfg.oas = min(cfg.oas, max_addr_bits)


class ArmLpaePte(NamedTuple):
    """A decoded LPAE descriptor (see :func:`decode_pte`)."""

    raw: int
    level: int
    kind: str  # "invalid" | "table" | "block" | "page"
    oa: int  # output address (next table for "table")
    stage: int  # 1 or 2
    attr_idx: int | None  # stage 1 AttrIndx
    mair_attr: int | None  # stage 1: the MAIR byte that AttrIndx selects
    memattr: int | None  # stage 2 MemAttr[3:0]
    mem_type: str  # "normal-wb" | "normal-nc" | "device" | "normal-inc-owb" | ""
    readable: bool
    writable: bool
    ap_unpriv: bool
    ap_rdonly: bool
    xn: bool
    af: bool
    sh: str  # "non" | "outer" | "inner" | "reserved"
    ns: bool
    ng: bool
    nstable: bool
    sw_sync: bool


_MAIR_BYTES = {
    ARM_LPAE_MAIR_ATTR_IDX_NC: ARM_LPAE_MAIR_ATTR_NC,
    ARM_LPAE_MAIR_ATTR_IDX_CACHE: ARM_LPAE_MAIR_ATTR_WBRWA,
    ARM_LPAE_MAIR_ATTR_IDX_DEV: ARM_LPAE_MAIR_ATTR_DEVICE,
    ARM_LPAE_MAIR_ATTR_IDX_INC_OCACHE: ARM_LPAE_MAIR_ATTR_INC_OWBRWA,
}
_MAIR_TYPES = {
    ARM_LPAE_MAIR_ATTR_NC: "normal-nc",
    ARM_LPAE_MAIR_ATTR_WBRWA: "normal-wb",
    ARM_LPAE_MAIR_ATTR_DEVICE: "device",
    ARM_LPAE_MAIR_ATTR_INC_OWBRWA: "normal-inc-owb",
}
_S2_MEMATTR_TYPES = {0xF: "normal-wb", 0x5: "normal-nc", 0x1: "device", 0x6: "normal-wb"}
_SH_NAMES = {0: "non", 1: "reserved", 2: "outer", 3: "inner"}


def _paddr_to_iopte(paddr: int) -> int:
    """Models paddr_to_iopte(): PA[51:48] folds into PTE[15:12] (64K granule, 52-bit)."""
    return (paddr | (paddr >> (48 - 12))) & ARM_LPAE_PTE_ADDR_MASK


def _iopte_to_paddr(pte: int, granule: int) -> int:
    """Models iopte_to_paddr(): unfold PTE[15:12] back to PA[51:48] for 64K granules."""
    paddr = pte & ARM_LPAE_PTE_ADDR_MASK
    if granule < SZ_64K:
        return paddr
    return (paddr | (paddr << (48 - 12))) & (ARM_LPAE_PTE_ADDR_MASK << 4)


def decode_pte(
    pte: int, level: int, fmt: IoPgtableFmt = IoPgtableFmt.ARM_64_LPAE_S1, granule: int = SZ_4K
) -> ArmLpaePte:
    """Decode one LPAE descriptor the way the SMMU walker reads it.

    The inverse of arm_lpae_prot_to_pte() / __arm_lpae_init_pte() /
    arm_lpae_install_table() in drivers/iommu/io-pgtable-arm.c.
    """
    stage = 2 if fmt in (IoPgtableFmt.ARM_64_LPAE_S2, IoPgtableFmt.ARM_32_LPAE_S2) else 1
    typ = pte & ARM_LPAE_PTE_TYPE_MASK
    if not pte & ARM_LPAE_PTE_VALID:
        kind = "invalid"
    elif level == ARM_LPAE_MAX_LEVELS - 1:
        kind = "page" if typ == ARM_LPAE_PTE_TYPE_PAGE else "invalid"
    else:
        kind = "table" if typ == ARM_LPAE_PTE_TYPE_TABLE else "block"
    oa = _iopte_to_paddr(pte, granule)
    leaf = kind in ("block", "page")
    attr_idx = mair_attr = memattr = None
    mem_type = ""
    readable = writable = False
    ap_rdonly = bool(pte & ARM_LPAE_PTE_AP_RDONLY)
    ap_unpriv = bool(pte & ARM_LPAE_PTE_AP_UNPRIV)
    if leaf:
        if stage == 1:
            attr_idx = (pte >> ARM_LPAE_PTE_ATTRINDX_SHIFT) & 0x7
            mair_attr = _MAIR_BYTES.get(attr_idx)
            mem_type = _MAIR_TYPES.get(mair_attr or -1, "")
            readable = True
            writable = not ap_rdonly
        else:
            memattr = (pte >> 2) & 0xF
            mem_type = _S2_MEMATTR_TYPES.get(memattr, "")
            readable = bool(pte & ARM_LPAE_PTE_HAP_READ)
            writable = bool(pte & ARM_LPAE_PTE_HAP_WRITE)
    return ArmLpaePte(
        raw=pte,
        level=level,
        kind=kind,
        oa=oa,
        stage=stage,
        attr_idx=attr_idx,
        mair_attr=mair_attr,
        memattr=memattr,
        mem_type=mem_type,
        readable=readable,
        writable=writable,
        ap_unpriv=ap_unpriv and leaf and stage == 1,
        ap_rdonly=ap_rdonly and leaf and stage == 1,
        xn=leaf and (pte & ARM_LPAE_PTE_XN) == ARM_LPAE_PTE_XN,
        af=leaf and bool(pte & ARM_LPAE_PTE_AF),
        sh=_SH_NAMES[(pte >> 8) & 3] if leaf else "",
        ns=leaf and bool(pte & ARM_LPAE_PTE_NS),
        ng=leaf and stage == 1 and bool(pte & ARM_LPAE_PTE_nG),
        nstable=kind == "table" and bool(pte & ARM_LPAE_PTE_NSTABLE),
        sw_sync=bool(pte & ARM_LPAE_PTE_SW_SYNC),
    )


def _get_order_bytes(size: int, page_size: int) -> int:
    """Bytes really taken by alloc_pages(get_order(size)): a power-of-two of pages."""
    pages = max(1, -(-size // page_size))
    return page_size << (pages - 1).bit_length()


class IoPgtableArm:
    """Models one ARM LPAE io-pgtable (struct arm_lpae_io_pgtable + its io_pgtable_ops).

    Built by arm_64_lpae_alloc_pgtable_s1() / arm_64_lpae_alloc_pgtable_s2() in
    drivers/iommu/io-pgtable-arm.c; the constructor raises :class:`KernelError`
    (EINVAL / ENOMEM) where the kernel's alloc returns NULL, and
    :func:`alloc_io_pgtable_ops` turns that into ``None`` as the kernel does.

    Accounting: ``tables_allocated`` / ``tables_freed`` (cumulative), ``table_pages``
    (live tables, PGD included), ``table_bytes`` (live bytes, page-granular as the page
    allocator hands them out), ``pte_syncs`` (dma_sync_single_for_device calls a
    non-coherent walker costs).  ``warnings`` collects the kernel's WARN_ON / WARN_ONCE
    hits as strings.
    """

    def __init__(
        self,
        fmt: IoPgtableFmt,
        cfg: IoPgtableCfg,
        cookie: Any = None,
        *,
        behaviour: LpaeBehaviour = LINUX_6_1,
        page_size: int = SZ_4K,
        check_alignment: bool = True,
    ) -> None:
        if fmt not in (IoPgtableFmt.ARM_64_LPAE_S1, IoPgtableFmt.ARM_64_LPAE_S2):
            raise KernelError(errno.EINVAL, f"io-pgtable-arm: format {fmt!r} not modelled")
        self.fmt = fmt
        self.cfg = cfg
        self.cookie = cookie
        self.behaviour = behaviour
        self.page_size = page_size
        self.check_alignment = check_alignment
        self.warnings: list[str] = []
        self._warned_once: set[str] = set()
        self.tables_allocated = 0
        self.tables_freed = 0
        self.table_bytes = 0
        self.pte_syncs = 0
        self._tables: dict[int, dict[int, int]] = {}
        self._table_sizes: dict[int, int] = {}
        self._next_pa = _TABLE_PA_BASE
        self._free_pas: dict[int, list[int]] = {}
        self._prot_cache: dict[int, int] = {}
        self._freed = False

        stage1 = fmt == IoPgtableFmt.ARM_64_LPAE_S1
        latest = behaviour.s2_concat == "mandatory"
        if stage1:
            allowed = IO_PGTABLE_QUIRK_ARM_NS | IO_PGTABLE_QUIRK_ARM_TTBR1
            allowed |= IO_PGTABLE_QUIRK_ARM_OUTER_WBWA | IO_PGTABLE_QUIRK_NO_WARN
            if latest:
                allowed |= IO_PGTABLE_QUIRK_ARM_HD
        else:
            # "The NS quirk doesn't apply at stage 2"
            allowed = IO_PGTABLE_QUIRK_NO_WARN
            if latest:
                allowed |= IO_PGTABLE_QUIRK_ARM_S2FWB
        if cfg.quirks & ~allowed:
            raise KernelError(errno.EINVAL, f"unsupported quirks {cfg.quirks:#x} for {fmt.name}")

        # arm_lpae_alloc_pgtable()
        arm_lpae_restrict_pgsizes(cfg, page_size)
        if not cfg.pgsize_bitmap & (SZ_4K | SZ_16K | SZ_64K):
            raise KernelError(errno.EINVAL, "no usable granule in pgsize_bitmap")
        if cfg.ias > ARM_LPAE_MAX_ADDR_BITS or cfg.oas > ARM_LPAE_MAX_ADDR_BITS:
            raise KernelError(errno.EINVAL, "ias/oas beyond ARM_LPAE_MAX_ADDR_BITS")
        pg_shift = _ffs(cfg.pgsize_bitmap)
        self.pg_shift = pg_shift
        self.bits_per_level = bpl = pg_shift - 3
        self.granule = 1 << pg_shift
        va_bits = cfg.ias - pg_shift
        levels = -(-va_bits // bpl)
        self.start_level = ARM_LPAE_MAX_LEVELS - levels
        self.pgd_bits = va_bits - bpl * (levels - 1)

        if stage1:
            self._setup_s1()
        else:
            self._setup_s2()
        self._compute_geometry()

        pgd = self._alloc_table(self.pgd_size, GFP_KERNEL)
        if pgd is None:
            raise KernelError(errno.ENOMEM, "cannot allocate pgd")
        self._pgd_pa, self._pgd = pgd
        if stage1:
            cfg.arm_lpae_s1_cfg.ttbr = self._pgd_pa
        else:
            cfg.arm_lpae_s2_cfg.vttbr = self._pgd_pa

    # ----------------------------------------------------------------- alloc helpers --
    def _setup_s1(self) -> None:
        """Models the TCR/MAIR half of arm_64_lpae_alloc_pgtable_s1()."""
        cfg = self.cfg
        s1 = cfg.arm_lpae_s1_cfg
        if cfg.coherent_walk:
            s1.sh, s1.irgn, s1.orgn = (
                ARM_LPAE_TCR_SH_IS,
                ARM_LPAE_TCR_RGN_WBWA,
                ARM_LPAE_TCR_RGN_WBWA,
            )
            if cfg.quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA:
                raise KernelError(errno.EINVAL, "OUTER_WBWA quirk with a coherent walk")
        else:
            s1.sh, s1.irgn = ARM_LPAE_TCR_SH_OS, ARM_LPAE_TCR_RGN_NC
            outer = cfg.quirks & IO_PGTABLE_QUIRK_ARM_OUTER_WBWA
            s1.orgn = ARM_LPAE_TCR_RGN_WBWA if outer else ARM_LPAE_TCR_RGN_NC
        tg1 = bool(cfg.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1)
        s1.tg = {
            SZ_4K: ARM_LPAE_TCR_TG1_4K if tg1 else ARM_LPAE_TCR_TG0_4K,
            SZ_16K: ARM_LPAE_TCR_TG1_16K if tg1 else ARM_LPAE_TCR_TG0_16K,
            SZ_64K: ARM_LPAE_TCR_TG1_64K if tg1 else ARM_LPAE_TCR_TG0_64K,
        }[self.granule]
        if cfg.oas not in ARM_LPAE_TCR_PS:
            raise KernelError(errno.EINVAL, f"oas {cfg.oas} has no IPS encoding")
        s1.ips = ARM_LPAE_TCR_PS[cfg.oas]
        s1.tsz = 64 - cfg.ias
        s1.mair = (
            ARM_LPAE_MAIR_ATTR_NC << (8 * ARM_LPAE_MAIR_ATTR_IDX_NC)
            | ARM_LPAE_MAIR_ATTR_WBRWA << (8 * ARM_LPAE_MAIR_ATTR_IDX_CACHE)
            | ARM_LPAE_MAIR_ATTR_DEVICE << (8 * ARM_LPAE_MAIR_ATTR_IDX_DEV)
            | ARM_LPAE_MAIR_ATTR_INC_OWBRWA << (8 * ARM_LPAE_MAIR_ATTR_IDX_INC_OCACHE)
        )

    def _concat_mandatory(self) -> bool:
        """Models arm_lpae_concat_mandatory() (Arm DDI0487 R_DXBSH / R_SRKBC)."""
        ias, oas, g, sl = self.cfg.ias, self.cfg.oas, self.granule, self.start_level
        if g == SZ_16K and sl == 0:
            return oas == 48 or ias == 48
        if g == SZ_4K and sl == 0:
            return oas in (40, 42)
        return g == SZ_16K and sl == 1 and oas == 40

    def _setup_s2(self) -> None:
        """Models the concatenation and VTCR half of arm_64_lpae_alloc_pgtable_s2()."""
        cfg = self.cfg
        pgd_entries = 1 << self.pgd_bits
        if self.behaviour.s2_concat == "mandatory":
            if self._concat_mandatory():
                if pgd_entries > ARM_LPAE_S2_MAX_CONCAT_PAGES:
                    self._warn("arm_64_lpae_alloc_pgtable_s2: WARN_ON(pgd entries > 16)")
                    raise KernelError(errno.EINVAL, "mandatory concatenation impossible")
                self.pgd_bits += self.bits_per_level
                self.start_level += 1
        elif self.start_level == 0 and pgd_entries <= ARM_LPAE_S2_MAX_CONCAT_PAGES:
            self.pgd_bits += self.bits_per_level
            self.start_level += 1
        s2 = cfg.arm_lpae_s2_cfg
        if cfg.coherent_walk:
            s2.sh, s2.irgn, s2.orgn = (
                ARM_LPAE_TCR_SH_IS,
                ARM_LPAE_TCR_RGN_WBWA,
                ARM_LPAE_TCR_RGN_WBWA,
            )
        else:
            s2.sh, s2.irgn, s2.orgn = ARM_LPAE_TCR_SH_OS, ARM_LPAE_TCR_RGN_NC, ARM_LPAE_TCR_RGN_NC
        sl = self.start_level
        if self.granule == SZ_4K:
            s2.tg = ARM_LPAE_TCR_TG0_4K
            sl += 1  # SL0 format is different for 4K granule size
        elif self.granule == SZ_16K:
            s2.tg = ARM_LPAE_TCR_TG0_16K
        else:
            s2.tg = ARM_LPAE_TCR_TG0_64K
        if cfg.oas not in ARM_LPAE_TCR_PS:
            raise KernelError(errno.EINVAL, f"oas {cfg.oas} has no PS encoding")
        s2.ps = ARM_LPAE_TCR_PS[cfg.oas]
        s2.tsz = 64 - cfg.ias
        s2.sl = ~sl & ARM_LPAE_VTCR_SL0_MASK

    def _compute_geometry(self) -> None:
        bpl = self.bits_per_level
        self.ptes_per_table = 1 << bpl
        self.pgd_size = 8 << self.pgd_bits  # ARM_LPAE_PGD_SIZE
        self.levels = ARM_LPAE_MAX_LEVELS - self.start_level
        # index 4 is a sentinel so that lvl + 1 lookups never fail
        self._shift = [(ARM_LPAE_MAX_LEVELS - lvl) * bpl + 3 for lvl in range(5)]
        self._bsize = [1 << s for s in self._shift]
        self._mask = [
            (1 << (self.pgd_bits if lvl == self.start_level else bpl)) - 1 for lvl in range(5)
        ]
        self._size_to_level: dict[int, int] = {}
        bitmap = self.cfg.pgsize_bitmap
        for lvl in range(self.start_level, ARM_LPAE_MAX_LEVELS):
            if self._bsize[lvl] & bitmap:
                self._size_to_level[self._bsize[lvl]] = lvl
        self._ttbr1 = bool(self.cfg.quirks & IO_PGTABLE_QUIRK_ARM_TTBR1)
        self._nowarn = bool(self.cfg.quirks & IO_PGTABLE_QUIRK_NO_WARN)
        self._nstable = ARM_LPAE_PTE_NSTABLE if self.cfg.quirks & IO_PGTABLE_QUIRK_ARM_NS else 0
        self._sw_sync = 0 if self.cfg.coherent_walk else ARM_LPAE_PTE_SW_SYNC
        # Software walk cache of the last leaf (last-level) table used: a model speed-up
        # only, dropped whenever any table is freed.  Not used with 52-bit PAs (folding).
        self._wc_shift = self._shift[ARM_LPAE_MAX_LEVELS - 2]
        self._wc_key = -1
        self._wc_tbl: dict[int, int] = {}
        self._wc_ok = self.granule in self._size_to_level and self.cfg.oas <= 48
        self._gmask = self.granule - 1
        self._ppt_mask = self.ptes_per_table - 1

    # --------------------------------------------------------------- table memory --
    def _alloc_table(self, size: int, gfp: str) -> tuple[int, dict[int, int]] | None:
        """Models __arm_lpae_alloc_pages(): a zeroed table, accounted and given a PA."""
        cfg = self.cfg
        nbytes = _get_order_bytes(size, self.page_size)
        if cfg.alloc is not None:
            pa = cfg.alloc(self.cookie, size, gfp)
            if pa is None:
                return None
        else:
            free = self._free_pas.get(nbytes)
            if free:
                pa = free.pop()
            else:
                pa = -(-self._next_pa // nbytes) * nbytes
                self._next_pa = pa + nbytes
        key = _paddr_to_iopte(pa)
        table: dict[int, int] = {}
        self._tables[key] = table
        self._table_sizes[key] = size
        self.tables_allocated += 1
        self.table_bytes += nbytes
        return pa, table

    def _free_table_mem(self, key: int) -> None:
        """Models __arm_lpae_free_pages()."""
        self._wc_key = -1
        del self._tables[key]
        size = self._table_sizes.pop(key)
        nbytes = _get_order_bytes(size, self.page_size)
        pa = _iopte_to_paddr(key, self.granule)
        if self.cfg.free is not None:
            self.cfg.free(self.cookie, pa, size)
        else:
            self._free_pas.setdefault(nbytes, []).append(pa)
        self.tables_freed += 1
        self.table_bytes -= nbytes

    def _install_table(self, tbl: dict[int, int], idx: int, pa: int) -> None:
        """Models arm_lpae_install_table() (the cmpxchg always wins here)."""
        pte = _paddr_to_iopte(pa) | ARM_LPAE_PTE_TYPE_TABLE | self._nstable
        if self._sw_sync:
            self.pte_syncs += 1
            pte |= ARM_LPAE_PTE_SW_SYNC
        tbl[idx] = pte

    def _free_pgtable(self, lvl: int, key: int) -> None:
        """Models __arm_lpae_free_pgtable(): free a table and every table below it."""
        tbl = self._tables[key]
        if lvl < ARM_LPAE_MAX_LEVELS - 1:
            for pte in tbl.values():
                if pte & ARM_LPAE_PTE_TYPE_MASK == ARM_LPAE_PTE_TYPE_TABLE:
                    self._free_pgtable(lvl + 1, pte & ARM_LPAE_PTE_ADDR_MASK)
        self._free_table_mem(key)

    # ----------------------------------------------------------------- warnings --
    def _warn(self, msg: str) -> None:
        self.warnings.append(msg)

    def _warn_once(self, msg: str) -> None:
        if msg not in self._warned_once:
            self._warned_once.add(msg)
            self.warnings.append(msg)

    # ------------------------------------------------------------------ prot --
    def prot_to_pte(self, prot: int) -> int:
        """Models arm_lpae_prot_to_pte(): IOMMU_* prot flags to descriptor attribute bits."""
        cached = self._prot_cache.get(prot)
        if cached is not None:
            return cached
        quirks = self.cfg.quirks
        if self.fmt == IoPgtableFmt.ARM_64_LPAE_S1:
            pte = ARM_LPAE_PTE_nG
            if not prot & IOMMU_WRITE and prot & IOMMU_READ:
                pte |= ARM_LPAE_PTE_AP_RDONLY
            elif quirks & IO_PGTABLE_QUIRK_ARM_HD:
                pte |= ARM_LPAE_PTE_DBM
            if not prot & IOMMU_PRIV:
                pte |= ARM_LPAE_PTE_AP_UNPRIV
            if prot & IOMMU_MMIO:
                pte |= ARM_LPAE_MAIR_ATTR_IDX_DEV << ARM_LPAE_PTE_ATTRINDX_SHIFT
            elif prot & IOMMU_CACHE:
                pte |= ARM_LPAE_MAIR_ATTR_IDX_CACHE << ARM_LPAE_PTE_ATTRINDX_SHIFT
        else:
            pte = ARM_LPAE_PTE_HAP_FAULT
            if prot & IOMMU_READ:
                pte |= ARM_LPAE_PTE_HAP_READ
            if prot & IOMMU_WRITE:
                pte |= ARM_LPAE_PTE_HAP_WRITE
            if prot & IOMMU_MMIO:
                pte |= ARM_LPAE_PTE_MEMATTR_DEV
            elif prot & IOMMU_CACHE:
                if quirks & IO_PGTABLE_QUIRK_ARM_S2FWB:
                    pte |= ARM_LPAE_PTE_MEMATTR_FWB_WB
                else:
                    pte |= ARM_LPAE_PTE_MEMATTR_OIWB
            else:
                pte |= ARM_LPAE_PTE_MEMATTR_NC
        pte |= ARM_LPAE_PTE_SH_IS if prot & IOMMU_CACHE else ARM_LPAE_PTE_SH_OS
        if prot & IOMMU_NOEXEC:
            pte |= ARM_LPAE_PTE_XN
        if quirks & IO_PGTABLE_QUIRK_ARM_NS:
            pte |= ARM_LPAE_PTE_NS
        pte |= ARM_LPAE_PTE_AF
        self._prot_cache[prot] = pte
        return pte

    # ------------------------------------------------------------------- map --
    def _iova_out_of_range(self, iova: int) -> bool:
        """``iaext = (s64)iova >> ias`` (inverted with IO_PGTABLE_QUIRK_ARM_TTBR1)."""
        if iova >= 1 << 63:
            iova -= 1 << 64
        iaext = iova >> self.cfg.ias
        if self._ttbr1:
            iaext = ~iaext
        return iaext != 0

    def map_pages(
        self,
        iova: int,
        paddr: int,
        pgsize: int,
        pgcount: int,
        prot: int,
        gfp: str = GFP_ATOMIC,
    ) -> tuple[int, int]:
        """Models arm_lpae_map_pages() in drivers/iommu/io-pgtable-arm.c.

        Maps up to ``pgcount`` pages of ``pgsize`` at ``iova`` -> ``paddr``, stopping at
        the end of the leaf table (the caller loops, as __iommu_map() does).  Returns
        ``(ret, mapped)``: ``ret`` is 0 or -errno, ``mapped`` the bytes mapped.

        * pgsize not one size of pgsize_bitmap: WARN, -EINVAL;
        * iova or paddr not aligned to pgsize: warning, -EINVAL (model check, see module doc);
        * iova beyond ias (``(s64)iova >> ias``, inverted for TTBR1) or paddr beyond oas:
          WARN, -ERANGE;
        * neither IOMMU_READ nor IOMMU_WRITE: 0 and nothing mapped (6.1) / -EINVAL (latest);
        * a leaf already there: WARN (unless IO_PGTABLE_QUIRK_NO_WARN), -EEXIST;
        * a table where a block goes: the table is unmapped and freed, then replaced;
        * table allocation failure: -ENOMEM.
        """
        if (
            pgcount == 1
            and iova >> self._wc_shift == self._wc_key
            and pgsize == self.granule
            and not (iova | paddr) & self._gmask
            and not paddr >> self.cfg.oas
        ):
            # Fast path: one page into the cached leaf table (same checks, same result).
            pbits = self._prot_cache.get(prot)
            idx = (iova >> self.pg_shift) & self._ppt_mask
            tbl = self._wc_tbl
            if pbits is not None and idx not in tbl and prot & (IOMMU_READ | IOMMU_WRITE):
                tbl[idx] = pbits | ARM_LPAE_PTE_TYPE_PAGE | paddr
                if self._sw_sync:
                    self.pte_syncs += 1
                return 0, pgsize
        lvl = self._size_to_level.get(pgsize)
        if lvl is None:
            if not pgsize or (pgsize & self.cfg.pgsize_bitmap) != pgsize:
                self._warn(
                    "arm_lpae_map_pages: WARN_ON(!pgsize || (pgsize & cfg->pgsize_bitmap)"
                    f" != pgsize): pgsize={pgsize:#x}"
                )
                return -errno.EINVAL, 0
            lvl = ARM_LPAE_MAX_LEVELS  # several sizes at once: no level matches
        elif self.check_alignment and (iova | paddr) & (pgsize - 1):
            self._warn(
                f"unaligned: iova {iova:#x} pa {paddr:#x} size {pgsize:#x} min_pagesz {pgsize:#x}"
            )
            return -errno.EINVAL, 0
        if self._iova_out_of_range(iova) if self._ttbr1 else iova >> self.cfg.ias:
            self._warn(f"arm_lpae_map_pages: WARN_ON(iaext): iova {iova:#x} beyond ias")
            return -errno.ERANGE, 0
        if paddr >> self.cfg.oas:
            self._warn(f"arm_lpae_map_pages: WARN_ON(paddr >> cfg->oas): paddr {paddr:#x}")
            return -errno.ERANGE, 0
        if not prot & (IOMMU_READ | IOMMU_WRITE):
            return (-errno.EINVAL if self.behaviour.noaccess_map_einval else 0), 0
        return self._map(iova, paddr, pgsize, pgcount, self.prot_to_pte(prot), lvl, gfp)

    def map_pages_list(
        self, iova: int, paddrs: list[int], pgsize: int, prot: int, gfp: str = GFP_ATOMIC
    ) -> tuple[int, int]:
        """``map_pages(iova + i * pgsize, paddrs[i], pgsize, 1, prot, gfp)`` for each ``i``,
        stopping at the first error: ``(ret, mapped)``.

        Not a kernel function: the loop ``__iommu_map_sg()`` runs over a scatter list of
        discontiguous granule pages, done in one call so that Python pays the call once.
        Every page takes exactly the path :meth:`map_pages` would take (same checks, same
        PTEs, same table allocations); only the calling overhead is saved.
        """
        mapped = 0
        pbits = self.prot_to_pte(prot) if prot & (IOMMU_READ | IOMMU_WRITE) else None
        fast = (
            pbits is not None and pgsize == self.granule and bool(prot & (IOMMU_READ | IOMMU_WRITE))
        )
        shift, gmask, oas = self._wc_shift, self._gmask, self.cfg.oas
        pg_shift, ppt_mask = self.pg_shift, self._ppt_mask
        page_bits = (pbits or 0) | ARM_LPAE_PTE_TYPE_PAGE
        sw_sync = self._sw_sync
        wc_key, tbl = self._wc_key, self._wc_tbl  # the cached leaf table (see map_pages)
        for pa in paddrs:
            if fast and iova >> shift == wc_key and not (iova | pa) & gmask and not pa >> oas:
                idx = (iova >> pg_shift) & ppt_mask
                if idx not in tbl:
                    tbl[idx] = page_bits | pa
                    if sw_sync:
                        self.pte_syncs += 1
                    mapped += pgsize
                    iova += pgsize
                    continue
            ret, m = self.map_pages(iova, pa, pgsize, 1, prot, gfp)
            if ret:
                return ret, mapped
            wc_key, tbl = self._wc_key, self._wc_tbl  # the slow path may move the cache
            mapped += m
            iova += pgsize
        return 0, mapped

    def _map(
        self, iova: int, paddr: int, size: int, pgcount: int, prot: int, leaf_lvl: int, gfp: str
    ) -> tuple[int, int]:
        """Models __arm_lpae_map(): walk down, allocating tables, to the leaf level."""
        tbl = self._pgd
        lvl = self.start_level
        shift = self._shift
        mask = self._mask
        tables = self._tables
        while lvl != leaf_lvl:
            if lvl >= ARM_LPAE_MAX_LEVELS - 1:
                self._warn("__arm_lpae_map: WARN_ON(lvl >= ARM_LPAE_MAX_LEVELS - 1)")
                return -errno.EINVAL, 0
            idx = (iova >> shift[lvl]) & mask[lvl]
            pte = tbl.get(idx)
            if pte is None:
                new = self._alloc_table(self.granule, gfp)
                if new is None:
                    return -errno.ENOMEM, 0
                self._install_table(tbl, idx, new[0])
                tbl = new[1]
            elif pte & ARM_LPAE_PTE_TYPE_MASK == ARM_LPAE_PTE_TYPE_TABLE:
                if self._sw_sync and not pte & ARM_LPAE_PTE_SW_SYNC:
                    self.pte_syncs += 1
                tbl = tables[pte & ARM_LPAE_PTE_ADDR_MASK]
            else:
                if not self._nowarn:
                    self._warn(f"__arm_lpae_map: WARN_ON: iova {iova:#x} already mapped (-EEXIST)")
                return -errno.EEXIST, 0
            lvl += 1
        idx = (iova >> shift[lvl]) & mask[lvl]
        if lvl == ARM_LPAE_MAX_LEVELS - 1 and self._wc_ok and lvl != self.start_level:
            self._wc_key = iova >> self._wc_shift
            self._wc_tbl = tbl
        ppt = self.ptes_per_table
        num = ppt - (idx & (ppt - 1))  # arm_lpae_max_entries()
        if pgcount < num:
            num = pgcount
        ret = self._init_pte(iova, paddr, prot, lvl, num, tbl, idx)
        return ret, (num * size if ret == 0 else 0)

    def _init_pte(
        self, iova: int, paddr: int, prot: int, lvl: int, num: int, tbl: dict[int, int], idx: int
    ) -> int:
        """Models arm_lpae_init_pte() + __arm_lpae_init_pte(): check, then write leaves."""
        last = lvl == ARM_LPAE_MAX_LEVELS - 1
        leaf_type = ARM_LPAE_PTE_TYPE_PAGE if last else ARM_LPAE_PTE_TYPE_BLOCK
        sz = self._bsize[lvl]
        get = tbl.get
        for i in range(num):
            pte = get(idx + i)
            if pte is None:
                continue
            if pte & ARM_LPAE_PTE_TYPE_MASK == leaf_type:
                if not self._nowarn:
                    self._warn(
                        f"arm_lpae_init_pte: WARN_ON: iova {iova + i * sz:#x} already mapped"
                        " (-EEXIST)"
                    )
                return -errno.EEXIST
            # "We need to unmap and free the old table before overwriting it with a
            # block entry."
            if (
                not last
                and pte & ARM_LPAE_PTE_TYPE_MASK == ARM_LPAE_PTE_TYPE_TABLE
                and self._unmap(None, iova + i * sz, sz, 1, lvl, tbl) != sz
            ):
                self._warn("arm_lpae_init_pte: WARN_ON(1): could not free the old table")
                return -errno.EINVAL
        base = prot | leaf_type
        if num == 1:
            tbl[idx] = base | _paddr_to_iopte(paddr)
        elif not paddr & 0xFFF and paddr + num * sz <= 1 << 48:
            first = base | paddr
            tbl.update(zip(range(idx, idx + num), range(first, first + num * sz, sz), strict=True))
        else:
            for i in range(num):
                tbl[idx + i] = base | _paddr_to_iopte(paddr + i * sz)
        if self._sw_sync and num:
            self.pte_syncs += 1
        return 0

    def map(self, iova: int, paddr: int, size: int, prot: int, gfp: str = GFP_ATOMIC) -> int:
        """Models arm_lpae_map() (the pre-6.x ``ops->map``): map_pages() with pgcount 1."""
        return self.map_pages(iova, paddr, size, 1, prot, gfp)[0]

    # ----------------------------------------------------------------- unmap --
    def unmap_pages(
        self, iova: int, pgsize: int, pgcount: int, gather: IommuIotlbGather | None = None
    ) -> int:
        """Models arm_lpae_unmap_pages() in drivers/iommu/io-pgtable-arm.c.

        Returns the bytes unmapped (0 when nothing is mapped there, with the kernel's
        WARN).  Unmapping at a level where a table sits frees that table and everything
        below it (tlb_flush_walk); leaf removals go to tlb_add_page unless the gather is
        queued.  Unmapping part of a larger block splits it into the next level (6.1,
        arm_lpae_split_blk_unmap()) or is refused with WARN_ONCE (latest).  Stops at the
        end of the table, like the kernel; the caller loops.
        """
        if (
            pgcount == 1
            and iova >> self._wc_shift == self._wc_key
            and pgsize == self.granule
            and not iova & self._gmask
        ):
            # Fast path: one page out of the cached leaf table.
            pte = self._wc_tbl.pop((iova >> self.pg_shift) & self._ppt_mask, None)
            if pte is not None:
                if self._sw_sync:
                    self.pte_syncs += 1
                tlb = self.cfg.tlb
                if (
                    tlb is not None
                    and tlb.tlb_add_page is not None
                    and not (gather is not None and gather.queued)
                ):
                    tlb.tlb_add_page(gather, iova, pgsize, self.cookie)
                return pgsize
        lvl = self._size_to_level.get(pgsize)
        if lvl is None and (not pgsize or (pgsize & self.cfg.pgsize_bitmap) != pgsize):
            self._warn(f"arm_lpae_unmap_pages: WARN_ON(bad pgsize {pgsize:#x})")
            return 0
        if not pgcount:
            self._warn("arm_lpae_unmap_pages: WARN_ON(!pgcount)")
            return 0
        if self._iova_out_of_range(iova):
            self._warn(f"arm_lpae_unmap_pages: WARN_ON(iaext): iova {iova:#x}")
            return 0
        if self.check_alignment and iova & (pgsize - 1):
            self._warn(f"unaligned: iova {iova:#x} size {pgsize:#x} min_pagesz {pgsize:#x}")
            return 0
        return self._unmap(gather, iova, pgsize, pgcount, self.start_level, self._pgd)

    def _unmap(
        self,
        gather: IommuIotlbGather | None,
        iova: int,
        size: int,
        pgcount: int,
        lvl: int,
        tbl: dict[int, int],
    ) -> int:
        """Models __arm_lpae_unmap()."""
        shift = self._shift
        mask = self._mask
        while True:
            if lvl == ARM_LPAE_MAX_LEVELS:
                self._warn("__arm_lpae_unmap: WARN_ON(lvl == ARM_LPAE_MAX_LEVELS)")
                return 0
            idx = (iova >> shift[lvl]) & mask[lvl]
            pte = tbl.get(idx)
            if pte is None:
                if not self._nowarn:
                    self._warn(f"__arm_lpae_unmap: WARN_ON(!pte): iova {iova:#x} not mapped")
                return 0
            last = lvl == ARM_LPAE_MAX_LEVELS - 1
            if size == self._bsize[lvl]:
                ppt = self.ptes_per_table
                num = ppt - (idx & (ppt - 1))
                if pgcount < num:
                    num = pgcount
                return self._clear_entries(gather, iova, size, lvl, tbl, idx, num, last)
            if pte & ARM_LPAE_PTE_TYPE_MASK == (
                ARM_LPAE_PTE_TYPE_PAGE if last else ARM_LPAE_PTE_TYPE_BLOCK
            ):
                if self.behaviour.split_on_partial_unmap:
                    return self._split_blk_unmap(
                        gather, iova, size, pte, lvl + 1, tbl, idx, pgcount
                    )
                self._warn_once("Unmap of a partial large IOPTE is not allowed")
                return 0
            tbl = self._tables[pte & ARM_LPAE_PTE_ADDR_MASK]
            lvl += 1

    def _clear_entries(
        self,
        gather: IommuIotlbGather | None,
        iova: int,
        size: int,
        lvl: int,
        tbl: dict[int, int],
        idx: int,
        num: int,
        last: bool,
    ) -> int:
        """The ``size == ARM_LPAE_BLOCK_SIZE(lvl)`` arm of __arm_lpae_unmap()."""
        tlb = self.cfg.tlb
        queued = gather is not None and gather.queued
        add_page = None if tlb is None or queued else tlb.tlb_add_page
        pop = tbl.pop
        i = 0
        while i < num:
            pte = pop(idx + i, None)
            if pte is None:
                if not self._nowarn:
                    self._warn(f"__arm_lpae_unmap: WARN_ON(!pte): iova {iova + i * size:#x}")
                break
            if not last and pte & ARM_LPAE_PTE_TYPE_MASK == ARM_LPAE_PTE_TYPE_TABLE:
                # "Also flush any partial walks"
                if tlb is not None and tlb.tlb_flush_walk is not None:
                    tlb.tlb_flush_walk(iova + i * size, size, self.granule, self.cookie)
                self._free_pgtable(lvl + 1, pte & ARM_LPAE_PTE_ADDR_MASK)
            elif add_page is not None:
                add_page(gather, iova + i * size, size, self.cookie)
            i += 1
        if self._sw_sync and i:
            self.pte_syncs += 1
        return i * size

    def _split_blk_unmap(
        self,
        gather: IommuIotlbGather | None,
        iova: int,
        size: int,
        blk_pte: int,
        lvl: int,
        parent: dict[int, int],
        parent_idx: int,
        pgcount: int,
    ) -> int:
        """Models arm_lpae_split_blk_unmap() (6.1): replace a block by a next-level table
        mapping the same range minus the part being unmapped."""
        if lvl == ARM_LPAE_MAX_LEVELS:
            self._warn("arm_lpae_split_blk_unmap: WARN_ON(lvl == ARM_LPAE_MAX_LEVELS)")
            return 0
        new = self._alloc_table(self.granule, GFP_ATOMIC)
        if new is None:
            return 0
        tpa, tablep = new
        split_sz = self._bsize[lvl]
        ppt = self.ptes_per_table
        start = end = -1
        num = 0
        if size == split_sz:
            start = (iova >> self._shift[lvl]) & self._mask[lvl]
            num = min(pgcount, ppt - (start & (ppt - 1)))
            end = start + num
        blk_paddr = _iopte_to_paddr(blk_pte, self.granule)
        last = lvl == ARM_LPAE_MAX_LEVELS - 1
        base = (blk_pte & ARM_LPAE_PTE_ATTR_MASK) | (
            ARM_LPAE_PTE_TYPE_PAGE if last else ARM_LPAE_PTE_TYPE_BLOCK
        )
        for i in range(ppt):
            if start <= i < end:
                continue
            tablep[i] = base | _paddr_to_iopte(blk_paddr + i * split_sz)
        if self._sw_sync:
            self.pte_syncs += 1
        self._install_table(parent, parent_idx, tpa)
        if start >= 0:
            tlb = self.cfg.tlb
            if tlb is not None and tlb.tlb_add_page is not None:
                for i in range(num):
                    tlb.tlb_add_page(gather, iova + i * size, size, self.cookie)
            return num * size
        return self._unmap(gather, iova, size, pgcount, lvl, tablep)

    def unmap(self, iova: int, size: int, gather: IommuIotlbGather | None = None) -> int:
        """Models arm_lpae_unmap(): unmap_pages() with pgcount 1."""
        return self.unmap_pages(iova, size, 1, gather)

    # ----------------------------------------------------------------- lookup --
    def iova_to_phys(self, iova: int) -> int:
        """Models arm_lpae_iova_to_phys(): the output address, or 0 when not mapped.

        Like the kernel, bits of iova above ias are masked off by the index computation,
        not checked.
        """
        tbl = self._pgd
        lvl = self.start_level
        shift = self._shift
        mask = self._mask
        while lvl < ARM_LPAE_MAX_LEVELS:
            pte = tbl.get((iova >> shift[lvl]) & mask[lvl])
            if pte is None:
                return 0
            typ = pte & ARM_LPAE_PTE_TYPE_MASK
            if lvl == ARM_LPAE_MAX_LEVELS - 1:
                if typ != ARM_LPAE_PTE_TYPE_PAGE:
                    return 0
            elif typ != ARM_LPAE_PTE_TYPE_TABLE:
                return _iopte_to_paddr(pte, self.granule) | (iova & (self._bsize[lvl] - 1))
            else:
                tbl = self._tables[pte & ARM_LPAE_PTE_ADDR_MASK]
                lvl += 1
                continue
            return _iopte_to_paddr(pte, self.granule) | (iova & (self._bsize[lvl] - 1))
        return 0

    def pte_at(self, iova: int) -> tuple[int, int]:
        """The descriptor translating ``iova``: ``(level, pte)`` of the leaf, or
        ``(level, 0)`` at the level where the walk found an invalid entry."""
        tbl = self._pgd
        lvl = self.start_level
        while True:
            pte = tbl.get((iova >> self._shift[lvl]) & self._mask[lvl], 0)
            if (
                not pte
                or lvl == ARM_LPAE_MAX_LEVELS - 1
                or pte & ARM_LPAE_PTE_TYPE_MASK != ARM_LPAE_PTE_TYPE_TABLE
            ):
                return lvl, pte
            tbl = self._tables[pte & ARM_LPAE_PTE_ADDR_MASK]
            lvl += 1

    def decode(self, pte: int, level: int) -> ArmLpaePte:
        """:func:`decode_pte` with this table's format and granule."""
        return decode_pte(pte, level, self.fmt, self.granule)

    def leaves(self) -> Iterator[tuple[int, int, int, int]]:
        """Every live leaf as ``(iova, size, level, pte)``, in iova order (a debug dump;
        iova is the offset in the TTBR0 space, upper TTBR1 bits not added)."""
        yield from self._walk_leaves(self._pgd, self.start_level, 0)

    def _walk_leaves(
        self, tbl: dict[int, int], lvl: int, base: int
    ) -> Iterator[tuple[int, int, int, int]]:
        shift = self._shift[lvl]
        for idx in sorted(tbl):
            pte = tbl[idx]
            va = base | (idx << shift)
            if lvl < ARM_LPAE_MAX_LEVELS - 1 and pte & 3 == ARM_LPAE_PTE_TYPE_TABLE:
                child = self._tables[pte & ARM_LPAE_PTE_ADDR_MASK]
                yield from self._walk_leaves(child, lvl + 1, va)
            else:
                yield va, self._bsize[lvl], lvl, pte

    # ----------------------------------------------------------------- state --
    @property
    def table_pages(self) -> int:
        """Live page-table allocations (the PGD counts as one)."""
        return self.tables_allocated - self.tables_freed

    @property
    def pgd_pa(self) -> int:
        """Physical address of the PGD (what TTBR0 / VTTBR points at)."""
        return self._pgd_pa

    def free(self) -> None:
        """Models arm_lpae_free_pgtable(): free the PGD and every table below it."""
        if self._freed:
            return
        self._freed = True
        self._free_pgtable(self.start_level, _paddr_to_iopte(self._pgd_pa))

    def __repr__(self) -> str:
        return (
            f"IoPgtableArm({self.fmt.name}, granule={self.granule:#x}, ias={self.cfg.ias},"
            f" oas={self.cfg.oas}, levels={self.levels}, start_level={self.start_level},"
            f" pgd_size={self.pgd_size:#x}, tables={self.table_pages})"
        )


def alloc_io_pgtable_ops(
    fmt: IoPgtableFmt,
    cfg: IoPgtableCfg,
    cookie: Any = None,
    *,
    behaviour: LpaeBehaviour = LINUX_6_1,
    page_size: int = SZ_4K,
    check_alignment: bool = True,
) -> IoPgtableArm | None:
    """Models alloc_io_pgtable_ops() in drivers/iommu/io-pgtable.c: the ops, or None
    when the format rejects the configuration."""
    try:
        return IoPgtableArm(
            fmt,
            cfg,
            cookie,
            behaviour=behaviour,
            page_size=page_size,
            check_alignment=check_alignment,
        )
    except KernelError:
        return None


def free_io_pgtable_ops(ops: IoPgtableArm | None) -> None:
    """Models free_io_pgtable_ops(): tlb_flush_all, then free every table."""
    if ops is None:
        return
    tlb = ops.cfg.tlb
    if tlb is not None and tlb.tlb_flush_all is not None:
        tlb.tlb_flush_all(ops.cookie)
    ops.free()
