"""The IOMMU core: domains, groups, attach, iommu_map/iommu_unmap, IOTLB gather and sync.

Models drivers/iommu/iommu.c of Linux 6.1 (``iommu_map``/``__iommu_map`` with
``iommu_pgsize()``, ``iommu_unmap``/``__iommu_unmap`` with an ``iommu_iotlb_gather``,
``iommu_map_sg`` coalescing physically contiguous entries, ``iommu_iotlb_sync``,
``iommu_flush_iotlb_all``, default domains and groups, ``iommu_attach_device``) and
include/linux/iommu.h (domain types, ``iommu_iotlb_gather_add_page``), plus the
driver-side ``iommu_ops`` / ``iommu_domain_ops`` of the two ARM SMMU drivers that program
the hardware models of :mod:`socmem.hw.smmu`:

* :class:`ArmSmmuV3Driver` — drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c: device reset
  (CFGI_ALL, TLBI_NSNH_ALL), ASIDs, ``arm_smmu_domain_finalise`` (stage-1 io-pgtable,
  CD write with its two ``arm_smmu_sync_cd`` batches), ``arm_smmu_write_strtab_ent``
  (CFGI_STE + CMD_SYNC, twice for a translating STE, then PREFETCH_CONFIG),
  ``arm_smmu_tlb_inv_range_domain`` (CMD_TLBI_NH_VA per granule/leaf, or range
  invalidation with TG/TTL/NUM/SCALE under ARM_SMMU_FEAT_RANGE_INV, in batches of 64
  with one CMD_SYNC at submit), ``arm_smmu_tlb_inv_context`` (CMD_TLBI_NH_ASID + SYNC);
* :class:`ArmSmmuDriver` — drivers/iommu/arm/arm-smmu/arm-smmu.c: SMR/S2CR allocation,
  context banks (ASID = cbndx), the S1 TLB ops (TLBIVAL per leaf granule, TLBIVA per
  granule + TLBSYNC for walks, TLBIASID + TLBSYNC for flush-all) and TLBSYNC on
  ``iotlb_sync``.

Return conventions are the kernel's: 0 / -errno / sizes.  One documented optimisation:
``__iommu_unmap`` on SMMUv3 hands the io-pgtable a *queued* gather for granule-sized
unmaps and adds the unmapped run to the gather in one step afterwards; this is exactly
the union the per-page ``tlb_add_page`` calls would have built (same pgsize, contiguous),
so the command stream is identical (pinned by a test), at a fraction of the Python cost.
Set ``domain.batch_gather = False`` for the literal per-page path.
"""

from __future__ import annotations

import errno
import functools
import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socmem.hw.smmu.v2 import S2CR_TYPE_BYPASS, S2CR_TYPE_FAULT, S2CR_TYPE_TRANS, SmmuV2, Smr
from socmem.hw.smmu.v3 import (
    CMDQ_BATCH_ENTRIES,
    CMDQ_OP_CFGI_ALL,
    CMDQ_OP_CFGI_CD,
    CMDQ_OP_CFGI_STE,
    CMDQ_OP_PREFETCH_CFG,
    CMDQ_OP_TLBI_EL2_ALL,
    CMDQ_OP_TLBI_NH_ASID,
    CMDQ_OP_TLBI_NH_VA,
    CMDQ_OP_TLBI_NSNH_ALL,
    CMDQ_TLBI_RANGE_NUM_MAX,
    STRTAB_STE_0_CFG_ABORT,
    STRTAB_STE_0_CFG_BYPASS,
    STRTAB_STE_0_CFG_S1_TRANS,
    CmdqEnt,
    ContextDescriptor,
    SmmuV3,
    StreamTableEntry,
)
from socmem.linux.iommu.io_pgtable import (
    ARM_64_LPAE_S1,
    GFP_ATOMIC,
    GFP_KERNEL,
    IommuFlushOps,
    IommuIotlbGather,
    IoPgtableCfg,
)
from socmem.linux.iommu.io_pgtable_arm import (
    IoPgtableArm,
    alloc_io_pgtable_ops,
    free_io_pgtable_ops,
)

if TYPE_CHECKING:
    from socmem.linux.dma.scatterlist import ScatterlistEntry
    from socmem.soc.schema import Master

__all__ = [
    "IOMMU_DOMAIN_BLOCKED",
    "IOMMU_DOMAIN_DMA",
    "IOMMU_DOMAIN_DMA_FQ",
    "IOMMU_DOMAIN_IDENTITY",
    "IOMMU_DOMAIN_UNMANAGED",
    "ArmSmmuDriver",
    "ArmSmmuV3Driver",
    "IommuDevice",
    "IommuDomain",
    "IommuDomainGeometry",
    "IommuGroup",
    "iommu_attach_device",
    "iommu_detach_device",
    "iommu_domain_alloc",
    "iommu_flush_iotlb_all",
    "iommu_iotlb_gather_add_page",
    "iommu_iotlb_sync",
    "iommu_iova_to_phys",
    "iommu_map",
    "iommu_map_sg",
    "iommu_pgsize",
    "iommu_probe_device",
    "iommu_unmap",
    "iommu_unmap_fast",
]

