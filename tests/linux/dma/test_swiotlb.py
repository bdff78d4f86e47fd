"""kernel/dma/swiotlb.c (6.1.y): slot search, bounce directions, full pool, boot line."""

from __future__ import annotations

import re

import pytest

from fixture_paths import QEMU
from socmem.errors import KernelError
from socmem.linux.dma.direct import (
    DirectDevice,
    dma_direct_alloc,
    dma_direct_free,
    dma_direct_map_page,
    dma_direct_max_mapping_size,
    dma_direct_sync_single_for_cpu,
    dma_direct_sync_single_for_device,
    dma_direct_unmap_page,
)
from socmem.linux.dma.swiotlb import (
    IO_TLB_SEGSIZE,
    IO_TLB_SIZE,
    IoTlbMem,
    arm64_swiotlb_needed,
    is_swiotlb_buffer,
    rmem_swiotlb_device_init,
    rmem_swiotlb_setup,
    swiotlb_init,
    swiotlb_max_mapping_size,
    swiotlb_sync_single_for_cpu,
    swiotlb_tbl_map_single,
    swiotlb_tbl_unmap_single,
)
from socmem.linux.dma.types import (
    DMA_ATTR_NO_WARN,
    DMA_ATTR_SKIP_CPU_SYNC,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_NONE,
    DMA_TO_DEVICE,
)
from socmem.linux.mm import DramRange, PhysMem, ReservedRegion, arm64_zone_limits

FIXTURES = QEMU
POOL = 0xF000_0000
HIGH = 0x1_2000_0000  # a page above 4 GiB


def dev_with_pool(nslabs=1024, **kw):
    pool = IoTlbMem("swiotlb", POOL, nslabs)
    return DirectDevice("dev0", dma_io_tlb_mem=pool, dma_coherent=True, **kw), pool


def bounced(pool):
    return pool.bytes_bounced[DMA_TO_DEVICE], pool.bytes_bounced[DMA_FROM_DEVICE]


def test_fresh_pool_free_counts_and_debugfs():
    pool = IoTlbMem("swiotlb", POOL, 32768)
    assert pool.slot_list[0] == IO_TLB_SEGSIZE and pool.slot_list[127] == 1
    assert pool.slot_list[128] == IO_TLB_SEGSIZE
    assert pool.debugfs() == {"io_tlb_nslabs": 32768, "io_tlb_used": 0}
    assert pool.end - pool.start == 64 << 20
    pool.check()


def test_map_takes_slots_and_unmap_merges_back():
    dev, pool = dev_with_pool()
    a = swiotlb_tbl_map_single(dev, HIGH, 3000, 3000, 0, DMA_TO_DEVICE)
    assert a == POOL and pool.mem_used() == 2
    # list of the slots before the next mapping counts only up to the segment end
    assert list(pool.slot_list[:3]) == [0, 0, 126]
    b = swiotlb_tbl_map_single(dev, HIGH + 0x10000, 100, 100, 0, DMA_TO_DEVICE)
    assert b == POOL + 2 * IO_TLB_SIZE  # next fit from area->index
    pool.check()
    swiotlb_tbl_unmap_single(dev, a, 3000, DMA_TO_DEVICE)
    assert list(pool.slot_list[:3]) == [2, 1, 0]
    swiotlb_tbl_unmap_single(dev, b, 100, DMA_TO_DEVICE)
    assert pool.slot_list[0] == IO_TLB_SEGSIZE and pool.mem_used() == 0
    pool.check()


