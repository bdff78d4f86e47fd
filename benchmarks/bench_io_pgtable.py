"""Benchmark: map + unmap one 3840x2160 NV12 frame through IoPgtableArm.

12,441,600 bytes -> 3038 pages of 4 KiB.  Two ways, as dma-iommu would drive it:

* page by page: map_pages(pgcount=1) per page (a scattered sg list), then
  unmap_pages(pgcount=1) per page;
* batched: map_pages / unmap_pages with pgcount, looping as __iommu_map() does
  because io-pgtable stops at the end of each leaf table.

Target (Snapdragon 855 kernel figure): < 1.8 ms per frame for map + unmap.
Also prints the tracemalloc peak for 1 vs 16 frames mapped at once.

Run: .venv/bin/python benchmarks/bench_io_pgtable.py
"""

from __future__ import annotations

import time
import tracemalloc

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

FRAME_BYTES = 3840 * 2160 * 3 // 2
PAGES = -(-FRAME_BYTES // SZ_4K)
IOVA = 0xF000_0000 - PAGES * SZ_4K  # top-down like the IOVA allocator
PADDR = 0x8_0000_0000
PROT = IOMMU_READ | IOMMU_WRITE


def new_ops() -> IoPgtableArm:
    cfg = IoPgtableCfg(pgsize_bitmap=SZ_4K | SZ_2M | SZ_1G, ias=48, oas=48)
    return IoPgtableArm(ARM_64_LPAE_S1, cfg)


def frame_page_by_page(ops: IoPgtableArm, iova: int = IOVA) -> None:
    map_pages = ops.map_pages
    unmap_pages = ops.unmap_pages
    for i in range(PAGES):
        # scattered sg list: physical pages deliberately non-contiguous
        map_pages(iova + i * SZ_4K, PADDR + ((i * 7919) % 65536) * SZ_4K, SZ_4K, 1, PROT)
    for i in range(PAGES):
        unmap_pages(iova + i * SZ_4K, SZ_4K, 1)


def map_batched(ops: IoPgtableArm, iova: int, paddr: int, pages: int) -> None:
    done = 0
    while done < pages:
        ret, mapped = ops.map_pages(
            iova + done * SZ_4K, paddr + done * SZ_4K, SZ_4K, pages - done, PROT
        )
        assert ret == 0
        done += mapped // SZ_4K


def unmap_batched(ops: IoPgtableArm, iova: int, pages: int) -> None:
    done = 0
    while done < pages:
        done += ops.unmap_pages(iova + done * SZ_4K, SZ_4K, pages - done) // SZ_4K


def frame_batched(ops: IoPgtableArm) -> None:
    map_batched(ops, IOVA, PADDR, PAGES)
    unmap_batched(ops, IOVA, PAGES)


def bench(name: str, fn, ops: IoPgtableArm, ops_per_frame: int) -> float:
    fn(ops)  # warm up: tables allocated once, as on a long-lived domain
    best = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        n = 5
        for _ in range(n):
            fn(ops)
        best = min(best, (time.perf_counter() - t0) / n)
    us = best * 1e6
    print(f"{name:<28} {us:9.0f} us/frame  {ops_per_frame / best / 1e6:6.2f} M ops/s")
    return best


def memory(frames: int) -> int:
    tracemalloc.start()
    ops = new_ops()
    for f in range(frames):
        map_batched(ops, IOVA - f * 0x100_0000, PADDR + f * 0x100_0000, PAGES)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"tracemalloc peak, {frames:2d} frame(s) mapped: {peak / 1024:8.0f} KiB"
        f"  ({ops.table_pages} page-table pages, {ops.table_bytes // 1024} KiB modelled)"
    )
    return peak


NOTE = (
    "io-pgtable alone, one call per page vs batched; the issue's 1.8 ms target is for the\n"
    "whole dma-iommu path (iommu_dma_map_sg + unmap through the SMMU): bench_smmu_map.py"
)


def main() -> None:
    print(NOTE)
    print(f"NV12 3840x2160: {FRAME_BYTES} bytes = {PAGES} x 4 KiB pages")
    ops = new_ops()
    frame_page_by_page(ops)
    assert ops.iova_to_phys(IOVA) == 0 and not ops.warnings
    bench("page by page (pgcount=1)", frame_page_by_page, ops, 2 * PAGES)
    bench("batched (pgcount)", frame_batched, new_ops(), 2 * PAGES)
    m1 = memory(1)
    m16 = memory(16)
    print(f"memory ratio 16 frames / 1 frame: {m16 / m1:.1f}x")


if __name__ == "__main__":
    main()
