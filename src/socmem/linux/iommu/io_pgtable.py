"""Generic io-pgtable definitions: formats, quirks, prot flags, cfg and flush ops.

Models ``include/linux/io-pgtable.h``, the ``IOMMU_*`` prot flags of
``include/linux/iommu.h`` and the format dispatch of ``drivers/iommu/io-pgtable.c``
(``alloc_io_pgtable_ops`` / ``free_io_pgtable_ops``).  The ARM LPAE formats themselves
live in :mod:`socmem.linux.iommu.io_pgtable_arm`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# --- include/linux/iommu.h: prot flags passed to iommu_map() / ops->map_pages() -------
IOMMU_READ = 1 << 0
IOMMU_WRITE = 1 << 1
IOMMU_CACHE = 1 << 2  # DMA cache coherency
IOMMU_NOEXEC = 1 << 3
IOMMU_MMIO = 1 << 4  # e.g. things like MSI doorbells
IOMMU_PRIV = 1 << 5  # privileged-only access

# --- gfp flags: only carried through to the table allocator, never interpreted -------
GFP_KERNEL = "GFP_KERNEL"
GFP_ATOMIC = "GFP_ATOMIC"

# --- include/linux/io-pgtable.h: struct io_pgtable_cfg.quirks -------------------------
IO_PGTABLE_QUIRK_ARM_NS = 1 << 0
IO_PGTABLE_QUIRK_NO_PERMS = 1 << 1
IO_PGTABLE_QUIRK_ARM_MTK_EXT = 1 << 3
IO_PGTABLE_QUIRK_ARM_MTK_TTBR_EXT = 1 << 4
IO_PGTABLE_QUIRK_ARM_TTBR1 = 1 << 5
IO_PGTABLE_QUIRK_ARM_OUTER_WBWA = 1 << 6
IO_PGTABLE_QUIRK_ARM_HD = 1 << 7
IO_PGTABLE_QUIRK_ARM_S2FWB = 1 << 8
IO_PGTABLE_QUIRK_NO_WARN = 1 << 9

SZ_4K = 1 << 12
SZ_16K = 1 << 14
SZ_64K = 1 << 16
SZ_2M = 1 << 21
SZ_32M = 1 << 25
SZ_512M = 1 << 29
SZ_1G = 1 << 30
SZ_2G = 1 << 31


class IoPgtableFmt(enum.IntEnum):
    """Models ``enum io_pgtable_fmt`` in include/linux/io-pgtable.h (ARM LPAE subset)."""

    ARM_32_LPAE_S1 = 0
    ARM_32_LPAE_S2 = 1
    ARM_64_LPAE_S1 = 2
    ARM_64_LPAE_S2 = 3
    ARM_V7S = 4
    ARM_MALI_LPAE = 5


ARM_64_LPAE_S1 = IoPgtableFmt.ARM_64_LPAE_S1
ARM_64_LPAE_S2 = IoPgtableFmt.ARM_64_LPAE_S2


@dataclass
class IommuIotlbGather:
    """Models ``struct iommu_iotlb_gather`` (include/linux/iommu.h).

    ``queued`` is set by dma-iommu in lazy (flush-queue) mode; io-pgtable-arm then skips
    ``tlb_add_page`` for leaf removals (``iommu_iotlb_gather_queued()``).
    """

    start: int = (1 << 64) - 1
    end: int = 0
    pgsize: int = 0
    queued: bool = False

    def add_range(self, iova: int, size: int) -> None:
        """Models ``iommu_iotlb_gather_add_range()``: grow [start, end] to cover iova."""
        end = iova + size - 1
        self.start = min(self.start, iova)
        self.end = max(self.end, end)


def iommu_iotlb_gather_queued(gather: IommuIotlbGather | None) -> bool:
    """Models ``iommu_iotlb_gather_queued()`` in include/linux/iommu.h."""
    return gather is not None and gather.queued


@dataclass
class IommuFlushOps:
    """Models ``struct iommu_flush_ops`` (include/linux/io-pgtable.h).

    Every callback is optional; the domain layer plugs counters or an SMMU TLB model in.
    Signatures follow the kernel's, cookie last:

    * ``tlb_flush_all(cookie)``
    * ``tlb_flush_walk(iova, size, granule, cookie)`` (a table was removed)
    * ``tlb_add_page(gather, iova, granule, cookie)`` (a leaf was removed)
    """

    tlb_flush_all: Callable[[Any], None] | None = None
    tlb_flush_walk: Callable[[int, int, int, Any], None] | None = None
    tlb_add_page: Callable[[IommuIotlbGather | None, int, int, Any], None] | None = None


@dataclass
class ArmLpaeS1Cfg:
    """Models ``cfg->arm_lpae_s1_cfg``: TTBR, TCR fields and MAIR written by alloc."""

    ttbr: int = 0
    mair: int = 0
    tsz: int = 0
    irgn: int = 0
    orgn: int = 0
    sh: int = 0
    tg: int = 0
    ips: int = 0


@dataclass
class ArmLpaeS2Cfg:
    """Models ``cfg->arm_lpae_s2_cfg``: VTTBR and VTCR fields written by alloc."""

    vttbr: int = 0
    tsz: int = 0
    sl: int = 0
    irgn: int = 0
    orgn: int = 0
    sh: int = 0
    tg: int = 0
    ps: int = 0


@dataclass
class IoPgtableCfg:
    """Models ``struct io_pgtable_cfg`` (include/linux/io-pgtable.h).

    Inputs: ``quirks``, ``pgsize_bitmap``, ``ias``, ``oas``, ``coherent_walk``, ``tlb``,
    ``iommu_dev`` (a name, for messages) and the optional custom table allocator
    ``alloc(cookie, size, gfp) -> phys | None`` / ``free(cookie, phys, size)`` (the
    kernel's ``cfg->alloc``/``cfg->free``).  Like the kernel, ``alloc_io_pgtable_ops()``
    *modifies* ``pgsize_bitmap``, ``ias`` and ``oas`` (arm_lpae_restrict_pgsizes) and
    fills the output registers in ``arm_lpae_s1_cfg`` / ``arm_lpae_s2_cfg``.
    """

    pgsize_bitmap: int = 0
    ias: int = 48
    oas: int = 48
    quirks: int = 0
    coherent_walk: bool = True
    tlb: IommuFlushOps | None = None
    iommu_dev: str = ""
    alloc: Callable[[Any, int, str], int | None] | None = None
    free: Callable[[Any, int, int], None] | None = None
    arm_lpae_s1_cfg: ArmLpaeS1Cfg = field(default_factory=ArmLpaeS1Cfg)
    arm_lpae_s2_cfg: ArmLpaeS2Cfg = field(default_factory=ArmLpaeS2Cfg)