def test_page_sized_mappings_are_page_aligned():
    dev, pool = dev_with_pool()
    swiotlb_tbl_map_single(dev, HIGH, 100, 100, 0, DMA_TO_DEVICE)  # 1 slot: index -> 1
    a = swiotlb_tbl_map_single(dev, HIGH + 0x4000, 4096, 4096, 0, DMA_TO_DEVICE)
    assert a == POOL + 4096  # slot 1 is skipped: >= PAGE_SIZE looks for page alignment
    c = swiotlb_tbl_map_single(dev, HIGH + 0x8000, 2048, 2048, 0, DMA_TO_DEVICE)
    assert c == POOL + 4 * IO_TLB_SIZE  # next fit after the page; any slot will do
    d = swiotlb_tbl_map_single(dev, HIGH + 0x8800, 4096, 4096, 0, DMA_TO_DEVICE)
    assert d == POOL + 5 * IO_TLB_SIZE
    assert (d - POOL) & 0xFFF == 0x800  # bit 11 of the slot follows the original's
    pool.check()


def test_min_align_mask_keeps_low_bits():
    dev, pool = dev_with_pool(min_align_mask=0xFFF)  # NVMe-style
    a = swiotlb_tbl_map_single(dev, HIGH + 0x1A40, 512, 512, 0, DMA_TO_DEVICE)
    assert a & 0xFFF == 0xA40 and a == POOL + 0x1A40 - 0x1000
    assert swiotlb_max_mapping_size(dev) == 256 * 1024 - 4096
    swiotlb_tbl_unmap_single(dev, a, 512, DMA_TO_DEVICE)
    assert pool.mem_used() == 0
    pool.check()


def test_bounce_direction_rules_at_map_sync_unmap():
    dev, pool = dev_with_pool(dma_mask=0xFFFF_FFFF)
    n = 3000
    # TO_DEVICE: copy at map, not at sync_for_cpu / unmap
    d = dma_direct_map_page(dev, HIGH, n, DMA_TO_DEVICE)
    assert is_swiotlb_buffer(dev, d) and bounced(pool) == (n, 0)
    dma_direct_sync_single_for_cpu(dev, d, n, DMA_TO_DEVICE)
    dma_direct_sync_single_for_device(dev, d, n, DMA_TO_DEVICE)
    assert bounced(pool) == (2 * n, 0)
    dma_direct_unmap_page(dev, d, n, DMA_TO_DEVICE)
    assert bounced(pool) == (2 * n, 0)
    # FROM_DEVICE: 6.1 copies at map too (info-leak fix), back at sync_for_cpu and unmap;
    # sync_for_device does not copy
    d = dma_direct_map_page(dev, HIGH, n, DMA_FROM_DEVICE)
    assert bounced(pool) == (3 * n, 0)
    dma_direct_sync_single_for_device(dev, d, n, DMA_FROM_DEVICE)
    assert bounced(pool) == (3 * n, 0)
    dma_direct_sync_single_for_cpu(dev, d, n, DMA_FROM_DEVICE)
    assert bounced(pool) == (3 * n, n)
    dma_direct_unmap_page(dev, d, n, DMA_FROM_DEVICE)
    assert bounced(pool) == (3 * n, 2 * n)
    # BIDIRECTIONAL: both ways everywhere
    d = dma_direct_map_page(dev, HIGH, n, DMA_BIDIRECTIONAL)
    dma_direct_sync_single_for_device(dev, d, n, DMA_BIDIRECTIONAL)
    dma_direct_sync_single_for_cpu(dev, d, n, DMA_BIDIRECTIONAL)
    dma_direct_unmap_page(dev, d, n, DMA_BIDIRECTIONAL)
    assert bounced(pool) == (5 * n, 4 * n)
    # SKIP_CPU_SYNC: map still copies in 6.1, unmap does not copy back
    d = dma_direct_map_page(dev, HIGH, n, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC)
    dma_direct_unmap_page(dev, d, n, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC)
    assert bounced(pool) == (6 * n, 4 * n)
    assert pool.mem_used() == 0
    assert dev.stats.bounce_to_device_bytes == 6 * n
    assert dev.stats.bounce_from_device_bytes == 4 * n


def test_wrong_direction_in_sync_is_bug():
    dev, _pool = dev_with_pool()
    a = swiotlb_tbl_map_single(dev, HIGH, 64, 64, 0, DMA_TO_DEVICE)
    with pytest.raises(KernelError):
        swiotlb_sync_single_for_cpu(dev, a, 64, DMA_NONE)


