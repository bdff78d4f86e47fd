"""dmesg reader: SMMUv3 event records of the real capture, other decoders, broken input."""

from __future__ import annotations

import io
import re

import pytest

from fixture_paths import FIXTURES
from socmem.trace.dmesg import (
    CmaAllocFail,
    ContextFault,
    DmaApiWarning,
    DmesgLine,
    DmesgReader,
    RateLimited,
    SmmuEvent,
    SwiotlbFull,
    decode_smmuv3_event,
    parse_dmesg_line,
    read_dmesg,
)

FIX = FIXTURES / "real-kernel"
pytestmark = pytest.mark.skipif(not FIX.exists(), reason="fixtures not present")


@pytest.mark.parametrize("cap", ["qemu-virt-smmuv3", "qemu-virt-smmuv3-replay"])
def test_smmuv3_fault_records_match_qemu(cap: str) -> None:
    recs, stats = read_dmesg(FIX / cap / "dmesg.txt")
    evs = [r for r in recs if isinstance(r, SmmuEvent)]
    # the kernel printed 10 records (ratelimited) of the 32 QEMU's SMMU model recorded
    assert len(evs) == 10 and stats.incomplete_smmu_events == 0
    qemu = (FIX / cap / "qemu-host-trace.log").read_text()
    recorded = re.findall(r"smmuv3_record_event (\S+) sid=(0x[0-9a-f]+)", qemu)
    assert len(recorded) == 32
    assert set(recorded) == {("SMMU_EVT_F_TRANSLATION", "0x30")}
    for e in evs:
        assert e.complete and e.smmu == "9050000.smmuv3"
        assert e.event_id == 0x10 and e.name == "F_TRANSLATION"
        assert f"SMMU_EVT_{e.name}" == recorded[0][0]
        assert e.stream_id == int(recorded[0][1], 16) == 0x30
        assert not e.ssv and e.ssid == 0 and not e.stall and not e.stage2
        assert e.read is True and e.write is False  # RnW=1: the edu device read memory
        assert e.ipa == 0 and not e.privileged and not e.instruction
    # edu_fault.log: "DMA read from IOVA 0x1234000 (unmapped)" then "DMA write ... 0x1235000";
    # the 10 printed records are the first reads, 4 bytes apart, all inside page 0x1234000
    assert [e.iova for e in evs] == [0x1234000 + 4 * i for i in range(10)]
    edu = (FIX / "qemu-virt-smmuv3" / "edu_fault.log").read_text()
    assert "DMA read  from IOVA 0x1234000" in edu and "IOVA 0x1235000" in edu
    assert all(e.iova is not None and e.iova >> 12 == 0x1234 for e in evs)
    assert evs[0].dwords == (0x0000003000000010, 0x0000000800000000, 0x1234000, 0)
    assert evs[0].timestamp == pytest.approx(19.486007 if cap == "qemu-virt-smmuv3" else 19.230741)


def test_plain_lines_of_real_log() -> None:
    recs, stats = read_dmesg(FIX / "qemu-virt-smmuv3" / "dmesg.txt")
    assert stats.lines == 342 and stats.records["DmesgLine"] == 292
    line = next(
        r for r in recs if isinstance(r, DmesgLine) and "Adding to iommu group 5" in r.message
    )
    assert (line.driver, line.device) == ("pci-stub", "0000:00:06.0")
    assert line.timestamp == pytest.approx(14.895474)


def test_new_decoded_form_and_priority_prefix() -> None:
    txt = (
        "<3>[  100.000000] arm-smmu-v3 2b400000.iommu: event 0x13 received:\n"
        "<3>[  100.000001] arm-smmu-v3 2b400000.iommu: \t0x0000080000001813\n"
        "<3>[  100.000002] some-other 1.dev: interleaved\n"
        "<3>[  100.000003] arm-smmu-v3 2b400000.iommu: \t0x0000010280000000\n"
        "<3>[  100.000004] arm-smmu-v3 2b400000.iommu: \t0x00000000fffff000\n"
        "<3>[  100.000005] arm-smmu-v3 2b400000.iommu: \t0x0000000000000000\n"
        "<3>[  100.000006] arm-smmu-v3 2b400000.iommu: event: F_PERMISSION client: 0000:08:00.0 "
        "sid: 0x800 ssid: 0x1 iova: 0xfffff000 ipa: 0\n"
        '<3>[  100.000007] arm-smmu-v3 2b400000.iommu: priv data write s1 "Stage 1 translation '
        'table fetch" ttd_write stall stag: 0\n'
    )
    recs = list(DmesgReader(io.StringIO(txt)))
    assert isinstance(recs[0], DmesgLine) and recs[0].level == 3 and recs[0].facility == 0
    ev = recs[1]
    assert isinstance(ev, SmmuEvent) and ev.name == "F_PERMISSION" and ev.client == "0000:08:00.0"
    assert ev.stream_id == 0x800 and ev.ssv and ev.ssid == 1 and ev.stall and ev.privileged
    assert ev.write and ev.event_class == 1 and ev.iova == 0xFFFFF000 and len(ev.decoded_text) == 2


