"""The software IO TLB (bounce buffers): kernel/dma/swiotlb.c, include/linux/swiotlb.h (6.1.y).

The pool (:class:`IoTlbMem`, ``struct io_tlb_mem``) is ``nslabs`` slots of
``IO_TLB_SIZE`` = 2 KiB (``IO_TLB_SHIFT`` 11) split into ``nareas`` areas, each with a
``used`` count and a next-fit ``index`` (``struct io_tlb_area``). Per slot the kernel keeps
``orig_addr``, ``alloc_size`` and ``list``, the number of free slots from this one to the
end of its ``IO_TLB_SEGSIZE`` (128-slot) segment, 0 when taken; here these are three
NumPy arrays, so a 64 MiB pool (32768 slots) costs three arrays, not 32768 objects.

Rules, as 6.1.y swiotlb.c has them:

* ``swiotlb_do_find_slots``: ``iotlb_align_mask = min_align_mask | alloc_align_mask``,
  plus ``~PAGE_MASK`` when ``alloc_size >= PAGE_SIZE``, minus the in-slot bits; stride =
  ``(iotlb_align_mask >> IO_TLB_SHIFT) + 1``. The walk starts at ``area->index``; a slot
  whose address bits under the mask differ from ``orig_addr``'s (when ``orig_addr`` is
  non-zero) costs one step (+1); otherwise it is taken when ``list >= nslots`` and the run
  does not cross the device's segment boundary (``iommu_is_span_boundary``), else the
  walk moves by the stride. Indexes wrap to 0 at the end of the area; the walk gives up
  after ``area_nslabs`` slots checked, or at once when ``nslots > area_nslabs - used``.
  Areas are tried from ``cpu & (nareas - 1)`` (CPU 0 here) round-robin.
* A mapping needs ``nr_slots(alloc_size + offset)`` contiguous slots inside one 128-slot
  segment, so nothing above ``swiotlb_max_mapping_size`` (256 KiB minus the min_align
  round-up) can ever be found: it fails as "swiotlb buffer is full".
* Map copies original → bounce **for every direction** (the 6.1 info-leak fix: the
  device may not overwrite the whole buffer), even with ``DMA_ATTR_SKIP_CPU_SYNC``;
  ``sync_single_for_device`` copies for TO_DEVICE/BIDIRECTIONAL; ``sync_single_for_cpu``
  copies back for FROM_DEVICE/BIDIRECTIONAL; ``tbl_unmap_single`` copies back for
  FROM_DEVICE/BIDIRECTIONAL unless ``DMA_ATTR_SKIP_CPU_SYNC`` (dma-direct's unmap does the
  copy in its ``sync_for_cpu`` and passes SKIP_CPU_SYNC here). The wrong direction in a
  sync is ``BUG_ON``: raised as ``KernelError(EINVAL)``.
* ``swiotlb_map`` traces ``swiotlb_bounced`` with the original address's DMA address,
  maps, then checks the bounce address is ``dma_capable`` (else unmaps without copy,
  ``dev_WARN_ONCE "swiotlb addr %pad+%zu overflow (mask %llx, bus limit %llx).\\n"``).

There are no data bytes: copies are counted (bytes and calls per direction) on the pool
and on the device. Messages go to the device's ``log`` with the ``dev_printk`` prefix
and, for failures, a :class:`~socmem.check.finding.Finding` (``swiotlb.full``,
``swiotlb.overflow``, ``swiotlb.invalid-sizes``, ``swiotlb.bounce-overflow``,
``swiotlb.no-pool``). Pool messages (``pr_fmt`` ``"software IO TLB: "``) go to
:attr:`IoTlbMem.log`. Deviations: ``dev_warn_ratelimited`` is not rate limited;
``*_ONCE`` is once per device, not once per boot; no ``CONFIG_SWIOTLB_DYNAMIC`` (not in
6.1); memory encryption and highmem are not modelled.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from socmem.check.finding import Severity
from socmem.errors import KernelError
from socmem.linux.dma import direct as _direct
from socmem.linux.dma.types import (
    DMA_ATTR_NO_WARN,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_TO_DEVICE,
    DmaDataDirection,
)
from socmem.linux.mm.buddy import MIGRATE_UNMOVABLE, PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from socmem.linux.dma.direct import DirectDevice
    from socmem.linux.mm import PhysMem, ReservedRegion

__all__ = [
    "INVALID_PHYS_ADDR",
    "IO_TLB_DEFAULT_SIZE",
    "IO_TLB_MIN_SLABS",
    "IO_TLB_SEGSIZE",
    "IO_TLB_SHIFT",
    "IO_TLB_SIZE",
    "SWIOTLB_ANY",
    "SWIOTLB_FORCE",
    "SWIOTLB_VERBOSE",
    "IoTlbArea",
    "IoTlbMem",
    "arm64_swiotlb_needed",
    "is_swiotlb_active",
    "is_swiotlb_buffer",
    "is_swiotlb_for_alloc",
    "is_swiotlb_force_bounce",
    "rmem_swiotlb_device_init",
    "rmem_swiotlb_setup",
    "swiotlb_alloc",
    "swiotlb_free",
    "swiotlb_init",
    "swiotlb_map",
    "swiotlb_max_mapping_size",
    "swiotlb_sync_single_for_cpu",
    "swiotlb_sync_single_for_device",
    "swiotlb_tbl_map_single",
    "swiotlb_tbl_unmap_single",
]

IO_TLB_SHIFT = 11
IO_TLB_SIZE = 1 << IO_TLB_SHIFT
IO_TLB_SEGSIZE = 128
IO_TLB_DEFAULT_SIZE = 64 << 20
IO_TLB_MIN_SLABS = (1 << 20) >> IO_TLB_SHIFT
INVALID_PHYS_ADDR = (1 << 64) - 1
SLABS_PER_PAGE = 1 << (PAGE_SHIFT - IO_TLB_SHIFT)
PAGE_MASK = ~(PAGE_SIZE - 1)
ULONG_MAX = (1 << 64) - 1
BITS_PER_LONG = 64
SZ_1M = 1 << 20

# include/linux/swiotlb.h flags of swiotlb_init()
SWIOTLB_VERBOSE = 1 << 0
SWIOTLB_FORCE = 1 << 1
SWIOTLB_ANY = 1 << 2


def io_tlb_offset(val: int) -> int:
    """``io_tlb_offset()``: position inside the 128-slot segment."""
    return val & (IO_TLB_SEGSIZE - 1)


def nr_slots(val: int) -> int:
    """``nr_slots()``: ``DIV_ROUND_UP(val, IO_TLB_SIZE)``."""
    return -(-val // IO_TLB_SIZE)


def slot_addr(start: int, idx: int) -> int:
    """``slot_addr()``."""
    return start + (idx << IO_TLB_SHIFT)


def get_max_slots(boundary_mask: int) -> int:
    """``get_max_slots()``: slots per segment-boundary window (overflow-safe at ~0UL)."""
    if boundary_mask == ULONG_MAX:
        return 1 << (BITS_PER_LONG - IO_TLB_SHIFT)
    return nr_slots(boundary_mask + 1)


def _pa(addr: int) -> str:
    """``%pa`` / ``%pad`` on a 64-bit kernel: ``0x`` and 16 hex digits."""
    return f"0x{addr & ULONG_MAX:016x}"


@dataclass
class IoTlbArea:
    """``struct io_tlb_area``: ``used`` slots and the next-fit ``index``."""

    used: int = 0
    index: int = 0


@dataclass(eq=False)
class IoTlbMem:
    """``struct io_tlb_mem``: one bounce-buffer pool (the default one or a restricted one).

    ``start``/``end`` are physical (``end`` exclusive, as the kernel prints it);
    ``slot_list``/``slot_orig_addr``/``slot_alloc_size`` are the ``io_tlb_slot`` fields.
    """

    name: str
    start: int
    nslabs: int
    nareas: int = 1
    force_bounce: bool = False
    for_alloc: bool = False
    late_alloc: bool = False
    log: list[str] = field(default_factory=list)
    trace: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bytes_bounced: dict[DmaDataDirection, int] = field(
        default_factory=lambda: {DMA_TO_DEVICE: 0, DMA_FROM_DEVICE: 0}
    )
    nr_bounced: dict[DmaDataDirection, int] = field(
        default_factory=lambda: {DMA_TO_DEVICE: 0, DMA_FROM_DEVICE: 0}
    )

    def __post_init__(self) -> None:
        """``swiotlb_init_io_tlb_mem()``: every slot free, ``list`` counting down to the
        end of its segment, no original address."""
        if self.nslabs <= 0 or self.nareas <= 0:
            raise KernelError(errno.EINVAL, "swiotlb: empty pool")
        self.end = self.start + (self.nslabs << IO_TLB_SHIFT)
        self.area_nslabs = self.nslabs // self.nareas
        self.areas = [IoTlbArea() for _ in range(self.nareas)]
        idx = np.arange(self.nslabs, dtype=np.int64)
        self.slot_list = (IO_TLB_SEGSIZE - (idx & (IO_TLB_SEGSIZE - 1))).astype(np.int32)
        self.slot_orig_addr = np.full(self.nslabs, INVALID_PHYS_ADDR, dtype=np.uint64)
        self.slot_alloc_size = np.zeros(self.nslabs, dtype=np.int64)
        self.used_hiwater = 0

    # -- accounting ----------------------------------------------------------------------
    def mem_used(self) -> int:
        """``mem_used()``: slots in use over all areas (debugfs ``io_tlb_used``)."""
        return sum(a.used for a in self.areas)

    @property
    def size(self) -> int:
        """Pool size in bytes."""
        return self.nslabs << IO_TLB_SHIFT

    def debugfs(self) -> dict[str, int]:
        """``/sys/kernel/debug/swiotlb/`` (or ``/<rmem name>/``) files of 6.1:
        ``io_tlb_nslabs`` and ``io_tlb_used``."""
        return {"io_tlb_nslabs": self.nslabs, "io_tlb_used": self.mem_used()}

    def print_info(self) -> str:
        """``swiotlb_print_info()``: the boot line, ``pr_fmt`` included."""
        line = (
            f"software IO TLB: mapped [mem {_pa(self.start)}-{_pa(self.end)}] "
            f"({(self.nslabs << IO_TLB_SHIFT) >> 20}MB)"
        )
        self.log.append(line)
        return line

    def contains(self, paddr: int) -> bool:
        """``is_swiotlb_buffer()`` on this pool: ``start <= paddr < end``."""
        return self.start <= paddr < self.end

    def check(self) -> None:
        """Invariants: ``list`` of each slot is 0 when taken, else 1 + the next slot's
        (0 past the segment end); ``used`` matches the taken slots of each area."""
        lst = self.slot_list
        nxt = np.zeros_like(lst)
        nxt[:-1] = lst[1:]
        seg_end = (np.arange(self.nslabs) & (IO_TLB_SEGSIZE - 1)) == IO_TLB_SEGSIZE - 1
        nxt[seg_end] = 0
        free = lst != 0
        assert np.all(lst[free] == nxt[free] + 1), "swiotlb: broken free-run counts"
        for i, area in enumerate(self.areas):
            part = lst[i * self.area_nslabs : (i + 1) * self.area_nslabs]
            assert int((part == 0).sum()) == area.used, f"swiotlb: area {i} used mismatch"


# -- device helpers ------------------------------------------------------------------------
def _mem(dev: DirectDevice) -> IoTlbMem | None:
    return getattr(dev, "dma_io_tlb_mem", None)


def is_swiotlb_buffer(dev: DirectDevice, paddr: int) -> bool:
    """``is_swiotlb_buffer(dev, paddr)``: inside the device's pool."""
    mem = _mem(dev)
    return mem is not None and mem.contains(paddr)


