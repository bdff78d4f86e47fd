"""dma-iommu (6.1): IOVA policy, strict vs lazy flush queue, map_page/map_sg, alloc."""

from __future__ import annotations

import errno

from socmem.hw.smmu.v3 import SmmuV3
from socmem.linux.dma.scatterlist import ScatterlistEntry
from socmem.linux.dma.types import (
    DMA_ATTR_PRIVILEGED,
    DMA_BIDIRECTIONAL,
    DMA_FROM_DEVICE,
    DMA_NONE,
    DMA_TO_DEVICE,
)
from socmem.linux.iommu.dma_iommu import (
    DMA_MAPPING_ERROR,
    IOVA_FQ_TIMEOUT_NS,
    boot_soc_iommu,
    dma_info_to_prot,
    iommu_dma_alloc,
    iommu_dma_free,
    iommu_dma_init_domain,
    iommu_dma_map_page,
    iommu_dma_map_sg,
    iommu_dma_unmap_page,
    iommu_dma_unmap_sg,
)
from socmem.linux.iommu.io_pgtable import IOMMU_CACHE, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE
from socmem.linux.iommu.iommu import (
    IOMMU_DOMAIN_DMA,
    IOMMU_DOMAIN_DMA_FQ,
    ArmSmmuV3Driver,
    IommuDevice,
    iommu_probe_device,
)
from socmem.soc.loader import load_soc


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _setup(
    lazy: bool,
    *,
    is_pci: bool = False,
    mask_bits: int = 32,
    range_inv: bool = True,
    **dev_kw: object,
) -> tuple[ArmSmmuV3Driver, IommuDevice, Clock]:
    clk = Clock()
    smmu = SmmuV3("smmu", "9050000.smmuv3", range_inv=range_inv, clock=clk)
    drv = ArmSmmuV3Driver(smmu, lazy=lazy)
    dev = IommuDevice(
        "dev0",
        [(0x30, 0)],
        is_pci=is_pci,
        dma_mask=(1 << mask_bits) - 1,
        **dev_kw,  # type: ignore[arg-type]
    )
    assert iommu_probe_device(dev, drv) == 0
    d = dev.group.domain  # type: ignore[union-attr]
    assert d.type == (IOMMU_DOMAIN_DMA_FQ if lazy else IOMMU_DOMAIN_DMA)
    iommu_dma_init_domain(d, ncpus=2, clock=clk)
    return drv, dev, clk


def test_dma_info_to_prot() -> None:
    assert dma_info_to_prot(DMA_TO_DEVICE, False, 0) == IOMMU_READ
    assert dma_info_to_prot(DMA_FROM_DEVICE, False, 0) == IOMMU_WRITE
    assert dma_info_to_prot(DMA_BIDIRECTIONAL, True, DMA_ATTR_PRIVILEGED) == (
        IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE | IOMMU_PRIV
    )
    assert dma_info_to_prot(DMA_NONE, True, 0) == 0


def test_map_page_translates_and_unmap_faults() -> None:
    drv, dev, _ = _setup(False)
    dma = iommu_dma_map_page(dev, 0x8123_4000, 0x10, 100, DMA_TO_DEVICE)
    assert dma == 0xFFFF_F010  # top-down from the 32-bit mask, offset kept
    assert drv.smmu.translate(0x30, dma) == 0x8123_4010
    assert drv.smmu.translate(0x30, dma, is_write=True) is None  # TO_DEVICE is read-only
    iommu_dma_unmap_page(dev, dma, 100, DMA_TO_DEVICE)
    assert drv.smmu.translate(0x30, dma) is None  # strict: the IOTLB entry is gone
    assert drv.smmu.stale_hits == 0


def test_pci_32bit_first_and_forcedac() -> None:
    _, dev, _ = _setup(False, is_pci=True, mask_bits=40)
    assert iommu_dma_map_page(dev, 0x8000_0000, 0, 4096, DMA_BIDIRECTIONAL) == 0xFFFF_F000
    _, plat, _ = _setup(False, is_pci=False, mask_bits=40)
    assert iommu_dma_map_page(plat, 0x8000_0000, 0, 4096, DMA_BIDIRECTIONAL) == 0xFF_FFFF_F000
    _, pci, _ = _setup(False, is_pci=True, mask_bits=40)
    pci.group.domain.iova_cookie.forcedac = True  # type: ignore[union-attr]
    assert iommu_dma_map_page(pci, 0x8000_0000, 0, 4096, DMA_BIDIRECTIONAL) == 0xFF_FFFF_F000


def _churn(lazy: bool, n: int = 1000) -> tuple[ArmSmmuV3Driver, IommuDevice]:
    drv, dev, clk = _setup(lazy)
    drv.smmu.cmd_counts.clear()
    for i in range(n):
        dma = iommu_dma_map_page(dev, 0x8000_0000 + i * 4096, 0, 4096, DMA_BIDIRECTIONAL)
        assert dma != DMA_MAPPING_ERROR
        iommu_dma_unmap_page(dev, dma, 4096, DMA_BIDIRECTIONAL)
        clk.now += 1000  # 1 us per map/unmap pair: the 10 ms timer never fires
    return drv, dev