# include/linux/iommu.h (6.1)
__IOMMU_DOMAIN_PAGING = 1 << 0
__IOMMU_DOMAIN_DMA_API = 1 << 1
__IOMMU_DOMAIN_PT = 1 << 2
__IOMMU_DOMAIN_DMA_FQ = 1 << 3
IOMMU_DOMAIN_BLOCKED = 0
IOMMU_DOMAIN_IDENTITY = __IOMMU_DOMAIN_PT
IOMMU_DOMAIN_UNMANAGED = __IOMMU_DOMAIN_PAGING
IOMMU_DOMAIN_DMA = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API
IOMMU_DOMAIN_DMA_FQ = __IOMMU_DOMAIN_PAGING | __IOMMU_DOMAIN_DMA_API | __IOMMU_DOMAIN_DMA_FQ
_DOMAIN_PAGING = __IOMMU_DOMAIN_PAGING  # (names usable inside classes: no mangling)
_DOMAIN_DMA_API = __IOMMU_DOMAIN_DMA_API

DOMAIN_TYPE_NAMES = {
    IOMMU_DOMAIN_BLOCKED: "blocked",
    IOMMU_DOMAIN_IDENTITY: "identity",
    IOMMU_DOMAIN_UNMANAGED: "unmanaged",
    IOMMU_DOMAIN_DMA: "DMA",
    IOMMU_DOMAIN_DMA_FQ: "DMA-FQ",
}

VA_BITS = 48


def _ffs(x: int) -> int:
    return (x & -x).bit_length() - 1


def _fls(x: int) -> int:
    return x.bit_length() - 1


@dataclass
class IommuDomainGeometry:
    """``struct iommu_domain_geometry``: the IOVA aperture the domain can map."""

    aperture_start: int = 0
    aperture_end: int = 0
    force_aperture: bool = False


@dataclass(eq=False)
class IommuDomain:
    """``struct iommu_domain`` (include/linux/iommu.h) and the driver's wrapper of it
    (``struct arm_smmu_domain``): type, page sizes, aperture, the io-pgtable ops, the
    owning driver, the DMA cookie (set by dma-iommu) and the ASID / context bank."""

    type: int
    driver: ArmSmmuV3Driver | ArmSmmuDriver
    pgsize_bitmap: int = 0
    geometry: IommuDomainGeometry = field(default_factory=IommuDomainGeometry)
    ops: IoPgtableArm | None = None
    iova_cookie: Any = None
    asid: int = 0
    cbndx: int = -1
    devices: list[IommuDevice] = field(default_factory=list)
    finalised: bool = False
    batch_gather: bool = True
    id: int = 0

    @property
    def is_paging(self) -> bool:
        """``domain->type & __IOMMU_DOMAIN_PAGING``."""
        return bool(self.type & _DOMAIN_PAGING)

    @property
    def is_dma(self) -> bool:
        """``iommu_is_dma_domain()``: DMA or DMA-FQ."""
        return bool(self.type & _DOMAIN_DMA_API)

    @property
    def granule(self) -> int:
        """Smallest page size (``1 << __ffs(pgsize_bitmap)``)."""
        return self.pgsize_bitmap & -self.pgsize_bitmap

    def __repr__(self) -> str:
        return (
            f"IommuDomain({DOMAIN_TYPE_NAMES.get(self.type, self.type)}, id={self.id},"
            f" pgsize_bitmap={self.pgsize_bitmap:#x}, asid={self.asid})"
        )


@dataclass(eq=False)
class IommuGroup:
    """``struct iommu_group``: devices that cannot be isolated from each other, their
    default domain and the domain they are attached to now."""

    id: int
    name: str | None = None
    devices: list[IommuDevice] = field(default_factory=list)
    default_domain: IommuDomain | None = None
    domain: IommuDomain | None = None


@dataclass(eq=False)
class IommuDevice:
    """A ``struct device`` behind an IOMMU, with what the DMA layer reads of it.

    ``sids`` are the fwspec IDs as ``(stream id, SMR mask)``; ``bus_dma_limit`` 0 means
    none (``min_not_zero``); ``is_pci`` selects dma-iommu's 32-bit-first policy.
    """

    name: str
    sids: list[tuple[int, int]]
    driver: ArmSmmuV3Driver | ArmSmmuDriver | None = None
    group: IommuGroup | None = None
    dma_mask: int = (1 << 32) - 1
    coherent_dma_mask: int = (1 << 32) - 1
    bus_dma_limit: int = 0
    dma_coherent: bool = False
    is_pci: bool = False
    untrusted: bool = False
    max_segment_size: int = 65536
    seg_boundary_mask: int = 0xFFFF_FFFF
    group_name: str | None = None

    @classmethod
    def from_master(cls, master: Master, iommu_name: str | None = None) -> IommuDevice:
        """A device from the SoC's ``Master``: SIDs on ``iommu_name`` (default: the first
        IOMMU it names), DMA mask, bus limit, coherency, segment limits, group."""
        if iommu_name is None and master.iommus:
            iommu_name = master.iommus[0].iommu
        sids = [(s.id or 0, s.mask) for s in master.iommus if s.iommu == iommu_name]
        mask = (1 << master.dma_mask_bits) - 1
        return cls(
            name=master.name,
            sids=sids,
            dma_mask=mask,
            coherent_dma_mask=mask,
            bus_dma_limit=master.bus_dma_limit or 0,
            dma_coherent=master.dma_coherent,
            max_segment_size=master.max_segment_size,
            seg_boundary_mask=master.segment_boundary_mask,
            group_name=master.iommu_group,
        )

    def __repr__(self) -> str:
        return f"IommuDevice({self.name}, sids={[hex(s) for s, _ in self.sids]})"


