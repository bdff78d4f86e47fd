"""dma-direct: DMA without an IOMMU. kernel/dma/direct.c, kernel/dma/direct.h,
include/linux/dma-direct.h, kernel/dma/contiguous.c (6.1).

What a device needs for dma-direct is :class:`DirectDevice` (the fields of ``struct
device`` that dma-direct reads: ``dma_mask``, ``coherent_dma_mask``, ``bus_dma_limit``,
``dma_range_map``, ``dma_coherent``, ``cma_area``, ``dma_io_tlb_mem``, ``dma_parms``).
:meth:`DirectDevice.from_master` builds one from a :class:`socmem.soc.schema.Master`
the way ``of_dma_configure_id`` + ``dma_set_mask_and_coherent`` would.

Rules pinned (6.1):

* ``phys_to_dma``/``dma_to_phys`` translate through ``dma_range_map``
  (``translate_phys_to_dma``: the first region with ``cpu_start <= phys`` and
  ``phys - cpu_start < size``); an address in no region is ``DMA_MAPPING_ERROR``
  (dma → phys: ``(phys_addr_t)-1``). No map: identity.
* ``dma_capable(dev, addr, size, is_ram)``: false for ``DMA_MAPPING_ERROR``, else
  ``addr + size - 1 <= min_not_zero(*dev->dma_mask, dev->bus_dma_limit)``.
* ``dma_direct_map_page``: forced bounce (``swiotlb=force`` or a restricted pool) →
  ``swiotlb_map``; not ``dma_capable`` → ``swiotlb_map`` when swiotlb is active, else
  ``dev_WARN_ONCE "DMA addr %pad+%zu overflow (mask %llx, bus limit %llx).\\n"`` and
  ``DMA_MAPPING_ERROR``; else ``arch_sync_dma_for_device`` for non-coherent devices
  (unless ``DMA_ATTR_SKIP_CPU_SYNC``).
* ``dma_direct_unmap_page``: ``sync_single_for_cpu`` (unless SKIP_CPU_SYNC), then
  ``swiotlb_tbl_unmap_single(..., attrs | SKIP_CPU_SYNC)`` for a bounce address.
* ``dma_direct_map_sg``: every entry through ``dma_direct_map_page``,
  ``sg_dma_len = length``; returns ``nents``; on a failure unmaps the mapped ones with
  SKIP_CPU_SYNC and returns ``-EIO`` (the p2pdma ``-EREMOTEIO`` path is not modelled).
* ``dma_direct_alloc``: ``PAGE_ALIGN(size)``; restricted pool (``is_swiotlb_for_alloc``)
  → ``swiotlb_alloc``; else ``dma_alloc_contiguous`` (the device's CMA area for any size,
  the default CMA area for more than one page, blocking gfp only; ``align =
  min(get_order(size), CONFIG_CMA_ALIGNMENT = 8)``), then the page allocator with
  ``get_order(size)``; the first zone is ``dma_direct_optimal_gfp_mask`` (``GFP_DMA`` when
  the reach is within ``zone_dma_bits``, ``GFP_DMA32`` within 32 bits); memory that is not
  ``dma_coherent_ok`` is freed and the allocation retried with ``GFP_DMA32``, then
  ``GFP_DMA``. ``DMA_ATTR_NO_KERNEL_MAPPING`` returns the page as a cookie (no kernel
  mapping); non-coherent devices get a remapped (``dma_pgprot``: write-combine with
  ``DMA_ATTR_WRITE_COMBINE``, else ``pgprot_dmacoherent``) uncached alias and
  ``arch_dma_prep_coherent`` on the kernel alias.
* ``arch_sync_dma_for_device/cpu`` and ``arch_dma_prep_coherent`` call the device's
  ``arch_sync(paddr, size, dir, for_cpu)`` hook (the cache model plugs in there) and
  count the bytes in :class:`DirectStats` (every call dma-direct makes; arm64 itself
  skips the invalidate for ``DMA_TO_DEVICE`` in ``arch_sync_dma_for_cpu``: that is the
  hook's business).

Deviations: atomic pools (``dma_direct_alloc_from_pool``) and memory encryption are not
modelled (a non-blocking allocation for a non-coherent device is served like a blocking
one); ``dev_WARN_ONCE`` is once per device; p2pdma pages do not exist.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from socmem.check.finding import Finding, FindingLog, Severity
from socmem.errors import KernelError
from socmem.linux.dma import swiotlb as _swiotlb
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import (
    DMA_ATTR_NO_KERNEL_MAPPING,
    DMA_ATTR_NO_WARN,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_ATTR_WRITE_COMBINE,
    DMA_BIT_MASK,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    U64_MASK,
    DmaDataDirection,
    min_not_zero,
)
from socmem.linux.mm.buddy import (
    __GFP_DIRECT_RECLAIM,
    __GFP_NOWARN,
    GFP_DMA,
    GFP_DMA32,
    GFP_KERNEL,
    MAX_ORDER,
    PAGE_SHIFT,
    PAGE_SIZE,
)

if TYPE_CHECKING:
    from socmem.linux.dma.swiotlb import IoTlbMem
    from socmem.linux.mm import PhysMem
    from socmem.linux.mm.cma import Cma
    from socmem.soc.schema import Master

__all__ = [
    "CONFIG_CMA_ALIGNMENT",
    "BusDmaRegion",
    "DirectDevice",
    "DirectStats",
    "DmaDirectAllocation",
    "arch_sync_dma_for_cpu",
    "arch_sync_dma_for_device",
    "dma_capable",
    "dma_coherent_ok",
    "dma_direct_alloc",
    "dma_direct_free",
    "dma_direct_get_required_mask",
    "dma_direct_map_page",
    "dma_direct_map_sg",
    "dma_direct_max_mapping_size",
    "dma_direct_optimal_gfp_mask",
    "dma_direct_sync_sg_for_cpu",
    "dma_direct_sync_sg_for_device",
    "dma_direct_sync_single_for_cpu",
    "dma_direct_sync_single_for_device",
    "dma_direct_unmap_page",
    "dma_direct_unmap_sg",
    "dma_to_phys",
    "get_order",
    "phys_to_dma",
]

CONFIG_CMA_ALIGNMENT = 8
PHYS_ADDR_ERROR = U64_MASK  # (phys_addr_t)-1 from translate_dma_to_phys
ArchSyncHook = Callable[[int, int, DmaDataDirection, bool], None]


@dataclass(frozen=True, slots=True)
class BusDmaRegion:
    """``struct bus_dma_region``: ``offset = cpu_start - dma_start``."""

    cpu_start: int
    dma_start: int
    size: int

    @property
    def offset(self) -> int:
        """``cpu_start - dma_start``."""
        return self.cpu_start - self.dma_start


@dataclass
class DirectStats:
    """Counters of one device's dma-direct traffic (bytes, calls)."""

    nr_map: int = 0
    nr_unmap: int = 0
    nr_bounced_maps: int = 0
    nr_map_errors: int = 0
    arch_sync_for_device_bytes: int = 0
    arch_sync_for_cpu_bytes: int = 0
    arch_sync_for_device_calls: int = 0
    arch_sync_for_cpu_calls: int = 0
    prep_coherent_bytes: int = 0
    bounce_to_device_bytes: int = 0
    bounce_from_device_bytes: int = 0
    alloc_attempts: list[tuple[str, int]] = field(default_factory=list)

    def bounce(self, direction: DmaDataDirection, size: int) -> None:
        """Count a swiotlb copy."""
        if direction == DMA_FROM_DEVICE:
            self.bounce_from_device_bytes += size
        else:
            self.bounce_to_device_bytes += size


