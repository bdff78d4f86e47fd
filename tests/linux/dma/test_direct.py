"""kernel/dma/direct.{c,h}, include/linux/dma-direct.h: translation, reach, map, alloc."""

from __future__ import annotations

import errno

from socmem.linux.dma.direct import (
    BusDmaRegion,
    DirectDevice,
    dma_capable,
    dma_direct_alloc,
    dma_direct_free,
    dma_direct_map_page,
    dma_direct_map_sg,
    dma_direct_optimal_gfp_mask,
    dma_direct_sync_sg_for_cpu,
    dma_direct_sync_sg_for_device,
    dma_direct_unmap_page,
    dma_direct_unmap_sg,
    dma_to_phys,
    get_order,
    phys_to_dma,
)
from socmem.linux.dma.scatterlist import sg_alloc_table_from_pages
from socmem.linux.dma.swiotlb import IoTlbMem
from socmem.linux.dma.types import (
    DMA_ATTR_NO_KERNEL_MAPPING,
    DMA_ATTR_WRITE_COMBINE,
    DMA_BIDIRECTIONAL,
    DMA_BIT_MASK,
    DMA_FROM_DEVICE,
    DMA_MAPPING_ERROR,
    DMA_TO_DEVICE,
)
from socmem.linux.mm import DramRange, PhysMem, ReservedRegion
from socmem.linux.mm.buddy import GFP_DMA, GFP_DMA32, GFP_KERNEL
from socmem.soc.schema import DmaRange, Master

GIB = 1 << 30


def offset_dev(**kw):
    # dma-ranges = <0x0 0x8000_0000 2GiB>: bus 0 is CPU 0x8000_0000
    return DirectDevice(
        "vpu",
        dma_range_map=[BusDmaRegion(cpu_start=0x8000_0000, dma_start=0, size=2 * GIB)],
        bus_dma_limit=2 * GIB - 1,
        **kw,
    )


def test_phys_to_dma_with_offset_and_back():
    dev = offset_dev()
    assert phys_to_dma(dev, 0x8000_0000) == 0
    assert phys_to_dma(dev, 0x8123_4000) == 0x0123_4000
    assert phys_to_dma(dev, 0xFFFF_FFFF) == 0x7FFF_FFFF
    assert dma_to_phys(dev, 0x0123_4000) == 0x8123_4000
    assert dev.dma_range_map[0].offset == 0x8000_0000


def test_address_outside_all_ranges_is_mapping_error():
    dev = offset_dev()
    assert phys_to_dma(dev, 0x7FFF_F000) == DMA_MAPPING_ERROR
    assert phys_to_dma(dev, 0x1_0000_0000) == DMA_MAPPING_ERROR
    assert dma_to_phys(dev, 0x8000_0000) == (1 << 64) - 1
    assert not dma_capable(dev, DMA_MAPPING_ERROR, 1)
    # no swiotlb: the map fails with the dma-direct overflow warning
    assert dma_direct_map_page(dev, 0x7FFF_F000, 64, DMA_TO_DEVICE) == DMA_MAPPING_ERROR
    assert dev.log == [
        "platform vpu: DMA addr 0xffffffffffffffff+64 overflow (mask ffffffff, bus limit 7fffffff)."
    ]
    dma_direct_map_page(dev, 0x7FFF_F000, 64, DMA_TO_DEVICE)
    assert len(dev.log) == 1 and len(dev.findings.of_kind("dma-direct.overflow")) == 2


def test_identity_without_map():
    dev = DirectDevice("d")
    assert phys_to_dma(dev, 0x1234_5678) == 0x1234_5678 == dma_to_phys(dev, 0x1234_5678)


def test_dma_capable_edges():
    dev = DirectDevice("d")  # 32-bit mask
    assert dma_capable(dev, 0xFFFF_F000, 0x1000)  # last byte exactly 0xffffffff
    assert not dma_capable(dev, 0xFFFF_F000, 0x1001)
    assert dma_capable(dev, 0xFFFF_FFFF, 1)
    # bus limit below the mask wins (min_not_zero), bus limit 0 means none
    dev = DirectDevice("d", dma_mask=DMA_BIT_MASK(64), bus_dma_limit=0x3FFF_FFFF)
    assert dma_capable(dev, 0x3FFF_FF00, 0x100) and not dma_capable(dev, 0x3FFF_FF00, 0x101)
    dev = DirectDevice("d", dma_mask=DMA_BIT_MASK(36), bus_dma_limit=0)
    assert dma_capable(dev, 0xF_FFFF_F000, 0x1000)


