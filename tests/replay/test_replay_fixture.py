"""Replay of a real 6.1 arm64 kernel (QEMU virt + SMMUv3, strict) on the model: every
result the kernel produced is reproduced, and what-ifs move in the directions reasoned
out below."""

from __future__ import annotations

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.replay import ReplayResult, load_capture, parse_sets, replay, run_whatif
from socmem.replay.capture import Capture
from socmem.soc.dt_import import import_dtb


@pytest.fixture(scope="module")
def cap() -> Capture:
    return load_capture(need(QEMU_REPLAY))


@pytest.fixture(scope="module")
def soc():  # type: ignore[no-untyped-def]
    return import_dtb(need(QEMU / "guest-fdt.dtb")).soc


@pytest.fixture(scope="module")
def base(cap: Capture, soc) -> ReplayResult:  # type: ignore[no-untyped-def]
    return replay(cap, soc)


EXPECTED = {
    "alloc_iova_fast": 1734,
    "rcache_vs_tree": 1734,
    "alloc_iova": 628,
    "free_iova_fast": 1465,
    "reserve_iova": 12,
    "iommu_map": 2257,
    "pgtable_alloc": 2257,
    "iommu_unmap": 1465,
    "pgtable_free": 1465,
    "iotlb_sync": 1465,
    "smmu_cmds_per_call": 1465,
    "dma_map_page": 1710,
    "dma_alloc_contiguous": 10,
    "cma_alloc": 6,
    "domain_asid": 6,
}
QEMU_CMDS = {
    "SMMU_CMD_SYNC": 1500,
    "SMMU_CMD_TLBI_NH_VA": 1471,
    "SMMU_CMD_CFGI_STE": 12,
    "SMMU_CMD_PREFETCH_CONFIG": 6,
    "SMMU_CMD_TLBI_NH_ASID": 6,
    "SMMU_CMD_CFGI_STE_RANGE": 1,
    "SMMU_CMD_TLBI_NSNH_ALL": 1,
}


def test_capture_rebuilt(cap: Capture) -> None:
    assert cap.events == 23495
    assert cap.ncpus == 2 and cap.strict is True
    assert (cap.cma_base, cap.cma_size) == (0xB9A00000, 64 << 20)
    assert len(cap.domains) == 6
    assert [d.asid for d in cap.domains.values()] == [1, 2, 3, 4, 5, 6]
    assert cap.missing_probes() == {}
    fast = cap.by_kind("alloc_iova_fast")
    assert len(fast) == 1734 and all("pfn" in c.result for c in fast)
    assert all(cap.calls[c.parent].kind == "iommu_dma_alloc_iova" for c in fast)  # type: ignore[index]


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_every_kernel_result_reproduced(base: ReplayResult, kind: str) -> None:
    a = base.agreement[kind]
    assert (a.matched, a.total, a.not_compared) == (EXPECTED[kind], EXPECTED[kind], 0)


def test_smmu_commands_equal_qemu_log(base: ReplayResult) -> None:
    assert base.commands["qemu"] == QEMU_CMDS
    assert base.commands["model"] == QEMU_CMDS
    assert base.commands["kernel_trace"] == QEMU_CMDS
    assert base.divergences == []
    assert base.all_agree


def test_baseline_metrics(base: ReplayResult) -> None:
    m = base.metrics
    assert m.pgtable_pages_peak == 31  # 6 pgds + 25 table pages, as arm_lpae_alloc_pages
    assert m.tree_allocations == 628 and m.rcache_hits == 1734 - 628
    assert m.cma_failures == 0 and m.cma_pages_peak == 3 * 64 + 2 * 256 + 4


@pytest.fixture(scope="module")
def whatifs(cap: Capture, soc, base: ReplayResult):  # type: ignore[no-untyped-def]
    out = {}
    for s in ("granule=64K", "invalidation=lazy", "rcache=off", "cma_size=2M", "iotlb_entries=16"):
        out[s] = run_whatif(cap, soc, parse_sets([s]), baseline=base)
    return out


def _m(w, key: str):  # type: ignore[no-untyped-def]
    return w.baseline.metrics.scalars()[key], w.changed.metrics.scalars()[key]


def test_whatif_64k_granule(whatifs) -> None:  # type: ignore[no-untyped-def]
    # A 64K-granule table maps 64K x 8192 = 512 MiB per leaf table (4K: 2 MiB), and three
    # levels cover 48 bits: fewer table pages, but each is 16 times bigger.
    w = whatifs["granule=64K"]
    pages = _m(w, "pgtable_pages_peak")
    assert pages[1] < pages[0]
    mem = _m(w, "pgtable_bytes_peak")
    assert mem[1] > mem[0]
    # every buffer takes at least 64K of IOVA space
    iova = _m(w, "iova_bytes_peak")
    assert iova[1] > iova[0]


def test_whatif_lazy_fewer_invalidations(whatifs) -> None:  # type: ignore[no-untyped-def]
    w = whatifs["invalidation=lazy"]
    tlbi = _m(w, "invalidation_commands")
    assert tlbi[1] < tlbi[0] / 5
    # leaf invalidations go away; the 3 non-leaf ones for freed tables
    # (arm_smmu_tlb_inv_walk) stay synchronous in lazy mode too
    assert w.changed.metrics.cmd_counts.get("SMMU_CMD_TLBI_NH_VA", 0) == 3
    assert w.changed.metrics.fq_flushes > 0


def test_whatif_rcache_off_every_alloc_reaches_tree(whatifs) -> None:  # type: ignore[no-untyped-def]
    w = whatifs["rcache=off"]
    assert _m(w, "tree_allocations") == (628, 1734)
    assert w.changed.metrics.rcache_hits == 0


def test_whatif_smaller_cma_fails(whatifs) -> None:  # type: ignore[no-untyped-def]
    w = whatifs["cma_size=2M"]  # 512 pages < 3 x 64 + 256 + 256 + 4
    assert _m(w, "cma_failures")[0] == 0
    assert _m(w, "cma_failures")[1] > 0


def test_whatif_small_iotlb_more_misses(whatifs) -> None:  # type: ignore[no-untyped-def]
    w = whatifs["iotlb_entries=16"]
    misses = _m(w, "iotlb_misses")
    assert misses[1] > misses[0]