@dataclass(eq=False)
class DirectDevice:
    """What dma-direct reads of a ``struct device``.

    ``dma_mask``/``coherent_dma_mask`` are the masks (``DMA_BIT_MASK(32)`` by default),
    ``bus_dma_limit`` the highest bus address of the dma-ranges (0: none),
    ``dma_range_map`` the regions (None: identity). ``dma_coherent`` is
    ``dev_is_dma_coherent``. ``cma_area`` is ``dev->cma_area``; ``dma_io_tlb_mem`` the
    swiotlb pool (the default one, a restricted one, or None). ``mem`` is the page
    allocator and default CMA area allocations come from. ``zone_dma_bits`` is the global
    ``zone_dma_bits`` (arm64 6.1: 32 unless the DT narrows it; generic default 24).
    ``arch_sync(paddr, size, dir, for_cpu)`` is the cache-maintenance hook.
    """

    name: str
    dma_mask: int = DMA_BIT_MASK(32)
    coherent_dma_mask: int = DMA_BIT_MASK(32)
    bus_dma_limit: int = 0
    dma_range_map: list[BusDmaRegion] | None = None
    dma_coherent: bool = False
    cma_area: Cma | None = None
    dma_io_tlb_mem: IoTlbMem | None = None
    mem: PhysMem | None = None
    max_segment_size: int = 65536
    segment_boundary_mask: int = 0xFFFF_FFFF
    min_align_mask: int = 0
    zone_dma_bits: int = 32
    driver_name: str | None = None
    arch_sync: ArchSyncHook | None = None
    findings: FindingLog = field(default_factory=FindingLog)
    log: list[str] = field(default_factory=list)
    stats: DirectStats = field(default_factory=DirectStats)
    warned_once: set[str] = field(default_factory=set)

    @property
    def coherent(self) -> bool:
        """``dev_is_dma_coherent()`` under the name dma-debug reads."""
        return self.dma_coherent

    @classmethod
    def from_master(
        cls,
        master: Master,
        mem: PhysMem | None = None,
        dma_io_tlb_mem: IoTlbMem | None = None,
        cma_area: Cma | None = None,
        **kw: Any,
    ) -> DirectDevice:
        """A device as ``of_dma_configure_id`` and ``dma_set_mask_and_coherent(
        DMA_BIT_MASK(dma_mask_bits))`` leave it: the dma-ranges become ``dma_range_map``
        and ``bus_dma_limit`` (highest ``dma_start + size - 1``); ``dma_parms`` from the
        master."""
        mask = DMA_BIT_MASK(master.dma_mask_bits)
        regions = [BusDmaRegion(r.cpu_start, r.dma_start, r.size) for r in master.dma_ranges]
        return cls(
            name=master.name,
            dma_mask=mask,
            coherent_dma_mask=mask,
            bus_dma_limit=master.bus_dma_limit or 0,
            dma_range_map=regions or None,
            dma_coherent=master.dma_coherent,
            cma_area=cma_area,
            dma_io_tlb_mem=dma_io_tlb_mem,
            mem=mem,
            max_segment_size=master.max_segment_size,
            segment_boundary_mask=master.segment_boundary_mask,
            **kw,
        )

    def dev_prefix(self) -> str:
        """``dev_printk``'s ``"%s %s: "`` (driver or bus string, then device name)."""
        return f"{self.driver_name or 'platform'} {self.name}: "