def test_from_master_uses_dma_ranges_and_mask():
    m = Master(
        name="isp",
        dma_mask_bits=32,
        dma_ranges=[DmaRange(dma_start=0, cpu_start=0x8000_0000, size=2 * GIB)],
        dma_coherent=True,
    )
    dev = DirectDevice.from_master(m)
    assert dev.dma_mask == dev.coherent_dma_mask == 0xFFFF_FFFF
    assert dev.bus_dma_limit == 2 * GIB - 1 and dev.dma_coherent
    assert phys_to_dma(dev, 0x9000_0000) == 0x1000_0000
    assert dev.max_segment_size == 65536 and dev.segment_boundary_mask == 0xFFFF_FFFF


def test_map_page_direct_and_noncoherent_sync_counts():
    calls = []
    dev = DirectDevice("d", arch_sync=lambda p, s, d, c: calls.append((p, s, d, c)))
    assert dma_direct_map_page(dev, 0x8000_1000, 4096, DMA_TO_DEVICE) == 0x8000_1000
    dma_direct_unmap_page(dev, 0x8000_1000, 4096, DMA_TO_DEVICE)
    assert calls == [
        (0x8000_1000, 4096, DMA_TO_DEVICE, False),
        (0x8000_1000, 4096, DMA_TO_DEVICE, True),
    ]
    coherent = DirectDevice("c", dma_coherent=True)
    dma_direct_map_page(coherent, 0x8000_1000, 4096, DMA_TO_DEVICE)
    assert coherent.stats.arch_sync_for_device_bytes == 0


def test_map_page_above_32bit_mask_bounces():
    pool = IoTlbMem("swiotlb", 0xFC00_0000, 32768)
    dev = DirectDevice("usb", dma_io_tlb_mem=pool, dma_coherent=True)
    high = 0x1_4000_0000
    d = dma_direct_map_page(dev, high, 8192, DMA_BIDIRECTIONAL)
    assert d == 0xFC00_0000 and dev.stats.nr_bounced_maps == 1
    assert pool.debugfs()["io_tlb_used"] == 4
    # below the mask: no bounce
    assert dma_direct_map_page(dev, 0x8000_0000, 4096, DMA_TO_DEVICE) == 0x8000_0000
    dma_direct_unmap_page(dev, d, 8192, DMA_BIDIRECTIONAL)
    assert pool.debugfs()["io_tlb_used"] == 0


def test_map_sg_bounces_what_it_must_and_unwinds_on_failure():
    pool = IoTlbMem("swiotlb", 0xFC00_0000, 256)  # 512 KiB
    dev = DirectDevice("d", dma_io_tlb_mem=pool, dma_coherent=True)
    pages = [0x80000, 0x80001, 0x140000, 0x150000]  # two low contiguous, two high
    sgt = sg_alloc_table_from_pages(pages, 0, 4 * 4096)
    assert sgt.orig_nents == 3
    assert dma_direct_map_sg(dev, sgt, DMA_TO_DEVICE) == 3
    assert sgt.sgl[0].dma_address == 0x8000_0000 and sgt.sgl[0].dma_length == 8192
    assert pool.contains(sgt.sgl[1].dma_address) and pool.contains(sgt.sgl[2].dma_address)
    dma_direct_sync_sg_for_device(dev, sgt, DMA_TO_DEVICE)
    dma_direct_sync_sg_for_cpu(dev, sgt, DMA_TO_DEVICE)
    assert pool.bytes_bounced[DMA_TO_DEVICE] == 4 * 4096
    dma_direct_unmap_sg(dev, sgt, DMA_TO_DEVICE)
    assert pool.mem_used() == 0
    # a pool too small for the third entry: -EIO, the second one unmapped without copy
    big = sg_alloc_table_from_pages([0x140000 + i for i in range(64)] + [0x150000], 0, 65 * 4096)
    pool2 = IoTlbMem("swiotlb", 0xFC00_0000, 128)
    dev2 = DirectDevice("d2", dma_io_tlb_mem=pool2, dma_coherent=True)
    assert big.orig_nents == 2
    assert dma_direct_map_sg(dev2, big, DMA_FROM_DEVICE) == -errno.EIO
    assert pool2.mem_used() == 0 and pool2.bytes_bounced[DMA_FROM_DEVICE] == 0


def low_high_mem(**kw):
    return PhysMem(
        [DramRange(0x8000_0000, 2 * GIB), DramRange(0x2_0000_0000, 4 * GIB)],
        [ReservedRegion("linux,cma", 0x9000_0000, 64 << 20, "cma", cma_default=True)],
        **kw,
    )


def test_alloc_from_default_cma_above_one_page_and_buddy_for_one_page():
    mem = low_high_mem()
    dev = DirectDevice("gpu", dma_mask=DMA_BIT_MASK(64), coherent_dma_mask=DMA_BIT_MASK(64))
    dev.mem = mem
    dev.dma_coherent = True
    cpu, handle = dma_direct_alloc(dev, 3 * 4096 + 1)  # 4 pages, PAGE_ALIGNed
    assert cpu.source == "cma:linux,cma" and cpu.size == 4 * 4096
    assert 0x9000_0000 <= handle < 0x9400_0000 and handle % (4 * 4096) == 0  # align order 2
    assert mem.default_cma.used() == 4 and cpu.cpu_mapping == "linear"
    one, h1 = dma_direct_alloc(dev, 4096)
    assert one.source == "buddy" and not (0x9000_0000 <= h1 < 0x9400_0000)
    dma_direct_free(dev, cpu.size, cpu, handle)
    dma_direct_free(dev, 4096, one, h1)
    assert mem.default_cma.used() == 0
    mem.buddy.check()