def is_swiotlb_force_bounce(dev: DirectDevice) -> bool:
    """``is_swiotlb_force_bounce(dev)``: ``swiotlb=force`` or a restricted pool."""
    mem = _mem(dev)
    return mem is not None and mem.force_bounce


def is_swiotlb_active(dev: DirectDevice) -> bool:
    """``is_swiotlb_active(dev)``: the device has a pool with slots."""
    mem = _mem(dev)
    return mem is not None and mem.nslabs > 0


def is_swiotlb_for_alloc(dev: DirectDevice) -> bool:
    """``is_swiotlb_for_alloc(dev)``: coherent allocations come from the (restricted) pool."""
    mem = _mem(dev)
    return mem is not None and mem.for_alloc


def dma_get_min_align_mask(dev: DirectDevice) -> int:
    """``dma_get_min_align_mask()``: ``dma_parms->min_align_mask`` (0 when unset)."""
    return int(getattr(dev, "min_align_mask", 0) or 0)


def swiotlb_align_offset(dev: DirectDevice, addr: int) -> int:
    """``swiotlb_align_offset()``: ``addr & min_align_mask & (IO_TLB_SIZE - 1)``."""
    return addr & dma_get_min_align_mask(dev) & (IO_TLB_SIZE - 1)


def _report(
    dev: DirectDevice, kind: str, message: str, severity: Severity, once: bool = False, **data: Any
) -> None:
    """Log ``message`` with the ``dev_printk`` prefix and record a Finding."""
    _direct.dev_report(dev, kind, message, severity, once=once, **data)


