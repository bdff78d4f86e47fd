"""Tests of socmem.linux.dma.debug: every check of kernel/dma/debug.c, message for message."""

from __future__ import annotations

import dataclasses

import pytest

from socmem.check.finding import FindingLog, Severity
from socmem.linux.dma.debug import (
    ACTIVE_CACHELINE_MAX_OVERLAP,
    BUS_NOTIFY_BOUND_DRIVER,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_TO_DEVICE,
    NEWEST,
    PAGE_OFFSET,
    V6_1,
    DebugDevice,
    DebugSgEntry,
    DmaDebug,
    MemArea,
)

PFX = "DMA-API: edu 0000:00:06.0: "


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dev() -> DebugDevice:
    return DebugDevice("0000:00:06.0", "edu", bus_name="pci")


@pytest.fixture
def dbg(clock: Clock) -> DmaDebug:
    return DmaDebug(FindingLog(), clock=clock)


def messages(d: DmaDebug) -> list[str]:
    return [f.message for f in d.findings]


def map_checked(d: DmaDebug, dev: DebugDevice, addr: int, size: int = 0x1000, **kw) -> None:
    direction = kw.pop("direction", DMA_FROM_DEVICE)
    d.debug_dma_map_page(dev, kw.pop("phys", 0x8000_0000), 0, size, direction, addr, **kw)
    d.debug_dma_mapping_error(dev, addr)


# --- correct sequences ------------------------------------------------------------------


def test_correct_single_lifecycle_no_finding_and_history(dbg, dev, clock):
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0x40, 0x1000, DMA_FROM_DEVICE, 0x1000_0040)
    clock.t = 1.0
    dbg.debug_dma_mapping_error(dev, 0x1000_0040)
    clock.t = 2.0
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_0040, 0x1000, DMA_FROM_DEVICE)
    dbg.debug_dma_sync_single_for_device(dev, 0x1000_0040, 0x1000, DMA_FROM_DEVICE)
    (entry,) = dbg.entries()
    assert [h.what for h in entry.history] == [
        "dma_map_page",
        "dma_mapping_error",
        "dma_sync_single_for_cpu",
        "dma_sync_single_for_device",
    ]
    assert [h.time for h in entry.history] == [0.0, 1.0, 2.0, 2.0]
    clock.t = 3.0
    dbg.debug_dma_unmap_page(dev, 0x1000_0040, 0x1000, DMA_FROM_DEVICE)
    assert len(dbg.findings) == 0
    assert len(dbg) == 0
    assert dbg.error_count == 0


def test_correct_sg_coherent_resource_no_finding(dbg, dev):
    sg = [
        DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x2000),
        DebugSgEntry(0x9000_0000, 0x1000),
    ]
    dbg.debug_dma_map_sg(dev, sg, 2, 1, DMA_TO_DEVICE)
    dbg.debug_dma_sync_sg_for_cpu(dev, sg, 2, DMA_TO_DEVICE)
    dbg.debug_dma_sync_sg_for_device(dev, sg, 2, DMA_TO_DEVICE)
    dbg.debug_dma_unmap_sg(dev, sg, 2, DMA_TO_DEVICE)
    dbg.debug_dma_alloc_coherent(dev, 0x4000, 0x3000_0000, PAGE_OFFSET + 0xA000_0000)
    dbg.debug_dma_sync_single_for_cpu(dev, 0x3000_1000, 0x100, DMA_TO_DEVICE)
    dbg.debug_dma_free_coherent(dev, 0x4000, PAGE_OFFSET + 0xA000_0000, 0x3000_0000)
    dbg.debug_dma_map_resource(dev, 0x1_0000_0000, 0x1000, DMA_BIDIRECTIONAL, 0x4000_0000)
    dbg.debug_dma_mapping_error(dev, 0x4000_0000)
    dbg.debug_dma_unmap_resource(dev, 0x4000_0000, 0x1000, DMA_BIDIRECTIONAL)
    assert messages(dbg) == []
    assert len(dbg) == 0


# --- check_unmap -----------------------------------------------------------------------


def test_unmap_not_allocated_double_unmap_has_history(dbg, dev, clock):
    map_checked(dbg, dev, 0x1000_0000)
    clock.t = 1.0
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_FROM_DEVICE)
    clock.t = 2.0
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_FROM_DEVICE)
    (f,) = dbg.findings
    assert f.kind == "dma-debug.unmap-not-allocated"
    assert f.severity == Severity.ERROR
    assert f.message == (
        PFX + "device driver tries to free DMA memory it has not allocated "
        "[device address=0x0000000010000000] [size=4096 bytes]"
    )
    assert [h.what for h in f.history] == [
        "dma_map_page",
        "dma_mapping_error",
        "dma_unmap_page",
        "dma_unmap_page",
    ]
    assert f.history[-1].time == 2.0
    assert f.time == 2.0
    assert f.subject == "0000:00:06.0 dma_addr=0x10000000"


