"""dma-debug: every check of ``kernel/dma/debug.c`` (``CONFIG_DMA_API_DEBUG``).

:class:`DmaDebug` is the model of the kernel's DMA-API debugging layer.  The DMA API model
(``socmem.linux.dma.mapping``) calls its hooks exactly where ``kernel/dma/mapping.c`` calls
``debug_dma_*``, with the same arguments; each violation the kernel would report becomes a
:class:`~socmem.check.finding.Finding` in a :class:`~socmem.check.finding.FindingLog`, with
the kernel's log line verbatim and the history of the mapping involved.

Bookkeeping follows the kernel
------------------------------
* One :class:`DmaDebugEntry` (``struct dma_debug_entry``) per live mapping, held in a hash
  of :data:`HASH_SIZE` buckets indexed by ``(dev_addr >> HASH_FN_SHIFT) & HASH_FN_MASK``;
  only non-empty buckets exist, so cost grows with live mappings, never with bytes.
* Unmap/free look entries up by *exact* match (same device, same ``dev_addr``); sync
  looks up the *containing* entry, walking back bucket by bucket
  (``bucket_find_contain``); both use the kernel's best-fit rule (size, type, direction,
  ``sg_call_ents``: four of four wins at once; several matches without a perfect one
  count as "not found").
* Active-cacheline tracking (``dma_active_cacheline`` radix tree): the first cacheline of
  every non-``DMA_TO_DEVICE`` mapping, with an overlap count of at most
  :data:`ACTIVE_CACHELINE_MAX_OVERLAP`.
* The entry pool counters (``num_free_entries``, ``min_free_entries``,
  ``nr_total_entries``), ``error_count``, ``all_errors``/``num_errors`` and the
  per-driver filter, as in debugfs ``/sys/kernel/debug/dma-api/``.

Kernel versions
---------------
The checks are the same across versions; spellings and a few rules moved.  A
:class:`DmaDebugProfile` carries them; :data:`V6_1` (default) models the v6.1 era
(``dma_debug_single``/``sg``/``coherent``/``resource`` with ``pfn`` + ``offset``; type
name ``"scather-gather"`` *sic*), :data:`NEWEST` the phys-based linux-next code
(``paddr``, ``dma_debug_phy`` named ``"phy"``, ``dma_debug_noncoherent`` for
``dma_alloc_pages``, ``"scatter-gather"``, ``cln=`` in dumps, ``0x%pa`` CPU addresses).

Printing versus recording
-------------------------
``err_printk()`` always increments ``error_count`` but prints (a ``WARN`` with the
message, then ``DMA-API: Mapped at:`` and the saved stack) only while ``all_errors`` is set
or ``num_errors`` is non-zero, and only for devices passing the driver filter; each report
decrements ``num_errors`` (start value 1: by default only the first error of the boot is
printed).  socmem's checks are first-class, so **every** report becomes a Finding;
``finding.data["printed"]`` tells whether the kernel would have printed it, and
:attr:`DmaDebug.log` holds exactly the lines the kernel would have printed.

Deviations (documented where made)
----------------------------------
* There are no ``struct page`` or kernel virtual addresses in the model: hooks take
  physical addresses (``page_phys`` = ``page_to_phys(page)``) and, where the kernel
  inspects a CPU pointer, a :class:`MemArea` telling what that pointer is (stack, vmalloc,
  kernel text ...).  ``%p`` values print as 16 hex digits of the address given (the kernel
  hashes them unless booted with ``no_hash_pointers``).
* Stack traces are the caller-supplied ``stack`` frames (default: the API name).
* Pool exhaustion never fails (the kernel's "debugging out of memory - disabling" path
  needs a failing page allocation, which the model does not simulate); the pool still
  grows and logs ``dma_debug_entry pool grown to ...`` like the kernel.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from socmem.check.finding import Finding, FindingLog, HistoryEvent, Severity
from socmem.linux.dma.types import (
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_NONE,
    DMA_TO_DEVICE,
    DmaDataDirection,
)

__all__ = [
    "ACTIVE_CACHELINE_MAX_OVERLAP",
    "BUS_NOTIFY_UNBOUND_DRIVER",
    "DMA_ATTR_DEBUGGING_IGNORE_CACHELINES",
    "DMA_ATTR_MMIO",
    "DMA_ATTR_REQUIRE_COHERENT",
    "DMA_ATTR_SKIP_CPU_SYNC",
    "DMA_BIDIRECTIONAL",
    "DMA_FROM_DEVICE",
    "DMA_MAPPING_ERROR",
    "DMA_NONE",
    "DMA_TO_DEVICE",
    "HASH_FN_SHIFT",
    "HASH_SIZE",
    "NEWEST",
    "V6_1",
    "DebugDevice",
    "DebugDeviceLike",
    "DebugSgEntry",
    "DmaDataDirection",
    "DmaDebug",
    "DmaDebugEntry",
    "DmaDebugProfile",
    "DmaDebugType",
    "MapErrType",
    "MemArea",
    "SgEntryLike",
    "dev_driver_string",
    "dir2name",
    "dma_get_max_seg_size",
    "dma_get_seg_boundary",
]

# --- constants (kernel/dma/debug.c, include/linux/*.h) ------------------------------------

HASH_SIZE = 16384
HASH_FN_SHIFT = 13
HASH_FN_MASK = HASH_SIZE - 1
PREALLOC_DMA_DEBUG_ENTRIES = 1 << 16
#: ``PAGE_SIZE / sizeof(struct dma_debug_entry)``: 4096 / 128 (the entry is 120 bytes with
#: CONFIG_STACKTRACE, ``____cacheline_aligned_in_smp`` to 64 → 128).
DMA_DEBUG_DYNAMIC_ENTRIES = 32
DMA_DEBUG_STACKTRACE_ENTRIES = 5
RADIX_TREE_MAX_TAGS = 3
ACTIVE_CACHELINE_MAX_OVERLAP = (1 << RADIX_TREE_MAX_TAGS) - 1
NAME_MAX_LEN = 64

U64_MASK = (1 << 64) - 1
U32_MASK = (1 << 32) - 1
SZ_64K = 0x10000
ULONG_MAX = U64_MASK
#: arm64 48-bit VA linear map start; only used to invent ``%p`` values.
PAGE_OFFSET = 0xFFFF_0000_0000_0000

# include/linux/device/bus.h
BUS_NOTIFY_ADD_DEVICE = 0x00000001
BUS_NOTIFY_DEL_DEVICE = 0x00000002
BUS_NOTIFY_REMOVED_DEVICE = 0x00000003
BUS_NOTIFY_BIND_DRIVER = 0x00000004
BUS_NOTIFY_BOUND_DRIVER = 0x00000005
BUS_NOTIFY_UNBIND_DRIVER = 0x00000006
BUS_NOTIFY_UNBOUND_DRIVER = 0x00000007
BUS_NOTIFY_DRIVER_NOT_BOUND = 0x00000008

# include/linux/dma-mapping.h: newer attributes dma-debug looks at (not in v6.1)
DMA_ATTR_MMIO = 1 << 10
DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = 1 << 11
DMA_ATTR_REQUIRE_COHERENT = 1 << 12

_EEXIST = 17


def dir2name(direction: int) -> str:
    """``dir2name[]`` of kernel/dma/debug.c: the direction as messages print it."""
    try:
        return DmaDataDirection(direction).name
    except ValueError:
        return str(direction)


class DmaDebugType(enum.IntEnum):
    """The ``dma_debug_*`` entry types (``dma_debug_single`` ... ``dma_debug_phy``).

    v6.1 has ``single``, ``sg``, ``coherent``, ``resource``; newer kernels add
    ``noncoherent`` (``dma_alloc_pages``) and ``phy`` (``dma_map_phys``, which newest
    ``dma_map_page`` also records as) and drop ``resource``.
    """

    SINGLE = 0
    SG = 1
    COHERENT = 2
    RESOURCE = 3
    NONCOHERENT = 4
    PHY = 5


class MapErrType(enum.IntEnum):
    """``enum map_err_types``: whether ``dma_mapping_error()`` was called on the entry."""

    MAP_ERR_CHECK_NOT_APPLICABLE = 0
    MAP_ERR_NOT_CHECKED = 1
    MAP_ERR_CHECKED = 2


_MAPERR2STR = {
    MapErrType.MAP_ERR_CHECK_NOT_APPLICABLE: "dma map error check not applicable",
    MapErrType.MAP_ERR_NOT_CHECKED: "dma map error not checked",
    MapErrType.MAP_ERR_CHECKED: "dma map error checked",
}


class MemArea(enum.Enum):
    """What a CPU address handed to the DMA API is, for the checks that look at it.

    Stands in for ``virt_addr_valid()``, ``is_vmalloc_addr()``, ``object_is_on_stack()``,
    ``task_stack_vm_area()``, ``PageHighMem()`` and the ``_stext``/``__start_rodata``
    ranges (x86-like: the kernel image is treated as linear-mapped).
    """

    LINEAR = "linear"  #: page allocator / kmalloc memory in the linear map: fine
    HIGHMEM = "highmem"  #: a highmem page (32-bit); stack/text checks skipped
    STACK = "stack"  #: the current task's stack, direct-mapped (!CONFIG_VMAP_STACK)
    VMAP_STACK = "vmap-stack"  #: the current task's stack, vmapped (CONFIG_VMAP_STACK)
    VMALLOC = "vmalloc"  #: vmalloc()/vmap() memory
    KERNEL_TEXT = "kernel-text"  #: inside _stext.._etext
    KERNEL_RODATA = "kernel-rodata"  #: inside __start_rodata..__end_rodata
    INVALID = "invalid"  #: no valid kernel mapping (virt_addr_valid() false)
    MMIO = "mmio"  #: device MMIO (ioremap'd; DMA_ATTR_MMIO in newest kernels)

    @property
    def virt_addr_valid(self) -> bool:
        """``virt_addr_valid()`` of an address in this area."""
        return self in (
            MemArea.LINEAR,
            MemArea.STACK,
            MemArea.KERNEL_TEXT,
            MemArea.KERNEL_RODATA,
        )

    @property
    def is_vmalloc_addr(self) -> bool:
        """``is_vmalloc_addr()`` of an address in this area."""
        return self in (MemArea.VMALLOC, MemArea.VMAP_STACK, MemArea.MMIO)


# --- device and scatterlist protocols -----------------------------------------------------


class DebugDeviceLike(Protocol):
    """What dma-debug needs of a ``struct device``.

    Required: ``name`` (``dev_name()``, e.g. ``"0000:00:06.0"``) and ``driver_name`` (the
    bound driver's name, ``None`` when unbound).  Read when present (``getattr``):
    ``bus_name`` / ``class_name`` (``dev_driver_string()`` fallbacks), ``max_segment_size``
    and ``segment_boundary_mask`` (``dev->dma_parms``; ``None``/0 = not set; a nested
    ``dma_parms`` object with those two fields works too) and ``coherent``.  Devices are
    compared by identity, like the kernel compares ``struct device *``.
    """

    @property
    def name(self) -> str: ...

    @property
    def driver_name(self) -> str | None: ...


@dataclass(eq=False)
class DebugDevice:
    """A minimal device for dma-debug (and for tests); see :class:`DebugDeviceLike`.

    ``max_segment_size``/``segment_boundary_mask`` model ``dev->dma_parms``: ``None``
    means not set, giving the kernel defaults of ``dma_get_max_seg_size()`` (64 KiB) and
    ``dma_get_seg_boundary()`` (``ULONG_MAX``).  The PCI core sets 64 KiB and
    ``0xffffffff`` for every PCI device.  ``coherent`` is ``dev_is_dma_coherent()``;
    debug.c itself never exempts coherent devices (see :class:`DmaDebug`).
    """

    name: str
    driver_name: str | None = None
    bus_name: str | None = "platform"
    class_name: str | None = None
    max_segment_size: int | None = None
    segment_boundary_mask: int | None = None
    coherent: bool = False


def _dma_parm(dev: object, attr: str) -> int | None:
    value = getattr(dev, attr, None)
    if value is None:
        parms = getattr(dev, "dma_parms", None)
        value = getattr(parms, attr, None) if parms is not None else None
    return int(value) if value else None


def dma_get_max_seg_size(dev: object) -> int:
    """Models ``dma_get_max_seg_size()``: ``dma_parms->max_segment_size`` or 64 KiB."""
    return _dma_parm(dev, "max_segment_size") or SZ_64K


def dma_get_seg_boundary(dev: object) -> int:
    """Models ``dma_get_seg_boundary()``: ``dma_parms->segment_boundary_mask`` or ULONG_MAX."""
    return _dma_parm(dev, "segment_boundary_mask") or ULONG_MAX


def dev_driver_string(dev: object, *, bound: bool = True) -> str:
    """Models ``dev_driver_string()``: driver name, else bus name, else class name, else "".

    ``bound=False`` gives the string once ``dev->driver`` has been cleared (as it is when
    ``BUS_NOTIFY_UNBOUND_DRIVER`` is sent).
    """
    drv = getattr(dev, "driver_name", None) if bound else None
    if drv:
        return str(drv)
    for attr in ("bus_name", "class_name"):
        value = getattr(dev, attr, None)
        if value:
            return str(value)
    return ""


class SgEntryLike(Protocol):
    """What dma-debug reads of one ``struct scatterlist`` entry.

    ``phys`` is ``sg_phys(s)`` (page physical address + ``s->offset``), ``length`` is
    ``s->length``, ``dma_address``/``dma_length`` are ``sg_dma_address(s)`` /
    ``sg_dma_len(s)`` after mapping.  Optional (``getattr``): ``area`` (a
    :class:`MemArea`, default LINEAR) and ``vaddr`` (``sg_virt(s)`` for messages).
    """

    @property
    def phys(self) -> int: ...

    @property
    def length(self) -> int: ...

    @property
    def dma_address(self) -> int: ...

    @property
    def dma_length(self) -> int: ...


@dataclass(slots=True)
class DebugSgEntry:
    """A scatterlist entry for dma-debug (and for tests); see :class:`SgEntryLike`."""

    phys: int
    length: int
    dma_address: int = 0
    dma_length: int = 0
    area: MemArea = MemArea.LINEAR
    vaddr: int | None = None


# --- kernel-version profile ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DmaDebugProfile:
    """What differs in kernel/dma/debug.c between kernel versions.

    ``contain_walk_by_addr``: ``bucket_find_contain()`` walks back ``(dev_addr >> 13) + 1``
    buckets (newer) instead of ``dma_get_max_seg_size(dev) / 8 KiB + 1`` (older).
    ``eexist_err_printk``: EEXIST is an ``err_printk`` (counted, first-error rule) rather
    than a bare ``pr_err``.  ``sg_area_checks_all_nents``: ``debug_dma_map_sg`` checks
    stack/text on all ``nents`` input entries with ``s->length`` (newer) rather than on the
    mapped ones with ``sg_dma_len``.  ``dump_format``: ``"pfn"`` (``P= N= D= L=``),
    ``"pfn-cln"`` (adds ``cln=``), ``"paddr"`` (``P=%pa D= L= cln=``).
    """

    name: str
    sg_type_name: str = "scather-gather"
    map_page_type: DmaDebugType = DmaDebugType.SINGLE
    noncoherent_type: bool = False
    has_resource: bool = True
    eexist_err_printk: bool = True
    eexist_skip_cpu_sync_exempt: bool = True
    eexist_kmalloc_bounce_exempt: bool = False
    eexist_cache_clean_exempt: bool = False
    contain_walk_by_addr: bool = False
    sg_area_checks_all_nents: bool = False
    mmio_skips_area_checks: bool = False
    dump_format: str = "pfn"
    debugfs_dump: bool = False
    cpu_addr_pa: bool = False

    def type2name(self, t: DmaDebugType) -> str:
        """``type2name[]`` of this kernel version."""
        if t is DmaDebugType.SG:
            return self.sg_type_name
        return t.name.lower()


#: The v6.1 era (pfn + offset bookkeeping, ``"scather-gather"``, no debugfs dump).
V6_1 = DmaDebugProfile(name="v6.1")

#: linux-next (phys-based dma-debug): ``phy``/``noncoherent`` types, ``0x%pa`` addresses.
NEWEST = DmaDebugProfile(
    name="newest",
    sg_type_name="scatter-gather",
    map_page_type=DmaDebugType.PHY,
    noncoherent_type=True,
    has_resource=False,
    eexist_kmalloc_bounce_exempt=True,
    eexist_cache_clean_exempt=True,
    contain_walk_by_addr=True,
    sg_area_checks_all_nents=True,
    mmio_skips_area_checks=True,
    dump_format="paddr",
    debugfs_dump=True,
    cpu_addr_pa=True,
)


# --- the entry ----------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class DmaDebugEntry:
    """``struct dma_debug_entry``: one tracked mapping (or a stack reference for lookups).

    ``pfn`` + ``offset`` are the v6.1 fields (``paddr`` in newer kernels is
    ``pfn << PAGE_SHIFT + offset``); ``stack`` stands for ``stack_entries[]`` and
    ``history`` is socmem's record of the mapping's life.
    """

    dev: Any
    dev_addr: int
    size: int
    type: DmaDebugType
    direction: int
    sg_call_ents: int = 0
    sg_mapped_ents: int = 0
    pfn: int = 0
    offset: int = 0
    map_err_type: MapErrType = MapErrType.MAP_ERR_CHECK_NOT_APPLICABLE
    stack: tuple[str, ...] = ()
    is_cache_clean: bool = False
    history: list[HistoryEvent] = field(default_factory=list)
    page_shift: int = 12

    @property
    def paddr(self) -> int:
        """``phys_addr(entry)`` (v6.1) / ``entry->paddr`` (newer)."""
        return (self.pfn << self.page_shift) + self.offset


@dataclass(slots=True)
class _ActiveCacheline:
    overlap: int = 0
    all_clean: bool = False


def _ptr(value: int) -> str:
    """``%p`` of a pointer (unhashed)."""
    return f"{value & U64_MASK:016x}"


def _pa(value: int) -> str:
    """``%pa`` of a ``phys_addr_t`` on a 64-bit kernel."""
    return f"0x{value & U64_MASK:016x}"


# Severity of each finding kind; ERROR unless listed.
_WARNING_KINDS = frozenset(
    {
        "unmap-map-error-not-checked",
        "cacheline-overlap",
        "cacheline-overlap-overflow",
    }
)


class DmaDebug:
    """The dma-debug layer: hooks, bookkeeping, checks, dumps and debugfs knobs.

    Models kernel/dma/debug.c as a whole (its file-static state becomes instance state).
    ``findings`` receives every report; ``clock`` returns the current model time in
    seconds (pass ``lambda: ns_to_s(model_clock.now)`` for a
    :class:`socmem.linux.clock.ModelClock`).  Boot parameters: ``dma_debug_off``
    (``dma_debug=off``), ``nr_prealloc_entries`` (``dma_debug_entries=``), ``driver``
    (``dma_debug_driver=``).  ``debug_sg`` is ``CONFIG_DMA_API_DEBUG_SG`` (always on in
    the newest kernels); ``swiotlb_kmalloc_bounce`` stands for
    ``IS_ENABLED(CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC) && is_swiotlb_allocated()`` (newer
    kernels stop reporting cacheline overlaps when it holds).

    The kernel has no exemption for dma-coherent devices: an overlapping mapping on a
    coherent device is reported as well (the device's ``coherent`` flag is not consulted
    here; it matters to the DMA API model, e.g. for kmalloc bouncing).
    """

    def __init__(
        self,
        findings: FindingLog | None = None,
        *,
        clock: Callable[[], float] | None = None,
        profile: DmaDebugProfile = V6_1,
        dma_debug_off: bool = False,
        nr_prealloc_entries: int = PREALLOC_DMA_DEBUG_ENTRIES,
        driver: str | None = None,
        debug_sg: bool = True,
        swiotlb_kmalloc_bounce: bool = False,
        page_shift: int = 12,
        l1_cache_shift: int = 6,
        page_offset: int = PAGE_OFFSET,
        remember_freed: int = 4096,
    ) -> None:
        self.findings = findings if findings is not None else FindingLog()
        self.clock: Callable[[], float] = clock if clock is not None else (lambda: 0.0)
        self.profile = profile
        self.debug_sg = debug_sg
        self.swiotlb_kmalloc_bounce = swiotlb_kmalloc_bounce
        self.page_shift = page_shift
        self.l1_cache_shift = l1_cache_shift
        self.page_offset = page_offset
        #: Lines the kernel would have printed (dmesg), in order.
        self.log: list[str] = []
        # debugfs state
        self.global_disable = False
        self.dma_debug_initialized = False
        self.error_count = 0
        self.show_all_errors = 0
        self.show_num_errors = 1
        self.num_free_entries = 0
        self.min_free_entries = 0
        self.nr_total_entries = 0
        self.nr_prealloc_entries = nr_prealloc_entries
        self.current_driver_name = ""
        # hash: bucket index -> entries in list order (only non-empty buckets exist)
        self._buckets: dict[int, list[DmaDebugEntry]] = {}
        self._nr_entries = 0
        # radix tree dma_active_cacheline: cacheline number -> overlap state
        self._cachelines: dict[int, _ActiveCacheline] = {}
        self._warned_once: set[str] = set()
        # history of recently freed entries, for "not allocated" findings (double unmap)
        self._freed: OrderedDict[tuple[int, int], list[HistoryEvent]] = OrderedDict()
        self._remember_freed = remember_freed

        # __setup() handlers run while parsing the command line, before the initcall.
        if dma_debug_off:
            self.log.append("DMA-API: debugging disabled on kernel command line")
            self.global_disable = True
        if driver:
            self.current_driver_name = driver[: NAME_MAX_LEN - 1]
            self.log.append(
                f"DMA-API: enable driver filter for driver [{self.current_driver_name}]"
            )
        self._dma_debug_init()

    # --- init, pool, state ----------------------------------------------------------------

    def _dma_debug_init(self) -> None:
        """Models dma_debug_init(): preallocate the entry pool, then enable."""
        if self.global_disable:
            return
        per_page = DMA_DEBUG_DYNAMIC_ENTRIES
        nr_pages = -(-self.nr_prealloc_entries // per_page)
        self.num_free_entries = self.nr_total_entries = nr_pages * per_page
        if self.num_free_entries >= self.nr_prealloc_entries:
            self.log.append(f"DMA-API: preallocated {self.nr_total_entries} debug entries")
        self.min_free_entries = self.num_free_entries
        self.dma_debug_initialized = True
        self.log.append("DMA-API: debugging enabled by kernel config")

    def dma_debug_disabled(self) -> bool:
        """Models dma_debug_disabled(): ``global_disable || !dma_debug_initialized``."""
        return self.global_disable or not self.dma_debug_initialized

    def _entry_alloc(self) -> None:
        """Models dma_entry_alloc()'s accounting (grow a page of entries when empty)."""
        if self.num_free_entries == 0:
            self.num_free_entries += DMA_DEBUG_DYNAMIC_ENTRIES
            self.nr_total_entries += DMA_DEBUG_DYNAMIC_ENTRIES
            # __dma_entry_alloc_check_leak()
            if self.nr_total_entries % self.nr_prealloc_entries < DMA_DEBUG_DYNAMIC_ENTRIES:
                self.log.append(
                    f"DMA-API: dma_debug_entry pool grown to {self.nr_total_entries} "
                    f"({self.nr_total_entries // self.nr_prealloc_entries}00%)"
                )
        self.num_free_entries -= 1
        self.min_free_entries = min(self.min_free_entries, self.num_free_entries)

    def _entry_free(self, entry: DmaDebugEntry) -> None:
        """Models dma_entry_free(): drop the cacheline reference, return to the pool."""
        self._active_cacheline_remove(entry)
        self.num_free_entries += 1

    # --- driver filter ----------------------------------------------------------------------

    def driver_filter(self, dev: object, *, bound: bool = True) -> bool:
        """Models driver_filter(): does ``dev`` pass the ``dma_debug_driver`` filter?"""
        if not self.current_driver_name:
            return True
        drv = getattr(dev, "driver_name", None) if bound else None
        if not drv:
            return False
        return str(drv)[: NAME_MAX_LEN - 1] == self.current_driver_name

    def set_driver_filter(self, text: str) -> int:
        """Models a write to debugfs ``dma-api/driver_filter`` (filter_write()).

        The first token names the driver; a first character that is not alphanumeric
        switches the filter off.  Returns the byte count, as the write does.
        """
        buf = text[: NAME_MAX_LEN - 1]
        if not buf or not (buf[0].isascii() and buf[0].isalnum()):
            if self.current_driver_name:
                self.log.append("DMA-API: switching off dma-debug driver filter")
            self.current_driver_name = ""
            return len(text)
        name = []
        for ch in buf:
            if ch.isspace():
                break
            name.append(ch)
        self.current_driver_name = "".join(name)
        self.log.append(f"DMA-API: enable driver filter for driver [{self.current_driver_name}]")
        return len(text)

    # --- reporting ------------------------------------------------------------------------

    def _now(self) -> float:
        return float(self.clock())

    def _event(self, what: str, detail: str) -> HistoryEvent:
        return HistoryEvent(self._now(), what, detail)

    def _subject(self, dev: object, dev_addr: int | None) -> str:
        name = getattr(dev, "name", "NULL")
        return name if dev_addr is None else f"{name} dma_addr={dev_addr & U64_MASK:#x}"

    def _record(
        self,
        kind: str,
        message: str,
        *,
        dev: object,
        dev_addr: int | None,
        entry: DmaDebugEntry | None,
        event: HistoryEvent | None,
        printed: bool,
        counted: bool,
        extra: dict[str, Any] | None = None,
    ) -> Finding:
        history: list[HistoryEvent] = []
        if entry is not None:
            history.extend(entry.history)
        elif dev_addr is not None:
            history.extend(self._freed.get((id(dev), dev_addr & U64_MASK), ()))
        if event is not None:
            history.append(event)
        data: dict[str, Any] = {
            "printed": printed,
            "counted": counted,
            "error_count": self.error_count,
            "device": getattr(dev, "name", None),
            "driver": getattr(dev, "driver_name", None),
        }
        if entry is not None:
            data["entry"] = self._entry_dict(entry)
        if extra:
            data.update(extra)
        severity = Severity.WARNING if kind in _WARNING_KINDS else Severity.ERROR
        return self.findings.add(
            Finding(
                kind=f"dma-debug.{kind}",
                severity=severity,
                message=message,
                subject=self._subject(dev, dev_addr),
                time=self._now(),
                history=history,
                data=data,
            )
        )

    def _err_printk(
        self,
        dev: object,
        entry: DmaDebugEntry | None,
        kind: str,
        text: str,
        *,
        dev_addr: int | None = None,
        event: HistoryEvent | None = None,
        bound: bool = True,
    ) -> Finding:
        """Models the err_printk() macro: count, maybe print (WARN), record a Finding."""
        self.error_count += 1
        printed = self.driver_filter(dev, bound=bound) and bool(
            self.show_all_errors or self.show_num_errors > 0
        )
        drv = dev_driver_string(dev, bound=bound)
        line = f"DMA-API: {drv} {getattr(dev, 'name', 'NULL')}: {text}"
        message = line[:-1] if line.endswith("\n") else line
        if printed:
            self.log.extend(message.split("\n"))
            if entry is not None:  # dump_entry_trace()
                self.log.append("DMA-API: Mapped at:")
                self.log.extend(f" {frame}" for frame in entry.stack)
        if not self.show_all_errors and self.show_num_errors > 0:
            self.show_num_errors -= 1
        return self._record(
            kind,
            message,
            dev=dev,
            dev_addr=dev_addr,
            entry=entry,
            event=event,
            printed=printed,
            counted=True,
        )

    def _entry_dict(self, e: DmaDebugEntry) -> dict[str, Any]:
        return {
            "dev_addr": e.dev_addr,
            "size": e.size,
            "type": self.profile.type2name(e.type),
            "direction": dir2name(e.direction),
            "sg_call_ents": e.sg_call_ents,
            "sg_mapped_ents": e.sg_mapped_ents,
            "paddr": e.paddr,
            "map_err_type": _MAPERR2STR[e.map_err_type],
        }

    # --- hash -----------------------------------------------------------------------------

    @staticmethod
    def hash_fn(dev_addr: int) -> int:
        """Models hash_fn(): ``(dev_addr >> HASH_FN_SHIFT) & HASH_FN_MASK``."""
        return ((dev_addr & U64_MASK) >> HASH_FN_SHIFT) & HASH_FN_MASK

    @staticmethod
    def _exact_match(ref: DmaDebugEntry, e: DmaDebugEntry) -> bool:
        return e.dev_addr == ref.dev_addr and e.dev is ref.dev

    @staticmethod
    def _containing_match(ref: DmaDebugEntry, e: DmaDebugEntry) -> bool:
        if e.dev is not ref.dev:
            return False
        return e.dev_addr <= ref.dev_addr and ((e.dev_addr + e.size) & U64_MASK) >= (
            (ref.dev_addr + ref.size) & U64_MASK
        )

    @staticmethod
    def _bucket_find(
        bucket: list[DmaDebugEntry],
        ref: DmaDebugEntry,
        match: Callable[[DmaDebugEntry, DmaDebugEntry], bool],
    ) -> DmaDebugEntry | None:
        """Models __hash_bucket_find(): best fit, NULL on several imperfect matches."""
        ret: DmaDebugEntry | None = None
        matches = 0
        last_lvl = -1
        for e in bucket:
            if not match(ref, e):
                continue
            matches += 1
            lvl = (
                (e.size == ref.size)
                + (e.type == ref.type)
                + (e.direction == ref.direction)
                + (e.sg_call_ents == ref.sg_call_ents)
            )
            if lvl == 4:
                return e
            if lvl > last_lvl:
                last_lvl = lvl
                ret = e
        return ret if matches == 1 else None

    def _find_exact(self, ref: DmaDebugEntry) -> DmaDebugEntry | None:
        """Models bucket_find_exact()."""
        bucket = self._buckets.get(self.hash_fn(ref.dev_addr))
        return self._bucket_find(bucket, ref, self._exact_match) if bucket else None

    def _find_contain(self, ref: DmaDebugEntry) -> DmaDebugEntry | None:
        """Models bucket_find_contain(): walk back from ref's bucket, first hit wins."""
        idx = self.hash_fn(ref.dev_addr)
        if self.profile.contain_walk_by_addr:
            steps = min(HASH_SIZE, ((ref.dev_addr & U64_MASK) >> HASH_FN_SHIFT) + 1)
        else:  # while (range <= max_range) range += 1 << HASH_FN_SHIFT
            steps = (dma_get_max_seg_size(ref.dev) & U32_MASK) // (1 << HASH_FN_SHIFT) + 1
        steps = min(steps, HASH_SIZE)  # revisiting a bucket cannot change the outcome
        if steps <= len(self._buckets):
            order: Iterator[int] = ((idx - k) % HASH_SIZE for k in range(steps))
        else:  # visit only the non-empty buckets, in walk order
            order = iter(
                sorted(
                    (b for b in self._buckets if (idx - b) % HASH_SIZE < steps),
                    key=lambda b: (idx - b) % HASH_SIZE,
                )
            )
        for b in order:
            bucket = self._buckets.get(b)
            if bucket:
                e = self._bucket_find(bucket, ref, self._containing_match)
                if e is not None:
                    return e
        return None

    def _hash_add(self, entry: DmaDebugEntry) -> None:
        self._buckets.setdefault(self.hash_fn(entry.dev_addr), []).append(entry)
        self._nr_entries += 1

    def _hash_del(self, entry: DmaDebugEntry) -> None:
        idx = self.hash_fn(entry.dev_addr)
        bucket = self._buckets[idx]
        for i, e in enumerate(bucket):
            if e is entry:
                del bucket[i]
                break
        if not bucket:
            del self._buckets[idx]
        self._nr_entries -= 1

    # --- active cacheline tracking ----------------------------------------------------------

    def to_cacheline_number(self, entry: DmaDebugEntry) -> int:
        """Models to_cacheline_number(): ``(pfn << (PAGE_SHIFT - L1_CACHE_SHIFT)) + ...``."""
        return (entry.pfn << (self.page_shift - self.l1_cache_shift)) + (
            entry.offset >> self.l1_cache_shift
        )

    def active_cacheline_overlap(self, cln: int) -> int | None:
        """The overlap count of cacheline ``cln`` (None when the line is not active)."""
        slot = self._cachelines.get(cln)
        return None if slot is None else slot.overlap

    def _active_cacheline_insert(self, entry: DmaDebugEntry) -> tuple[int, bool]:
        """Models active_cacheline_insert(); returns (rc, overlapping mappings all clean)."""
        if entry.direction == DMA_TO_DEVICE:
            return 0, False
        cln = self.to_cacheline_number(entry)
        slot = self._cachelines.get(cln)
        if slot is None:
            self._cachelines[cln] = _ActiveCacheline(0, entry.is_cache_clean)
            return 0, False
        was_clean = slot.all_clean
        slot.all_clean = slot.all_clean and entry.is_cache_clean
        overlap = slot.overlap + 1  # active_cacheline_inc_overlap()
        if overlap <= ACTIVE_CACHELINE_MAX_OVERLAP:
            slot.overlap = overlap
        else:
            self._warn_once_overflow(entry, cln)
        return -_EEXIST, was_clean

    def _warn_once_overflow(self, entry: DmaDebugEntry, cln: int) -> None:
        """The WARN_ONCE in active_cacheline_inc_overlap() (no err_printk, not counted)."""
        key = "cacheline-overflow"
        printed = key not in self._warned_once
        self._warned_once.add(key)
        message = (
            f"DMA-API: exceeded {ACTIVE_CACHELINE_MAX_OVERLAP} overlapping mappings "
            f"of cacheline {_pa(cln)}"
        )
        if printed:
            self.log.append(message)
        self._record(
            "cacheline-overlap-overflow",
            message,
            dev=entry.dev,
            dev_addr=entry.dev_addr,
            entry=entry,
            event=None,
            printed=printed,
            counted=False,
            extra={"cacheline": cln},
        )

    def _active_cacheline_remove(self, entry: DmaDebugEntry) -> None:
        """Models active_cacheline_remove(): drop one reference, delete at -1."""
        if entry.direction == DMA_TO_DEVICE:
            return
        cln = self.to_cacheline_number(entry)
        slot = self._cachelines.get(cln)
        if slot is None:
            return
        if slot.overlap - 1 < 0:
            del self._cachelines[cln]
        else:
            slot.overlap -= 1

    def _add_dma_entry(self, entry: DmaDebugEntry, attrs: int) -> None:
        """Models add_dma_entry(): hash the entry, track its cacheline, report EEXIST."""
        p = self.profile
        if p.eexist_cache_clean_exempt:
            entry.is_cache_clean = bool(
                attrs & (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT)
            )
        self._hash_add(entry)
        rc, overlap_clean = self._active_cacheline_insert(entry)
        if rc != -_EEXIST:
            return
        if p.eexist_skip_cpu_sync_exempt and attrs & DMA_ATTR_SKIP_CPU_SYNC:
            return
        if p.eexist_kmalloc_bounce_exempt and self.swiotlb_kmalloc_bounce:
            return
        if p.eexist_cache_clean_exempt and entry.is_cache_clean and overlap_clean:
            return
        text = "cacheline tracking EEXIST, overlapping mappings aren't supported\n"
        cln = self.to_cacheline_number(entry)
        if p.eexist_err_printk:
            f = self._err_printk(
                entry.dev, entry, "cacheline-overlap", text, dev_addr=entry.dev_addr
            )
            f.data["cacheline"] = cln
        else:  # older kernels: a plain pr_err, not counted, always printed
            message = "DMA-API: " + text[:-1]
            self.log.append(message)
            self._record(
                "cacheline-overlap",
                message,
                dev=entry.dev,
                dev_addr=entry.dev_addr,
                entry=entry,
                event=None,
                printed=True,
                counted=False,
                extra={"cacheline": cln},
            )

    # --- helpers for entries -----------------------------------------------------------------

    def _split_phys(self, phys: int) -> tuple[int, int]:
        return phys >> self.page_shift, phys & ((1 << self.page_shift) - 1)

    def _vaddr(self, phys: int, vaddr: int | None) -> int:
        return vaddr if vaddr is not None else (self.page_offset + phys) & U64_MASK

    def _detail(self, e: DmaDebugEntry) -> str:
        s = (
            f"dev_addr={e.dev_addr & U64_MASK:#x} size={e.size} "
            f"dir={dir2name(e.direction)} type={self.profile.type2name(e.type)} "
            f"paddr={e.paddr:#x}"
        )
        if e.type is DmaDebugType.SG:
            s += f" nents={e.sg_call_ents} mapped_ents={e.sg_mapped_ents}"
        return s

    def _ref_detail(self, dev_addr: int, size: int, direction: int, extra: str = "") -> str:
        s = f"dev_addr={dev_addr & U64_MASK:#x} size={size} dir={dir2name(direction)}"
        return f"{s} {extra}".rstrip()

    def _new_entry(
        self,
        dev: object,
        type_: DmaDebugType,
        phys: int,
        dev_addr: int,
        size: int,
        direction: int,
        map_err: MapErrType,
        what: str,
        stack: Sequence[str] | None,
        *,
        pfn_offset: tuple[int, int] | None = None,
        nents: int = 0,
        mapped_ents: int = 0,
    ) -> DmaDebugEntry:
        self._entry_alloc()
        pfn, offset = pfn_offset if pfn_offset is not None else self._split_phys(phys)
        entry = DmaDebugEntry(
            dev=dev,
            dev_addr=dev_addr & U64_MASK,
            size=size,
            type=type_,
            direction=int(direction),
            sg_call_ents=nents,
            sg_mapped_ents=mapped_ents,
            pfn=pfn,
            offset=offset,
            map_err_type=map_err,
            stack=tuple(stack)[:DMA_DEBUG_STACKTRACE_ENTRIES] if stack else (what,),
            page_shift=self.page_shift,
        )
        entry.history.append(self._event(what, self._detail(entry)))
        return entry

    # --- map-time area checks ----------------------------------------------------------------

    def _check_for_stack(
        self, dev: object, area: MemArea, phys: int, vaddr: int | None, what: str
    ) -> None:
        """Models check_for_stack(): direct-mapped or vmapped task stack."""
        if area is MemArea.STACK:
            addr = _ptr(self._vaddr(phys, vaddr))
            self._err_printk(
                dev,
                None,
                "map-stack",
                f"device driver maps memory from stack [addr={addr}]\n",
                event=self._event(what, f"paddr={phys:#x} area=stack"),
            )
        elif area is MemArea.VMAP_STACK:
            addr = _ptr(self._vaddr(phys, vaddr))
            self._err_printk(
                dev,
                None,
                "map-stack",
                f"device driver maps memory from stack [probable addr={addr}]\n",
                event=self._event(what, f"paddr={phys:#x} area=vmap-stack"),
            )

    def _check_for_illegal_area(
        self, dev: object, area: MemArea, phys: int, vaddr: int | None, length: int, what: str
    ) -> None:
        """Models check_for_illegal_area(): kernel text or rodata."""
        if area in (MemArea.KERNEL_TEXT, MemArea.KERNEL_RODATA):
            addr = _ptr(self._vaddr(phys, vaddr))
            self._err_printk(
                dev,
                None,
                "map-kernel-text",
                "device driver maps memory from kernel text or rodata "
                f"[addr={addr}] [len={length & U64_MASK}]\n",
                event=self._event(what, f"paddr={phys:#x} len={length} area={area.value}"),
            )

    def _check_sg_segment(self, dev: object, s: SgEntryLike, what: str) -> None:
        """Models check_sg_segment() (CONFIG_DMA_API_DEBUG_SG)."""
        if not self.debug_sg:
            return
        max_seg = dma_get_max_seg_size(dev) & U32_MASK
        length = int(s.length) & U32_MASK
        if length > max_seg:
            self._err_printk(
                dev,
                None,
                "sg-segment-too-long",
                "mapping sg segment longer than device claims to support "
                f"[len={length}] [max={max_seg}]\n",
                dev_addr=s.dma_address,
                event=self._event(what, f"sg length={length} max_seg={max_seg}"),
            )
        boundary = dma_get_seg_boundary(dev) & U64_MASK
        start = int(s.dma_address) & U64_MASK
        end = (start + (int(s.dma_length) & U32_MASK) - 1) & U64_MASK
        if (start ^ end) & ~boundary & U64_MASK:
            self._err_printk(
                dev,
                None,
                "sg-segment-boundary",
                "mapping sg segment across boundary "
                f"[start=0x{start:016x}] [end=0x{end:016x}] [boundary=0x{boundary:016x}]\n",
                dev_addr=start,
                event=self._event(what, f"sg dma {start:#x}..{end:#x} boundary={boundary:#x}"),
            )

    # --- dma_mapping_error ---------------------------------------------------------------------

    def debug_dma_mapping_error(self, dev: DebugDeviceLike, dma_addr: int) -> None:
        """Models debug_dma_mapping_error(): mark the first unchecked exact match checked."""
        if self.dma_debug_disabled():
            return
        dma_addr &= U64_MASK
        for e in self._buckets.get(self.hash_fn(dma_addr), ()):
            if e.dev_addr != dma_addr or e.dev is not dev:
                continue
            if e.map_err_type is MapErrType.MAP_ERR_NOT_CHECKED:
                e.map_err_type = MapErrType.MAP_ERR_CHECKED
                e.history.append(self._event("dma_mapping_error", f"dev_addr={dma_addr:#x}"))
                break

    def dma_mapping_error(self, dev: DebugDeviceLike, dma_addr: int) -> bool:
        """Models dma_mapping_error() as dma-debug sees it: hook, then the error test.

        debug.c itself calls it (map_page, check_unmap), with its marking side effect.
        """
        self.debug_dma_mapping_error(dev, dma_addr)
        return (dma_addr & U64_MASK) == DMA_MAPPING_ERROR

    # --- map hooks -----------------------------------------------------------------------------

    def debug_dma_map_single(
        self, dev: DebugDeviceLike, addr: int, len: int, *, area: MemArea = MemArea.LINEAR
    ) -> None:
        """Models debug_dma_map_single(): invalid-area and vmalloc-area checks.

        (``dma_map_single_attrs`` of v5.5+ refuses vmalloc pointers before calling it.)
        """
        if self.dma_debug_disabled():
            return
        ev = self._event("dma_map_single", f"addr={_ptr(addr)} len={len} area={area.value}")
        if not area.virt_addr_valid:
            self._err_printk(
                dev,
                None,
                "map-invalid-area",
                f"device driver maps memory from invalid area [addr={_ptr(addr)}] [len={len}]\n",
                event=ev,
            )
        if area.is_vmalloc_addr:
            self._err_printk(
                dev,
                None,
                "map-vmalloc",
                f"device driver maps memory from vmalloc area [addr={_ptr(addr)}] [len={len}]\n",
                event=ev,
            )

    def _map_single_like(
        self,
        dev: DebugDeviceLike,
        type_: DmaDebugType,
        page_phys: int,
        offset: int,
        size: int,
        direction: int,
        dma_addr: int,
        attrs: int,
        area: MemArea,
        vaddr: int | None,
        what: str,
        stack: Sequence[str] | None,
        check_map_error: bool = True,
        area_checks: bool = True,
    ) -> None:
        if self.dma_debug_disabled():
            return
        if check_map_error and self.dma_mapping_error(dev, dma_addr):
            return
        phys = page_phys + offset
        # page_to_phys() is page aligned; fold any sub-page part into the offset
        mask = (1 << self.page_shift) - 1
        offset += page_phys & mask
        page_phys &= ~mask
        entry = self._new_entry(
            dev,
            type_,
            phys,
            dma_addr,
            size,
            direction,
            MapErrType.MAP_ERR_NOT_CHECKED,
            what,
            stack,
            pfn_offset=(page_phys >> self.page_shift, offset),
        )
        if area_checks:
            self._check_for_stack(dev, area, phys, vaddr, what)
            if area is not MemArea.HIGHMEM:
                self._check_for_illegal_area(dev, area, phys, vaddr, size, what)
        self._add_dma_entry(entry, attrs)

    def debug_dma_map_page(
        self,
        dev: DebugDeviceLike,
        page_phys: int,
        offset: int,
        size: int,
        direction: int,
        dma_addr: int,
        attrs: int = 0,
        *,
        area: MemArea = MemArea.LINEAR,
        vaddr: int | None = None,
        what: str = "dma_map_page",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_map_page(dev, page, offset, size, dir, dma_addr, attrs).

        ``page_phys`` is ``page_to_phys(page)``.  A failed mapping (``DMA_MAPPING_ERROR``)
        is not recorded.  ``what`` names the API for the history (``"dma_map_single"``).
        Newest kernels record the entry as ``phy`` (profile ``map_page_type``).
        """
        self._map_single_like(
            dev,
            self.profile.map_page_type,
            page_phys,
            offset,
            size,
            direction,
            dma_addr,
            attrs,
            area,
            vaddr,
            what,
            stack,
        )

    def debug_dma_map_phys(
        self,
        dev: DebugDeviceLike,
        phys: int,
        size: int,
        direction: int,
        dma_addr: int,
        attrs: int = 0,
        *,
        area: MemArea = MemArea.LINEAR,
        vaddr: int | None = None,
        what: str = "dma_map_phys",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_map_phys(dev, phys, size, dir, dma_addr, attrs) (newest).

        Stack/text checks are skipped for ``DMA_ATTR_MMIO`` (newest profile).  Under the
        v6.1 profile this is ``debug_dma_map_page(phys_to_page(phys), offset_in_page)``.
        """
        mmio = bool(attrs & DMA_ATTR_MMIO) and self.profile.mmio_skips_area_checks
        page_phys = phys & ~((1 << self.page_shift) - 1)
        self._map_single_like(
            dev,
            self.profile.map_page_type,
            page_phys,
            phys - page_phys,
            size,
            direction,
            dma_addr,
            attrs,
            area,
            vaddr,
            what,
            stack,
            area_checks=not mmio,
        )

    def debug_dma_map_sg(
        self,
        dev: DebugDeviceLike,
        sg: Sequence[SgEntryLike],
        nents: int,
        mapped_ents: int,
        direction: int,
        attrs: int = 0,
        *,
        what: str = "dma_map_sg",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_map_sg(dev, sg, nents, mapped_ents, dir, attrs).

        One entry per mapped DMA segment, each with ``sg_call_ents = nents``; stack/text
        checks per entry; segment length/boundary checks per mapped segment.
        """
        if self.dma_debug_disabled():
            return
        if self.profile.sg_area_checks_all_nents:
            for s in sg[:nents]:
                self._sg_area_checks(dev, s, int(s.length), what)
        for i, s in enumerate(sg[: max(mapped_ents, 0)]):
            if not self.profile.sg_area_checks_all_nents:
                self._sg_area_checks(dev, s, int(s.dma_length), what)
            entry = self._new_entry(
                dev,
                DmaDebugType.SG,
                int(s.phys),
                int(s.dma_address),
                int(s.dma_length),
                direction,
                MapErrType.MAP_ERR_CHECK_NOT_APPLICABLE,
                what,
                stack,
                nents=nents,
                mapped_ents=mapped_ents,
            )
            entry.history[-1] = HistoryEvent(
                entry.history[-1].time, what, f"{entry.history[-1].detail} seg={i}"
            )
            self._check_sg_segment(dev, s, what)
            self._add_dma_entry(entry, attrs)

    def _sg_area_checks(self, dev: object, s: SgEntryLike, length: int, what: str) -> None:
        area = getattr(s, "area", MemArea.LINEAR)
        vaddr = getattr(s, "vaddr", None)
        self._check_for_stack(dev, area, int(s.phys), vaddr, what)
        if area is not MemArea.HIGHMEM:
            self._check_for_illegal_area(dev, area, int(s.phys), vaddr, length, what)

    def debug_dma_alloc_coherent(
        self,
        dev: DebugDeviceLike,
        size: int,
        dma_addr: int,
        virt: int | None,
        attrs: int = 0,
        *,
        phys: int | None = None,
        area: MemArea = MemArea.LINEAR,
        what: str = "dma_alloc_coherent",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_alloc_coherent(dev, size, dma_addr, virt, attrs).

        ``phys`` is the physical address behind ``virt`` (``virt_to_page`` /
        ``vmalloc_to_pfn``); by default ``virt`` is taken as a linear-map address
        (``virt - PAGE_OFFSET``, or ``virt`` itself below PAGE_OFFSET).  NULL ``virt`` or an
        address neither linear nor vmalloc is not recorded.  Direction BIDIRECTIONAL,
        map error check not applicable.
        """
        if self.dma_debug_disabled() or virt is None:
            return
        if not area.is_vmalloc_addr and not area.virt_addr_valid:
            return
        p = self._virt_to_phys(virt, phys)
        entry = self._new_entry(
            dev,
            DmaDebugType.COHERENT,
            p,
            dma_addr,
            size,
            DMA_BIDIRECTIONAL,
            MapErrType.MAP_ERR_CHECK_NOT_APPLICABLE,
            what,
            stack,
        )
        self._add_dma_entry(entry, attrs)

    def _virt_to_phys(self, virt: int, phys: int | None) -> int:
        if phys is not None:
            return phys
        return virt - self.page_offset if virt >= self.page_offset else virt

    def debug_dma_map_resource(
        self,
        dev: DebugDeviceLike,
        addr: int,
        size: int,
        direction: int,
        dma_addr: int,
        attrs: int = 0,
        *,
        what: str = "dma_map_resource",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_map_resource(dev, phys, size, dir, dma_addr, attrs).

        Recorded even when ``dma_addr`` is ``DMA_MAPPING_ERROR`` (the hook does not test
        it); map error starts NOT_CHECKED.  (Removed with dma_map_resource in newest.)
        """
        if self.dma_debug_disabled():
            return
        entry = self._new_entry(
            dev,
            DmaDebugType.RESOURCE,
            addr,
            dma_addr,
            size,
            direction,
            MapErrType.MAP_ERR_NOT_CHECKED,
            what,
            stack,
        )
        self._add_dma_entry(entry, attrs)

    def debug_dma_alloc_pages(
        self,
        dev: DebugDeviceLike,
        page_phys: int,
        size: int,
        direction: int,
        dma_addr: int,
        attrs: int = 0,
        *,
        what: str = "dma_alloc_pages",
        stack: Sequence[str] | None = None,
    ) -> None:
        """Models debug_dma_alloc_pages(dev, page, size, dir, dma_addr, attrs) (newer).

        Newer kernels record a ``noncoherent`` entry (map error not applicable).  Under
        v6.1 ``dma_alloc_pages()`` called ``debug_dma_map_page(dev, page, 0, size, dir,
        dma_handle, 0)`` instead; that is what this does under a profile without
        ``noncoherent_type`` (so a later free reports "failed to check map error").
        """
        if self.dma_debug_disabled():
            return
        if not self.profile.noncoherent_type:
            self.debug_dma_map_page(
                dev, page_phys, 0, size, direction, dma_addr, 0, what=what, stack=stack
            )
            return
        entry = self._new_entry(
            dev,
            DmaDebugType.NONCOHERENT,
            page_phys,
            dma_addr,
            size,
            direction,
            MapErrType.MAP_ERR_CHECK_NOT_APPLICABLE,
            what,
            stack,
        )
        self._add_dma_entry(entry, attrs)

    # --- unmap hooks ---------------------------------------------------------------------------

    def _check_unmap(self, ref: DmaDebugEntry, what: str) -> None:
        """Models check_unmap(): every mismatch is reported, then the entry is freed."""
        dev = ref.dev
        p = self.profile
        extra = f"type={p.type2name(ref.type)}"
        if ref.type is DmaDebugType.SG:
            extra += f" nents={ref.sg_call_ents}"
        ev = self._event(what, self._ref_detail(ref.dev_addr, ref.size, ref.direction, extra))
        entry = self._find_exact(ref)
        if entry is None:
            if self.dma_mapping_error(dev, ref.dev_addr):
                self._err_printk(
                    dev,
                    None,
                    "unmap-invalid-address",
                    "device driver tries to free an invalid DMA memory address\n",
                    dev_addr=ref.dev_addr,
                    event=ev,
                )
            else:
                self._err_printk(
                    dev,
                    None,
                    "unmap-not-allocated",
                    "device driver tries to free DMA memory it has not allocated "
                    f"[device address=0x{ref.dev_addr:016x}] [size={ref.size} bytes]\n",
                    dev_addr=ref.dev_addr,
                    event=ev,
                )
            return
        entry.history.append(ev)
        a = ref.dev_addr
        if ref.size != entry.size:
            self._err_printk(
                dev,
                entry,
                "unmap-wrong-size",
                "device driver frees DMA memory with different size "
                f"[device address=0x{a:016x}] [map size={entry.size} bytes] "
                f"[unmap size={ref.size} bytes]\n",
                dev_addr=a,
            )
        if ref.type != entry.type:
            self._err_printk(
                dev,
                entry,
                "unmap-wrong-function",
                "device driver frees DMA memory with wrong function "
                f"[device address=0x{a:016x}] [size={ref.size} bytes] "
                f"[mapped as {p.type2name(entry.type)}] [unmapped as {p.type2name(ref.type)}]\n",
                dev_addr=a,
            )
        elif (
            entry.type is DmaDebugType.COHERENT
            or (p.noncoherent_type and entry.type is DmaDebugType.NONCOHERENT)
        ) and ref.paddr != entry.paddr:
            if p.cpu_addr_pa:
                alloc, free = f"0x{_pa(entry.paddr)}", f"0x{_pa(ref.paddr)}"
            else:
                alloc, free = f"0x{entry.paddr:016x}", f"0x{ref.paddr:016x}"
            self._err_printk(
                dev,
                entry,
                "unmap-wrong-cpu-address",
                "device driver frees DMA memory with different CPU address "
                f"[device address=0x{a:016x}] [size={ref.size} bytes] "
                f"[cpu alloc address={alloc}] [cpu free address={free}]",
                dev_addr=a,
            )
        if (
            ref.sg_call_ents
            and ref.type is DmaDebugType.SG
            and ref.sg_call_ents != entry.sg_call_ents
        ):
            self._err_printk(
                dev,
                entry,
                "unmap-wrong-sg-count",
                "device driver frees DMA sg list with different entry count "
                f"[map count={entry.sg_call_ents}] [unmap count={ref.sg_call_ents}]\n",
                dev_addr=a,
            )
        if ref.direction != entry.direction:
            self._err_printk(
                dev,
                entry,
                "unmap-wrong-direction",
                "device driver frees DMA memory with different direction "
                f"[device address=0x{a:016x}] [size={ref.size} bytes] "
                f"[mapped with {dir2name(entry.direction)}] "
                f"[unmapped with {dir2name(ref.direction)}]\n",
                dev_addr=a,
            )
        if entry.map_err_type is MapErrType.MAP_ERR_NOT_CHECKED:
            self._err_printk(
                dev,
                entry,
                "unmap-map-error-not-checked",
                "device driver failed to check map error"
                f"[device address=0x{a:016x}] [size={ref.size} bytes] "
                f"[mapped as {p.type2name(entry.type)}]",
                dev_addr=a,
            )
        self._hash_del(entry)
        self._entry_free(entry)
        self._remember(entry)

    def _remember(self, entry: DmaDebugEntry) -> None:
        key = (id(entry.dev), entry.dev_addr)
        self._freed[key] = list(entry.history)
        self._freed.move_to_end(key)
        while len(self._freed) > self._remember_freed:
            self._freed.popitem(last=False)

    def _ref(
        self,
        dev: object,
        type_: DmaDebugType,
        dev_addr: int,
        size: int,
        direction: int,
        *,
        phys: int = 0,
        nents: int = 0,
    ) -> DmaDebugEntry:
        pfn, offset = self._split_phys(phys)
        return DmaDebugEntry(
            dev=dev,
            dev_addr=dev_addr & U64_MASK,
            size=size,
            type=type_,
            direction=int(direction),
            sg_call_ents=nents,
            pfn=pfn,
            offset=offset,
            page_shift=self.page_shift,
        )

    def debug_dma_unmap_page(
        self,
        dev: DebugDeviceLike,
        dma_addr: int,
        size: int,
        direction: int,
        *,
        what: str = "dma_unmap_page",
    ) -> None:
        """Models debug_dma_unmap_page(dev, dma_addr, size, dir) → check_unmap()."""
        if self.dma_debug_disabled():
            return
        ref = self._ref(dev, self.profile.map_page_type, dma_addr, size, direction)
        self._check_unmap(ref, what)

    def debug_dma_unmap_phys(
        self,
        dev: DebugDeviceLike,
        dma_addr: int,
        size: int,
        direction: int,
        *,
        what: str = "dma_unmap_phys",
    ) -> None:
        """Models debug_dma_unmap_phys(dev, dma_addr, size, dir) (newest) → check_unmap()."""
        self.debug_dma_unmap_page(dev, dma_addr, size, direction, what=what)

    def _nr_mapped_entries(self, ref: DmaDebugEntry) -> int:
        """Models get_nr_mapped_entries(): sg_mapped_ents of the first segment's entry."""
        e = self._find_exact(ref)
        return e.sg_mapped_ents if e is not None else 0

    def debug_dma_unmap_sg(
        self,
        dev: DebugDeviceLike,
        sglist: Sequence[SgEntryLike],
        nelems: int,
        dir: int,
        *,
        what: str = "dma_unmap_sg",
    ) -> None:
        """Models debug_dma_unmap_sg(dev, sglist, nelems, dir).

        The first segment's entry gives mapped_ents; that many segments are checked (all
        ``nelems`` when the first is not found).
        """
        if self.dma_debug_disabled():
            return
        mapped_ents = 0
        for i, s in enumerate(sglist[:nelems]):
            ref = self._ref(
                dev,
                DmaDebugType.SG,
                int(s.dma_address),
                int(s.dma_length),
                dir,
                phys=int(s.phys),
                nents=nelems,
            )
            if mapped_ents and i >= mapped_ents:
                break
            if i == 0:
                mapped_ents = self._nr_mapped_entries(ref)
            self._check_unmap(ref, what)

    def debug_dma_free_coherent(
        self,
        dev: DebugDeviceLike,
        size: int,
        virt: int,
        dma_addr: int,
        *,
        phys: int | None = None,
        area: MemArea = MemArea.LINEAR,
        what: str = "dma_free_coherent",
    ) -> None:
        """Models debug_dma_free_coherent(dev, size, virt, dma_addr) → check_unmap().

        ``phys``/``area`` as for :meth:`debug_dma_alloc_coherent`; an address neither
        linear nor vmalloc is ignored.
        """
        if not area.is_vmalloc_addr and not area.virt_addr_valid:
            return
        if self.dma_debug_disabled():
            return
        ref = self._ref(
            dev,
            DmaDebugType.COHERENT,
            dma_addr,
            size,
            DMA_BIDIRECTIONAL,
            phys=self._virt_to_phys(virt, phys),
        )
        self._check_unmap(ref, what)

    def debug_dma_unmap_resource(
        self,
        dev: DebugDeviceLike,
        dma_addr: int,
        size: int,
        direction: int,
        *,
        what: str = "dma_unmap_resource",
    ) -> None:
        """Models debug_dma_unmap_resource(dev, dma_addr, size, dir) → check_unmap()."""
        if self.dma_debug_disabled():
            return
        self._check_unmap(self._ref(dev, DmaDebugType.RESOURCE, dma_addr, size, direction), what)

    def debug_dma_free_pages(
        self,
        dev: DebugDeviceLike,
        page_phys: int,
        size: int,
        direction: int,
        dma_addr: int,
        *,
        what: str = "dma_free_pages",
    ) -> None:
        """Models debug_dma_free_pages(dev, page, size, dir, dma_addr) → check_unmap().

        Under v6.1, ``dma_free_pages()`` called ``debug_dma_unmap_page()`` instead.
        """
        if self.dma_debug_disabled():
            return
        if not self.profile.noncoherent_type:
            self.debug_dma_unmap_page(dev, dma_addr, size, direction, what=what)
            return
        ref = self._ref(dev, DmaDebugType.NONCOHERENT, dma_addr, size, direction, phys=page_phys)
        self._check_unmap(ref, what)

    # --- sync hooks ----------------------------------------------------------------------------

    def _check_sync(self, dev: object, ref: DmaDebugEntry, to_cpu: bool, what: str) -> None:
        """Models check_sync(): containing lookup, range, direction and sg-count checks."""
        extra = f"nents={ref.sg_call_ents}" if ref.type is DmaDebugType.SG else ""
        ev = self._event(what, self._ref_detail(ref.dev_addr, ref.size, ref.direction, extra))
        entry = self._find_contain(ref)
        a = ref.dev_addr
        if entry is None:
            self._err_printk(
                dev,
                None,
                "sync-not-allocated",
                "device driver tries to sync DMA memory it has not allocated "
                f"[device address=0x{a:016x}] [size={ref.size} bytes]\n",
                dev_addr=a,
                event=ev,
            )
            return
        entry.history.append(ev)
        if ref.size > entry.size:  # only reachable through u64 wrap-around
            self._err_printk(
                dev,
                entry,
                "sync-outside-range",
                "device driver syncs DMA memory outside allocated range "
                f"[device address=0x{entry.dev_addr:016x}] "
                f"[allocation size={entry.size} bytes] [sync offset+size={ref.size}]\n",
                dev_addr=entry.dev_addr,
            )
        if entry.direction == DMA_BIDIRECTIONAL:
            return
        mapped, synced = dir2name(entry.direction), dir2name(ref.direction)
        if ref.direction != entry.direction:
            self._err_printk(
                dev,
                entry,
                "sync-wrong-direction",
                "device driver syncs DMA memory with different direction "
                f"[device address=0x{a:016x}] [size={entry.size} bytes] "
                f"[mapped with {mapped}] [synced with {synced}]\n",
                dev_addr=a,
            )
        if to_cpu and entry.direction != DMA_FROM_DEVICE and ref.direction != DMA_TO_DEVICE:
            self._err_printk(
                dev,
                entry,
                "sync-read-only-for-cpu",
                "device driver syncs device read-only DMA memory for cpu "
                f"[device address=0x{a:016x}] [size={entry.size} bytes] "
                f"[mapped with {mapped}] [synced with {synced}]\n",
                dev_addr=a,
            )
        if not to_cpu and entry.direction != DMA_TO_DEVICE and ref.direction != DMA_FROM_DEVICE:
            self._err_printk(
                dev,
                entry,
                "sync-write-only-to-device",
                "device driver syncs device write-only DMA memory to device "
                f"[device address=0x{a:016x}] [size={entry.size} bytes] "
                f"[mapped with {mapped}] [synced with {synced}]\n",
                dev_addr=a,
            )
        if (
            ref.sg_call_ents
            and ref.type is DmaDebugType.SG
            and ref.sg_call_ents != entry.sg_call_ents
        ):
            self._err_printk(
                dev,
                entry,
                "sync-wrong-sg-count",
                "device driver syncs DMA sg list with different entry count "
                f"[map count={entry.sg_call_ents}] [sync count={ref.sg_call_ents}]\n",
                dev_addr=a,
            )

    def debug_dma_sync_single_for_cpu(
        self,
        dev: DebugDeviceLike,
        dma_handle: int,
        size: int,
        direction: int,
        *,
        what: str = "dma_sync_single_for_cpu",
    ) -> None:
        """Models debug_dma_sync_single_for_cpu(dev, dma_handle, size, dir)."""
        if self.dma_debug_disabled():
            return
        ref = self._ref(dev, DmaDebugType.SINGLE, dma_handle, size, direction)
        self._check_sync(dev, ref, True, what)

    def debug_dma_sync_single_for_device(
        self,
        dev: DebugDeviceLike,
        dma_handle: int,
        size: int,
        direction: int,
        *,
        what: str = "dma_sync_single_for_device",
    ) -> None:
        """Models debug_dma_sync_single_for_device(dev, dma_handle, size, dir)."""
        if self.dma_debug_disabled():
            return
        ref = self._ref(dev, DmaDebugType.SINGLE, dma_handle, size, direction)
        self._check_sync(dev, ref, False, what)

    def _sync_sg(
        self,
        dev: DebugDeviceLike,
        sg: Sequence[SgEntryLike],
        nelems: int,
        direction: int,
        to_cpu: bool,
        what: str,
    ) -> None:
        if self.dma_debug_disabled():
            return
        mapped_ents = 0
        for i, s in enumerate(sg[:nelems]):
            ref = self._ref(
                dev,
                DmaDebugType.SG,
                int(s.dma_address),
                int(s.dma_length),
                direction,
                phys=int(s.phys),
                nents=nelems,
            )
            if i == 0:
                mapped_ents = self._nr_mapped_entries(ref)
            if i >= mapped_ents:
                break
            self._check_sync(dev, ref, to_cpu, what)

    def debug_dma_sync_sg_for_cpu(
        self,
        dev: DebugDeviceLike,
        sg: Sequence[SgEntryLike],
        nelems: int,
        direction: int,
        *,
        what: str = "dma_sync_sg_for_cpu",
    ) -> None:
        """Models debug_dma_sync_sg_for_cpu(dev, sg, nelems, dir).

        Checks the first mapped_ents segments; an sg list whose first segment is not
        mapped is silently skipped, as in the kernel.
        """
        self._sync_sg(dev, sg, nelems, direction, True, what)

    def debug_dma_sync_sg_for_device(
        self,
        dev: DebugDeviceLike,
        sg: Sequence[SgEntryLike],
        nelems: int,
        direction: int,
        *,
        what: str = "dma_sync_sg_for_device",
    ) -> None:
        """Models debug_dma_sync_sg_for_device(dev, sg, nelems, dir)."""
        self._sync_sg(dev, sg, nelems, direction, False, what)

    # --- driver unbind ---------------------------------------------------------------------

    def device_dma_allocations(self, dev: object) -> tuple[int, DmaDebugEntry | None]:
        """Models device_dma_allocations(): count, and the last entry in hash order."""
        count = 0
        last: DmaDebugEntry | None = None
        for idx in sorted(self._buckets):
            for e in self._buckets[idx]:
                if e.dev is dev:
                    count += 1
                    last = e
        return count, last

    def dma_debug_device_change(
        self, dev: DebugDeviceLike, action: int = BUS_NOTIFY_UNBOUND_DRIVER
    ) -> int:
        """Models dma_debug_device_change(), the bus notifier of dma_debug_add_bus().

        On ``BUS_NOTIFY_UNBOUND_DRIVER`` with live entries, reports the leak.  The kernel
        sends that notification after clearing ``dev->driver``, so the message names the
        bus (``dev_driver_string()`` fallback: ``"pci"``, ``"platform"``), not the driver,
        and an active driver filter suppresses it.  Entries stay tracked.  Returns 0.
        """
        if self.dma_debug_disabled() or action != BUS_NOTIFY_UNBOUND_DRIVER:
            return 0
        count, entry = self.device_dma_allocations(dev)
        if count == 0 or entry is None:
            return 0
        ev = self._event("driver_unbind", f"driver={dev.driver_name} pending={count}")
        f = self._err_printk(
            dev,
            entry,
            "unbind-pending-dma",
            "device driver has pending DMA allocations while released from device "
            f"[count={count}]\n"
            "One of leaked entries details: "
            f"[device address=0x{entry.dev_addr:016x}] [size={entry.size} bytes] "
            f"[mapped with {dir2name(entry.direction)}] "
            f"[mapped as {self.profile.type2name(entry.type)}]\n",
            event=ev,
            bound=False,
        )
        f.subject = dev.name
        f.data["count"] = count
        f.data["leaked"] = [
            self._entry_dict(e)
            for idx in sorted(self._buckets)
            for e in self._buckets[idx]
            if e.dev is dev
        ]
        return 0

    # --- dumps and debugfs ---------------------------------------------------------------------

    def entries(self, dev: object | None = None) -> Iterator[DmaDebugEntry]:
        """Live entries in hash order (bucket index, then list order), optionally of ``dev``."""
        for idx in sorted(self._buckets):
            for e in self._buckets[idx]:
                if dev is None or e.dev is dev:
                    yield e

    def __len__(self) -> int:
        return self._nr_entries

    def _dump_body(self, e: DmaDebugEntry, idx: int) -> str:
        p = self.profile
        t = p.type2name(e.type)
        tail = f"{dir2name(e.direction)} {_MAPERR2STR[e.map_err_type]}"
        if p.dump_format == "paddr":
            cln = _pa(self.to_cacheline_number(e))
            return f"{t} idx {idx} P={_pa(e.paddr)} D={e.dev_addr:x} L={e.size:x} cln={cln} {tail}"
        body = f"{t} idx {idx} P={e.paddr:x} N={e.pfn:x} D={e.dev_addr:x} L={e.size:x}"
        if p.dump_format == "pfn-cln":
            body += f" cln={_pa(self.to_cacheline_number(e))}"
        return f"{body} {tail}"

    def debug_dma_dump_mappings(self, dev: DebugDeviceLike | None = None) -> list[str]:
        """Models debug_dma_dump_mappings(dev): one dev_info() line per live entry.

        Lines are also appended to :attr:`log`.  ``dev=None`` dumps every device.
        """
        lines = []
        for idx in sorted(self._buckets):
            for e in self._buckets[idx]:
                if dev is None or e.dev is dev:
                    prefix = f"{dev_driver_string(e.dev)} {e.dev.name}: "
                    lines.append(prefix + self._dump_body(e, idx))
        self.log.extend(lines)
        return lines

    def dump_show(self) -> str:
        """Models the debugfs ``dma-api/dump`` file (dump_show(), newer kernels)."""
        out = []
        for idx in sorted(self._buckets):
            for e in self._buckets[idx]:
                out.append(f"{dev_driver_string(e.dev)} {e.dev.name} {self._dump_body(e, idx)}\n")
        return "".join(out)

    def debugfs(self) -> dict[str, str]:
        """The files of ``/sys/kernel/debug/dma-api/`` with their contents."""
        files = {
            "disabled": "Y\n" if self.global_disable else "N\n",
            "error_count": f"{self.error_count}\n",
            "all_errors": f"{self.show_all_errors}\n",
            "num_errors": f"{self.show_num_errors}\n",
            "num_free_entries": f"{self.num_free_entries}\n",
            "min_free_entries": f"{self.min_free_entries}\n",
            "nr_total_entries": f"{self.nr_total_entries}\n",
            "driver_filter": f"{self.current_driver_name}\n" if self.current_driver_name else "",
        }
        if self.profile.debugfs_dump:
            files["dump"] = self.dump_show()
        return files