# ============================================================ gather helpers ==
def iommu_iotlb_gather_is_disjoint(gather: IommuIotlbGather, iova: int, size: int) -> bool:
    """``iommu_iotlb_gather_is_disjoint()`` (include/linux/iommu.h)."""
    end = iova + size - 1
    return gather.end != 0 and (end + 1 < gather.start or iova > gather.end + 1)


def iommu_iotlb_gather_init(gather: IommuIotlbGather) -> None:
    """``iommu_iotlb_gather_init()``: empty range, pgsize 0 (``queued`` kept by callers)."""
    gather.start = (1 << 64) - 1
    gather.end = 0
    gather.pgsize = 0


def iommu_iotlb_gather_add_page(
    domain: IommuDomain, gather: IommuIotlbGather, iova: int, size: int
) -> None:
    """``iommu_iotlb_gather_add_page()``: sync first when the page is disjoint from the
    gathered range or of another size, then grow the range."""
    if (gather.pgsize and gather.pgsize != size) or iommu_iotlb_gather_is_disjoint(
        gather, iova, size
    ):
        iommu_iotlb_sync(domain, gather)
    gather.pgsize = size
    gather.add_range(iova, size)


def iommu_iotlb_sync(domain: IommuDomain, gather: IommuIotlbGather) -> None:
    """``iommu_iotlb_sync()``: the driver's ``iotlb_sync``, then re-init the gather."""
    domain.driver.iotlb_sync(domain, gather)
    iommu_iotlb_gather_init(gather)


def iommu_flush_iotlb_all(domain: IommuDomain) -> None:
    """``iommu_flush_iotlb_all()``: the driver's ``flush_iotlb_all``."""
    domain.driver.flush_iotlb_all(domain)


# ================================================================ map/unmap ==
def iommu_pgsize(domain: IommuDomain, iova: int, paddr: int, size: int) -> tuple[int, int]:
    """``iommu_pgsize()`` (6.1): the largest supported page size that fits the alignment
    of ``iova | paddr`` and ``size``, and how many of them to map (``count``) before a
    bigger page size becomes usable.  Returns ``(pgsize, count)``."""
    bitmap = domain.pgsize_bitmap
    addr_merge = paddr | iova
    pgsizes = bitmap & ((2 << _fls(size)) - 1)
    if addr_merge:
        pgsizes &= (2 << _ffs(addr_merge)) - 1
    if not pgsizes:
        raise AssertionError("BUG_ON(!pgsizes) in iommu_pgsize()")
    pgsize_idx = _fls(pgsizes)
    pgsize = 1 << pgsize_idx
    pgsizes = bitmap & ~((2 << pgsize_idx) - 1)
    if pgsizes:
        pgsize_next = pgsizes & -pgsizes
        if not (iova ^ paddr) & (pgsize_next - 1):
            offset = pgsize_next - (addr_merge & (pgsize_next - 1))
            if offset + pgsize_next <= size:
                size = offset
    return pgsize, size >> pgsize_idx


def __iommu_map(domain: IommuDomain, iova: int, paddr: int, size: int, prot: int, gfp: str) -> int:
    """``__iommu_map()`` (6.1): checks, then ``map_pages`` in a loop; unrolls on error."""
    ops = domain.ops
    if ops is None or not domain.pgsize_bitmap:
        return -errno.ENODEV
    if not domain.is_paging:
        return -errno.EINVAL
    min_pagesz = domain.pgsize_bitmap & -domain.pgsize_bitmap
    if (iova | paddr | size) & (min_pagesz - 1):
        domain.driver.log.append(
            f"iommu: unaligned: iova {iova:#x} pa {paddr:#018x} size {size:#x}"
            f" min_pagesz {min_pagesz:#x}"
        )
        return -errno.EINVAL
    orig_iova, orig_size = iova, size
    ret = 0
    map_pages = ops.map_pages
    while size:
        pgsize, count = iommu_pgsize(domain, iova, paddr, size)
        ret, mapped = map_pages(iova, paddr, pgsize, count, prot, gfp)
        size -= mapped
        if ret:
            break
        iova += mapped
        paddr += mapped
    if ret:
        iommu_unmap(domain, orig_iova, orig_size - size)
    return ret


def iommu_map(
    domain: IommuDomain, iova: int, paddr: int, size: int, prot: int, gfp: str = GFP_KERNEL
) -> int:
    """``iommu_map()`` / ``iommu_map_atomic()``: 0 or -errno (-EINVAL unaligned or not a
    paging domain, -ENODEV no ops, the io-pgtable's errors)."""
    return __iommu_map(domain, iova, paddr, size, prot, gfp)