def test_unmap_invalid_address(dbg, dev):
    dbg.debug_dma_unmap_page(dev, DMA_MAPPING_ERROR, 0x1000, DMA_TO_DEVICE)
    assert messages(dbg) == [PFX + "device driver tries to free an invalid DMA memory address"]
    assert dbg.findings.of_kind("dma-debug.unmap-invalid-address")


def test_map_error_address_is_not_recorded(dbg, dev):
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, DMA_MAPPING_ERROR)
    assert len(dbg) == 0
    assert messages(dbg) == []


def test_unmap_different_size(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x800, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver frees DMA memory with different size "
        "[device address=0x0000000010000000] [map size=4096 bytes] [unmap size=2048 bytes]"
    ]
    assert len(dbg) == 0  # the entry is removed anyway


def test_unmap_wrong_function(dbg, dev):
    dbg.debug_dma_alloc_coherent(dev, 0x1000, 0x3000_0000, PAGE_OFFSET + 0xA000_0000)
    dbg.debug_dma_unmap_page(dev, 0x3000_0000, 0x1000, DMA_BIDIRECTIONAL)
    assert messages(dbg) == [
        PFX + "device driver frees DMA memory with wrong function "
        "[device address=0x0000000030000000] [size=4096 bytes] "
        "[mapped as coherent] [unmapped as single]"
    ]
    assert dbg.findings.of_kind("dma-debug.unmap-wrong-function")[0].history[0].what == (
        "dma_alloc_coherent"
    )


def test_unmap_wrong_function_sg_name_per_profile(clock, dev):
    for profile, name in ((V6_1, "scather-gather"), (NEWEST, "scatter-gather")):
        d = DmaDebug(FindingLog(), clock=clock, profile=profile)
        sg = [DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x1000)]
        d.debug_dma_map_sg(dev, sg, 1, 1, DMA_TO_DEVICE)
        d.debug_dma_unmap_page(dev, 0x2000_0000, 0x1000, DMA_TO_DEVICE)
        single = "single" if profile is V6_1 else "phy"
        assert messages(d) == [
            PFX + "device driver frees DMA memory with wrong function "
            "[device address=0x0000000020000000] [size=4096 bytes] "
            f"[mapped as {name}] [unmapped as {single}]"
        ]


def test_free_coherent_different_cpu_address(dbg, dev, clock):
    dbg.debug_dma_alloc_coherent(dev, 0x1000, 0x3000_0000, PAGE_OFFSET + 0xA000_0000)
    dbg.debug_dma_free_coherent(dev, 0x1000, PAGE_OFFSET + 0xA000_1000, 0x3000_0000)
    assert messages(dbg) == [
        PFX + "device driver frees DMA memory with different CPU address "
        "[device address=0x0000000030000000] [size=4096 bytes] "
        "[cpu alloc address=0x00000000a0000000] [cpu free address=0x00000000a0001000]"
    ]
    newest = DmaDebug(FindingLog(), clock=clock, profile=NEWEST)
    newest.debug_dma_alloc_coherent(dev, 0x1000, 0x3000_0000, 0, phys=0xA000_0000)
    newest.debug_dma_free_coherent(dev, 0x1000, 0, 0x3000_0000, phys=0xA000_1000)
    assert messages(newest)[0].endswith(
        "[cpu alloc address=0x0x00000000a0000000] [cpu free address=0x0x00000000a0001000]"
    )


def test_unmap_sg_different_entry_count(dbg, dev):
    sg = [
        DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x3000),
        DebugSgEntry(0x8000_1000, 0x1000),
        DebugSgEntry(0x8000_2000, 0x1000),
    ]
    dbg.debug_dma_map_sg(dev, sg, 3, 1, DMA_TO_DEVICE)
    dbg.debug_dma_unmap_sg(dev, sg, 1, DMA_TO_DEVICE)  # passes the mapped count: wrong
    assert messages(dbg) == [
        PFX + "device driver frees DMA sg list with different entry count "
        "[map count=3] [unmap count=1]"
    ]


def test_unmap_sg_with_original_nents_is_fine(dbg, dev):
    sg = [
        DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x2000),
        DebugSgEntry(0x8000_1000, 0x1000),
    ]
    dbg.debug_dma_map_sg(dev, sg, 2, 1, DMA_TO_DEVICE)
    dbg.debug_dma_unmap_sg(dev, sg, 2, DMA_TO_DEVICE)
    assert messages(dbg) == []


