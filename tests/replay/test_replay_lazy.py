"""Replay of a real capture under LAZY invalidation (iommu.strict=0): Debian's 6.1 arm64
kernel under QEMU virt + SMMUv3, captured with ``socmem capture --profile
linux-6.1-arm64`` (tests/data/qemu-virt-smmuv3-lazy/README.md says how).  The kernel
frees IOVAs and flushes the IOTLB from its flush-queue timer; the replay frees and
flushes when the kernel did and must reproduce everything, commands included."""

from __future__ import annotations

from pathlib import Path

import pytest

from socmem.replay import ReplayResult, load_capture, replay
from socmem.soc.dt_import import import_dtb

LAZY = Path(__file__).resolve().parents[1] / "data" / "qemu-virt-smmuv3-lazy"


@pytest.fixture(scope="module")
def base() -> ReplayResult:
    cap = load_capture(LAZY)
    assert cap.strict is False  # iommu.strict=0 on the captured kernel's command line
    return replay(cap, import_dtb(LAZY / "fdt.dtb").soc)


EXPECTED = {
    "alloc_iova_fast": 2632,
    "rcache_vs_tree": 2632,
    "alloc_iova": 559,
    "free_iova_fast": 2370,
    "reserve_iova": 6,
    "iommu_map": 2638,
    "pgtable_alloc": 2638,
    "iommu_unmap": 2370,
    "pgtable_free": 2370,
    "smmu_cmds_per_call": 2370,
    "dma_map_page": 2622,
    "dma_alloc_contiguous": 7,
    "cma_alloc": 6,  # boot-time CMA allocations come from boot-trace.txt
    "domain_asid": 3,
}


def test_every_result_reproduced(base: ReplayResult) -> None:
    for kind, n in EXPECTED.items():
        a = base.agreement[kind]
        assert (a.matched, a.total) == (n, n), kind
    assert not base.divergences


def test_lazy_commands_equal_qemus(base: ReplayResult) -> None:
    # no per-unmap TLBI_NH_VA in lazy mode: one TLBI_NH_ASID + SYNC per flush-queue flush
    # (36 from the 10 ms timer) and at attach; QEMU's own log is the reference
    q = base.commands["qemu"]
    assert q["SMMU_CMD_TLBI_NH_ASID"] == 39 and q["SMMU_CMD_SYNC"] == 53
    assert "SMMU_CMD_TLBI_NH_VA" not in q
    assert base.commands["model"] == q
    for k in q:
        a = base.agreement[f"smmu_cmd:{k}"]
        assert (a.matched, a.total) == (1, 1), k
    assert base.metrics.fq_flushes == 36


def test_no_orphan_returns(base: ReplayResult) -> None:
    assert not [n for n in base.notes if "without its entry event" in n]
