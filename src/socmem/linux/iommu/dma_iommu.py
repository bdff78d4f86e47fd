"""dma-iommu: the DMA API on top of an IOMMU domain, as drivers/iommu/dma-iommu.c (6.1).

* the IOVA cookie (:class:`IommuDmaCookie`, ``iommu_dma_init_domain``): an
  :class:`~socmem.linux.iommu.iova.IovaDomain` at the domain's granule, start pfn
  ``max(1, aperture_start >> shift)``, per-CPU rcaches;
* ``iommu_dma_alloc_iova`` (dma_limit = min_not_zero(mask, bus_dma_limit), clamped to the
  aperture; PCI devices first try below 4 GiB without flushing the rcache unless
  ``iommu.forcedac``) and ``iommu_dma_free_iova`` (strict: ``free_iova_fast`` now; lazy:
  ``queue_iova`` into the per-CPU flush queue);
* the flush queue of 6.1: IOVA_FQ_SIZE 256 entries per CPU (a ring holding at most 255),
  IOVA_FQ_TIMEOUT 10 ms, ``fq_flush_iotlb`` = one ``flush_iotlb_all`` (SMMUv3:
  CMD_TLBI_NH_ASID + CMD_SYNC) with start/finish counters, ``fq_ring_free`` releasing
  entries queued before the last finished flush, ``fq_flush_timeout``.  Time is model
  time in ns from ``clock()``; the timer fires when any dma-iommu call sees it due, or
  when the owner calls :meth:`IommuDmaCookie.run_timers`;
* ``iommu_dma_map_page`` / ``unmap_page``, ``iommu_dma_map_sg`` (granule-aligned
  segments concatenated into one IOVA range, padded to the segment boundary, one
  ``iommu_map_sg``, ``__finalise_sg`` merging into DMA segments under
  ``max_segment_size`` and ``seg_boundary_mask``; -EINVAL / -ENOMEM as 6.1 returns),
  ``iommu_dma_unmap_sg``, ``iommu_dma_alloc`` / ``iommu_dma_free`` (the
  ``__iommu_dma_alloc_pages`` order strategy with an ``alloc_pages(order) -> paddr|None``
  callback), ``dma_info_to_prot``.

Cache maintenance for non-coherent devices (``arch_sync_dma_for_device/cpu``) is counted
in ``cookie.arch_syncs``, not performed.  The swiotlb bounce for untrusted devices
(``dev_use_swiotlb``) is not modelled: untrusted devices are mapped like trusted ones and
``cookie.untrusted_unbounced`` counts the maps that the kernel would have bounced.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from socmem.linux.dma.scatterlist import ScatterlistEntry
from socmem.linux.dma.types import (
    DMA_ATTR_ALLOC_SINGLE_PAGES,
    DMA_ATTR_FORCE_CONTIGUOUS,
    DMA_ATTR_PRIVILEGED,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_TO_DEVICE,
)
from socmem.linux.iommu.io_pgtable import (
    GFP_ATOMIC,
    IOMMU_CACHE,
    IOMMU_PRIV,
    IOMMU_READ,
    IOMMU_WRITE,
    IommuIotlbGather,
)
from socmem.linux.iommu.iommu import (
    IommuDevice,
    IommuDomain,
    iommu_flush_iotlb_all,
    iommu_iotlb_sync,
    iommu_iova_to_phys,
    iommu_map,
    iommu_map_sg,
    iommu_unmap_fast,
)
from socmem.linux.iommu.iova import IovaDomain

__all__ = [
    "DMA_MAPPING_ERROR",
    "IOVA_FQ_SIZE",
    "IOVA_FQ_TIMEOUT_NS",
    "IommuDmaAllocation",
    "IommuDmaCookie",
    "dma_info_to_prot",
    "iommu_dma_alloc",
    "iommu_dma_alloc_iova",
    "iommu_dma_free",
    "iommu_dma_free_iova",
    "iommu_dma_init_domain",
    "iommu_dma_map_page",
    "iommu_dma_map_sg",
    "iommu_dma_unmap_page",
    "iommu_dma_unmap_sg",
]

IOVA_FQ_SIZE = 256
IOVA_FQ_TIMEOUT_NS = 10_000_000  # IOVA_FQ_TIMEOUT = 10 ms
MAX_ORDER = 10  # 6.1 arm64 with 4K pages: orders 0..10
PAGE_SIZE = 4096
DMA_BIT_MASK_32 = (1 << 32) - 1


@dataclass(slots=True)
class _FqEntry:
    iova_pfn: int
    pages: int
    counter: int


@dataclass
class _IovaFq:
    """``struct iova_fq``: a ring of IOVA_FQ_SIZE slots, head/tail."""

    entries: list[_FqEntry | None] = field(default_factory=lambda: [None] * IOVA_FQ_SIZE)
    head: int = 0
    tail: int = 0

    def __len__(self) -> int:
        return (self.tail - self.head) % IOVA_FQ_SIZE


class IommuDmaCookie:
    """``struct iommu_dma_cookie`` (IOMMU_DMA_IOVA_COOKIE) of one DMA / DMA-FQ domain.

    Counters for the strict-vs-lazy comparison: ``fq_flushes`` (``fq_flush_iotlb`` calls),
    ``fq_timeouts``, ``fq_full_flushes``, ``queued`` (IOVAs that went through the queue),
    ``arch_syncs`` (cache maintenance calls for non-coherent devices).
    """

    def __init__(
        self,
        domain: IommuDomain,
        iovad: IovaDomain,
        *,
        clock: Callable[[], int] | None = None,
        forcedac: bool = False,
    ) -> None:
        self.domain = domain
        self.iovad = iovad
        self.clock: Callable[[], int] = clock or (lambda: 0)
        self.forcedac = forcedac
        self.fq_domain: IommuDomain | None = None
        self.fq: list[_IovaFq] = []
        self.fq_flush_start_cnt = 0
        self.fq_flush_finish_cnt = 0
        self.fq_timer_on = False
        self.fq_timer_expires = 0
        self.fq_flushes = 0
        self.fq_timeouts = 0
        self.fq_full_flushes = 0
        self.queued = 0
        self.arch_syncs = 0
        self.untrusted_unbounced = 0

    # ------------------------------------------------------------ flush queue --
    def init_fq(self) -> None:
        """``iommu_dma_init_fq()``: one ring per CPU; the domain becomes the fq_domain."""
        self.fq = [_IovaFq() for _ in range(self.iovad.ncpus)]
        self.fq_domain = self.domain

    def _fq_ring_free(self, fq: _IovaFq) -> None:
        counter = self.fq_flush_finish_cnt
        free = self.iovad.free_iova_fast
        while fq.head != fq.tail:
            e = fq.entries[fq.head]
            assert e is not None
            if e.counter >= counter:
                break
            free(e.iova_pfn, e.pages, self._cpu)
            fq.entries[fq.head] = None
            fq.head = (fq.head + 1) % IOVA_FQ_SIZE

    def _fq_flush_iotlb(self) -> None:
        self.fq_flush_start_cnt += 1
        assert self.fq_domain is not None
        iommu_flush_iotlb_all(self.fq_domain)
        self.fq_flush_finish_cnt += 1
        self.fq_flushes += 1

    def fq_flush_timeout(self) -> None:
        """``fq_flush_timeout()``: flush, then free what every CPU's ring can release."""
        self.fq_timer_on = False
        self.fq_timeouts += 1
        self._fq_flush_iotlb()
        for cpu, fq in enumerate(self.fq):
            self._cpu = cpu
            self._fq_ring_free(fq)

    def run_timers(self) -> bool:
        """Fire the flush-queue timer if it is due at ``clock()``.  True if it fired."""
        if self.fq_timer_on and self.clock() >= self.fq_timer_expires:
            self.fq_flush_timeout()
            return True
        return False

    _cpu = 0

    def queue_iova(self, pfn: int, pages: int, cpu: int) -> None:
        """``queue_iova()`` (6.1)."""
        fq = self.fq[cpu]
        self._cpu = cpu
        self._fq_ring_free(fq)
        if (fq.tail + 1) % IOVA_FQ_SIZE == fq.head:  # fq_full()
            self.fq_full_flushes += 1
            self._fq_flush_iotlb()
            self._fq_ring_free(fq)
        idx = fq.tail
        fq.tail = (idx + 1) % IOVA_FQ_SIZE
        fq.entries[idx] = _FqEntry(pfn, pages, self.fq_flush_start_cnt)
        self.queued += 1
        if not self.fq_timer_on:
            self.fq_timer_on = True
            self.fq_timer_expires = self.clock() + IOVA_FQ_TIMEOUT_NS

    def fq_pending(self) -> int:
        """IOVAs waiting in all rings."""
        return sum(len(fq) for fq in self.fq)