def test_unmap_different_direction(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, direction=DMA_TO_DEVICE)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver frees DMA memory with different direction "
        "[device address=0x0000000010000000] [size=4096 bytes] "
        "[mapped with DMA_TO_DEVICE] [unmapped with DMA_FROM_DEVICE]"
    ]


def test_failed_to_check_map_error_and_checked_negative(dbg, dev):
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, 0x1000_0000)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    (f,) = dbg.findings
    assert f.kind == "dma-debug.unmap-map-error-not-checked"
    assert f.severity == Severity.WARNING
    assert f.message == (
        PFX + "device driver failed to check map error"
        "[device address=0x0000000010000000] [size=4096 bytes] [mapped as single]"
    )
    assert f.data["entry"]["map_err_type"] == "dma map error not checked"
    # negative: dma_mapping_error() marks the entry checked
    dbg.findings.clear()
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, 0x1000_0000)
    dbg.debug_dma_mapping_error(dev, 0x1000_0000)
    (entry,) = dbg.entries()
    assert entry.map_err_type.name == "MAP_ERR_CHECKED"
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    assert messages(dbg) == []


def test_mapping_error_marks_only_first_unchecked_exact_match(dbg, dev):
    other = DebugDevice("0000:00:07.0", "edu")
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, 0x1000_0000)
    dbg.debug_dma_map_page(other, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, 0x1000_0000)
    dbg.debug_dma_mapping_error(other, 0x1000_0000)
    states = {e.dev.name: e.map_err_type.name for e in dbg.entries()}
    assert states == {"0000:00:06.0": "MAP_ERR_NOT_CHECKED", "0000:00:07.0": "MAP_ERR_CHECKED"}


def test_several_unmap_errors_at_once(dbg, dev):
    dbg.debug_dma_map_page(dev, 0x8000_0000, 0, 0x1000, DMA_TO_DEVICE, 0x1000_0000)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x2000, DMA_FROM_DEVICE)
    assert [f.kind for f in dbg.findings] == [
        "dma-debug.unmap-wrong-size",
        "dma-debug.unmap-wrong-direction",
        "dma-debug.unmap-map-error-not-checked",
    ]
    assert dbg.error_count == 3


def test_best_fit_ambiguous_exact_match_is_not_found(dbg, dev):
    # no IOMMU: the same bus address mapped twice with different sizes
    map_checked(dbg, dev, 0x1000_0000, 0x1000, direction=DMA_TO_DEVICE)
    map_checked(dbg, dev, 0x1000_0000, 0x2000, direction=DMA_TO_DEVICE)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x2000, DMA_TO_DEVICE)  # perfect fit
    assert messages(dbg) == []
    map_checked(dbg, dev, 0x1000_0000, 0x2000, direction=DMA_TO_DEVICE)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x3000, DMA_TO_DEVICE)  # two imperfect
    assert [f.kind for f in dbg.findings] == ["dma-debug.unmap-not-allocated"]