def __iommu_unmap(domain: IommuDomain, iova: int, size: int, gather: IommuIotlbGather) -> int:
    """``__iommu_unmap()`` (6.1): ``unmap_pages`` with ``iommu_pgsize(iova, iova)``
    chunks until ``size`` is done or nothing more is mapped.  Returns bytes unmapped."""
    ops = domain.ops
    if ops is None or not domain.pgsize_bitmap or not domain.is_paging:
        return 0
    min_pagesz = domain.pgsize_bitmap & -domain.pgsize_bitmap
    if (iova | size) & (min_pagesz - 1):
        domain.driver.log.append(
            f"iommu: unaligned: iova {iova:#x} size {size:#x} min_pagesz {min_pagesz:#x}"
        )
        return 0
    unmapped = 0
    batch = domain.batch_gather and not gather.queued and domain.driver.tlb_add_pages is not None
    unmap_pages = ops.unmap_pages
    while unmapped < size:
        pgsize, count = iommu_pgsize(domain, iova, iova, size - unmapped)
        if batch and pgsize == min_pagesz:
            gather.queued = True
            try:
                page = unmap_pages(iova, pgsize, count, gather)
            finally:
                gather.queued = False
            if page:
                domain.driver.tlb_add_pages(domain, gather, iova, pgsize, page)
        else:
            page = unmap_pages(iova, pgsize, count, gather)
        if not page:
            break
        iova += page
        unmapped += page
    return unmapped


def iommu_unmap_fast(domain: IommuDomain, iova: int, size: int, gather: IommuIotlbGather) -> int:
    """``iommu_unmap_fast()``: unmap gathering invalidations; the caller syncs."""
    return __iommu_unmap(domain, iova, size, gather)


def iommu_unmap(domain: IommuDomain, iova: int, size: int) -> int:
    """``iommu_unmap()``: ``__iommu_unmap`` then ``iommu_iotlb_sync``.  Bytes unmapped."""
    gather = IommuIotlbGather()
    ret = __iommu_unmap(domain, iova, size, gather)
    iommu_iotlb_sync(domain, gather)
    return ret


def _scattered_granules(sg: Sequence[ScatterlistEntry], nents: int, gran: int) -> list[int] | None:
    """The physical addresses of an sg list of whole, aligned, pairwise discontiguous
    granules (scattered pages), for which ``__iommu_map_sg`` does one
    ``map_pages(granule, 1)`` per entry; None for any other list."""
    entries = sg[:nents]
    if {e.length for e in entries} != {gran} or None in {e.page for e in entries}:
        return None
    phys = [(e.page << e.page_shift) + e.offset for e in entries]  # type: ignore[operator]
    # aligned (the OR of all addresses has no low bits) and no neighbour contiguous (no
    # difference of successive addresses equals a granule); C-level passes, no Python loop
    if functools.reduce(operator.or_, phys) & (gran - 1):
        return None
    if gran in set(map(operator.sub, itertools.islice(phys, 1, None), phys)):
        return None
    return phys


def iommu_map_sg(
    domain: IommuDomain,
    iova: int,
    sg: Sequence[ScatterlistEntry],
    nents: int,
    prot: int,
    gfp: str = GFP_ATOMIC,
) -> int:
    """``__iommu_map_sg()`` (6.1): map the entries back to back at ``iova``, merging
    physically contiguous entries into one ``__iommu_map``.  Returns the bytes mapped
    or -errno (everything mapped so far is unmapped again)."""
    ops = domain.ops
    if ops is None:
        return -errno.ENODEV
    gran = domain.pgsize_bitmap & -domain.pgsize_bitmap
    gmask = gran - 1
    batch = getattr(ops, "map_pages_list", None) if domain.is_paging else None
    if batch is not None and nents > 1 and not iova & gmask:
        phys = _scattered_granules(sg, nents, gran)
        if phys is not None:  # what the loop below does entry by entry, in one batch
            ret, done = batch(iova, phys, gran, prot, gfp)
            if ret:
                iommu_unmap(domain, iova, done)
                return ret
            return done
    pages: list[int] = []  # pending discontiguous single granules, mapped in one batch
    pages_iova = 0
    mapped = 0
    length = 0
    start = 0
    ret = 0

    def flush() -> int:
        nonlocal mapped
        if not pages:
            return 0
        err, done = batch(pages_iova, pages, gran, prot, gfp)  # type: ignore[misc]
        mapped += done
        pages.clear()
        return err

    for i in range(nents):
        s = sg[i]
        assert s.page is not None  # entries being mapped always have a page (sg_set_page)
        s_phys = (s.page << s.page_shift) + s.offset  # sg_phys()
        if length and s_phys != start + length:
            if length == gran and batch is not None and not (start | iova + mapped) & gmask:
                # what __iommu_map picks for one granule: pgsize = granule, count 1
                if not pages:
                    pages_iova = iova + mapped + len(pages) * gran
                pages.append(start)
            else:
                ret = flush() or __iommu_map(domain, iova + mapped, start, length, prot, gfp)
                if ret:
                    break
                mapped += length
            length = 0
        if length:
            length += s.length
        else:
            length = s.length
            start = s_phys
    if not ret:
        ret = flush()
    if not ret and length:
        ret = __iommu_map(domain, iova + mapped, start, length, prot, gfp)
        if not ret:
            mapped += length
    if ret:
        iommu_unmap(domain, iova, mapped)
        return ret
    return mapped


def iommu_iova_to_phys(domain: IommuDomain, iova: int) -> int:
    """``iommu_iova_to_phys()``: identity returns iova; else the table's answer (0 = none)."""
    if domain.type == IOMMU_DOMAIN_IDENTITY:
        return iova
    if domain.type == IOMMU_DOMAIN_BLOCKED or domain.ops is None:
        return 0
    return domain.ops.iova_to_phys(iova)


# ======================================================== domains and groups ==
_domain_ids = itertools.count(1)
_group_ids = itertools.count(0)