def iommu_dma_init_domain(
    domain: IommuDomain,
    *,
    ncpus: int = 1,
    clock: Callable[[], int] | None = None,
    forcedac: bool = False,
    reserved: Sequence[tuple[int, int]] = (),
) -> IommuDmaCookie:
    """``iommu_get_dma_cookie()`` + ``iommu_dma_init_domain()`` (6.1): the IOVA domain at
    the domain's granule with start pfn ``max(1, aperture_start >> shift)``, rcaches,
    ``reserved`` ``(start, end)`` byte windows reserved (``iova_reserve_iommu_regions``),
    and the flush queue for DMA-FQ domains.  Idempotent per domain."""
    if domain.iova_cookie is not None:
        return domain.iova_cookie
    granule = domain.granule
    shift = granule.bit_length() - 1
    base_pfn = max(1, domain.geometry.aperture_start >> shift)
    iovad = IovaDomain(granule, base_pfn, ncpus, True)
    for start, end in reserved:
        iovad.reserve_iova(start >> shift, (end - 1) >> shift)
    cookie = IommuDmaCookie(domain, iovad, clock=clock, forcedac=forcedac)
    if domain.type & (1 << 3):  # __IOMMU_DOMAIN_DMA_FQ
        cookie.init_fq()
    domain.iova_cookie = cookie
    return cookie