def test_decode_smmuv3_fetch_and_unknown() -> None:
    d = decode_smmuv3_event([0x0000002000000003, 0, 0, 0x48000040])
    assert d["name"] == "F_STE_FETCH" and d["fetch_addr"] == 0x48000040 and d["stream_id"] == 0x20
    assert decode_smmuv3_event([0x7F, 0, 0, 0])["name"] == "UNKNOWN"


def test_other_decoders() -> None:
    txt = (
        "[  101.0] arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x402, iova=0x12345000, "
        "fsynr=0x21, cbfrsynra=0x1900, cb=3\n"
        "[  101.5] arm-smmu 15000000.iommu: Unhandled context fault: fsr=0x40000008, "
        "iova=0x00001000, fsynr=0x11, cb=0\n"
        "[  102.0] nvme 0000:01:00.0: swiotlb buffer is full (sz: 262144 bytes), total 32768 "
        "(slots), used 32704 (slots)\n"
        "[  103.0] cma: cma_alloc: reserved: alloc failed, req-size: 256 pages, ret: -12\n"
        "[  103.1] cma: cma_alloc: alloc failed, req-size: 256 pages, ret: -16\n"
        "[  104.0] DMA-API: nvme 0000:01:00.0: device driver frees DMA memory with different size "
        "[device address=0x00000000fffff000] [map size=8192 bytes] [unmap size=4096 bytes]\n"
        "[  104.1] DMA-API: e1000e 0000:00:19.0: device driver failed to check map error"
        "[device address=0x0000000000001000] [size=64 bytes] [mapped as single]\n"
        "[  105.0] arm_smmu_evtq_thread: 22 callbacks suppressed\n"
    )
    r = DmesgReader(io.StringIO(txt))
    recs = list(r)
    cf = recs[0]
    assert isinstance(cf, ContextFault) and cf.fsr_bits == ("TF",) and cf.fsr_format == 2
    assert cf.stream_id == 0x1900 and not cf.write and cf.cb == 3 and cf.iova == 0x12345000
    cf2 = recs[1]
    assert isinstance(cf2, ContextFault) and cf2.cbfrsynra is None and cf2.write
    assert cf2.fsr_bits == ("PF", "SS")
    assert recs[2] == SwiotlbFull(3, 102.0, "nvme", "0000:01:00.0", 262144, 32768, 32704)
    assert recs[3] == CmaAllocFail(4, 103.0, "reserved", 256, -12)
    assert recs[4] == CmaAllocFail(5, 103.1, None, 256, -16)
    w = recs[5]
    assert isinstance(w, DmaApiWarning) and w.kind == "free-wrong-size"
    assert w.fields["map size"] == "8192 bytes" and (w.driver, w.device) == ("nvme", "0000:01:00.0")
    w2 = recs[6]
    assert isinstance(w2, DmaApiWarning) and w2.kind == "map-error-not-checked"
    assert recs[7] == RateLimited(8, 105.0, "arm_smmu_evtq_thread", 22)
    assert r.stats.suppressed == 22


def test_broken_inputs() -> None:
    # truncated SMMU record: yielded incomplete, counted; garbage bytes; no newline at the end
    data = (
        b"[   19.0] arm-smmu-v3 9050000.smmuv3: event 0x10 received:\n"
        b"[   19.1] arm-smmu-v3 9050000.smmuv3: \t0x0000003000000010\n"
        b"\xff\xfe\x00garbage\n"
        b"[   20.0] no newline"
    )
    r = DmesgReader(io.BytesIO(data))
    recs = list(r)
    ev = next(x for x in recs if isinstance(x, SmmuEvent))
    assert not ev.complete and ev.stream_id is None and r.stats.incomplete_smmu_events == 1
    assert r.stats.undecodable_lines == 1 and r.stats.truncated_last_line
    assert r.stats.lines == 4
    empty = DmesgReader(io.StringIO(""))
    assert list(empty) == [] and empty.stats.lines == 0


def test_line_without_timestamp() -> None:
    ln = parse_dmesg_line(
        "arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00008305)"
    )
    assert ln.timestamp is None and ln.device == "9050000.smmuv3"
    assert ln.message.startswith("ias 44-bit")