def dev_report(
    dev: DirectDevice,
    kind: str,
    message: str,
    severity: Severity,
    once: bool = False,
    **data: Any,
) -> None:
    """Record a Finding and, unless a ``*_ONCE`` message was already printed for this
    device, the ``dev_printk`` line in ``dev.log``."""
    line = dev.dev_prefix() + message
    warned = getattr(dev, "warned_once", None)
    if not once or warned is None or kind not in warned:
        dev.log.append(line)
        if once and warned is not None:
            warned.add(kind)
    findings = getattr(dev, "findings", None)
    if findings is not None:
        findings.add(Finding(kind, severity, line, subject=dev.name, data=dict(data)))


# -- address translation (include/linux/dma-direct.h) -------------------------------------
def translate_phys_to_dma(dev: DirectDevice, paddr: int) -> int:
    """``translate_phys_to_dma()``: through ``dma_range_map``, else DMA_MAPPING_ERROR."""
    for m in dev.dma_range_map or ():
        off = paddr - m.cpu_start
        if paddr >= m.cpu_start and off < m.size:
            return m.dma_start + off
    return DMA_MAPPING_ERROR


def translate_dma_to_phys(dev: DirectDevice, dma_addr: int) -> int:
    """``translate_dma_to_phys()``: through ``dma_range_map``, else ``(phys_addr_t)-1``."""
    for m in dev.dma_range_map or ():
        off = dma_addr - m.dma_start
        if dma_addr >= m.dma_start and off < m.size:
            return m.cpu_start + off
    return PHYS_ADDR_ERROR