def dma_info_to_prot(direction: int, coherent: bool, attrs: int) -> int:
    """``dma_info_to_prot()``: IOMMU_CACHE for coherent devices, IOMMU_PRIV with
    DMA_ATTR_PRIVILEGED, READ / WRITE / both by direction, 0 for DMA_NONE."""
    prot = IOMMU_CACHE if coherent else 0
    if attrs & DMA_ATTR_PRIVILEGED:
        prot |= IOMMU_PRIV
    if direction == DMA_BIDIRECTIONAL:
        return prot | IOMMU_READ | IOMMU_WRITE
    if direction == DMA_TO_DEVICE:
        return prot | IOMMU_READ
    if direction == DMA_FROM_DEVICE:
        return prot | IOMMU_WRITE
    return 0


def _cookie(dev: IommuDevice) -> tuple[IommuDomain, IommuDmaCookie]:
    group = dev.group
    if group is None or group.domain is None or group.domain.iova_cookie is None:
        raise ValueError(f"{dev.name}: no DMA domain attached (iommu_get_dma_domain)")
    domain = group.domain
    cookie: IommuDmaCookie = domain.iova_cookie
    if cookie.fq_timer_on:
        cookie.run_timers()
    return domain, cookie


def iommu_dma_alloc_iova(
    domain: IommuDomain, size: int, dma_limit: int, dev: IommuDevice, cpu: int = 0
) -> int:
    """``iommu_dma_alloc_iova()`` (6.1): the IOVA (bytes) of a ``size``-byte range below
    ``dma_limit``, or 0.  PCI devices try below 4 GiB first (no rcache flush)."""
    cookie: IommuDmaCookie = domain.iova_cookie
    iovad = cookie.iovad
    shift = iovad.granule.bit_length() - 1
    iova_len = size >> shift
    if dev.bus_dma_limit:
        dma_limit = min(dma_limit, dev.bus_dma_limit) if dma_limit else dev.bus_dma_limit
    if domain.geometry.force_aperture:
        dma_limit = min(dma_limit, domain.geometry.aperture_end)
    iova = 0
    if dma_limit > DMA_BIT_MASK_32 and not cookie.forcedac and dev.is_pci:
        iova = iovad.alloc_iova_fast(iova_len, DMA_BIT_MASK_32 >> shift, False, cpu)
    if not iova:
        iova = iovad.alloc_iova_fast(iova_len, dma_limit >> shift, True, cpu)
    return iova << shift


def iommu_dma_free_iova(
    cookie: IommuDmaCookie, iova: int, size: int, gather: IommuIotlbGather | None, cpu: int = 0
) -> None:
    """``iommu_dma_free_iova()``: queue it (lazy, gather queued) or free it now."""
    iovad = cookie.iovad
    shift = iovad.granule.bit_length() - 1
    if gather is not None and gather.queued:
        cookie.queue_iova(iova >> shift, size >> shift, cpu)
    else:
        iovad.free_iova_fast(iova >> shift, size >> shift, cpu)