def test_dma_alloc_pages_per_profile(clock, dev):
    old = DmaDebug(FindingLog(), clock=clock, profile=V6_1)
    old.debug_dma_alloc_pages(dev, 0x8000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    old.debug_dma_free_pages(dev, 0x8000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    assert [f.kind for f in old.findings] == ["dma-debug.unmap-map-error-not-checked"]
    new = DmaDebug(FindingLog(), clock=clock, profile=NEWEST)
    new.debug_dma_alloc_pages(dev, 0x8000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    assert next(new.entries()).type.name == "NONCOHERENT"
    new.debug_dma_free_pages(dev, 0x8000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    assert messages(new) == []
    new.debug_dma_alloc_pages(dev, 0x8000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    new.debug_dma_free_pages(dev, 0x9000_0000, 0x2000, DMA_BIDIRECTIONAL, 0x5000_0000)
    assert [f.kind for f in new.findings] == ["dma-debug.unmap-wrong-cpu-address"]


# --- check_sync ------------------------------------------------------------------------


def test_sync_not_allocated(dbg, dev):
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_0000, 0x100, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver tries to sync DMA memory it has not allocated "
        "[device address=0x0000000010000000] [size=256 bytes]"
    ]


def test_sync_subrange_closest_match_ok_past_end_not_found(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, 0x8000)
    # a sub-range several hash buckets (8 KiB each) above the mapping start
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_6000, 0x1000, DMA_FROM_DEVICE)
    assert messages(dbg) == []
    assert next(dbg.entries()).history[-1].what == "dma_sync_single_for_cpu"
    # running past the end: no containing entry, so the kernel says "not allocated"
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_7000, 0x2000, DMA_FROM_DEVICE)
    assert [f.kind for f in dbg.findings] == ["dma-debug.sync-not-allocated"]


def test_sync_outside_allocated_range(dbg, dev):
    # containing_match() makes ref.size > entry.size reachable only when the u64
    # end address of the sync wraps around, as it does in the kernel
    map_checked(dbg, dev, 0x1000, 0x1000)
    size = (1 << 64) - 0x800
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000, size, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver syncs DMA memory outside allocated range "
        "[device address=0x0000000000001000] [allocation size=4096 bytes] "
        f"[sync offset+size={size}]"
    ]


def test_sync_walk_limit_depends_on_profile(clock):
    pci = DebugDevice("0000:00:06.0", "edu", bus_name="pci", max_segment_size=0x10000)
    for profile, found in ((V6_1, False), (NEWEST, True)):
        d = DmaDebug(FindingLog(), clock=clock, profile=profile)
        d.debug_dma_map_page(pci, 0x8000_0000, 0, 0x10_0000, DMA_FROM_DEVICE, 0x1000_0000)
        d.debug_dma_mapping_error(pci, 0x1000_0000)
        d.debug_dma_sync_single_for_cpu(pci, 0x1008_0000, 0x1000, DMA_FROM_DEVICE)
        assert (len(d.findings) == 0) is found, profile.name
    # with a large max_segment_size the v6.1 walk reaches the mapping too
    big = DebugDevice("0000:00:06.0", "edu", max_segment_size=0x10_0000)
    d = DmaDebug(FindingLog(), clock=clock, profile=V6_1)
    d.debug_dma_map_page(big, 0x8000_0000, 0, 0x10_0000, DMA_FROM_DEVICE, 0x1000_0000)
    d.debug_dma_sync_single_for_cpu(big, 0x1008_0000, 0x1000, DMA_FROM_DEVICE)
    assert len(d.findings) == 0


def test_sync_different_direction_and_read_only_for_cpu(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, direction=DMA_TO_DEVICE)
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_0000, 0x1000, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver syncs DMA memory with different direction "
        "[device address=0x0000000010000000] [size=4096 bytes] "
        "[mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]",
        PFX + "device driver syncs device read-only DMA memory for cpu "
        "[device address=0x0000000010000000] [size=4096 bytes] "
        "[mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]",
    ]


