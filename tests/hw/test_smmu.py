"""SMMUv3 / SMMUv2 hardware models: faults, event records and their log lines, IOTLB."""

from __future__ import annotations

import re

from fixture_paths import QEMU
from socmem.hw.smmu.events import EVTQ_1_CLASS_IN, SmmuEvent, render_decoded, render_raw
from socmem.hw.smmu.tlb import Iotlb
from socmem.hw.smmu.v2 import S2CR_TYPE_TRANS, SmmuV2, Smr
from socmem.hw.smmu.v3 import (
    STRTAB_STE_0_CFG_ABORT,
    STRTAB_STE_0_CFG_BYPASS,
    STRTAB_STE_0_CFG_S1_TRANS,
    ContextDescriptor,
    SmmuV3,
    StreamTableEntry,
)
from socmem.linux.iommu.io_pgtable import (
    ARM_64_LPAE_S1,
    IOMMU_READ,
    IOMMU_WRITE,
    SZ_1G,
    SZ_2M,
    SZ_4K,
    IoPgtableCfg,
)
from socmem.linux.iommu.io_pgtable_arm import IoPgtableArm

DMESG = QEMU / "dmesg.txt"


def _pgtable() -> IoPgtableArm:
    return IoPgtableArm(ARM_64_LPAE_S1, IoPgtableCfg(pgsize_bitmap=SZ_4K | SZ_2M | SZ_1G))


def _smmu(**kw: object) -> tuple[SmmuV3, IoPgtableArm]:
    smmu = SmmuV3("smmu", "9050000.smmuv3", **kw)  # type: ignore[arg-type]
    pt = _pgtable()
    smmu.write_ste(
        0x30,
        StreamTableEntry(config=STRTAB_STE_0_CFG_S1_TRANS, cds={0: ContextDescriptor(1, pt)}),
    )
    return smmu, pt


def _fixture_events() -> list[list[str]]:
    lines = [re.sub(r"^\[\s*[\d.]+\] ", "", x) for x in DMESG.read_text().splitlines()]
    out = []
    for i, line in enumerate(lines):
        if line.endswith("event 0x10 received:"):
            out.append(lines[i : i + 5])
    return out


def test_raw_event_lines_match_the_real_61_kernel_byte_for_byte() -> None:
    real = _fixture_events()
    assert len(real) == 10
    smmu, _ = _smmu(fault_class=0)  # QEMU records CLASS 0
    for k in range(32):  # the edu device read 32 words from the unmapped IOVA
        assert smmu.translate(0x30, 0x1234000 + 4 * k, is_write=False) is None
    assert len(smmu.events) == 32
    printed = [smmu.log[i : i + 5] for i in range(0, len(smmu.log), 5)]
    assert printed == real  # 10 printed of 32 recorded, identical text
    assert not any("suppressed" in x for x in smmu.log)


def test_ratelimit_prints_suppressed_count_when_a_new_interval_opens() -> None:
    t = [0]
    smmu, _ = _smmu(clock=lambda: t[0])
    for k in range(32):
        smmu.translate(0x30, 0x1000 * k)
    t[0] = 6_000_000_000
    smmu.translate(0x30, 0x999000)
    assert "arm_smmu_evtq_thread: 22 callbacks suppressed" in smmu.log
    assert sum(x.endswith("received:") for x in smmu.log) == 11
    assert len(smmu.findings.of_kind("smmu.f-translation")) == 33


def test_decoded_form() -> None:
    ev = SmmuEvent.build(0x10, 0x800, addr=0xFFFFF000, read=False, event_class=EVTQ_1_CLASS_IN)
    lines = render_decoded(ev, "0000:08:00.0")
    assert lines[:5] == render_raw(ev)
    assert lines[1] == "\t0x0000080000000010"
    assert lines[5] == (
        "event: F_TRANSLATION client: 0000:08:00.0 sid: 0x800 ssid: 0 iova: 0xfffff000 ipa: 0"
    )
    assert lines[6] == 'unpriv data write s1 "Input address caused fault" stag: 0'
    assert render_decoded(SmmuEvent.build(0x02, 0x1), None)[-1] == (
        "event: C_BAD_STREAMID client: (unassigned sid) sid: 0x1 ssid: 0"
    )


def test_translation_permission_and_no_access_on_fault() -> None:
    smmu, pt = _smmu(log_format="latest")
    smmu.stream_names[0x30] = "cam0"
    assert pt.map_pages(0x10000, 0x8000_0000, SZ_4K, 1, IOMMU_READ)[0] == 0
    assert smmu.translate(0x30, 0x10010) == 0x8000_0010
    assert smmu.translate(0x30, 0x10010, is_write=True) is None  # read-only PTE
    f = smmu.findings.of_kind("smmu.f-permission")[0]
    assert "event: F_PERMISSION client: cam0 sid: 0x30" in f.message
    assert f.subject == "cam0 sid 0x30 iova 0x10010"
    assert smmu.translate(0x30, 0x20000) is None
    assert smmu.events[-1].name == "F_TRANSLATION"