def __iommu_dma_unmap(dev: IommuDevice, dma_addr: int, size: int, cpu: int = 0) -> None:
    """``__iommu_dma_unmap()``: unmap with a gather (queued in lazy mode), sync it in
    strict mode, free or queue the IOVA."""
    domain, cookie = _cookie(dev)
    iovad = cookie.iovad
    gmask = iovad.granule - 1
    iova_off = dma_addr & gmask
    dma_addr -= iova_off
    size = (size + iova_off + gmask) & ~gmask
    gather = IommuIotlbGather()
    gather.queued = cookie.fq_domain is not None
    unmapped = iommu_unmap_fast(domain, dma_addr, size, gather)
    if unmapped != size:
        domain.driver.log.append(
            f"WARNING: __iommu_dma_unmap: WARN_ON(unmapped != size): {unmapped:#x} != {size:#x}"
        )
    if not gather.queued:
        iommu_iotlb_sync(domain, gather)
    iommu_dma_free_iova(cookie, dma_addr, size, gather, cpu)


def __iommu_dma_map(
    dev: IommuDevice, phys: int, size: int, prot: int, dma_mask: int, cpu: int = 0
) -> int:
    """``__iommu_dma_map()``: IOVA for the granule-aligned span, ``iommu_map_atomic``;
    the dma address (iova + offset) or DMA_MAPPING_ERROR."""
    domain, cookie = _cookie(dev)
    gmask = cookie.iovad.granule - 1
    iova_off = phys & gmask
    size = (size + iova_off + gmask) & ~gmask
    iova = iommu_dma_alloc_iova(domain, size, dma_mask, dev, cpu)
    if not iova:
        return DMA_MAPPING_ERROR
    if iommu_map(domain, iova, phys - iova_off, size, prot, GFP_ATOMIC):
        iommu_dma_free_iova(cookie, iova, size, None, cpu)
        return DMA_MAPPING_ERROR
    return iova + iova_off


def iommu_dma_map_page(
    dev: IommuDevice,
    phys: int,
    offset: int,
    size: int,
    direction: int,
    attrs: int = 0,
    cpu: int = 0,
) -> int:
    """``iommu_dma_map_page()``: ``phys`` is ``page_to_phys(page)``; returns the DMA
    address or DMA_MAPPING_ERROR."""
    phys += offset
    _domain, cookie = _cookie(dev)
    prot = dma_info_to_prot(direction, dev.dma_coherent, attrs)
    if dev.untrusted and (phys | size) & (cookie.iovad.granule - 1):
        cookie.untrusted_unbounced += 1
    if not dev.dma_coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
        cookie.arch_syncs += 1
    return __iommu_dma_map(dev, phys, size, prot, dev.dma_mask, cpu)


def iommu_dma_unmap_page(
    dev: IommuDevice, dma_handle: int, size: int, direction: int, attrs: int = 0, cpu: int = 0
) -> None:
    """``iommu_dma_unmap_page()``: WARN if nothing is mapped there, arch sync for CPU,
    ``__iommu_dma_unmap``."""
    domain, cookie = _cookie(dev)
    phys = iommu_iova_to_phys(domain, dma_handle)
    if not phys:
        domain.driver.log.append(f"WARNING: iommu_dma_unmap_page: WARN_ON(!phys) {dma_handle:#x}")
        return
    if not attrs & DMA_ATTR_SKIP_CPU_SYNC and not dev.dma_coherent:
        cookie.arch_syncs += 1
    __iommu_dma_unmap(dev, dma_handle, size, cpu)


def __finalise_sg(
    dev: IommuDevice, sg: Sequence[ScatterlistEntry], nents: int, dma_addr: int
) -> int:
    """``__finalise_sg()`` (6.1): restore each entry, then build the DMA segments."""
    seg_mask = dev.seg_boundary_mask
    max_len = dev.max_segment_size
    cur_i = 0
    cur = sg[0] if nents else None
    cur_len = 0
    count = 0
    for i in range(nents):
        s = sg[i]
        s_iova_off = s.dma_address
        s_length = s.dma_length
        s_iova_len = s.length
        s.dma_address = DMA_MAPPING_ERROR
        s.dma_length = 0
        s.offset += s_iova_off
        s.length = s_length
        if cur_len and not s_iova_off and dma_addr & seg_mask and max_len - cur_len >= s_length:
            cur_len += s_length
        else:
            if i > 0:
                cur_i += 1
                cur = sg[cur_i]
            cur_len = s_length
            count += 1
            assert cur is not None
            cur.dma_address = dma_addr + s_iova_off
        assert cur is not None
        cur.dma_length = cur_len
        dma_addr += s_iova_len
        if s_length + s_iova_off < s_iova_len:
            cur_len = 0
    return count