def iommu_domain_alloc(driver: ArmSmmuV3Driver | ArmSmmuDriver, type: int) -> IommuDomain:
    """``__iommu_domain_alloc()``: the driver's ``domain_alloc`` (paging domains are
    finalised, i.e. get their page table, at first attach as in 6.1)."""
    return IommuDomain(type=type, driver=driver, id=next(_domain_ids))


def iommu_attach_device(domain: IommuDomain, dev: IommuDevice) -> int:
    """``iommu_attach_device()`` / ``__iommu_attach_device()``: program the device's
    stream(s) for ``domain``.  0 or -errno."""
    if dev.driver is None or domain.driver is not dev.driver:
        return -errno.EINVAL
    ret = dev.driver.attach_dev(domain, dev)
    if ret == 0:
        if dev.group is not None:
            dev.group.domain = domain
        if dev not in domain.devices:
            domain.devices.append(dev)
    return ret


def iommu_detach_device(domain: IommuDomain, dev: IommuDevice) -> None:
    """``iommu_detach_device()``: back to the group's default domain, or blocked (abort
    STE / fault S2CR) when there is none."""
    if dev in domain.devices:
        domain.devices.remove(dev)
    group = dev.group
    assert dev.driver is not None
    if (
        group is not None
        and group.default_domain is not None
        and group.default_domain is not domain
    ):
        iommu_attach_device(group.default_domain, dev)
    else:
        dev.driver.detach_dev(dev)
        if group is not None:
            group.domain = None


def iommu_probe_device(
    dev: IommuDevice,
    driver: ArmSmmuV3Driver | ArmSmmuDriver,
    groups: dict[str, IommuGroup] | None = None,
    default_type: int | None = None,
) -> int:
    """``iommu_probe_device()`` (6.1): ``probe_device`` (SIDs registered), the group
    (shared by ``iommu_group`` name from the SoC, else one per device as
    ``generic_device_group()``), the group's default domain (type from the driver's
    strict/lazy policy unless ``default_type``), attach, then
    ``iommu_create_device_direct_mappings()``'s ``iommu_flush_iotlb_all()`` for DMA
    domains.  0 or -errno."""
    dev.driver = driver
    ret = driver.probe_device(dev)
    if ret:
        return ret
    groups = groups if groups is not None else driver.groups
    key = dev.group_name or f"#dev:{dev.name}"
    group = groups.get(key)
    if group is None:
        group = IommuGroup(id=next(_group_ids), name=dev.group_name)
        groups[key] = group
        dtype = driver.default_domain_type if default_type is None else default_type
        group.default_domain = iommu_domain_alloc(driver, dtype)
    group.devices.append(dev)
    dev.group = group
    assert group.default_domain is not None
    ret = iommu_attach_device(group.default_domain, dev)
    if ret:
        return ret
    if group.default_domain.is_dma:
        iommu_flush_iotlb_all(group.default_domain)
    return 0


# ================================================================== drivers ==
class _DriverBase:
    """What both SMMU drivers share: groups, strict/lazy policy, a log."""

    default_domain_type: int
    tlb_add_pages: Any = None

    def __init__(self, lazy: bool, passthrough: bool) -> None:
        self.groups: dict[str, IommuGroup] = {}
        self.devices: dict[str, IommuDevice] = {}
        self.log: list[str] = []
        if passthrough:
            self.default_domain_type = IOMMU_DOMAIN_IDENTITY
        else:
            self.default_domain_type = IOMMU_DOMAIN_DMA_FQ if lazy else IOMMU_DOMAIN_DMA

    def _flush_ops(self) -> IommuFlushOps:
        return IommuFlushOps(
            tlb_flush_all=self._tlb_flush_all,
            tlb_flush_walk=self._tlb_flush_walk,
            tlb_add_page=self._tlb_add_page,
        )

    def _tlb_flush_all(self, cookie: Any) -> None:
        self.flush_iotlb_all(cookie)

    def _tlb_flush_walk(self, iova: int, size: int, granule: int, cookie: Any) -> None:
        raise NotImplementedError

    def _tlb_add_page(
        self, gather: IommuIotlbGather | None, iova: int, granule: int, cookie: Any
    ) -> None:
        raise NotImplementedError

    def flush_iotlb_all(self, domain: IommuDomain) -> None:
        """The driver's ``flush_iotlb_all``."""
        raise NotImplementedError

    def iotlb_sync(self, domain: IommuDomain, gather: IommuIotlbGather) -> None:
        """The driver's ``iotlb_sync``."""
        raise NotImplementedError

    def probe_device(self, dev: IommuDevice) -> int:
        """The driver's ``probe_device``."""
        raise NotImplementedError

    def attach_dev(self, domain: IommuDomain, dev: IommuDevice) -> int:
        """The driver's ``attach_dev``."""
        raise NotImplementedError

    def detach_dev(self, dev: IommuDevice) -> None:
        """Leave ``dev`` with no domain (abort / fault)."""
        raise NotImplementedError