def phys_to_dma(dev: DirectDevice, paddr: int) -> int:
    """``phys_to_dma()`` (no memory encryption: ``phys_to_dma_unencrypted``)."""
    if dev.dma_range_map:
        return translate_phys_to_dma(dev, paddr)
    return paddr


def dma_to_phys(dev: DirectDevice, dma_addr: int) -> int:
    """``dma_to_phys()``."""
    if dev.dma_range_map:
        return translate_dma_to_phys(dev, dma_addr)
    return dma_addr


def dma_capable(dev: DirectDevice, addr: int, size: int, is_ram: bool = True) -> bool:
    """``dma_capable()``: ``addr + size - 1 <= min_not_zero(*dma_mask, bus_dma_limit)``
    (``is_ram`` only matters for 32-bit ``dma_addr_t``, never here)."""
    if addr == DMA_MAPPING_ERROR:
        return False
    end = (addr + size - 1) & U64_MASK
    return end <= min_not_zero(dev.dma_mask, dev.bus_dma_limit)


# -- cache maintenance hooks -----------------------------------------------------------
def arch_sync_dma_for_device(
    dev: DirectDevice, paddr: int, size: int, dir: DmaDataDirection
) -> None:
    """``arch_sync_dma_for_device()``: the hook with ``for_cpu=False``, bytes counted."""
    dev.stats.arch_sync_for_device_bytes += size
    dev.stats.arch_sync_for_device_calls += 1
    if dev.arch_sync is not None:
        dev.arch_sync(paddr, size, dir, False)


def arch_sync_dma_for_cpu(dev: DirectDevice, paddr: int, size: int, dir: DmaDataDirection) -> None:
    """``arch_sync_dma_for_cpu()``: the hook with ``for_cpu=True``, bytes counted."""
    dev.stats.arch_sync_for_cpu_bytes += size
    dev.stats.arch_sync_for_cpu_calls += 1
    if dev.arch_sync is not None:
        dev.arch_sync(paddr, size, dir, True)


def arch_dma_prep_coherent(dev: DirectDevice, paddr: int, size: int) -> None:
    """``arch_dma_prep_coherent()`` (arm64: clean+invalidate the kernel alias): the hook
    as a for-device BIDIRECTIONAL sync, counted apart."""
    dev.stats.prep_coherent_bytes += size
    if dev.arch_sync is not None:
        dev.arch_sync(paddr, size, DmaDataDirection.DMA_BIDIRECTIONAL, False)


# -- streaming mappings (kernel/dma/direct.h) ------------------------------------------
def dma_direct_map_page(
    dev: DirectDevice, phys: int, size: int, dir: DmaDataDirection, attrs: int = 0
) -> int:
    """``dma_direct_map_page(dev, page, offset, size, dir, attrs)`` with
    ``phys = page_to_phys(page) + offset``: the DMA address or ``DMA_MAPPING_ERROR``."""
    dev.stats.nr_map += 1
    dma_addr = phys_to_dma(dev, phys)
    if _swiotlb.is_swiotlb_force_bounce(dev):
        return _bounce(dev, phys, size, dir, attrs)
    if not dma_capable(dev, dma_addr, size, True):
        if _swiotlb.is_swiotlb_active(dev):
            return _bounce(dev, phys, size, dir, attrs)
        dev_report(
            dev,
            "dma-direct.overflow",
            f"DMA addr {_swiotlb._pa(dma_addr)}+{size} overflow "
            f"(mask {dev.dma_mask:x}, bus limit {dev.bus_dma_limit:x}).",
            Severity.ERROR,
            once=True,
            phys=phys,
            size=size,
        )
        dev.stats.nr_map_errors += 1
        return DMA_MAPPING_ERROR
    if not dev.dma_coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
        arch_sync_dma_for_device(dev, phys, size, dir)
    return dma_addr