def __invalidate_sg(sg: Sequence[ScatterlistEntry], nents: int) -> None:
    """``__invalidate_sg()``: undo the in-place alignment of the entries."""
    for i in range(nents):
        s = sg[i]
        if s.dma_address != DMA_MAPPING_ERROR:
            s.offset += s.dma_address
        if s.dma_length:
            s.length = s.dma_length
        s.dma_address = DMA_MAPPING_ERROR
        s.dma_length = 0


def iommu_dma_map_sg(
    dev: IommuDevice,
    sg: Sequence[ScatterlistEntry],
    nents: int,
    direction: int,
    attrs: int = 0,
    cpu: int = 0,
) -> int:
    """``iommu_dma_map_sg()`` (6.1): the number of DMA segments, or -ENOMEM (no IOVA) /
    -EINVAL (mapping failed)."""
    domain, cookie = _cookie(dev)
    iovad = cookie.iovad
    gran = iovad.granule
    gmask = gran - 1
    prot = dma_info_to_prot(direction, dev.dma_coherent, attrs)
    mask = dev.seg_boundary_mask
    if not dev.dma_coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
        cookie.arch_syncs += nents
    iova_len = 0
    prev: ScatterlistEntry | None = None
    uniform = _uniform_pages(sg, nents, gran, mask)
    if uniform:
        # every entry a whole granule at offset 0 (its dma fields already set as the loop
        # below would): no offsets to strip, no padding (a boundary pad is a multiple of
        # the granule, never < s_length - 1)
        iova_len = nents * gran
    for i in range(0 if not uniform else nents, nents):
        s = sg[i]
        s_iova_off = s.offset & gmask
        s_length = s.length
        pad_len = (mask - iova_len + 1) & mask
        s.dma_address = s_iova_off
        s.dma_length = s_length
        if s_iova_off:
            s.offset -= s_iova_off
        s_length = (s_length + s_iova_off + gmask) & ~gmask
        s.length = s_length
        if pad_len and pad_len < s_length - 1:
            assert prev is not None
            prev.length += pad_len
            iova_len += pad_len
        iova_len += s_length
        prev = s
    if not iova_len:
        return __finalise_sg(dev, sg, nents, 0)
    iova = iommu_dma_alloc_iova(domain, iova_len, dev.dma_mask, dev, cpu)
    if not iova:
        __invalidate_sg(sg, nents)
        return -errno.ENOMEM
    ret = iommu_map_sg(domain, iova, sg, nents, prot, GFP_ATOMIC)
    if ret < 0 or ret < iova_len:
        iommu_dma_free_iova(cookie, iova, iova_len, None, cpu)
        __invalidate_sg(sg, nents)
        return -errno.EINVAL
    if uniform:
        return _finalise_uniform(dev, sg, nents, iova, gran)
    return __finalise_sg(dev, sg, nents, iova)


def _uniform_pages(sg: Sequence[ScatterlistEntry], nents: int, gran: int, mask: int) -> bool:
    """True when every entry is one whole granule at offset 0 (a list of scattered pages)
    and the segment boundary is granule-aligned: the case the fast paths below cover.

    On the way it stores each entry's ``dma_address = 0`` (its in-granule offset) and
    ``dma_length = granule`` as ``iommu_dma_map_sg`` does; when it answers False the
    general loop overwrites those fields anyway."""
    if not nents or (mask + 1) % gran:
        return False
    for i in range(nents):
        e = sg[i]
        if e.offset or e.length != gran:
            return False
        e.dma_address = 0
        e.dma_length = gran
    return True