def test_sync_write_only_to_device(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, direction=DMA_FROM_DEVICE)
    dbg.debug_dma_sync_single_for_device(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    assert [f.kind for f in dbg.findings] == [
        "dma-debug.sync-wrong-direction",
        "dma-debug.sync-write-only-to-device",
    ]
    assert messages(dbg)[1] == (
        PFX + "device driver syncs device write-only DMA memory to device "
        "[device address=0x0000000010000000] [size=4096 bytes] "
        "[mapped with DMA_FROM_DEVICE] [synced with DMA_TO_DEVICE]"
    )


def test_sync_same_direction_and_bidirectional_are_fine(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, direction=DMA_TO_DEVICE)
    dbg.debug_dma_sync_single_for_cpu(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    dbg.debug_dma_sync_single_for_device(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    map_checked(dbg, dev, 0x2000_0000, direction=DMA_BIDIRECTIONAL)
    dbg.debug_dma_sync_single_for_cpu(dev, 0x2000_0000, 0x1000, DMA_FROM_DEVICE)
    dbg.debug_dma_sync_single_for_device(dev, 0x2000_0000, 0x1000, DMA_TO_DEVICE)
    assert messages(dbg) == []


def test_sync_sg_different_entry_count(dbg, dev):
    sg = [
        DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x1000),
        DebugSgEntry(0x9000_0000, 0x1000, 0x2100_0000, 0x1000),
    ]
    dbg.debug_dma_map_sg(dev, sg, 2, 2, DMA_FROM_DEVICE)
    dbg.debug_dma_sync_sg_for_cpu(dev, sg, 1, DMA_FROM_DEVICE)
    assert messages(dbg) == [
        PFX + "device driver syncs DMA sg list with different entry count "
        "[map count=2] [sync count=1]"
    ]
    dbg.findings.clear()
    dbg.debug_dma_sync_sg_for_cpu(dev, sg, 2, DMA_FROM_DEVICE)
    dbg.debug_dma_sync_sg_for_device(dev, sg, 2, DMA_FROM_DEVICE)
    assert messages(dbg) == []


def test_sync_sg_of_unmapped_list_is_silent(dbg, dev):
    sg = [DebugSgEntry(0x8000_0000, 0x1000, 0x2000_0000, 0x1000)]
    dbg.debug_dma_sync_sg_for_cpu(dev, sg, 1, DMA_FROM_DEVICE)
    assert messages(dbg) == []


# --- map-time checks -------------------------------------------------------------------


def test_map_from_stack_direct_and_vmapped(dbg, dev):
    dbg.show_all_errors = 1
    dbg.debug_dma_map_page(
        dev,
        0x8000_0000,
        0x10,
        64,
        DMA_TO_DEVICE,
        0x1000_0000,
        area=MemArea.STACK,
        vaddr=0xFFFF_8000_1234_5010,
    )
    dbg.debug_dma_map_page(
        dev,
        0x8100_0000,
        0x20,
        64,
        DMA_TO_DEVICE,
        0x1100_0000,
        area=MemArea.VMAP_STACK,
        vaddr=0xFFFF_8000_0800_0020,
    )
    assert messages(dbg) == [
        PFX + "device driver maps memory from stack [addr=ffff800012345010]",
        PFX + "device driver maps memory from stack [probable addr=ffff800008000020]",
    ]
    assert len(dbg) == 2  # the mappings are still recorded


def test_map_from_kernel_text_or_rodata(dbg, dev):
    dbg.show_all_errors = 1
    for area in (MemArea.KERNEL_TEXT, MemArea.KERNEL_RODATA):
        dbg.debug_dma_map_page(
            dev,
            0x4000_0000,
            0,
            0x100,
            DMA_TO_DEVICE,
            0x1000_0000,
            area=area,
            vaddr=0xFFFF_8000_1000_0000,
        )
    assert (
        messages(dbg)
        == [
            PFX + "device driver maps memory from kernel text or rodata "
            "[addr=ffff800010000000] [len=256]"
        ]
        * 2
    )


def test_map_single_vmalloc_and_invalid_area(dbg, dev):
    dbg.show_all_errors = 1
    dbg.debug_dma_map_single(dev, 0xFFFF_8000_0900_0000, 4096, area=MemArea.VMALLOC)
    assert messages(dbg) == [
        PFX + "device driver maps memory from invalid area [addr=ffff800009000000] [len=4096]",
        PFX + "device driver maps memory from vmalloc area [addr=ffff800009000000] [len=4096]",
    ]
    dbg.findings.clear()
    dbg.debug_dma_map_single(dev, 0x1234, 16, area=MemArea.INVALID)
    assert [f.kind for f in dbg.findings] == ["dma-debug.map-invalid-area"]
    dbg.findings.clear()
    dbg.debug_dma_map_single(dev, PAGE_OFFSET + 0x8000_0000, 16)
    assert messages(dbg) == []


def test_map_sg_area_checks(dbg, dev):
    dbg.show_all_errors = 1
    sg = [
        DebugSgEntry(0x8000_0000, 0x100, 0x2000_0000, 0x100, area=MemArea.STACK, vaddr=0x10),
        DebugSgEntry(0x8000_1000, 0x100, 0x2000_1000, 0x100, area=MemArea.KERNEL_TEXT),
    ]
    dbg.debug_dma_map_sg(dev, sg, 2, 2, DMA_TO_DEVICE)
    assert [f.kind for f in dbg.findings] == ["dma-debug.map-stack", "dma-debug.map-kernel-text"]


def test_mmio_phys_mapping_skips_area_checks_in_newest(clock, dev):
    from socmem.linux.dma.debug import DMA_ATTR_MMIO

    d = DmaDebug(FindingLog(), clock=clock, profile=NEWEST)
    d.debug_dma_map_phys(
        dev,
        0x4000_0000,
        0x100,
        DMA_TO_DEVICE,
        0x1000_0000,
        DMA_ATTR_MMIO,
        area=MemArea.KERNEL_TEXT,
    )
    assert messages(d) == []
    d.debug_dma_map_phys(dev, 0x4000_0000, 0x100, DMA_TO_DEVICE, 0x1100_0000, area=MemArea.STACK)
    assert [f.kind for f in d.findings] == ["dma-debug.map-stack"]


def test_sg_segment_longer_than_max(dbg, dev):
    sg = [DebugSgEntry(0x8000_0000, 0x20000, 0x2000_0000, 0x20000)]
    dbg.debug_dma_map_sg(dev, sg, 1, 1, DMA_TO_DEVICE)
    assert messages(dbg) == [
        PFX + "mapping sg segment longer than device claims to support [len=131072] [max=65536]"
    ]
    ok = DebugDevice("0000:00:06.0", "edu", max_segment_size=0x20000)
    d = DmaDebug(FindingLog())
    d.debug_dma_map_sg(ok, sg, 1, 1, DMA_TO_DEVICE)
    assert messages(d) == []


def test_sg_segment_across_boundary(clock):
    pci = DebugDevice("0000:00:06.0", "edu", bus_name="pci", segment_boundary_mask=0xFFFF_FFFF)
    d = DmaDebug(FindingLog(), clock=clock)
    sg = [DebugSgEntry(0x8000_0000, 0x2000, 0xFFFF_F000, 0x2000)]
    d.debug_dma_map_sg(pci, sg, 1, 1, DMA_TO_DEVICE)
    assert messages(d) == [
        PFX + "mapping sg segment across boundary [start=0x00000000fffff000] "
        "[end=0x0000000100000fff] [boundary=0x00000000ffffffff]"
    ]
    # negative: inside the 4 GiB window, and the default (ULONG_MAX) boundary
    d2 = DmaDebug(FindingLog(), clock=clock)
    d2.debug_dma_map_sg(pci, [DebugSgEntry(0, 0x2000, 0xFFFF_D000, 0x2000)], 1, 1, 1)
    d2.debug_dma_map_sg(DebugDevice("x", "edu"), sg, 1, 1, DMA_TO_DEVICE)
    assert messages(d2) == []


def test_sg_checks_off_without_config_debug_sg(clock, dev):
    d = DmaDebug(FindingLog(), clock=clock, debug_sg=False)
    sg = [DebugSgEntry(0x8000_0000, 0x20000, 0x2000_0000, 0x20000)]
    d.debug_dma_map_sg(dev, sg, 1, 1, DMA_TO_DEVICE)
    assert messages(d) == []


# --- cacheline tracking ----------------------------------------------------------------


def test_overlapping_cacheline_eexist(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, 0x40, phys=0x8000_0000)
    map_checked(dbg, dev, 0x1000_1000, 0x40, phys=0x8000_0020)  # same 64-byte line
    (f,) = dbg.findings
    assert f.kind == "dma-debug.cacheline-overlap"
    assert f.message == PFX + "cacheline tracking EEXIST, overlapping mappings aren't supported"
    assert f.data["cacheline"] == 0x8000_0000 >> 6
    assert dbg.active_cacheline_overlap(0x8000_0000 >> 6) == 1
    dbg.debug_dma_unmap_page(dev, 0x1000_1000, 0x40, DMA_FROM_DEVICE)
    assert dbg.active_cacheline_overlap(0x8000_0000 >> 6) == 0
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x40, DMA_FROM_DEVICE)
    assert dbg.active_cacheline_overlap(0x8000_0000 >> 6) is None


def test_overlap_negatives_to_device_skip_sync_next_line(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, 0x40, phys=0x8000_0000, direction=DMA_TO_DEVICE)
    map_checked(dbg, dev, 0x1000_1000, 0x40, phys=0x8000_0000, direction=DMA_TO_DEVICE)
    map_checked(dbg, dev, 0x1000_2000, 0x40, phys=0x8000_0000)
    map_checked(dbg, dev, 0x1000_3000, 0x40, phys=0x8000_0000, attrs=DMA_ATTR_SKIP_CPU_SYNC)
    map_checked(dbg, dev, 0x1000_4000, 0x40, phys=0x8000_0040)  # next cacheline
    assert messages(dbg) == []


def test_cacheline_overlap_counter_overflow(dbg, dev):
    for i in range(ACTIVE_CACHELINE_MAX_OVERLAP + 2):
        map_checked(dbg, dev, 0x1000_0000 + i * 0x1000, 0x40, phys=0x8000_0000)
    kinds = dbg.findings.counts()
    assert kinds["dma-debug.cacheline-overlap"] == ACTIVE_CACHELINE_MAX_OVERLAP + 1
    (w,) = dbg.findings.of_kind("dma-debug.cacheline-overlap-overflow")
    assert w.message == ("DMA-API: exceeded 7 overlapping mappings of cacheline 0x0000000002000000")
    assert w.data["counted"] is False
    assert dbg.active_cacheline_overlap(0x8000_0000 >> 6) == ACTIVE_CACHELINE_MAX_OVERLAP


def test_eexist_as_pr_err_in_older_kernels(clock, dev):
    old = dataclasses.replace(V6_1, name="v5.10", eexist_err_printk=False)
    d = DmaDebug(FindingLog(), clock=clock, profile=old)
    map_checked(d, dev, 0x1000_0000, 0x40, phys=0x8000_0000)
    map_checked(d, dev, 0x1000_1000, 0x40, phys=0x8000_0000)
    assert messages(d) == [
        "DMA-API: cacheline tracking EEXIST, overlapping mappings aren't supported"
    ]
    assert d.error_count == 0


def test_newest_cache_clean_and_kmalloc_bounce_exemptions(clock, dev):
    from socmem.linux.dma.debug import DMA_ATTR_DEBUGGING_IGNORE_CACHELINES as CLEAN

    d = DmaDebug(FindingLog(), clock=clock, profile=NEWEST)
    map_checked(d, dev, 0x1000_0000, 0x40, phys=0x8000_0000, attrs=CLEAN)
    map_checked(d, dev, 0x1000_1000, 0x40, phys=0x8000_0000, attrs=CLEAN)
    assert messages(d) == []
    map_checked(d, dev, 0x1000_2000, 0x40, phys=0x8000_0000)  # not clean: reported
    assert [f.kind for f in d.findings] == ["dma-debug.cacheline-overlap"]
    b = DmaDebug(FindingLog(), clock=clock, profile=NEWEST, swiotlb_kmalloc_bounce=True)
    map_checked(b, dev, 0x1000_0000, 0x40, phys=0x8000_0000)
    map_checked(b, dev, 0x1000_1000, 0x40, phys=0x8000_0000)
    assert messages(b) == []


def test_coherent_device_is_not_exempt(clock):
    coherent = DebugDevice("dpni.3", "fsl_dpaa2_eth", bus_name="fsl-mc", coherent=True)
    d = DmaDebug(FindingLog(), clock=clock)
    map_checked(d, coherent, 0x1000_0000, 0x30, phys=0x20A732_0000)
    map_checked(d, coherent, 0x1000_1000, 0x5A8, phys=0x20A732_0030)
    assert messages(d) == [
        "DMA-API: fsl_dpaa2_eth dpni.3: cacheline tracking EEXIST, "
        "overlapping mappings aren't supported"
    ]


# --- err_printk printing rule, driver filter --------------------------------------------


def test_first_error_only_printed_but_all_recorded(dbg, dev):
    dbg.log.clear()
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    dbg.debug_dma_unmap_page(dev, 0x2000_0000, 0x1000, DMA_TO_DEVICE)
    assert [f.data["printed"] for f in dbg.findings] == [True, False]
    assert dbg.error_count == 2
    assert dbg.show_num_errors == 0
    assert dbg.log == [
        PFX + "device driver tries to free DMA memory it has not allocated "
        "[device address=0x0000000010000000] [size=4096 bytes]"
    ]
    dbg.show_all_errors = 1
    dbg.debug_dma_unmap_page(dev, 0x3000_0000, 0x1000, DMA_TO_DEVICE)
    assert dbg.findings.of_kind("dma-debug")[-1].data["printed"] is True
    assert len(dbg.log) == 2


def test_printed_error_with_entry_dumps_mapped_at(dbg, dev):
    dbg.log.clear()
    dbg.debug_dma_map_page(
        dev,
        0x8000_0000,
        0,
        0x1000,
        DMA_TO_DEVICE,
        0x1000_0000,
        stack=("edu_dma_start+0x40/0x120 [edu]", "edu_ioctl+0x88/0x100 [edu]"),
    )
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x800, DMA_TO_DEVICE)
    assert dbg.log[1:] == [
        "DMA-API: Mapped at:",
        " edu_dma_start+0x40/0x120 [edu]",
        " edu_ioctl+0x88/0x100 [edu]",
    ]