def test_full_pool_message_and_error():
    dev, pool = dev_with_pool(nslabs=256, driver_name="nvme")
    dev.name = "0000:01:00.0"
    for i in range(2):
        assert swiotlb_tbl_map_single(dev, HIGH + i * 0x40000, 1 << 18, 1 << 18, 0, 1) != (
            DMA_MAPPING_ERROR
        )
    assert swiotlb_tbl_map_single(dev, HIGH, 4096, 4096, 0, DMA_TO_DEVICE) == DMA_MAPPING_ERROR
    assert dev.log[-1] == (
        "nvme 0000:01:00.0: swiotlb buffer is full (sz: 4096 bytes), "
        "total 256 (slots), used 256 (slots)"
    )
    assert pool.mem_used() == 256 and pool.debugfs()["io_tlb_used"] == 256
    (f,) = dev.findings.of_kind("swiotlb.full")
    assert f.message == dev.log[-1] and f.data["used"] == 256
    # DMA_ATTR_NO_WARN: same failure, no message
    assert swiotlb_tbl_map_single(dev, HIGH, 64, 64, 0, 1, DMA_ATTR_NO_WARN) == DMA_MAPPING_ERROR
    assert len(dev.findings.of_kind("swiotlb.full")) == 1


def test_mapping_beyond_max_mapping_size_fails_as_full():
    dev, pool = dev_with_pool(dma_mask=0xFFFF_FFFF)
    limit = swiotlb_max_mapping_size(dev)
    assert pool.mem_used() == 0
    assert limit == IO_TLB_SIZE * IO_TLB_SEGSIZE == 256 * 1024
    ok = dma_direct_map_page(dev, HIGH, limit, DMA_TO_DEVICE)
    assert ok != DMA_MAPPING_ERROR
    assert dma_direct_map_page(dev, HIGH, limit + 1, DMA_TO_DEVICE) == DMA_MAPPING_ERROR
    assert dev.log[-1].endswith(
        f"swiotlb buffer is full (sz: {limit + 1} bytes), total 1024 (slots), used 128 (slots)"
    )
    assert dev.stats.nr_map_errors == 1


def test_bounce_address_itself_beyond_reach():
    pool = IoTlbMem("swiotlb", 0x1_0000_0000, 512)  # pool above a 32-bit mask
    dev = DirectDevice("d", dma_io_tlb_mem=pool, dma_coherent=True)
    assert dma_direct_map_page(dev, HIGH, 64, DMA_TO_DEVICE) == DMA_MAPPING_ERROR
    assert dev.log[-1] == (
        "platform d: swiotlb addr 0x0000000100000000+64 overflow (mask ffffffff, bus limit 0)."
    )
    assert pool.mem_used() == 0 and bounced(pool) == (64, 0)  # copied, no copy back


def test_swiotlb_bounced_trace_and_noncoherent_sync():
    calls = []
    pool = IoTlbMem("swiotlb", POOL, 512)
    dev = DirectDevice(
        "d", dma_io_tlb_mem=pool, arch_sync=lambda p, s, d, c: calls.append((p, s, d, c))
    )
    d = dma_direct_map_page(dev, HIGH, 4096, DMA_FROM_DEVICE)
    event, fields = pool.trace[-1]
    assert event == "swiotlb_bounced" and fields["dev_addr"] == HIGH and not fields["force"]
    assert calls == [(d, 4096, DMA_FROM_DEVICE, False)]  # clean of the bounce slot
    dma_direct_unmap_page(dev, d, 4096, DMA_FROM_DEVICE)
    assert calls[-1] == (d, 4096, DMA_FROM_DEVICE, True)
    assert dev.stats.arch_sync_for_device_bytes == dev.stats.arch_sync_for_cpu_bytes == 4096


