"""IOMMU core: iommu_pgsize, iommu_map/unmap, gather -> commands, attach, groups."""

from __future__ import annotations

import pytest

from fixture_paths import QEMU
from socmem.hw.smmu.v2 import SmmuV2
from socmem.hw.smmu.v3 import SmmuV3
from socmem.linux.iommu.io_pgtable import IOMMU_READ, IOMMU_WRITE, SZ_1G, SZ_2M, SZ_4K
from socmem.linux.iommu.iommu import (
    IOMMU_DOMAIN_DMA,
    IOMMU_DOMAIN_IDENTITY,
    ArmSmmuDriver,
    ArmSmmuV3Driver,
    IommuDevice,
    iommu_attach_device,
    iommu_domain_alloc,
    iommu_iova_to_phys,
    iommu_map,
    iommu_pgsize,
    iommu_probe_device,
    iommu_unmap,
)

RW = IOMMU_READ | IOMMU_WRITE
QEMU_TRACE = QEMU / "qemu-host-trace.log"


def _v3(range_inv: bool = True, **kw: object) -> tuple[ArmSmmuV3Driver, IommuDevice]:
    smmu = SmmuV3("smmu", "9050000.smmuv3", range_inv=range_inv, log_commands=True, **kw)  # type: ignore[arg-type]
    drv = ArmSmmuV3Driver(smmu)
    dev = IommuDevice("dev0", [(0x30, 0)])
    assert iommu_probe_device(dev, drv) == 0
    return drv, dev


def test_iommu_pgsize_largest_fitting_and_count() -> None:
    _drv, dev = _v3()
    d = dev.group.domain  # type: ignore[union-attr]
    assert d.pgsize_bitmap == SZ_4K | SZ_2M | SZ_1G
    # 4K pages until the 2M boundary, then 2M blocks
    assert iommu_pgsize(d, 0x1FF000, 0x801FF000, 0x401000) == (SZ_4K, 1)
    assert iommu_pgsize(d, 0x200000, 0x80200000, 0x400000) == (SZ_2M, 2)
    # iova and paddr differently offset in 2M: never a block
    assert iommu_pgsize(d, 0x200000, 0x80201000, 0x400000) == (SZ_4K, 1024)
    assert iommu_pgsize(d, 0x0, 0x0, SZ_1G) == (SZ_1G, 1)
    assert iommu_map(d, 0x1FF000, 0x801FF000, 0x401000, RW) == 0
    sizes = [s for _, s, _, _ in d.ops.leaves()]  # type: ignore[union-attr]
    assert sizes == [SZ_4K, SZ_2M, SZ_2M]
    assert iommu_iova_to_phys(d, 0x3FF123) == 0x803FF123
    assert iommu_map(d, 0x1000, 0x2001, SZ_4K, RW) == -22  # unaligned


@pytest.mark.parametrize("range_inv", [True, False])
def test_unmap_gather_exact_commands(range_inv: bool) -> None:
    drv, dev = _v3(range_inv)
    d = dev.group.domain  # type: ignore[union-attr]
    iova = 0x4000_3000
    for i in range(16):  # 16 scattered pages, contiguous IOVA
        assert iommu_map(d, iova + i * SZ_4K, 0x9000_0000 + 2 * i * SZ_4K, SZ_4K, RW) == 0
    drv.smmu.cmd_counts.clear()
    drv.smmu.cmdq_log.clear()  # type: ignore[union-attr]
    assert iommu_unmap(d, iova, 16 * SZ_4K) == 16 * SZ_4K
    c = drv.smmu.cmd_counts
    # 16 pages = (num+1) << scale: 16 = 1 << 4 -> one range command
    assert c["SMMU_CMD_TLBI_NH_VA"] == (1 if range_inv else 16)
    assert c["SMMU_CMD_SYNC"] == 1
    log_batched = list(drv.smmu.cmdq_log)  # type: ignore[arg-type]
    # the literal per-page tlb_add_page path sends the same commands
    drv2, dev2 = _v3(range_inv)
    d2 = dev2.group.domain  # type: ignore[union-attr]
    d2.batch_gather = False
    for i in range(16):
        iommu_map(d2, iova + i * SZ_4K, 0x9000_0000 + 2 * i * SZ_4K, SZ_4K, RW)
    drv2.smmu.cmdq_log.clear()  # type: ignore[union-attr]
    iommu_unmap(d2, iova, 16 * SZ_4K)
    assert drv2.smmu.cmdq_log == log_batched


def test_range_invalidation_splits_into_num_scale_chunks() -> None:
    drv, dev = _v3(True)
    d = dev.group.domain  # type: ignore[union-attr]
    iommu_map(d, 0x1000_0000, 0x8000_0000, 35 * SZ_4K, RW)
    drv.smmu.cmd_counts.clear()
    iommu_unmap(d, 0x1000_0000, 35 * SZ_4K)
    # 35 = 0b100011: scale 0 num 3, then scale 5 num 1 -> two commands
    assert drv.smmu.cmd_counts["SMMU_CMD_TLBI_NH_VA"] == 2


def test_attach_sequence_matches_qemu_trace() -> None:
    smmu = SmmuV3("smmu", "9050000.smmuv3", log_commands=True)
    drv = ArmSmmuV3Driver(smmu)
    # the first five virtio devices (the guest starts DMA before the sixth probe)
    for n, sid in enumerate((0x8, 0x10, 0x18, 0x20, 0x28)):
        assert (
            iommu_probe_device(IommuDevice(f"0000:00:0{n + 1}.0", [(sid, 0)], is_pci=True), drv)
            == 0
        )
    names = [
        line.split("<--- ")[1] for line in QEMU_TRACE.read_text().splitlines() if "<--- " in line
    ]
    assert len(smmu.cmdq_log) == 4 + 5 * 9  # type: ignore[arg-type]
    assert smmu.cmdq_log == names[:49]


def test_identity_and_blocked() -> None:
    drv, dev = _v3()
    ident = iommu_domain_alloc(drv, IOMMU_DOMAIN_IDENTITY)
    assert iommu_attach_device(ident, dev) == 0
    assert drv.smmu.translate(0x30, 0x1234_5678) == 0x1234_5678
    assert iommu_iova_to_phys(ident, 0x42) == 0x42
    drv.detach_dev(dev)
    assert drv.smmu.translate(0x30, 0x1234_5678) is None


def test_smmuv2_driver_register_counts() -> None:
    smmu = SmmuV2("apps_smmu", "15000000.iommu")
    drv = ArmSmmuDriver(smmu)
    dev = IommuDevice("camss", [(0x800, 0x400)])
    assert iommu_probe_device(dev, drv, default_type=IOMMU_DOMAIN_DMA) == 0
    d = dev.group.domain  # type: ignore[union-attr]
    iommu_map(d, 0x10_0000, 0x8000_0000, 8 * SZ_4K, RW)
    assert smmu.translate(0xC00, 0x10_0010) == 0x8000_0010  # SMR mask 0x400
    before = smmu.reg_counts.copy()
    iommu_unmap(d, 0x10_0000, 8 * SZ_4K)
    diff = smmu.reg_counts - before
    assert diff == {"TLBIVAL": 8, "TLBSYNC": 1}
    assert smmu.translate(0xC00, 0x10_0010) is None