def _bounce(dev: DirectDevice, phys: int, size: int, dir: DmaDataDirection, attrs: int) -> int:
    addr = _swiotlb.swiotlb_map(dev, phys, size, dir, attrs)
    if addr == DMA_MAPPING_ERROR:
        dev.stats.nr_map_errors += 1
    else:
        dev.stats.nr_bounced_maps += 1
    return addr


def dma_direct_sync_single_for_device(
    dev: DirectDevice, addr: int, size: int, dir: DmaDataDirection
) -> None:
    """``dma_direct_sync_single_for_device()``: bounce copy first, then cache clean."""
    paddr = dma_to_phys(dev, addr)
    if _swiotlb.is_swiotlb_buffer(dev, paddr):
        _swiotlb.swiotlb_sync_single_for_device(dev, paddr, size, dir)
    if not dev.dma_coherent:
        arch_sync_dma_for_device(dev, paddr, size, dir)


def dma_direct_sync_single_for_cpu(
    dev: DirectDevice, addr: int, size: int, dir: DmaDataDirection
) -> None:
    """``dma_direct_sync_single_for_cpu()``: cache invalidate first, then bounce copy."""
    paddr = dma_to_phys(dev, addr)
    if not dev.dma_coherent:
        arch_sync_dma_for_cpu(dev, paddr, size, dir)
    if _swiotlb.is_swiotlb_buffer(dev, paddr):
        _swiotlb.swiotlb_sync_single_for_cpu(dev, paddr, size, dir)


def dma_direct_unmap_page(
    dev: DirectDevice, addr: int, size: int, dir: DmaDataDirection, attrs: int = 0
) -> None:
    """``dma_direct_unmap_page()``."""
    dev.stats.nr_unmap += 1
    phys = dma_to_phys(dev, addr)
    if not attrs & DMA_ATTR_SKIP_CPU_SYNC:
        dma_direct_sync_single_for_cpu(dev, addr, size, dir)
    if _swiotlb.is_swiotlb_buffer(dev, phys):
        _swiotlb.swiotlb_tbl_unmap_single(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC)


def _nents(sgt: SgTable, nents: int | None) -> int:
    return sgt.orig_nents if nents is None else nents


def dma_direct_map_sg(
    dev: DirectDevice,
    sgt: SgTable,
    dir: DmaDataDirection,
    attrs: int = 0,
    nents: int | None = None,
) -> int:
    """``dma_direct_map_sg(dev, sgl, nents, dir, attrs)``: ``nents`` (default
    ``sgt.orig_nents``) on success, ``-EIO`` after unwinding on failure. ``sgt.nents`` is
    left alone (setting it is ``dma_map_sgtable``'s job)."""
    n = _nents(sgt, nents)
    for i in range(n):
        sg = sgt.sgl[i]
        sg.dma_address = dma_direct_map_page(dev, sg.phys, sg.length, dir, attrs)
        if sg.dma_address == DMA_MAPPING_ERROR:
            _unmap_entries(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC)
            return -errno.EIO
        sg.dma_length = sg.length
    return n


def _unmap_entries(
    dev: DirectDevice, sgt: SgTable, n: int, dir: DmaDataDirection, attrs: int
) -> None:
    for sg in sgt.sgl[:n]:
        dma_direct_unmap_page(dev, sg.dma_address, sg.dma_length, dir, attrs)


def dma_direct_unmap_sg(
    dev: DirectDevice,
    sgt: SgTable,
    dir: DmaDataDirection,
    attrs: int = 0,
    nents: int | None = None,
) -> None:
    """``dma_direct_unmap_sg()``: every entry through ``dma_direct_unmap_page`` with its
    ``sg_dma_len``."""
    _unmap_entries(dev, sgt, _nents(sgt, nents), dir, attrs)