def test_bad_streamid_abort_and_bypass() -> None:
    smmu, _ = _smmu(sid_bits=8)
    assert smmu.translate(0x100, 0x1000) is None
    assert smmu.events[-1].name == "C_BAD_STREAMID"
    n = len(smmu.events)
    assert smmu.translate(0x31, 0x1000) is None  # never-written STE: abort, no event
    assert len(smmu.events) == n and smmu.findings.of_kind("smmu.ste-abort")
    smmu.write_ste(0x32, StreamTableEntry(config=STRTAB_STE_0_CFG_BYPASS))
    assert smmu.translate(0x32, 0x1234) == 0x1234
    smmu.write_ste(0x33, StreamTableEntry(valid=False, config=STRTAB_STE_0_CFG_ABORT))
    assert smmu.translate(0x33, 0) is None and smmu.events[-1].name == "C_BAD_STE"


def test_ste_cached_until_cfgi() -> None:
    from socmem.hw.smmu.v3 import CMDQ_OP_CFGI_STE, CmdqEnt

    smmu, _ = _smmu()
    smmu.write_ste(0x40, StreamTableEntry(config=STRTAB_STE_0_CFG_BYPASS))
    assert smmu.translate(0x40, 0x5000) == 0x5000
    smmu.write_ste(0x40, StreamTableEntry(config=STRTAB_STE_0_CFG_ABORT))
    assert smmu.translate(0x40, 0x5000) == 0x5000  # cached STE still used
    smmu.issue([CmdqEnt(CMDQ_OP_CFGI_STE, sid=0x40, leaf=True)], sync=True)
    assert smmu.translate(0x40, 0x5000) is None
    assert smmu.cmd_counts["SMMU_CMD_CFGI_STE"] == 1 and smmu.cmd_counts["SMMU_CMD_SYNC"] == 1


def test_iotlb_lru_hits_misses_and_eviction() -> None:
    smmu, pt = _smmu(iotlb_entries=2)
    for i in range(3):
        pt.map_pages(i * SZ_4K, 0x9000_0000 + i * SZ_4K, SZ_4K, 1, IOMMU_READ | IOMMU_WRITE)
    tlb = smmu.iotlb
    smmu.translate(0x30, 0)
    smmu.translate(0x30, SZ_4K)
    smmu.translate(0x30, 0)  # hit, 0 becomes MRU
    smmu.translate(0x30, 2 * SZ_4K)  # evicts page 1
    assert (tlb.hits, tlb.misses, tlb.evictions) == (1, 3, 1)
    smmu.translate(0x30, SZ_4K)
    assert tlb.misses == 4 and smmu.walks == 4


def test_stale_iotlb_entry_translates_until_tlbi() -> None:
    from socmem.hw.smmu.v3 import CMDQ_OP_TLBI_NH_VA, CmdqEnt

    smmu, pt = _smmu()
    pt.map_pages(0x7000, 0xA000_0000, SZ_4K, 1, IOMMU_READ)
    assert smmu.translate(0x30, 0x7000) == 0xA000_0000
    pt.unmap_pages(0x7000, SZ_4K, 1, None)
    assert smmu.translate(0x30, 0x7008) == 0xA000_0008  # stale entry reaches memory
    assert smmu.findings.of_kind("smmu.stale-iotlb-hit")
    smmu.issue([CmdqEnt(CMDQ_OP_TLBI_NH_VA, asid=1, addr=0x7000, leaf=True)], sync=True)
    assert smmu.translate(0x30, 0x7008) is None


def test_iotlb_range_invalidation_counts() -> None:
    tlb = Iotlb(8)
    for i in range(4):
        tlb.fill(1, i * SZ_4K, SZ_4K, 0x1000 * i, 3)
    tlb.fill(2, 0, SZ_2M, 0, 3)
    assert tlb.invalidate_range(1, SZ_4K, 2 * SZ_4K) == 2
    assert tlb.invalidate_asid(2) == 1 and len(tlb) == 2


def test_smmuv2_context_fault_line_and_registers() -> None:
    smmu = SmmuV2("apps_smmu", "15000000.iommu")
    pt = _pgtable()
    smmu.smrs[0] = Smr(0x1900, 0)
    smmu.s2crs[0].type = S2CR_TYPE_TRANS
    smmu.s2crs[0].cbndx = 3
    cb = smmu.cbs[3]
    cb.pgtable, cb.asid, cb.enabled = pt, 3, True
    assert smmu.translate(0x1900, 0x12345000) is None
    assert smmu.log == [
        "arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x12345000,"
        " fsynr=0x0, cbfrsynra=0x1900, cb=3"
    ]
    pt.map_pages(0x1000, 0x8000_0000, SZ_4K, 1, IOMMU_READ)
    assert smmu.translate(0x1900, 0x1000, is_write=True) is None
    assert "fsr=0x408, iova=0x00001000, fsynr=0x13" in smmu.log[-1]
    assert smmu.findings.of_kind("smmu.context-fault.permission")
    assert smmu.translate(0x7, 0) is None
    assert smmu.log[-2].endswith(
        'Blocked unknown Stream ID 0x7; boot with "arm-smmu.disable_bypass=0" to allow,'
        " but this may have security implications"
    )