def test_driver_filter(clock, dev):
    d = DmaDebug(FindingLog(), clock=clock, driver="other")
    assert "DMA-API: enable driver filter for driver [other]" in d.log
    d.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    assert d.findings.of_kind("dma-debug")[0].data["printed"] is False
    assert d.show_num_errors == 0  # decremented even when filtered, like the kernel
    d.show_num_errors = 5
    d.set_driver_filter("edu\n")
    assert d.debugfs()["driver_filter"] == "edu\n"
    d.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    assert d.findings.of_kind("dma-debug")[-1].data["printed"] is True
    d.set_driver_filter("\n")
    assert d.log[-1] == "DMA-API: switching off dma-debug driver filter"
    assert d.current_driver_name == ""


def test_disabled_on_command_line(clock, dev):
    d = DmaDebug(FindingLog(), clock=clock, dma_debug_off=True)
    d.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_TO_DEVICE)
    assert messages(d) == []
    assert d.log == ["DMA-API: debugging disabled on kernel command line"]
    assert d.debugfs()["disabled"] == "Y\n"


# --- driver unbind ---------------------------------------------------------------------


def test_unbind_with_pending_mappings(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000, direction=DMA_TO_DEVICE)
    map_checked(dbg, dev, 0x2000_0000, 0x2000, direction=DMA_FROM_DEVICE)
    dbg.dma_debug_device_change(dev, BUS_NOTIFY_BOUND_DRIVER)
    assert messages(dbg) == []
    dbg.dma_debug_device_change(dev)
    (f,) = dbg.findings
    assert f.kind == "dma-debug.unbind-pending-dma"
    assert f.message == (
        "DMA-API: pci 0000:00:06.0: device driver has pending DMA allocations while "
        "released from device [count=2]\n"
        "One of leaked entries details: [device address=0x0000000020000000] "
        "[size=8192 bytes] [mapped with DMA_FROM_DEVICE] [mapped as single]"
    )
    assert f.subject == "0000:00:06.0"
    assert f.data["count"] == 2 and len(f.data["leaked"]) == 2
    assert f.history[0].what == "dma_map_page" and f.history[-1].what == "driver_unbind"
    assert len(dbg) == 2  # entries stay