def test_restricted_pool_forces_bounce_and_serves_allocations():
    rmem = ReservedRegion("restricted-dma", 0x9000_0000, 4 << 20, "carveout")
    log: list[str] = []
    pool = rmem_swiotlb_setup(rmem, log)
    assert log == ["Reserved memory: created restricted DMA pool at 0x0000000090000000, size 4 MiB"]
    mem = PhysMem([DramRange(0x8000_0000, 1 << 30)], [rmem])
    dev = DirectDevice("wifi", dma_mask=(1 << 64) - 1, dma_coherent=True, mem=mem)
    rmem_swiotlb_device_init(pool, dev)
    d = dma_direct_map_page(dev, 0x8010_0000, 8192, DMA_TO_DEVICE)  # reachable, still bounced
    assert 0x9000_0000 <= d < 0x9040_0000 and pool.trace[-1][1]["force"]
    dma_direct_unmap_page(dev, d, 8192, DMA_TO_DEVICE)
    cpu, handle = dma_direct_alloc(dev, 16384)
    assert cpu.source == "swiotlb:restricted-dma" and pool.contains(handle)
    assert pool.mem_used() == 8
    dma_direct_free(dev, 16384, cpu, handle)
    assert pool.mem_used() == 0
    assert dma_direct_max_mapping_size(dev) == 256 * 1024
    with pytest.raises(KernelError):
        rmem_swiotlb_setup(ReservedRegion("x", 0, 1 << 20, "no-map"))


BOOT_LINE = re.compile(
    r"^software IO TLB: mapped \[mem 0x[0-9a-f]{16}-0x[0-9a-f]{16}\] \((\d+)MB\)$"
)


def test_boot_line_from_pool_below_4g():
    mem = PhysMem([DramRange(0x4000_0000, 4 << 30)])  # RAM up to 5 GiB
    pool = swiotlb_init(mem, addressing_limit=True)
    assert pool is not None
    line = "software IO TLB: mapped [mem 0x00000000fc000000-0x0000000100000000] (64MB)"
    assert pool.log[-1] == line and line in mem.log
    assert BOOT_LINE.match(line)
    # the line our notes quote from a real boot has the same shape
    assert BOOT_LINE.match(
        "software IO TLB: mapped [mem 0x00000000fbfff000-0x00000000fffff000] (64MB)"
    )
    assert pool.nslabs == 32768 and pool.debugfs()["io_tlb_nslabs"] == 32768
    # the pool's pages are taken from the page allocator
    assert mem.buddy.page_block(0xFC000) is not None


def test_no_pool_when_all_ram_is_reachable_like_the_qemu_fixture():
    # qemu virt: 2 GiB at 1 GiB, all of it in ZONE_DMA: 6.1 arm64 mem_init() passes
    # addressing_limit = false, so no pool and no "software IO TLB" line
    mem = PhysMem(
        [DramRange(0x4000_0000, 2 << 30)], limits=arm64_zone_limits(0x4000_0000, 0xC000_0000)
    )
    assert not arm64_swiotlb_needed(mem)
    assert swiotlb_init(mem, arm64_swiotlb_needed(mem)) is None
    assert not any("software IO TLB" in line for line in mem.log)
    dmesg = FIXTURES / "dmesg.txt"
    if dmesg.exists():
        text = dmesg.read_text()
        assert "DMA      [mem 0x0000000040000000-0x00000000bfffffff]" in text
        assert "software IO TLB" not in text


def test_pool_halves_when_low_memory_is_short():
    mem = PhysMem([DramRange(0xFF00_0000, 16 << 20), DramRange(0x1_0000_0000, 1 << 30)])
    pool = swiotlb_init(mem, addressing_limit=True)
    assert pool is not None and pool.nslabs == 8192  # 64 -> 32 -> 16 MiB
    assert "software IO TLB: SWIOTLB bounce buffer size adjusted 32768 -> 8192 slabs" in pool.log
    assert pool.log[-1] == (
        "software IO TLB: mapped [mem 0x00000000ff000000-0x0000000100000000] (16MB)"
    )