def dma_direct_sync_sg_for_device(
    dev: DirectDevice, sgt: SgTable, dir: DmaDataDirection, nents: int | None = None
) -> None:
    """``dma_direct_sync_sg_for_device()``: per entry, bounce then clean (``sg->length``)."""
    for sg in sgt.sgl[: _nents(sgt, nents)]:
        paddr = dma_to_phys(dev, sg.dma_address)
        if _swiotlb.is_swiotlb_buffer(dev, paddr):
            _swiotlb.swiotlb_sync_single_for_device(dev, paddr, sg.length, dir)
        if not dev.dma_coherent:
            arch_sync_dma_for_device(dev, paddr, sg.length, dir)


def dma_direct_sync_sg_for_cpu(
    dev: DirectDevice, sgt: SgTable, dir: DmaDataDirection, nents: int | None = None
) -> None:
    """``dma_direct_sync_sg_for_cpu()``: per entry, invalidate then bounce back."""
    for sg in sgt.sgl[: _nents(sgt, nents)]:
        paddr = dma_to_phys(dev, sg.dma_address)
        if not dev.dma_coherent:
            arch_sync_dma_for_cpu(dev, paddr, sg.length, dir)
        if _swiotlb.is_swiotlb_buffer(dev, paddr):
            _swiotlb.swiotlb_sync_single_for_cpu(dev, paddr, sg.length, dir)


# -- limits --------------------------------------------------------------------------------
def _max_pfn(dev: DirectDevice) -> int:
    if dev.mem is None or not dev.mem.buddy.memory:
        return 0
    return max(e for _s, e in dev.mem.buddy.memory)


def dma_direct_get_required_mask(dev: DirectDevice) -> int:
    """``dma_direct_get_required_mask()``: the mask reaching the last page of RAM."""
    max_pfn = _max_pfn(dev)
    if not max_pfn:
        return DMA_BIT_MASK(32)
    max_dma = phys_to_dma(dev, (max_pfn - 1) << PAGE_SHIFT)
    return (1 << (max_dma.bit_length() - 1)) * 2 - 1


def dma_direct_max_mapping_size(dev: DirectDevice) -> int:
    """``dma_direct_max_mapping_size()``: swiotlb's limit when it may bounce, else
    ``SIZE_MAX``."""
    limited = min_not_zero(dev.dma_mask, dev.bus_dma_limit) < dma_direct_get_required_mask(dev)
    if _swiotlb.is_swiotlb_active(dev) and (limited or _swiotlb.is_swiotlb_force_bounce(dev)):
        return _swiotlb.swiotlb_max_mapping_size(dev)
    return U64_MASK


# -- coherent allocations ------------------------------------------------------------------
def get_order(size: int) -> int:
    """``get_order()``: the smallest order whose block holds ``size`` bytes."""
    return max(0, ((size - 1) >> PAGE_SHIFT).bit_length())


def dma_direct_optimal_gfp_mask(dev: DirectDevice, dma_mask: int) -> tuple[int, int]:
    """``dma_direct_optimal_gfp_mask()``: ``(gfp, phys_limit)`` — GFP_DMA when the reach
    is within ``zone_dma_bits``, GFP_DMA32 within 32 bits, else 0."""
    dma_limit = min_not_zero(dma_mask, dev.bus_dma_limit)
    phys_limit = dma_to_phys(dev, dma_limit)
    if phys_limit <= DMA_BIT_MASK(dev.zone_dma_bits):
        return GFP_DMA, phys_limit
    if phys_limit <= DMA_BIT_MASK(32):
        return GFP_DMA32, phys_limit
    return 0, phys_limit


def dma_coherent_ok(dev: DirectDevice, phys: int, size: int) -> bool:
    """``dma_coherent_ok()``: the block is within ``coherent_dma_mask`` / bus limit."""
    dma_addr = phys_to_dma(dev, phys)
    if dma_addr == DMA_MAPPING_ERROR:
        return False
    return dma_addr + size - 1 <= min_not_zero(dev.coherent_dma_mask, dev.bus_dma_limit)