def _finalise_uniform(
    dev: IommuDevice, sg: Sequence[ScatterlistEntry], nents: int, dma_addr: int, gran: int
) -> int:
    """:func:`__finalise_sg` for :func:`_uniform_pages` lists, computed per DMA segment
    instead of per entry: a segment grows by one granule per entry until it would exceed
    ``max_segment_size`` or its next entry starts on a ``seg_boundary_mask`` boundary,
    exactly the merge rule of ``__finalise_sg``; the k-th segment lands in entry k."""
    seg_mask = dev.seg_boundary_mask
    per_seg = max(1, dev.max_segment_size // gran)
    boundary = (seg_mask + 1) // gran  # entries between two boundaries
    for i in range(nents):
        e = sg[i]
        e.dma_address = DMA_MAPPING_ERROR
        e.dma_length = 0
    count = 0
    i = 0
    while i < nents:
        start = dma_addr + i * gran
        # entries until the next boundary (a start exactly on one begins a new segment)
        to_boundary = boundary - ((start & seg_mask) // gran) if boundary else nents
        n = min(per_seg, to_boundary, nents - i)
        head = sg[count]
        head.dma_address = start
        head.dma_length = n * gran
        count += 1
        i += n
    return count


def iommu_dma_unmap_sg(
    dev: IommuDevice,
    sg: Sequence[ScatterlistEntry],
    nents: int,
    direction: int,
    attrs: int = 0,
    cpu: int = 0,
) -> None:
    """``iommu_dma_unmap_sg()``: one ``__iommu_dma_unmap`` of the span from the first to
    the last DMA segment with a non-zero length."""
    _, cookie = _cookie(dev)
    if not attrs & DMA_ATTR_SKIP_CPU_SYNC and not dev.dma_coherent:
        cookie.arch_syncs += nents
    start = end = 0
    i = 0
    while i < nents:
        if sg[i].dma_length == 0:
            break
        start = sg[i].dma_address
        break
    while i < nents:
        s = sg[i]
        if s.dma_length == 0:
            break
        end = s.dma_address + s.dma_length
        i += 1
    if end:
        __iommu_dma_unmap(dev, start, end - start, cpu)


@dataclass
class IommuDmaAllocation:
    """What ``iommu_dma_alloc()`` hands back: the DMA handle, the pages (physical
    addresses, one per PAGE_SIZE page) and the size."""

    dma_handle: int
    pages: list[int]
    size: int
    contiguous: bool = False


def __iommu_dma_alloc_pages(
    count: int, order_mask: int, alloc_pages: Callable[[int], int | None]
) -> list[int] | None:
    """``__iommu_dma_alloc_pages()`` (6.1): largest allowed order first, an order that
    fails is never retried, split into single pages.  None if allocation fails."""
    order_mask &= (2 << MAX_ORDER) - 1
    if not order_mask:
        return None
    pages: list[int] = []
    while count:
        page = None
        order_size = 0
        order_mask &= (2 << (count.bit_length() - 1)) - 1
        while order_mask:
            order = order_mask.bit_length() - 1
            order_size = 1 << order
            page = alloc_pages(order)
            if page is not None:
                break
            order_mask &= ~order_size
        if page is None:
            return None
        count -= order_size
        pages.extend(page + i * PAGE_SIZE for i in range(order_size))
    return pages


def iommu_dma_alloc(
    dev: IommuDevice,
    size: int,
    alloc_pages: Callable[[int], int | None],
    attrs: int = 0,
    cpu: int = 0,
) -> IommuDmaAllocation | None:
    """``iommu_dma_alloc()`` (blocking GFP): non-contiguous pages
    (``iommu_dma_alloc_remap``) mapped IOVA-contiguously with the coherent mask, or with
    DMA_ATTR_FORCE_CONTIGUOUS one ``get_order(size)`` block and ``__iommu_dma_map``.
    None when pages or IOVA run out."""
    domain, cookie = _cookie(dev)
    coherent = dev.dma_coherent
    ioprot = dma_info_to_prot(DMA_BIDIRECTIONAL, coherent, attrs)
    if attrs & DMA_ATTR_FORCE_CONTIGUOUS:
        order = max(0, (-(-size // PAGE_SIZE) - 1).bit_length())
        page = alloc_pages(order)
        if page is None:
            return None
        handle = __iommu_dma_map(dev, page, size, ioprot, dev.coherent_dma_mask, cpu)
        if handle == DMA_MAPPING_ERROR:
            return None
        return IommuDmaAllocation(
            handle, [page + i * PAGE_SIZE for i in range(1 << order)], size, True
        )
    alloc_sizes = domain.pgsize_bitmap
    min_size = alloc_sizes & -alloc_sizes
    if min_size < PAGE_SIZE:
        min_size = PAGE_SIZE
        alloc_sizes |= PAGE_SIZE
    else:
        size = (size + min_size - 1) & ~(min_size - 1)
    if attrs & DMA_ATTR_ALLOC_SINGLE_PAGES:
        alloc_sizes = min_size
    count = (size + PAGE_SIZE - 1) // PAGE_SIZE
    pages = __iommu_dma_alloc_pages(count, alloc_sizes >> 12, alloc_pages)
    if pages is None:
        return None
    gmask = cookie.iovad.granule - 1
    size = (size + gmask) & ~gmask
    iova = iommu_dma_alloc_iova(domain, size, dev.coherent_dma_mask, dev, cpu)
    if not iova:
        return None
    if not ioprot & IOMMU_CACHE:
        cookie.arch_syncs += 1
    # sg_alloc_table_from_pages(): contiguous pages merge into one entry
    sgl: list[ScatterlistEntry] = []
    for p in pages:
        if sgl and (sgl[-1].page << 12) + sgl[-1].length == p:  # type: ignore[operator]
            sgl[-1].length += PAGE_SIZE
        else:
            sgl.append(ScatterlistEntry(page=p >> 12, offset=0, length=PAGE_SIZE))
    ret = iommu_map_sg(domain, iova, sgl, len(sgl), ioprot, GFP_ATOMIC)
    if ret < 0 or ret < size:
        iommu_dma_free_iova(cookie, iova, size, None, cpu)
        return None
    return IommuDmaAllocation(iova, pages, size)


def iommu_dma_free(dev: IommuDevice, alloc: IommuDmaAllocation, cpu: int = 0) -> list[int]:
    """``iommu_dma_free()``: unmap (``__iommu_dma_unmap``) and return the pages for the
    caller to free."""
    __iommu_dma_unmap(dev, alloc.dma_handle, alloc.size, cpu)
    return alloc.pages


def boot_soc_iommu(
    soc: object,
    iommu_name: str,
    *,
    dev_name: str | None = None,
    ncpus: int = 1,
    clock: Callable[[], int] | None = None,
    lazy: bool | None = None,
    **smmu_kw: object,
) -> tuple[object, list[IommuDevice]]:
    """Boot one SMMU of a SoC: the hardware model, its driver, every enabled master
    probed (groups, default domains, attach) and DMA cookies on the DMA domains.
    Returns ``(driver, devices)``.  ``lazy`` defaults to the SoC's invalidation policy."""
    from socmem.hw.smmu.v2 import SmmuV2
    from socmem.hw.smmu.v3 import SmmuV3
    from socmem.linux.iommu.iommu import (
        ArmSmmuDriver,
        ArmSmmuV3Driver,
        iommu_devices_from_soc,
        iommu_probe_device,
    )
    from socmem.soc.schema import Invalidation, IommuModel, Soc

    assert isinstance(soc, Soc)
    iommu = soc.iommu(iommu_name)
    if iommu is None:
        raise ValueError(f"no IOMMU {iommu_name!r} in SoC {soc.name}")
    if lazy is None:
        lazy = iommu.invalidation == Invalidation.LAZY
    driver: ArmSmmuV3Driver | ArmSmmuDriver
    if iommu.model == IommuModel.SMMU_V3:
        smmu3 = SmmuV3.from_soc(iommu, dev_name, clock=clock, **smmu_kw)
        driver = ArmSmmuV3Driver(smmu3, lazy=lazy)
    elif iommu.model in (IommuModel.MMU_500, IommuModel.SMMU_V2):
        smmu2 = SmmuV2.from_soc(iommu, dev_name, clock=clock, **smmu_kw)
        driver = ArmSmmuDriver(smmu2, lazy=lazy)
    else:
        raise ValueError(f"IOMMU model {iommu.model} is not an ARM SMMU")
    devices = iommu_devices_from_soc(soc.masters, iommu_name)
    for dev in devices:
        ret = iommu_probe_device(dev, driver)
        if ret:
            raise OSError(-ret, f"iommu_probe_device({dev.name}) failed")
        dom = dev.group.domain if dev.group is not None else None
        if dom is not None and dom.is_dma:
            iommu_dma_init_domain(dom, ncpus=ncpus, clock=clock)
    return driver, devices
