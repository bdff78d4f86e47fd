"""The DMA API: kernel/dma/mapping.c, dispatching to dma-direct or dma-iommu.

Every entry point does what mapping.c does: check the direction (``BUG_ON`` becomes a
:class:`~socmem.errors.KernelError`), pick the ops (``dma_map_direct()``: no IOMMU or an
identity domain → dma-direct; a DMA domain → dma-iommu), call them, and report to
dma-debug (``debug_dma_*``) when the kernel has it enabled.  Return conventions are the
kernel's: ``dma_map_page_attrs`` returns the DMA address or ``DMA_MAPPING_ERROR``;
``dma_map_sg_attrs`` returns the number of DMA segments or 0; ``dma_map_sgtable``
returns 0 or a negative errno; ``dma_alloc_attrs`` returns ``(cpu_addr, dma_handle)`` or
None.

Cache maintenance for non-coherent devices behind an IOMMU is done here through the
device's ``arch_sync`` hook (dma-iommu's ``iommu_dma_sync_*`` call
``arch_sync_dma_for_cpu/device`` on the physical pages), the same hook dma-direct calls.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from socmem.errors import KernelError
from socmem.linux.device import Device
from socmem.linux.dma import direct
from socmem.linux.dma.direct import DmaDirectAllocation
from socmem.linux.dma.scatterlist import ScatterlistEntry, SgTable
from socmem.linux.dma.types import (
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIT_MASK,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_TO_DEVICE,
    DmaDataDirection,
    valid_dma_direction,
)
from socmem.linux.iommu import dma_iommu
from socmem.linux.iommu.iommu import iommu_iova_to_phys

if TYPE_CHECKING:
    from socmem.linux.dma.debug import DmaDebug

PAGE_SIZE = 4096


def _check_dir(dev: Device, direction: int, what: str) -> DmaDataDirection:
    if not valid_dma_direction(direction):
        raise KernelError(errno.EINVAL, f"{what}: BUG_ON(!valid_dma_direction({direction}))")
    return DmaDataDirection(direction)


def _debug(dev: Device) -> DmaDebug | None:
    return dev.dma_debug


# -- single mappings ----------------------------------------------------------------------
def dma_map_page_attrs(
    dev: Device, page_phys: int, offset: int, size: int, direction: int, attrs: int = 0
) -> int:
    """``dma_map_page_attrs()``: the DMA address of ``page_phys + offset`` or
    ``DMA_MAPPING_ERROR``."""
    d = _check_dir(dev, direction, "dma_map_page_attrs")
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        addr = dma_iommu.iommu_dma_map_page(dev.iommu, page_phys, offset, size, d, attrs, dev.cpu)
        if addr != DMA_MAPPING_ERROR and not dev.coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
            _arch_sync(dev, page_phys + offset, size, d, for_cpu=False)
    else:
        addr = direct.dma_direct_map_page(dev.direct, page_phys + offset, size, d, attrs)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_map_page(dev, page_phys, offset, size, d, addr, attrs)
    return addr


def dma_map_single_attrs(dev: Device, phys: int, size: int, direction: int, attrs: int = 0) -> int:
    """``dma_map_single_attrs()``: a linear-map buffer; dma-debug checks where it lies."""
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_map_single(dev, phys, size)
    page = phys & ~(PAGE_SIZE - 1)
    return dma_map_page_attrs(dev, page, phys - page, size, direction, attrs)


def dma_unmap_page_attrs(dev: Device, addr: int, size: int, direction: int, attrs: int = 0) -> None:
    """``dma_unmap_page_attrs()``."""
    d = _check_dir(dev, direction, "dma_unmap_page_attrs")
    if dev.uses_iommu_dma:
        assert dev.iommu is not None and dev.domain is not None
        if not dev.coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
            phys = iommu_iova_to_phys(dev.domain, addr)
            if phys:
                _arch_sync(dev, phys, size, d, for_cpu=True)
        dma_iommu.iommu_dma_unmap_page(dev.iommu, addr, size, d, attrs, dev.cpu)
    else:
        direct.dma_direct_unmap_page(dev.direct, addr, size, d, attrs)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_unmap_page(dev, addr, size, d)


dma_unmap_single_attrs = dma_unmap_page_attrs


def dma_map_resource(dev: Device, phys: int, size: int, direction: int, attrs: int = 0) -> int:
    """``dma_map_resource()``: MMIO (another device's registers), never bounced or
    synced."""
    d = _check_dir(dev, direction, "dma_map_resource")
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        from socmem.linux.iommu.io_pgtable import IOMMU_MMIO

        prot = dma_iommu.dma_info_to_prot(d, dev.coherent, attrs) | IOMMU_MMIO
        addr = dma_iommu.__iommu_dma_map(dev.iommu, phys, size, prot, dev.dma_mask, dev.cpu)
    else:
        addr = direct.phys_to_dma(dev.direct, phys)
        if addr == DMA_MAPPING_ERROR or not direct.dma_capable(dev.direct, addr, size, False):
            addr = DMA_MAPPING_ERROR
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_map_resource(dev, phys, size, d, addr, attrs)
    return addr


def dma_unmap_resource(dev: Device, addr: int, size: int, direction: int, attrs: int = 0) -> None:
    """``dma_unmap_resource()``."""
    d = _check_dir(dev, direction, "dma_unmap_resource")
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        dma_iommu.__iommu_dma_unmap(dev.iommu, addr, size, dev.cpu)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_unmap_resource(dev, addr, size, d)


def dma_mapping_error(dev: Device, addr: int) -> int:
    """``dma_mapping_error()``: -ENOMEM for ``DMA_MAPPING_ERROR``, else 0; tells dma-debug
    the driver checked."""
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_mapping_error(dev, addr)
    return -errno.ENOMEM if addr == DMA_MAPPING_ERROR else 0


# -- scatter-gather ------------------------------------------------------------------------
def __dma_map_sg_attrs(
    dev: Device, sgt: SgTable, nents: int, direction: int, attrs: int = 0
) -> int:
    """``__dma_map_sg_attrs()``: DMA segments > 0, or a negative errno."""
    d = _check_dir(dev, direction, "dma_map_sg_attrs")
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        ents = dma_iommu.iommu_dma_map_sg(dev.iommu, sgt.sgl, nents, d, attrs, dev.cpu)
        if ents > 0 and not dev.coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
            for s in sgt.sgl[:nents]:
                _arch_sync(dev, s.phys, s.length, d, for_cpu=False)
    else:
        ents = direct.dma_direct_map_sg(dev.direct, sgt, d, attrs, nents)
    if ents > 0:
        if (dbg := _debug(dev)) is not None:
            dbg.debug_dma_map_sg(dev, sgt.sgl, nents, ents, d, attrs)
    elif ents == 0:
        ents = -errno.EIO
    return ents


def dma_map_sg_attrs(dev: Device, sgt: SgTable, nents: int, direction: int, attrs: int = 0) -> int:
    """``dma_map_sg_attrs()``: the number of DMA segments, 0 on any failure."""
    ret = __dma_map_sg_attrs(dev, sgt, nents, direction, attrs)
    return max(ret, 0)


def dma_map_sgtable(dev: Device, sgt: SgTable, direction: int, attrs: int = 0) -> int:
    """``dma_map_sgtable()``: 0 with ``sgt.nents`` set, or -EINVAL / -ENOMEM / -EIO."""
    ret = __dma_map_sg_attrs(dev, sgt, sgt.orig_nents, direction, attrs)
    if ret < 0:
        return ret
    sgt.nents = ret
    return 0


def dma_unmap_sg_attrs(
    dev: Device, sgt: SgTable, nents: int, direction: int, attrs: int = 0
) -> None:
    """``dma_unmap_sg_attrs()``: ``nents`` is what was passed to map, not what it returned."""
    d = _check_dir(dev, direction, "dma_unmap_sg_attrs")
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_unmap_sg(dev, sgt.sgl, nents, d)
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        if not dev.coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
            for s in sgt.sgl[:nents]:
                _arch_sync(dev, s.phys, s.length, d, for_cpu=True)
        dma_iommu.iommu_dma_unmap_sg(dev.iommu, sgt.sgl, nents, d, attrs, dev.cpu)
    else:
        direct.dma_direct_unmap_sg(dev.direct, sgt, d, attrs, nents)


def dma_unmap_sgtable(dev: Device, sgt: SgTable, direction: int, attrs: int = 0) -> None:
    """``dma_unmap_sgtable()``."""
    dma_unmap_sg_attrs(dev, sgt, sgt.orig_nents, direction, attrs)


# -- syncs ---------------------------------------------------------------------------------
def _arch_sync(dev: Device, phys: int, size: int, d: DmaDataDirection, for_cpu: bool) -> None:
    hook = dev.direct.arch_sync
    key = "sync_for_cpu_bytes" if for_cpu else "sync_for_device_bytes"
    dev.stats[key] = dev.stats.get(key, 0) + size
    if hook is not None:
        hook(phys, size, d, for_cpu)


def _iommu_sync(dev: Device, addr: int, size: int, d: DmaDataDirection, for_cpu: bool) -> None:
    if dev.coherent:
        return
    assert dev.domain is not None
    phys = iommu_iova_to_phys(dev.domain, addr)
    if phys:
        _arch_sync(dev, phys, size, d, for_cpu)


def dma_sync_single_for_cpu(dev: Device, addr: int, size: int, direction: int) -> None:
    """``dma_sync_single_for_cpu()``: give the buffer back to the CPU (invalidate)."""
    d = _check_dir(dev, direction, "dma_sync_single_for_cpu")
    if dev.uses_iommu_dma:
        _iommu_sync(dev, addr, size, d, for_cpu=True)
    else:
        direct.dma_direct_sync_single_for_cpu(dev.direct, addr, size, d)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_sync_single_for_cpu(dev, addr, size, d)


def dma_sync_single_for_device(dev: Device, addr: int, size: int, direction: int) -> None:
    """``dma_sync_single_for_device()``: hand the buffer to the device (clean)."""
    d = _check_dir(dev, direction, "dma_sync_single_for_device")
    if dev.uses_iommu_dma:
        _iommu_sync(dev, addr, size, d, for_cpu=False)
    else:
        direct.dma_direct_sync_single_for_device(dev.direct, addr, size, d)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_sync_single_for_device(dev, addr, size, d)


def _sync_sg(dev: Device, sgt: SgTable, nelems: int, d: DmaDataDirection, for_cpu: bool) -> None:
    if dev.uses_iommu_dma:
        if not dev.coherent:
            for s in sgt.sgl[:nelems]:
                _arch_sync(dev, s.phys, s.length, d, for_cpu)
    elif for_cpu:
        direct.dma_direct_sync_sg_for_cpu(dev.direct, sgt, d, nelems)
    else:
        direct.dma_direct_sync_sg_for_device(dev.direct, sgt, d, nelems)


def dma_sync_sg_for_cpu(dev: Device, sgt: SgTable, nelems: int, direction: int) -> None:
    """``dma_sync_sg_for_cpu()``."""
    d = _check_dir(dev, direction, "dma_sync_sg_for_cpu")
    _sync_sg(dev, sgt, nelems, d, for_cpu=True)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_sync_sg_for_cpu(dev, sgt.sgl, nelems, d)


def dma_sync_sg_for_device(dev: Device, sgt: SgTable, nelems: int, direction: int) -> None:
    """``dma_sync_sg_for_device()``."""
    d = _check_dir(dev, direction, "dma_sync_sg_for_device")
    _sync_sg(dev, sgt, nelems, d, for_cpu=False)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_sync_sg_for_device(dev, sgt.sgl, nelems, d)


def dma_sync_sgtable_for_cpu(dev: Device, sgt: SgTable, direction: int) -> None:
    """``dma_sync_sgtable_for_cpu()``: over ``orig_nents``."""
    dma_sync_sg_for_cpu(dev, sgt, sgt.orig_nents, direction)


def dma_sync_sgtable_for_device(dev: Device, sgt: SgTable, direction: int) -> None:
    """``dma_sync_sgtable_for_device()``: over ``orig_nents``."""
    dma_sync_sg_for_device(dev, sgt, sgt.orig_nents, direction)


# -- coherent allocations --------------------------------------------------------------------
@dataclass
class DmaCoherentAllocation:
    """What ``dma_alloc_attrs()`` hands out: the CPU side (``cpu_addr``), the device side
    (``dma_handle``), the pages and how the CPU maps them."""

    size: int
    dma_handle: int
    pages: list[int]
    attrs: int
    cpu_mapping: str
    backend: object

    @property
    def phys(self) -> int:
        """Physical address of the first page (the whole buffer when contiguous)."""
        return self.pages[0]


def dma_alloc_attrs(
    dev: Device, size: int, gfp: int = 0, attrs: int = 0
) -> DmaCoherentAllocation | None:
    """``dma_alloc_attrs()``: a coherent buffer, or None (``-ENOMEM`` to the caller).

    Behind a DMA domain, pages come from the buddy allocator in the largest orders
    ``__iommu_dma_alloc_pages`` can get (non-contiguous) and are mapped in one IOVA
    range; otherwise dma-direct allocates contiguous memory (CMA above one page).
    """
    from socmem.linux.mm.buddy import GFP_KERNEL

    gfp = gfp or GFP_KERNEL
    if size == 0:
        return None
    if dev.uses_iommu_dma:
        assert dev.iommu is not None
        mem = dev.direct.mem

        def alloc_pages(order: int) -> int | None:
            if mem is None:
                return None
            pfn = mem.alloc_pages(order, owner=dev.name)
            if pfn is None:
                return None
            if order:
                mem.buddy.split_page(pfn, order)
            return pfn * PAGE_SIZE

        alloc = dma_iommu.iommu_dma_alloc(dev.iommu, size, alloc_pages, attrs, dev.cpu)
        if alloc is None:
            return None
        out = DmaCoherentAllocation(
            size,
            alloc.dma_handle,
            alloc.pages,
            attrs,
            "linear" if dev.coherent else "dmacoherent",
            alloc,
        )
    else:
        got = direct.dma_direct_alloc(dev.direct, size, gfp, attrs)
        if got is None:
            return None
        cpu, handle = got
        pages = [cpu.phys + i * PAGE_SIZE for i in range(cpu.size // PAGE_SIZE)]
        out = DmaCoherentAllocation(size, handle, pages, attrs, cpu.cpu_mapping, cpu)
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_alloc_coherent(dev, size, out.dma_handle, out.phys, attrs, phys=out.phys)
    return out


def dma_alloc_coherent(dev: Device, size: int, gfp: int = 0) -> DmaCoherentAllocation | None:
    """``dma_alloc_coherent()``."""
    return dma_alloc_attrs(dev, size, gfp, 0)


def dma_free_attrs(dev: Device, alloc: DmaCoherentAllocation) -> None:
    """``dma_free_attrs()``: give a coherent buffer back."""
    if (dbg := _debug(dev)) is not None:
        dbg.debug_dma_free_coherent(dev, alloc.size, alloc.phys, alloc.dma_handle, phys=alloc.phys)
    if isinstance(alloc.backend, DmaDirectAllocation):
        direct.dma_direct_free(dev.direct, alloc.size, alloc.backend, alloc.dma_handle, alloc.attrs)
        return
    assert dev.iommu is not None
    freed = dma_iommu.iommu_dma_free(dev.iommu, alloc.backend, dev.cpu)  # type: ignore[arg-type]
    mem = dev.direct.mem
    if mem is not None:
        for phys in freed:
            mem.free_pages(phys // PAGE_SIZE, 0)


def dma_free_coherent(dev: Device, alloc: DmaCoherentAllocation) -> None:
    """``dma_free_coherent()``."""
    dma_free_attrs(dev, alloc)


# -- masks and limits ---------------------------------------------------------------------
def dma_supported(dev: Device, mask: int) -> bool:
    """``dma_supported()``: dma-iommu supports any mask; dma-direct needs the mask to
    reach the lowest ZONE_DMA memory (``dma_direct_supported``, 6.1)."""
    if dev.uses_iommu_dma:
        return True
    mem = dev.direct.mem
    if mem is None or not mem.dram:
        return True
    max_pfn = max((d.base + d.size) // PAGE_SIZE for d in mem.dram)
    min_mask = min(DMA_BIT_MASK(dev.direct.zone_dma_bits), (max_pfn - 1) * PAGE_SIZE)
    lowest = direct.phys_to_dma(dev.direct, min(d.base for d in mem.dram))
    return mask >= min(min_mask, lowest if lowest != DMA_MAPPING_ERROR else min_mask)


def dma_set_mask(dev: Device, mask: int) -> int:
    """``dma_set_mask()``: 0, or -EIO when the platform cannot support ``mask``."""
    mask &= DMA_BIT_MASK(64)
    if not dma_supported(dev, mask):
        return -errno.EIO
    dev._set_masks(mask=mask)
    return 0


def dma_set_coherent_mask(dev: Device, mask: int) -> int:
    """``dma_set_coherent_mask()``."""
    if not dma_supported(dev, mask):
        return -errno.EIO
    dev._set_masks(coherent=mask)
    return 0


def dma_set_mask_and_coherent(dev: Device, mask: int) -> int:
    """``dma_set_mask_and_coherent()``: both masks, or the first error."""
    ret = dma_set_mask(dev, mask)
    return ret or dma_set_coherent_mask(dev, mask)


def dma_get_max_seg_size(dev: Device) -> int:
    """``dma_get_max_seg_size()``."""
    return dev.max_segment_size


def dma_set_max_seg_size(dev: Device, size: int) -> int:
    """``dma_set_max_seg_size()``: 0."""
    dev.set_max_seg_size(size)
    return 0


def sg_entries(sgt: SgTable) -> list[ScatterlistEntry]:
    """The DMA segments of a mapped table (``for_each_sgtable_dma_sg``)."""
    return [s for s in sgt.sgl[: sgt.nents] if s.dma_length]


__all__ = [
    "DMA_FROM_DEVICE",
    "DMA_TO_DEVICE",
    "DmaCoherentAllocation",
    "dma_alloc_attrs",
    "dma_alloc_coherent",
    "dma_free_attrs",
    "dma_free_coherent",
    "dma_get_max_seg_size",
    "dma_map_page_attrs",
    "dma_map_resource",
    "dma_map_sg_attrs",
    "dma_map_sgtable",
    "dma_map_single_attrs",
    "dma_mapping_error",
    "dma_set_coherent_mask",
    "dma_set_mask",
    "dma_set_mask_and_coherent",
    "dma_set_max_seg_size",
    "dma_supported",
    "dma_sync_sg_for_cpu",
    "dma_sync_sg_for_device",
    "dma_sync_sgtable_for_cpu",
    "dma_sync_sgtable_for_device",
    "dma_sync_single_for_cpu",
    "dma_sync_single_for_device",
    "dma_unmap_page_attrs",
    "dma_unmap_resource",
    "dma_unmap_sg_attrs",
    "dma_unmap_sgtable",
    "dma_unmap_single_attrs",
    "sg_entries",
]