@dataclass(eq=False)
class DmaDirectAllocation:
    """What ``dma_direct_alloc`` returns as ``cpu_addr`` (a cookie for
    ``DMA_ATTR_NO_KERNEL_MAPPING``): where the memory came from and how the CPU sees it.

    ``source``: ``"cma:<area>"``, ``"buddy"`` or ``"swiotlb:<pool>"``; ``cpu_mapping``:
    ``"none"`` (NO_KERNEL_MAPPING), ``"linear"`` (coherent device: the cacheable linear
    map), ``"writecombine"`` or ``"dmacoherent"`` (non-coherent: a remapped uncached
    alias, ``dma_pgprot``).
    """

    phys: int
    size: int
    dma_addr: int
    attrs: int
    source: str
    cpu_mapping: str
    gfp: int

    @property
    def pfn(self) -> int:
        """First page frame."""
        return self.phys >> PAGE_SHIFT

    @property
    def no_kernel_mapping(self) -> bool:
        """Allocated with ``DMA_ATTR_NO_KERNEL_MAPPING``."""
        return bool(self.attrs & DMA_ATTR_NO_KERNEL_MAPPING)

    @property
    def write_combine(self) -> bool:
        """Allocated with ``DMA_ATTR_WRITE_COMBINE``."""
        return bool(self.attrs & DMA_ATTR_WRITE_COMBINE)


def _cma_alloc_aligned(dev: DirectDevice, cma: Cma, size: int, gfp: int) -> int | None:
    """kernel/dma/contiguous.c ``cma_alloc_aligned()``."""
    align = min(get_order(size), CONFIG_CMA_ALIGNMENT)
    pfn = cma.cma_alloc(size >> PAGE_SHIFT, align, bool(gfp & __GFP_NOWARN))
    if dev.mem is not None and cma.log:
        dev.mem.log.extend(cma.log)
        cma.log.clear()
    return pfn


def dma_alloc_contiguous(dev: DirectDevice, size: int, gfp: int) -> tuple[int, Cma] | None:
    """``dma_alloc_contiguous()``: ``(pfn, area)`` from the device's CMA area (any size)
    or, for more than one page, the default area; blocking gfp only."""
    if not gfp & __GFP_DIRECT_RECLAIM:
        return None
    if dev.cma_area is not None:
        pfn = _cma_alloc_aligned(dev, dev.cma_area, size, gfp)
        return None if pfn is None else (pfn, dev.cma_area)
    if size <= PAGE_SIZE:
        return None
    default = dev.mem.default_cma if dev.mem is not None else None
    if default is None:
        return None
    pfn = _cma_alloc_aligned(dev, default, size, gfp)
    return None if pfn is None else (pfn, default)


