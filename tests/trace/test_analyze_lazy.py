"""trace analyze on the real lazy-mode capture: the flush queue batches invalidations."""

from __future__ import annotations

from pathlib import Path

from socmem.trace.analyze import analyze

LAZY = Path(__file__).resolve().parents[1] / "data" / "qemu-virt-smmuv3-lazy"


def test_lazy_capture_is_recognised_and_batched() -> None:
    rep = analyze([LAZY / "trace.txt"], dmesg=LAZY / "dmesg.txt")
    assert rep.mode == "lazy"
    assert rep.invalidations["events"]["fq_flush_iotlb"] == 36
    assert rep.invalidations["first_opcode"].get("TLBI_NH_VA", 0) == 0  # no per-unmap TLBI
    blk = rep.domains["0000:00:01.0"]
    assert (blk["maps"], blk["unmaps"]) == (2337, 2332)
    assert blk["invalidations_per_unmap"] < 0.05  # 2332 unmaps, a few dozen flushes
    assert not rep.findings_of("trace")