class ArmSmmuV3Driver(_DriverBase):
    """The arm-smmu-v3.c driver bound to one :class:`~socmem.hw.smmu.v3.SmmuV3`.

    ``lazy`` picks DMA-FQ default domains (``iommu.strict=0``), ``passthrough`` identity.
    Creating the driver performs ``arm_smmu_device_reset()``'s invalidations.
    """

    def __init__(self, smmu: SmmuV3, *, lazy: bool = False, passthrough: bool = False) -> None:
        super().__init__(lazy, passthrough)
        self.smmu = smmu
        self._next_asid = 1  # arm_smmu_asid_xa: XA_LIMIT(1, (1 << asid_bits) - 1)
        self._free_asids: list[int] = []
        self.masters: dict[int, IommuDevice] = {}
        self.tlb_add_pages = self._tlb_add_pages
        # arm_smmu_device_reset(): "Invalidate any cached configuration" / "stale TLB"
        smmu.issue([CmdqEnt(CMDQ_OP_CFGI_ALL)], sync=True)
        if smmu.hyp:
            smmu.issue([CmdqEnt(CMDQ_OP_TLBI_EL2_ALL)], sync=True)
        smmu.issue([CmdqEnt(CMDQ_OP_TLBI_NSNH_ALL)], sync=True)

    # ------------------------------------------------------------ probe/attach --
    def probe_device(self, dev: IommuDevice) -> int:
        """``arm_smmu_probe_device()`` + ``arm_smmu_insert_master()``: SIDs must fit the
        stream table and not alias another master (-ERANGE / -ENODEV)."""
        for sid, _ in dev.sids:
            if sid >> self.smmu.sid_bits:
                return -errno.ERANGE
            other = self.masters.get(sid)
            if other is not None and other is not dev:
                self.log.append(
                    f"{dev.name}: Aliasing StreamID {sid:#x} (from {other.name}) unsupported,"
                    " expect DMA to be broken"
                )
                return -errno.ENODEV
        for sid, _ in dev.sids:
            self.masters[sid] = dev
            self.smmu.stream_names[sid] = dev.name
        self.devices[dev.name] = dev
        return 0

    def _alloc_asid(self) -> int:
        if self._free_asids:
            return self._free_asids.pop()
        asid = self._next_asid
        if asid >> self.smmu.asid_bits:
            return -errno.ENOSPC
        self._next_asid += 1
        return asid

    def _sync_cd(self, domain: IommuDomain, ssid: int) -> None:
        """``arm_smmu_sync_cd()``: CFGI_CD per SID of every attached master, one batch."""
        cmds = [
            CmdqEnt(CMDQ_OP_CFGI_CD, sid=sid, ssid=ssid, leaf=True)
            for d in domain.devices
            for sid, _ in d.sids
        ]
        self._batch_submit(cmds)

    def _batch_submit(self, cmds: list[CmdqEnt]) -> None:
        """``arm_smmu_cmdq_batch_add()`` x n + ``arm_smmu_cmdq_batch_submit()``: issue
        full batches of 64 without sync, the rest with one CMD_SYNC."""
        smmu = self.smmu
        while len(cmds) > CMDQ_BATCH_ENTRIES:
            smmu.issue(cmds[:CMDQ_BATCH_ENTRIES], sync=False)
            cmds = cmds[CMDQ_BATCH_ENTRIES:]
        smmu.issue(cmds, sync=True)

    def domain_finalise(self, domain: IommuDomain) -> int:
        """``arm_smmu_domain_finalise()`` for a stage-1 domain: ASID, io-pgtable
        (ias = min(48, VA_BITS), oas = SMMU IAS, the SMMU's page sizes), geometry, CD."""
        smmu = self.smmu
        asid = self._alloc_asid()
        if asid < 0:
            return asid
        cfg = IoPgtableCfg(
            pgsize_bitmap=smmu.pgsize_bitmap,
            ias=min(48, VA_BITS),
            oas=max(smmu.ias, smmu.oas),
            coherent_walk=smmu.coherent_walk,
            tlb=self._flush_ops(),
            iommu_dev=smmu.dev_name,
        )
        ops = alloc_io_pgtable_ops(ARM_64_LPAE_S1, cfg, domain)
        if ops is None:
            self._free_asids.append(asid)
            return -errno.ENOMEM
        domain.ops = ops
        domain.asid = asid
        domain.pgsize_bitmap = cfg.pgsize_bitmap
        domain.geometry = IommuDomainGeometry(0, (1 << cfg.ias) - 1, True)
        domain.finalised = True
        # arm_smmu_write_ctx_desc(): sync before and after setting CD.V
        self._sync_cd(domain, 0)
        self._sync_cd(domain, 0)
        return 0

    def _write_ste(self, sid: int, domain: IommuDomain | None) -> None:
        """``arm_smmu_write_strtab_ent()`` (6.1) and its CFGI_STE/SYNC/PREFETCH sequence."""
        smmu = self.smmu
        cfgi = [CmdqEnt(CMDQ_OP_CFGI_STE, sid=sid, leaf=True)]
        if domain is None or domain.type in (IOMMU_DOMAIN_BLOCKED, IOMMU_DOMAIN_IDENTITY):
            config = (
                STRTAB_STE_0_CFG_BYPASS
                if domain is not None and domain.type == IOMMU_DOMAIN_IDENTITY
                else STRTAB_STE_0_CFG_ABORT
            )
            smmu.write_ste(sid, StreamTableEntry(valid=True, config=config))
            smmu.issue(cfgi, sync=True)
            return
        cd = ContextDescriptor(asid=domain.asid, ttb0=domain.ops)
        smmu.issue(cfgi, sync=True)
        smmu.write_ste(
            sid, StreamTableEntry(valid=True, config=STRTAB_STE_0_CFG_S1_TRANS, cds={0: cd})
        )
        smmu.issue(cfgi, sync=True)
        if smmu.prefetch:
            smmu.issue([CmdqEnt(CMDQ_OP_PREFETCH_CFG, sid=sid)], sync=False)

    def attach_dev(self, domain: IommuDomain, dev: IommuDevice) -> int:
        """``arm_smmu_attach_dev()`` (6.1): detach from the old domain (abort STE), finalise
        the new domain on first use, then install the STE for every SID."""
        old = dev.group.domain if dev.group is not None else None
        if old is not None and old is not domain and dev in old.devices:
            old.devices.remove(dev)
            for sid, _ in dev.sids:
                self._write_ste(sid, None)
        if domain.is_paging and not domain.finalised:
            ret = self.domain_finalise(domain)
            if ret:
                return ret
        for sid, _ in dev.sids:
            self._write_ste(sid, domain)
        return 0

    def detach_dev(self, dev: IommuDevice) -> None:
        """``arm_smmu_detach_dev()`` + install: abort STEs (``disable_bypass``)."""
        for sid, _ in dev.sids:
            self._write_ste(sid, None)

    # ------------------------------------------------------------------ TLB ops --
    def _tlb_inv_range_domain(
        self, iova: int, size: int, granule: int, leaf: bool, domain: IommuDomain
    ) -> None:
        """``arm_smmu_tlb_inv_range_domain()`` -> ``__arm_smmu_tlb_inv_range()`` (6.1)."""
        if not size:
            return
        smmu = self.smmu
        end = iova + size
        inv_range = granule
        tg = ttl = num_pages = 0
        if smmu.range_inv:
            tg_shift = _ffs(domain.pgsize_bitmap)
            tg = (tg_shift - 10) // 2
            ttl = 4 - ((_fls(granule) - 3) // (tg_shift - 3))
            num_pages = size >> tg_shift
        cmds: list[CmdqEnt] = []
        while iova < end:
            scale = num = 0
            if smmu.range_inv:
                scale = _ffs(num_pages)
                num = (num_pages >> scale) & CMDQ_TLBI_RANGE_NUM_MAX
                inv_range = num << (scale + tg_shift)
                num_pages -= num << scale
            cmds.append(
                CmdqEnt(
                    CMDQ_OP_TLBI_NH_VA,
                    asid=domain.asid,
                    addr=iova,
                    leaf=leaf,
                    tg=tg,
                    ttl=ttl,
                    num=num - 1 if smmu.range_inv else 0,
                    scale=scale,
                )
            )
            iova += inv_range
        self._batch_submit(cmds)

    def _tlb_flush_walk(self, iova: int, size: int, granule: int, cookie: Any) -> None:
        """``arm_smmu_tlb_inv_walk()``: non-leaf range invalidation."""
        self._tlb_inv_range_domain(iova, size, granule, False, cookie)

    def _tlb_add_page(
        self, gather: IommuIotlbGather | None, iova: int, granule: int, cookie: Any
    ) -> None:
        """``arm_smmu_tlb_inv_page_nosync()``: add the page to the gather."""
        if gather is None:
            self._tlb_inv_range_domain(iova, granule, granule, True, cookie)
            return
        iommu_iotlb_gather_add_page(cookie, gather, iova, granule)

    def _tlb_add_pages(
        self, domain: IommuDomain, gather: IommuIotlbGather, iova: int, pgsize: int, size: int
    ) -> None:
        """The union of ``size // pgsize`` consecutive ``tlb_add_page`` calls."""
        iommu_iotlb_gather_add_page(domain, gather, iova, pgsize)
        gather.add_range(iova, size)

    def iotlb_sync(self, domain: IommuDomain, gather: IommuIotlbGather) -> None:
        """``arm_smmu_iotlb_sync()``: nothing gathered -> nothing sent; else one leaf
        range invalidation of [start, end] at the gathered page size."""
        if not gather.pgsize:
            return
        self._tlb_inv_range_domain(
            gather.start, gather.end - gather.start + 1, gather.pgsize, True, domain
        )

    def flush_iotlb_all(self, domain: IommuDomain) -> None:
        """``arm_smmu_flush_iotlb_all()`` -> ``arm_smmu_tlb_inv_context()``:
        CMD_TLBI_NH_ASID + CMD_SYNC (stage 1; no ATS)."""
        if not domain.finalised:
            return
        self.smmu.issue([CmdqEnt(CMDQ_OP_TLBI_NH_ASID, asid=domain.asid)], sync=True)

    def domain_free(self, domain: IommuDomain) -> None:
        """``arm_smmu_domain_free()``: free the io-pgtable (tlb_flush_all) and the ASID."""
        if domain.ops is not None:
            free_io_pgtable_ops(domain.ops)
            domain.ops = None
            self._free_asids.append(domain.asid)


class ArmSmmuDriver(_DriverBase):
    """The arm-smmu.c driver (SMMUv2 / MMU-500) bound to one :class:`SmmuV2`.

    Stage-1 AArch64 contexts only; ASID = context bank index (``cfg->asid = cfg->cbndx``).
    """

    def __init__(self, smmu: SmmuV2, *, lazy: bool = False, passthrough: bool = False) -> None:
        super().__init__(lazy, passthrough)
        self.smmu = smmu
        self._cb_used: set[int] = set()
        self._smes: dict[str, list[int]] = {}
        smmu.write_tlbiallnsnh()  # arm_smmu_device_reset()

    def probe_device(self, dev: IommuDevice) -> int:
        """``arm_smmu_probe_device()`` + ``arm_smmu_master_alloc_smes()``: one SMR per
        fwspec (id, mask), reusing an identical one; S2CR starts as fault."""
        smmu = self.smmu
        idxs: list[int] = []
        for sid, mask in dev.sids:
            idx = next(
                (
                    i
                    for i, s in enumerate(smmu.smrs)
                    if s is not None and s.id == sid and s.mask == mask
                ),
                None,
            )
            if idx is None:
                idx = next((i for i, s in enumerate(smmu.smrs) if s is None), None)
                if idx is None:
                    return -errno.ENOSPC
                smmu.smrs[idx] = Smr(sid, mask)
                smmu.s2crs[idx].type = S2CR_TYPE_FAULT
            idxs.append(idx)
            smmu.stream_names[sid] = dev.name
        self._smes[dev.name] = idxs
        self.devices[dev.name] = dev
        return 0

    def domain_finalise(self, domain: IommuDomain) -> int:
        """``arm_smmu_init_domain_context()`` (stage 1, AArch64): a context bank, its
        ASID and the io-pgtable."""
        smmu = self.smmu
        cbndx = next((i for i in range(len(smmu.cbs)) if i not in self._cb_used), -1)
        if cbndx < 0:
            return -errno.ENOSPC
        cfg = IoPgtableCfg(
            pgsize_bitmap=smmu.pgsize_bitmap,
            ias=min(smmu.ias, VA_BITS),
            oas=smmu.ias,
            coherent_walk=smmu.coherent_walk,
            tlb=self._flush_ops(),
            iommu_dev=smmu.dev_name,
        )
        ops = alloc_io_pgtable_ops(ARM_64_LPAE_S1, cfg, domain)
        if ops is None:
            return -errno.ENOMEM
        self._cb_used.add(cbndx)
        domain.ops = ops
        domain.cbndx = cbndx
        domain.asid = cbndx
        domain.pgsize_bitmap = cfg.pgsize_bitmap
        domain.geometry = IommuDomainGeometry(0, (1 << cfg.ias) - 1, True)
        domain.finalised = True
        cb = smmu.cbs[cbndx]
        cb.pgtable = ops
        cb.asid = cbndx
        cb.enabled = True
        return 0

    def attach_dev(self, domain: IommuDomain, dev: IommuDevice) -> int:
        """``arm_smmu_attach_dev()`` -> ``arm_smmu_domain_add_master()``: S2CRs -> bank."""
        if domain.is_paging and not domain.finalised:
            ret = self.domain_finalise(domain)
            if ret:
                return ret
        for idx in self._smes.get(dev.name, []):
            s2cr = self.smmu.s2crs[idx]
            if domain.type == IOMMU_DOMAIN_IDENTITY:
                s2cr.type = S2CR_TYPE_BYPASS
            elif domain.type == IOMMU_DOMAIN_BLOCKED:
                s2cr.type = S2CR_TYPE_FAULT
            else:
                s2cr.type = S2CR_TYPE_TRANS
                s2cr.cbndx = domain.cbndx
        return 0

    def detach_dev(self, dev: IommuDevice) -> None:
        """S2CRs back to fault (``disable_bypass``)."""
        for idx in self._smes.get(dev.name, []):
            self.smmu.s2crs[idx].type = S2CR_TYPE_FAULT

    def _tlb_inv_range_s1(
        self, iova: int, size: int, granule: int, domain: IommuDomain, leaf: bool
    ) -> None:
        """``arm_smmu_tlb_inv_range_s1()``: one TLBIVA(L) register write per granule."""
        while size > 0:
            self.smmu.write_tlbiva(domain.cbndx, iova, granule, leaf)
            iova += granule
            size -= granule

    def _tlb_flush_walk(self, iova: int, size: int, granule: int, cookie: Any) -> None:
        """``arm_smmu_tlb_inv_walk_s1()``: TLBIVA per granule, then TLBSYNC."""
        self._tlb_inv_range_s1(iova, size, granule, cookie, False)
        self.smmu.write_tlbsync(cookie.cbndx)

    def _tlb_add_page(
        self, gather: IommuIotlbGather | None, iova: int, granule: int, cookie: Any
    ) -> None:
        """``arm_smmu_tlb_add_page_s1()``: TLBIVAL for the page, no sync."""
        self._tlb_inv_range_s1(iova, granule, granule, cookie, True)

    def iotlb_sync(self, domain: IommuDomain, gather: IommuIotlbGather) -> None:
        """``arm_smmu_iotlb_sync()``: TLBSYNC of the context (always, for SMMUv2)."""
        if domain.finalised:
            self.smmu.write_tlbsync(domain.cbndx)

    def flush_iotlb_all(self, domain: IommuDomain) -> None:
        """``arm_smmu_tlb_inv_context_s1()``: TLBIASID + TLBSYNC."""
        if not domain.finalised:
            return
        self.smmu.write_tlbiasid(domain.cbndx)
        self.smmu.write_tlbsync(domain.cbndx)


def iommu_devices_from_soc(masters: Iterable[Master], iommu_name: str) -> list[IommuDevice]:
    """Every enabled master behind ``iommu_name`` as an :class:`IommuDevice`."""
    return [
        IommuDevice.from_master(m, iommu_name)
        for m in masters
        if m.enabled and any(s.iommu == iommu_name for s in m.iommus)
    ]