def dma_free_contiguous(dev: DirectDevice, pfn: int, size: int) -> None:
    """``dma_free_contiguous()``: back to the device's or the default CMA area, else to
    the page allocator with ``get_order(size)``."""
    count = -(-size // PAGE_SIZE)
    if dev.cma_area is not None:
        if dev.cma_area.cma_release(pfn, count):
            return
    else:
        default = dev.mem.default_cma if dev.mem is not None else None
        if default is not None and default.cma_release(pfn, count):
            return
    if dev.mem is None:
        raise KernelError(errno.EINVAL, "dma_free_contiguous: device has no PhysMem")
    dev.mem.buddy.free_pages(pfn, get_order(size))


def _direct_alloc_pages(dev: DirectDevice, size: int, gfp: int) -> tuple[int, str, int] | None:
    """``__dma_direct_alloc_pages()``: ``(pfn, source, gfp)`` or None."""
    pfn: int | None = None
    if _swiotlb.is_swiotlb_for_alloc(dev):
        pfn = _swiotlb.swiotlb_alloc(dev, size)
        pool = dev.dma_io_tlb_mem
        assert pool is not None
        if pfn is not None and not dma_coherent_ok(dev, pfn << PAGE_SHIFT, size):
            _swiotlb.swiotlb_free(dev, pfn, size)
            return None
        dev.stats.alloc_attempts.append((f"swiotlb:{pool.name}", gfp))
        return None if pfn is None else (pfn, f"swiotlb:{pool.name}", gfp)
    if dev.mem is None:
        raise KernelError(errno.EINVAL, f"{dev.name}: dma_direct_alloc without PhysMem")
    zone_gfp, phys_limit = dma_direct_optimal_gfp_mask(dev, dev.coherent_dma_mask)
    gfp |= zone_gfp
    source = "buddy"
    got = dma_alloc_contiguous(dev, size, gfp)
    if got is not None:
        dev.stats.alloc_attempts.append((f"cma:{got[1].name}", gfp))
        if dma_coherent_ok(dev, got[0] << PAGE_SHIFT, size):
            pfn, source = got[0], f"cma:{got[1].name}"
        else:
            dma_free_contiguous(dev, got[0], size)
    while True:
        if pfn is None:
            order = get_order(size)
            dev.stats.alloc_attempts.append(("buddy", gfp))
            pfn = (
                dev.mem.buddy.alloc_pages_gfp(gfp, order, owner=dev.name)
                if order < MAX_ORDER
                else None
            )
            source = "buddy"
        if pfn is not None and not dma_coherent_ok(dev, pfn << PAGE_SHIFT, size):
            dma_free_contiguous(dev, pfn, size)
            pfn = None
            if phys_limit < DMA_BIT_MASK(64) and not gfp & (GFP_DMA32 | GFP_DMA):
                gfp |= GFP_DMA32
                continue
            if not gfp & GFP_DMA:
                gfp = (gfp & ~GFP_DMA32) | GFP_DMA
                continue
        break
    return None if pfn is None else (pfn, source, gfp)


def dma_direct_alloc(
    dev: DirectDevice, size: int, gfp: int = GFP_KERNEL, attrs: int = 0
) -> tuple[DmaDirectAllocation, int] | None:
    """``dma_direct_alloc(dev, size, &dma_handle, gfp, attrs)``: ``(cpu_addr, dma_handle)``
    or None. ``cpu_addr`` is a :class:`DmaDirectAllocation` (the page cookie with
    ``DMA_ATTR_NO_KERNEL_MAPPING``)."""
    size = -(-size // PAGE_SIZE) * PAGE_SIZE
    if attrs & DMA_ATTR_NO_WARN:
        gfp |= __GFP_NOWARN
    for_alloc = _swiotlb.is_swiotlb_for_alloc(dev)
    if attrs & DMA_ATTR_NO_KERNEL_MAPPING and not for_alloc:
        got = _direct_alloc_pages(dev, size, gfp)
        if got is None:
            return None
        pfn, source, used_gfp = got
        arch_dma_prep_coherent(dev, pfn << PAGE_SHIFT, size)
        mapping = "none"
    else:
        got = _direct_alloc_pages(dev, size, gfp)
        if got is None:
            return None
        pfn, source, used_gfp = got
        if dev.dma_coherent:
            mapping = "linear"
        else:
            arch_dma_prep_coherent(dev, pfn << PAGE_SHIFT, size)
            mapping = "writecombine" if attrs & DMA_ATTR_WRITE_COMBINE else "dmacoherent"
    phys = pfn << PAGE_SHIFT
    dma_handle = phys_to_dma(dev, phys)
    return DmaDirectAllocation(phys, size, dma_handle, attrs, source, mapping, used_gfp), dma_handle


def dma_direct_free(
    dev: DirectDevice,
    size: int,
    cpu_addr: DmaDirectAllocation,
    dma_addr: int,
    attrs: int = 0,
) -> None:
    """``dma_direct_free()``: the page from the cookie (NO_KERNEL_MAPPING) or from
    ``dma_addr``, back to the restricted pool, CMA or the page allocator."""
    size = -(-size // PAGE_SIZE) * PAGE_SIZE
    for_alloc = _swiotlb.is_swiotlb_for_alloc(dev)
    if attrs & DMA_ATTR_NO_KERNEL_MAPPING and not for_alloc:
        dma_free_contiguous(dev, cpu_addr.pfn, size)
        return
    pfn = dma_to_phys(dev, dma_addr) >> PAGE_SHIFT
    if _swiotlb.swiotlb_free(dev, pfn, size):
        return
    dma_free_contiguous(dev, pfn, size)