def test_unbind_without_mappings_is_silent(dbg, dev):
    map_checked(dbg, dev, 0x1000_0000)
    dbg.debug_dma_unmap_page(dev, 0x1000_0000, 0x1000, DMA_FROM_DEVICE)
    dbg.dma_debug_device_change(dev)
    other = DebugDevice("0000:00:07.0", "edu")
    map_checked(dbg, other, 0x1000_0000)
    dbg.dma_debug_device_change(dev)
    assert messages(dbg) == []


# --- dumps, debugfs, pool --------------------------------------------------------------


def test_dump_mappings_formats(clock, dev):
    d = DmaDebug(FindingLog(), clock=clock)
    d.debug_dma_map_page(dev, 0x8000_0000, 0x40, 0x1000, DMA_FROM_DEVICE, 0x1001_0040)
    assert d.debug_dma_dump_mappings(dev) == [
        "edu 0000:00:06.0: single idx 8 P=80000040 N=80000 D=10010040 L=1000 "
        "DMA_FROM_DEVICE dma map error not checked"
    ]
    assert "dump" not in d.debugfs()
    n = DmaDebug(FindingLog(), clock=clock, profile=NEWEST)
    n.debug_dma_alloc_coherent(dev, 0x2000, 0x3000_C000, 0, phys=0xA000_0000)
    assert n.debug_dma_dump_mappings() == [
        "edu 0000:00:06.0: coherent idx 6 P=0x00000000a0000000 D=3000c000 L=2000 "
        "cln=0x0000000002800000 DMA_BIDIRECTIONAL dma map error check not applicable"
    ]
    assert n.debugfs()["dump"] == (
        "edu 0000:00:06.0 coherent idx 6 P=0x00000000a0000000 D=3000c000 L=2000 "
        "cln=0x0000000002800000 DMA_BIDIRECTIONAL dma map error check not applicable\n"
    )
    assert n.debug_dma_dump_mappings(DebugDevice("other", "x")) == []