def test_alloc_attributes_and_device_cma_area():
    mem = low_high_mem()
    area = mem.default_cma
    dev = DirectDevice("disp", mem=mem, cma_area=area)  # non-coherent, own area
    cpu, h = dma_direct_alloc(dev, 4096, GFP_KERNEL, DMA_ATTR_WRITE_COMBINE)
    assert cpu.source == "cma:linux,cma"  # a device area serves even one page
    assert cpu.write_combine and cpu.cpu_mapping == "writecombine"
    assert dev.stats.prep_coherent_bytes == 4096
    nk, h2 = dma_direct_alloc(dev, 8192, GFP_KERNEL, DMA_ATTR_NO_KERNEL_MAPPING)
    assert nk.no_kernel_mapping and nk.cpu_mapping == "none"
    dma_direct_free(dev, 8192, nk, h2, DMA_ATTR_NO_KERNEL_MAPPING)
    dma_direct_free(dev, 4096, cpu, h, DMA_ATTR_WRITE_COMBINE)
    assert area.used() == 0


def test_zone_choice_for_32bit_device_with_ram_above_4g():
    mem = low_high_mem()  # ZONE_DMA32 below 4 GiB, ZONE_NORMAL above
    dev = DirectDevice("cam", mem=mem, zone_dma_bits=24)  # generic zone_dma_bits
    assert dma_direct_optimal_gfp_mask(dev, dev.coherent_dma_mask) == (GFP_DMA32, 0xFFFF_FFFF)
    cpu, h = dma_direct_alloc(dev, 4096)
    assert h < 1 << 32 and dev.stats.alloc_attempts == [("buddy", GFP_KERNEL | GFP_DMA32)]
    dma_direct_free(dev, 4096, cpu, h)


def test_zone_retry_when_first_zone_is_out_of_reach():
    # 64-bit mask but the bus reaches only 6 GiB; ZONE_NORMAL is 8..12 GiB: the first try
    # (gfp 0 -> ZONE_NORMAL) is not dma_coherent_ok, freed, retried with GFP_DMA32
    mem = PhysMem([DramRange(0x8000_0000, 2 * GIB), DramRange(0x2_0000_0000, 4 * GIB)])
    dev = DirectDevice(
        "npu",
        dma_mask=DMA_BIT_MASK(64),
        coherent_dma_mask=DMA_BIT_MASK(64),
        bus_dma_limit=0x1_7FFF_FFFF,
        dma_coherent=True,
        mem=mem,
    )
    free_before = mem.buddy.nr_free_pages
    cpu, h = dma_direct_alloc(dev, 4096)
    assert [g for _s, g in dev.stats.alloc_attempts] == [GFP_KERNEL, GFP_KERNEL | GFP_DMA32]
    assert h < 1 << 32 and cpu.gfp & GFP_DMA32
    assert mem.buddy.nr_free_pages == free_before - 1  # the rejected page went back
    dma_direct_free(dev, 4096, cpu, h)


def test_zone_retry_down_to_gfp_dma():
    # zone_dma_bits 30 (1 GiB) like a Raspberry Pi 4; a 31-bit device: GFP_DMA32 first,
    # a page above 2 GiB is rejected, then GFP_DMA
    from socmem.linux.mm import ZoneLimits

    mem = PhysMem([DramRange(0, 4 * GIB)], limits=ZoneLimits(dma=GIB, dma32=4 * GIB))
    dev = DirectDevice("emmc", coherent_dma_mask=DMA_BIT_MASK(31), mem=mem, zone_dma_bits=30)
    dev.dma_coherent = True
    # occupy ZONE_DMA32 below 2 GiB so the first page lands above the device's reach
    taken = mem.buddy.alloc_range(GIB >> 12, (2 * GIB) >> 12)
    assert taken is not None
    cpu, h = dma_direct_alloc(dev, 4096)
    gfps = [g for _s, g in dev.stats.alloc_attempts]
    assert gfps == [GFP_KERNEL | GFP_DMA32, GFP_KERNEL | GFP_DMA]
    assert h < GIB
    dma_direct_free(dev, 4096, cpu, h)


def test_get_order():
    assert [get_order(s) for s in (1, 4096, 4097, 8192, 3 << 20)] == [0, 0, 1, 1, 10]
    assert DMA_FROM_DEVICE == 2 and DMA_BIDIRECTIONAL == 0