# -- slot search ---------------------------------------------------------------------------
def _wrap(mem: IoTlbMem, index: int) -> int:
    """``wrap_area_index()``: back to 0 at (or past) the end of the area."""
    return 0 if index >= mem.area_nslabs else index


def swiotlb_do_find_slots(
    dev: DirectDevice, area_index: int, orig_addr: int, alloc_size: int, alloc_align_mask: int
) -> int:
    """``swiotlb_do_find_slots()`` (6.1.y): first slot index, or -1."""
    mem = _mem(dev)
    assert mem is not None
    area = mem.areas[area_index]
    boundary_mask = int(getattr(dev, "segment_boundary_mask", ULONG_MAX) or ULONG_MAX)
    tbl_dma_addr = _direct.phys_to_dma(dev, mem.start) & boundary_mask
    max_slots = get_max_slots(boundary_mask)
    iotlb_align_mask = dma_get_min_align_mask(dev) | alloc_align_mask
    nslots = nr_slots(alloc_size)
    offset = swiotlb_align_offset(dev, orig_addr)
    if nslots == 0:
        raise KernelError(errno.EINVAL, "kernel BUG at kernel/dma/swiotlb.c: BUG_ON(!nslots)")
    if alloc_size >= PAGE_SIZE:
        iotlb_align_mask |= ~PAGE_MASK
    iotlb_align_mask &= ~(IO_TLB_SIZE - 1)
    stride = (iotlb_align_mask >> IO_TLB_SHIFT) + 1

    n = mem.area_nslabs
    if nslots > n - area.used:
        return -1
    slot_base = area_index * n
    shift = nr_slots(tbl_dma_addr)
    want = orig_addr & iotlb_align_mask

    def aligned(index: int) -> bool:
        return (
            not orig_addr or (slot_addr(tbl_dma_addr, slot_base + index) & iotlb_align_mask) == want
        )

    lst = mem.slot_list
    # The aligned slots form a progression of period ``stride`` when the mask is a block
    # of low bits: check a whole pass at once. Otherwise walk slot by slot.
    progression = not orig_addr or iotlb_align_mask == (stride - 1) << IO_TLB_SHIFT
    index = area.index
    checked = 0
    found = -1
    while checked < n:
        if not aligned(index):
            index = _wrap(mem, index + 1)
            checked += 1
            continue
        if progression:
            k = min(-(-(n - index) // stride), -(-(n - checked) // stride))
            cand = index + stride * np.arange(k, dtype=np.int64)
            slots = slot_base + cand
            ok = lst[slots] >= nslots
            ok &= ((shift + slots) & (max_slots - 1)) + nslots <= max_slots
            hits = np.flatnonzero(ok)
            if len(hits):
                found = int(cand[hits[0]])
                break
            checked += k * stride
            index = _wrap(mem, index + k * stride)
            continue
        slot_index = slot_base + index
        if ((shift + slot_index) & (max_slots - 1)) + nslots <= max_slots and lst[
            slot_index
        ] >= nslots:
            found = index
            break
        index = _wrap(mem, index + stride)
        checked += stride
    if found < 0:
        return -1

    slot_index = slot_base + found
    lst[slot_index : slot_index + nslots] = 0
    mem.slot_alloc_size[slot_index : slot_index + nslots] = alloc_size - (
        offset + (np.arange(nslots, dtype=np.int64) << IO_TLB_SHIFT)
    )
    count = 0
    i = slot_index - 1
    while io_tlb_offset(i) != IO_TLB_SEGSIZE - 1 and lst[i]:
        count += 1
        lst[i] = count
        i -= 1
    area.index = _wrap(mem, found + nslots)
    area.used += nslots
    mem.used_hiwater = max(mem.used_hiwater, mem.mem_used())
    return slot_index


def swiotlb_find_slots(
    dev: DirectDevice, orig_addr: int, alloc_size: int, alloc_align_mask: int, cpu: int = 0
) -> int:
    """``swiotlb_find_slots()``: every area once, from ``cpu & (nareas - 1)``."""
    mem = _mem(dev)
    assert mem is not None
    start = cpu & (mem.nareas - 1)
    i = start
    while True:
        index = swiotlb_do_find_slots(dev, i, orig_addr, alloc_size, alloc_align_mask)
        if index >= 0:
            return index
        i += 1
        if i >= mem.nareas:
            i = 0
        if i == start:
            return -1


# -- map / unmap / sync --------------------------------------------------------------------
def swiotlb_bounce(dev: DirectDevice, tlb_addr: int, size: int, dir: DmaDataDirection) -> int:
    """``swiotlb_bounce()``: count a copy between the original buffer and the slot.

    Returns the bytes copied (0 when the slot has no original address, or on the
    ``dev_WARN_ONCE`` overflow checks, which truncate or skip the copy).
    """
    mem = _mem(dev)
    assert mem is not None
    index = (tlb_addr - mem.start) >> IO_TLB_SHIFT
    orig_addr = int(mem.slot_orig_addr[index])
    alloc_size = int(mem.slot_alloc_size[index])
    if orig_addr == INVALID_PHYS_ADDR:
        return 0
    tlb_offset = tlb_addr & (IO_TLB_SIZE - 1)
    orig_addr_offset = swiotlb_align_offset(dev, orig_addr)
    if tlb_offset < orig_addr_offset:
        _report(
            dev,
            "swiotlb.bounce-overflow",
            f"Access before mapping start detected. orig offset {orig_addr_offset}, "
            f"requested offset {tlb_offset}.",
            Severity.ERROR,
            once=True,
        )
        return 0
    tlb_offset -= orig_addr_offset
    if tlb_offset > alloc_size:
        _report(
            dev,
            "swiotlb.bounce-overflow",
            f"Buffer overflow detected. Allocation size: {alloc_size}. "
            f"Mapping size: {size}+{tlb_offset}.",
            Severity.ERROR,
            once=True,
        )
        return 0
    alloc_size -= tlb_offset
    if size > alloc_size:
        _report(
            dev,
            "swiotlb.bounce-overflow",
            f"Buffer overflow detected. Allocation size: {alloc_size}. Mapping size: {size}.",
            Severity.ERROR,
            once=True,
        )
        size = alloc_size
    d = DMA_TO_DEVICE if dir == DMA_TO_DEVICE else DMA_FROM_DEVICE
    mem.bytes_bounced[d] += size
    mem.nr_bounced[d] += 1
    stats = getattr(dev, "stats", None)
    if stats is not None:
        stats.bounce(d, size)
    return size


def swiotlb_tbl_map_single(
    dev: DirectDevice,
    orig_addr: int,
    mapping_size: int,
    alloc_size: int,
    alloc_align_mask: int,
    dir: DmaDataDirection,
    attrs: int = 0,
) -> int:
    """``swiotlb_tbl_map_single()``: the bounce slot's physical address (plus the
    min_align offset), or ``DMA_MAPPING_ERROR``."""
    mem = _mem(dev)
    offset = swiotlb_align_offset(dev, orig_addr)
    if mem is None or not mem.nslabs:
        _report(
            dev,
            "swiotlb.no-pool",
            "Can not allocate SWIOTLB buffer earlier and can't now provide you with "
            "the DMA bounce buffer",
            Severity.ERROR,
        )
        return DMA_MAPPING_ERROR
    if mapping_size > alloc_size:
        _report(
            dev,
            "swiotlb.invalid-sizes",
            f"Invalid sizes (mapping: {mapping_size} bytes, alloc: {alloc_size} bytes)",
            Severity.ERROR,
            once=True,
        )
        return DMA_MAPPING_ERROR
    index = swiotlb_find_slots(dev, orig_addr, alloc_size + offset, alloc_align_mask)
    if index == -1:
        if not attrs & DMA_ATTR_NO_WARN:
            _report(
                dev,
                "swiotlb.full",
                f"swiotlb buffer is full (sz: {alloc_size} bytes), "
                f"total {mem.nslabs} (slots), used {mem.mem_used()} (slots)",
                Severity.WARNING,
                alloc_size=alloc_size,
                total=mem.nslabs,
                used=mem.mem_used(),
            )
        return DMA_MAPPING_ERROR
    n = nr_slots(alloc_size + offset)
    mem.slot_orig_addr[index : index + n] = (
        orig_addr + (np.arange(n, dtype=np.int64) << IO_TLB_SHIFT)
    ).astype(np.uint64)
    tlb_addr = slot_addr(mem.start, index) + offset
    swiotlb_bounce(dev, tlb_addr, mapping_size, DMA_TO_DEVICE)
    return tlb_addr


def swiotlb_release_slots(dev: DirectDevice, tlb_addr: int) -> None:
    """``swiotlb_release_slots()``: give the slots back, merging with free neighbours
    inside the segment."""
    mem = _mem(dev)
    assert mem is not None
    offset = swiotlb_align_offset(dev, tlb_addr)
    index = (tlb_addr - offset - mem.start) >> IO_TLB_SHIFT
    nslots = nr_slots(int(mem.slot_alloc_size[index]) + offset)
    aindex = index // mem.area_nslabs
    if aindex >= mem.nareas:
        raise KernelError(errno.EINVAL, "kernel BUG at kernel/dma/swiotlb.c: aindex >= nareas")
    area = mem.areas[aindex]
    lst = mem.slot_list
    seg_end = -(-(index + 1) // IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE  # ALIGN(index + 1, SEGSIZE)
    count = int(lst[index + nslots]) if index + nslots < seg_end else 0
    if nslots:
        lst[index : index + nslots] = count + np.arange(nslots, 0, -1, dtype=np.int32)
        mem.slot_orig_addr[index : index + nslots] = INVALID_PHYS_ADDR
        mem.slot_alloc_size[index : index + nslots] = 0
        count += nslots
    i = index - 1
    while io_tlb_offset(i) != IO_TLB_SEGSIZE - 1 and lst[i]:
        count += 1
        lst[i] = count
        i -= 1
    area.used -= nslots


def swiotlb_tbl_unmap_single(
    dev: DirectDevice, tlb_addr: int, mapping_size: int, dir: DmaDataDirection, attrs: int = 0
) -> None:
    """``swiotlb_tbl_unmap_single()``: copy back (FROM_DEVICE/BIDIRECTIONAL, unless
    SKIP_CPU_SYNC), then release the slots."""
    if not attrs & DMA_ATTR_SKIP_CPU_SYNC and dir in (DMA_FROM_DEVICE, DMA_BIDIRECTIONAL):
        swiotlb_bounce(dev, tlb_addr, mapping_size, DMA_FROM_DEVICE)
    swiotlb_release_slots(dev, tlb_addr)


def swiotlb_sync_single_for_device(
    dev: DirectDevice, tlb_addr: int, size: int, dir: DmaDataDirection
) -> None:
    """``swiotlb_sync_single_for_device()``: copy to the slot for TO_DEVICE/BIDIRECTIONAL;
    FROM_DEVICE does nothing; anything else is ``BUG_ON``."""
    if dir in (DMA_TO_DEVICE, DMA_BIDIRECTIONAL):
        swiotlb_bounce(dev, tlb_addr, size, DMA_TO_DEVICE)
    elif dir != DMA_FROM_DEVICE:
        raise KernelError(errno.EINVAL, "kernel BUG at kernel/dma/swiotlb.c: BUG_ON(dir)")


def swiotlb_sync_single_for_cpu(
    dev: DirectDevice, tlb_addr: int, size: int, dir: DmaDataDirection
) -> None:
    """``swiotlb_sync_single_for_cpu()``: copy back for FROM_DEVICE/BIDIRECTIONAL;
    TO_DEVICE does nothing; anything else is ``BUG_ON``."""
    if dir in (DMA_FROM_DEVICE, DMA_BIDIRECTIONAL):
        swiotlb_bounce(dev, tlb_addr, size, DMA_FROM_DEVICE)
    elif dir != DMA_TO_DEVICE:
        raise KernelError(errno.EINVAL, "kernel BUG at kernel/dma/swiotlb.c: BUG_ON(dir)")


def swiotlb_bounced_line(fields: dict[str, Any]) -> str:
    """The ``swiotlb_bounced`` TP_printk text of a recorded trace event."""
    return (
        f"dev_name: {fields['dev_name']} dma_mask={fields['dma_mask']:x} "
        f"dev_addr={fields['dev_addr']:x} size={fields['size']} "
        f"{'FORCE' if fields['force'] else 'NORMAL'}"
    )


def swiotlb_map(
    dev: DirectDevice, paddr: int, size: int, dir: DmaDataDirection, attrs: int = 0
) -> int:
    """``swiotlb_map()``: the dma-direct bounce path. Returns the bounce slot's DMA
    address, or ``DMA_MAPPING_ERROR``."""
    mem = _mem(dev)
    event = {
        "dev_name": dev.name,
        "dma_mask": dev.dma_mask or 0,
        "dev_addr": _direct.phys_to_dma(dev, paddr),
        "size": size,
        "force": is_swiotlb_force_bounce(dev),
    }
    if mem is not None:
        mem.trace.append(("swiotlb_bounced", event))
    swiotlb_addr = swiotlb_tbl_map_single(dev, paddr, size, size, 0, dir, attrs)
    if swiotlb_addr == DMA_MAPPING_ERROR:
        return DMA_MAPPING_ERROR
    dma_addr = _direct.phys_to_dma(dev, swiotlb_addr)
    if not _direct.dma_capable(dev, dma_addr, size, True):
        swiotlb_tbl_unmap_single(dev, swiotlb_addr, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC)
        _report(
            dev,
            "swiotlb.overflow",
            f"swiotlb addr {_pa(dma_addr)}+{size} overflow "
            f"(mask {dev.dma_mask or 0:x}, bus limit {dev.bus_dma_limit or 0:x}).",
            Severity.ERROR,
            once=True,
        )
        return DMA_MAPPING_ERROR
    if not dev.dma_coherent and not attrs & DMA_ATTR_SKIP_CPU_SYNC:
        _direct.arch_sync_dma_for_device(dev, swiotlb_addr, size, dir)
    return dma_addr


def swiotlb_max_mapping_size(dev: DirectDevice) -> int:
    """``swiotlb_max_mapping_size()``: ``IO_TLB_SIZE * IO_TLB_SEGSIZE`` minus
    ``roundup(min_align_mask, IO_TLB_SIZE)``."""
    min_align_mask = dma_get_min_align_mask(dev)
    min_align = -(-min_align_mask // IO_TLB_SIZE) * IO_TLB_SIZE if min_align_mask else 0
    return IO_TLB_SIZE * IO_TLB_SEGSIZE - min_align


# -- coherent allocations from a restricted pool --------------------------------------------
def swiotlb_alloc(dev: DirectDevice, size: int) -> int | None:
    """``swiotlb_alloc()`` (``CONFIG_DMA_RESTRICTED_POOL``): the pfn of ``size`` bytes of
    slots (``orig_addr`` 0: no alignment check; the slot address is rounded down to its
    page with ``PFN_DOWN``, as 6.1 does), or None."""
    mem = _mem(dev)
    if mem is None:
        return None
    index = swiotlb_find_slots(dev, 0, size, 0)
    if index == -1:
        return None
    return slot_addr(mem.start, index) >> PAGE_SHIFT


def swiotlb_free(dev: DirectDevice, pfn: int, size: int) -> bool:
    """``swiotlb_free()``: False when the page is not in the device's pool."""
    tlb_addr = pfn << PAGE_SHIFT
    if not is_swiotlb_buffer(dev, tlb_addr):
        return False
    swiotlb_release_slots(dev, tlb_addr)
    return True


# -- pool creation -------------------------------------------------------------------------
def _round_up_nslabs(nslabs: int, nareas: int) -> tuple[int, bool]:
    """``round_up_default_nslabs()``."""
    if nslabs < IO_TLB_SEGSIZE * nareas:
        nslabs = IO_TLB_SEGSIZE * nareas
    elif nslabs & (nslabs - 1) == 0:
        return nslabs, False
    return 1 << (nslabs - 1).bit_length(), True


def _low_limit(mem: PhysMem) -> int:
    """``ARCH_LOW_ADDRESS_LIMIT`` + 1: the end of ZONE_DMA, else of ZONE_DMA32, else 4 GiB
    (arm64: ``arm64_dma_phys_limit``)."""
    lim = mem.buddy.limits
    if lim.dma is not None:
        return lim.dma
    if lim.dma32 is not None:
        return lim.dma32
    return 1 << 32


def _outside(runs: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``runs`` (sorted ``[start, end)`` pfn ranges) with every ``holes`` range cut out."""
    out: list[tuple[int, int]] = []
    for s, e in runs:
        for hs, he in holes:
            if he <= s or hs >= e:
                continue
            if hs > s:
                out.append((s, hs))
            s = max(s, he)
            if s >= e:
                break
        if s < e:
            out.append((s, e))
    return out


def _memblock_alloc_top_down(mem: PhysMem, nbytes: int, limit: int, owner: str) -> int | None:
    """``memblock_alloc_low(bytes, PAGE_SIZE)``: the highest free page-aligned range below
    ``limit`` (memblock allocates top-down), taken from the buddy allocator."""
    npages = -(-nbytes // PAGE_SIZE)
    limit_pfn = limit >> PAGE_SHIFT
    # memblock never hands out what /reserved-memory reserved: CMA areas are free in the
    # buddy allocator (as MIGRATE_CMA pageblocks) but not free for memblock
    cma = sorted((a.base_pfn, a.base_pfn + a.count) for a in mem.cma_areas.values())
    for zone in reversed(mem.buddy.zones):
        if zone.zone_start_pfn >= limit_pfn:
            continue
        runs = _outside(
            list(zone.free_runs(zone.zone_start_pfn, min(zone.zone_end_pfn, limit_pfn))), cma
        )
        for s, e in reversed(runs):
            if e - s >= npages:
                start = e - npages
                if mem.buddy.alloc_range(start, e, MIGRATE_UNMOVABLE, owner=owner) is None:
                    continue
                return start << PAGE_SHIFT
    return None


def swiotlb_init(
    mem: PhysMem,
    addressing_limit: bool,
    flags: int = SWIOTLB_VERBOSE,
    nslabs: int = IO_TLB_DEFAULT_SIZE >> IO_TLB_SHIFT,
    nareas: int | None = None,
    num_possible_cpus: int = 1,
    force: bool = False,
    force_disable: bool = False,
) -> IoTlbMem | None:
    """``swiotlb_init(addressing_limit, flags)`` → ``swiotlb_init_remap()`` (6.1).

    Nothing happens (None, no line) unless the platform has memory beyond some device's
    reach (``addressing_limit``) or bouncing is forced (``swiotlb=force``: ``force``);
    ``swiotlb=noforce`` is ``force_disable``. ``nslabs`` is the ``swiotlb=<nslabs>``
    parameter (aligned to ``IO_TLB_SEGSIZE``); ``nareas`` its second field, defaulting
    to ``swiotlb_adjust_nareas(num_possible_cpus())``. The buffer comes from
    ``memblock_alloc_low`` (top-down below ``ARCH_LOW_ADDRESS_LIMIT``; anywhere with
    ``SWIOTLB_ANY``), halving down to ``IO_TLB_MIN_SLABS`` on failure. Log lines go to
    ``mem.log`` (the PhysMem's) and the pool's :attr:`IoTlbMem.log`.
    """
    if not addressing_limit and not force:
        return None
    if force_disable:
        return None
    lines: list[str] = []
    nslabs = -(-nslabs // IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE
    if nareas is None:
        nareas = num_possible_cpus
    nareas = 1 if nareas <= 0 else 1 << (nareas - 1).bit_length()
    lines.append(f"software IO TLB: area num {nareas}.")
    default_nslabs, rounded = _round_up_nslabs(nslabs, nareas)
    if rounded:
        lines.append(
            "software IO TLB: SWIOTLB bounce buffer size roundup to "
            f"{(default_nslabs << IO_TLB_SHIFT) >> 20}MB"
        )
    nslabs = default_nslabs
    limit = (1 << 64) if flags & SWIOTLB_ANY else _low_limit(mem)
    while True:
        nbytes = -(-(nslabs << IO_TLB_SHIFT) // PAGE_SIZE) * PAGE_SIZE
        start = _memblock_alloc_top_down(mem, nbytes, limit, "swiotlb")
        if start is not None:
            break
        lines.append(
            f"software IO TLB: swiotlb_memblock_alloc: Failed to allocate {nbytes} "
            "bytes tlb structure"
        )
        if nslabs <= IO_TLB_MIN_SLABS:
            mem.log.extend(lines)
            return None
        nslabs = -(-(nslabs >> 1) // IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE
    if default_nslabs != nslabs:
        lines.append(
            "software IO TLB: SWIOTLB bounce buffer size adjusted "
            f"{default_nslabs} -> {nslabs} slabs"
        )
    pool = IoTlbMem(
        "swiotlb",
        start,
        nslabs,
        nareas,
        force_bounce=force or bool(flags & SWIOTLB_FORCE),
    )
    pool.log.extend(lines)
    if flags & SWIOTLB_VERBOSE:
        pool.print_info()
    mem.log.extend(pool.log)
    return pool


def arm64_swiotlb_needed(mem: PhysMem) -> bool:
    """arch/arm64/mm/init.c (6.1) ``mem_init``: ``max_pfn > PFN_DOWN(arm64_dma_phys_limit)``
    — memory exists beyond the end of ZONE_DMA (or ZONE_DMA32)."""
    max_pfn = max(e for _s, e in mem.buddy.memory) if mem.buddy.memory else 0
    return max_pfn > (_low_limit(mem) >> PAGE_SHIFT)


def rmem_swiotlb_setup(rmem: ReservedRegion, log: list[str] | None = None) -> IoTlbMem:
    """``rmem_swiotlb_setup()`` + the pool half of ``rmem_swiotlb_device_init()``: a
    ``restricted-dma-pool`` region becomes a per-device pool (one area, forced bounce,
    used for coherent allocations too).

    ``reusable`` (``kind == "cma"``) or ``no-map`` regions are -EINVAL, as in the kernel.
    The caller must not hand the region out otherwise (PhysMem gives ``carveout``
    regions a GenPool; leave it unused).
    """
    if rmem.kind in ("cma", "no-map") or rmem.cma_default:
        raise KernelError(
            errno.EINVAL,
            f"restricted-dma-pool {rmem.name}: reusable/no-map/linux,cma-default not allowed",
        )
    line = (
        f"Reserved memory: created restricted DMA pool at {_pa(rmem.base)}, "
        f"size {rmem.size // SZ_1M} MiB"
    )
    pool = IoTlbMem(
        rmem.name, rmem.base, rmem.size >> IO_TLB_SHIFT, 1, force_bounce=True, for_alloc=True
    )
    pool.log.append(line)
    if log is not None:
        log.append(line)
    return pool


def rmem_swiotlb_device_init(pool: IoTlbMem, dev: DirectDevice) -> None:
    """``rmem_swiotlb_device_init()``: the device now bounces through ``pool``."""
    dev.dma_io_tlb_mem = pool