def test_debugfs_and_pool_accounting(clock, dev):
    d = DmaDebug(FindingLog(), clock=clock, nr_prealloc_entries=64)
    assert d.log == [
        "DMA-API: preallocated 64 debug entries",
        "DMA-API: debugging enabled by kernel config",
    ]
    for i in range(97):
        map_checked(d, dev, 0x1000_0000 + i * 0x1000, direction=DMA_TO_DEVICE)
    assert d.num_free_entries == 31 and d.nr_total_entries == 128
    assert "DMA-API: dma_debug_entry pool grown to 96 (100%)" not in d.log
    assert "DMA-API: dma_debug_entry pool grown to 128 (200%)" in d.log
    for i in range(97):
        d.debug_dma_unmap_page(dev, 0x1000_0000 + i * 0x1000, 0x1000, DMA_TO_DEVICE)
    fs = d.debugfs()
    assert fs["num_free_entries"] == "128\n"
    assert fs["min_free_entries"] == "0\n"
    assert fs["error_count"] == "0\n" and fs["num_errors"] == "1\n"


def test_finding_to_dict_and_scale(dbg, dev):
    for i in range(5000):
        map_checked(dbg, dev, 0x1_0000_0000 + i * 0x3000, 0x2000, phys=0x8000_0000 + i * 0x3000)
    for i in range(5000):
        a = 0x1_0000_0000 + i * 0x3000
        dbg.debug_dma_sync_single_for_cpu(dev, a + 0x1000, 0x800, DMA_FROM_DEVICE)
        dbg.debug_dma_unmap_page(dev, a, 0x2000, DMA_FROM_DEVICE)
    dbg.debug_dma_sync_single_for_cpu(dev, 0xDEAD_0000_0000, 0x10, DMA_FROM_DEVICE)
    (f,) = dbg.findings
    assert f.to_dict()["kind"] == "dma-debug.sync-not-allocated"
    assert len(dbg) == 0