def test_strict_vs_lazy_command_counts_1000_map_unmap() -> None:
    strict, _ = _churn(False)
    assert strict.smmu.cmd_counts == {"SMMU_CMD_TLBI_NH_VA": 1000, "SMMU_CMD_SYNC": 1000}
    lazy, dev = _churn(True)
    cookie = dev.group.domain.iova_cookie  # type: ignore[union-attr]
    # ring of 256 holds 255: full at the 256th queue_iova -> flush; 1000 // 255 = 3
    assert cookie.fq_full_flushes == 3 and cookie.fq_timeouts == 0
    assert lazy.smmu.cmd_counts == {"SMMU_CMD_TLBI_NH_ASID": 3, "SMMU_CMD_SYNC": 3}
    assert cookie.fq_pending() == 1000 - 3 * 255


def test_flush_queue_timeout_in_model_time() -> None:
    drv, dev, clk = _setup(True)
    cookie = dev.group.domain.iova_cookie  # type: ignore[union-attr]
    dma = iommu_dma_map_page(dev, 0x8000_0000, 0, 4096, DMA_BIDIRECTIONAL)
    assert drv.smmu.translate(0x30, dma) == 0x8000_0000  # fills the IOTLB
    iommu_dma_unmap_page(dev, dma, 4096, DMA_BIDIRECTIONAL)
    drv.smmu.cmd_counts.clear()
    # lazy: until the flush, the stale IOTLB entry still reaches memory (a Finding says so)
    assert drv.smmu.translate(0x30, dma) == 0x8000_0000
    assert drv.smmu.findings.of_kind("smmu.stale-iotlb-hit")
    clk.now += IOVA_FQ_TIMEOUT_NS - 1
    assert not cookie.run_timers() and cookie.fq_pending() == 1
    clk.now += 1
    assert cookie.run_timers()
    assert cookie.fq_pending() == 0 and cookie.fq_timeouts == 1
    assert drv.smmu.cmd_counts == {"SMMU_CMD_TLBI_NH_ASID": 1, "SMMU_CMD_SYNC": 1}
    assert drv.smmu.translate(0x30, dma) is None


def test_map_sg_concatenates_and_finalises_segments() -> None:
    drv, dev, _ = _setup(False, max_segment_size=0x3000)
    sg = [
        ScatterlistEntry(page=0x80000, offset=0x100, length=0x1F00),  # ends on a granule
        ScatterlistEntry(page=0x90000, offset=0, length=0x1000),
        ScatterlistEntry(page=0xA0000, offset=0, length=0x1000),  # would exceed 0x3000
        ScatterlistEntry(page=0xB0000, offset=0x800, length=0x100),
    ]
    n = iommu_dma_map_sg(dev, sg, 4, DMA_BIDIRECTIONAL)
    assert n == 3
    base = sg[0].dma_address - 0x100
    assert (sg[0].dma_length, sg[1].dma_address - base, sg[1].dma_length) == (
        0x2F00,
        0x3000,
        0x1000,
    )
    assert (sg[2].dma_address - base, sg[2].dma_length, sg[3].dma_length) == (0x4800, 0x100, 0)
    assert [s.offset for s in sg] == [0x100, 0, 0, 0x800]  # restored
    assert drv.smmu.translate(0x30, sg[2].dma_address) == 0xB0000800
    iommu_dma_unmap_sg(dev, sg, 4, DMA_BIDIRECTIONAL)
    assert drv.smmu.translate(0x30, base) is None


def test_map_sg_no_iova_is_enomem() -> None:
    _, dev, _ = _setup(False, mask_bits=13)  # 8 KiB of address space: pfn 1 only
    sg = [ScatterlistEntry(page=0x80000 + 2 * i, length=4096) for i in range(4)]
    assert iommu_dma_map_sg(dev, sg, 4, DMA_TO_DEVICE) == -errno.ENOMEM
    assert sg[0].length == 4096 and sg[0].dma_length == 0


def test_iommu_dma_alloc_order_strategy() -> None:
    _, dev, _ = _setup(False)
    asked: list[int] = []
    nxt = [0x1_0000_0000]

    def alloc_pages(order: int) -> int | None:
        asked.append(order)
        if order > 4:
            return None  # fragmented: nothing above order 4
        p = nxt[0]
        nxt[0] += 4096 << order
        return p

    a = iommu_dma_alloc(dev, 3 << 20, alloc_pages)
    assert a is not None and len(a.pages) == 768
    # 4K|2M|1G bitmap -> orders 9 and 0 allowed; order 9 fails once, then never retried
    assert asked[:2] == [9, 0] and set(asked) == {9, 0}
    assert iommu_dma_free(dev, a) == a.pages


def test_boot_reference_mobile_and_map_12mib_for_cam0() -> None:
    soc = load_soc("reference-mobile")
    drv, devs = boot_soc_iommu(soc, "smmu0", dev_name="2b400000.iommu")
    assert all(d.group is not None and d.group.domain is not None for d in devs)
    cam0 = next(d for d in devs if d.name == "cam0")
    chunks = [(0x8000_0000 + i * 0x20_0000, 0x10_0000) for i in range(12)]  # 12 x 1 MiB
    sg = [ScatterlistEntry(page=p >> 12, length=n) for p, n in chunks]
    assert iommu_dma_map_sg(cam0, sg, 12, DMA_FROM_DEVICE) == 1  # max_segment_size 4 GiB
    dma = sg[0].dma_address
    sid = cam0.sids[0][0]
    for k in range(12):
        assert (
            drv.smmu.translate(sid, dma + k * 0x10_0000 + 0x40, is_write=True)
            == chunks[k][0] + 0x40
        )
    # stage-1 LPAE cannot express write-only: FROM_DEVICE maps read/write (as the kernel)
    assert drv.smmu.translate(sid, dma, is_write=False) == chunks[0][0]
    iommu_dma_unmap_sg(cam0, sg, 12, DMA_FROM_DEVICE)
