"""Throughput of the IOVA allocator model (drivers/iommu/iova.c, Linux 6.1).

Run: ``.venv/bin/python benchmarks/bench_iova.py [--ops N]``.  Prints operations per
second for

* the range-cache hot path: alloc_iova_fast + free_iova_fast of one granule on one CPU;
* the tree path: alloc_iova + free_iova with 10 000 live allocations (random sizes and
  random frees, so the top-down walk meets real fragmentation), for a 32-bit and for a
  48-bit limit;
* alloc_iova_fast/free_iova_fast with 10 000 live allocations of mixed sizes, some cached
  and some (>= 33 granules) always going to the tree.
"""

from __future__ import annotations

import argparse
import random
import time

from socmem.linux.iommu.iova import IovaDomain

LIMIT32 = 0xFFFFF
LIMIT48 = (1 << 36) - 1


def bench_rcache_hot(ops: int) -> tuple[float, IovaDomain]:
    d = IovaDomain(4096, 1, ncpus=1)
    warm = [d.alloc_iova_fast(1, LIMIT32, False) for _ in range(64)]
    for pfn in warm:
        d.free_iova_fast(pfn, 1)
    t0 = time.perf_counter()
    for _ in range(ops):
        pfn = d.alloc_iova_fast(1, LIMIT32, False)
        d.free_iova_fast(pfn, 1)
    dt = time.perf_counter() - t0
    return 2 * ops / dt, d


def bench_tree(ops: int, live: int, limit: int, seed: int = 1) -> tuple[float, IovaDomain]:
    rng = random.Random(seed)
    d = IovaDomain(4096, 1, ncpus=1, rcache=False)
    d.reserve_iova(0x10000, 0x3EFEF)
    pfns: list[int] = []
    for _ in range(live):
        node = d.alloc_iova(rng.randint(1, 16), limit, True)
        assert node is not None
        pfns.append(node.pfn_lo)
    sizes = [rng.randint(1, 16) for _ in range(ops)]
    victims = [rng.randrange(live) for _ in range(ops)]
    t0 = time.perf_counter()
    for size, k in zip(sizes, victims, strict=True):
        d.free_iova(pfns[k])
        node = d.alloc_iova(size, limit, True)
        assert node is not None
        pfns[k] = node.pfn_lo
    dt = time.perf_counter() - t0
    return 2 * ops / dt, d


def bench_fast_mixed(
    ops: int, live: int, ncpus: int = 4, seed: int = 2
) -> tuple[float, IovaDomain]:
    rng = random.Random(seed)
    d = IovaDomain(4096, 1, ncpus=ncpus)
    choices = [1, 1, 1, 2, 4, 8, 16, 32, 40]
    held: list[tuple[int, int]] = []
    for _ in range(live):
        size = rng.choice(choices)
        pfn = d.alloc_iova_fast(size, LIMIT32, True, rng.randrange(ncpus))
        assert pfn
        held.append((pfn, size))
    plan = [(rng.randrange(live), rng.choice(choices), rng.randrange(ncpus)) for _ in range(ops)]
    t0 = time.perf_counter()
    for k, size, cpu in plan:
        pfn, old = held[k]
        d.free_iova_fast(pfn, old, cpu)
        pfn = d.alloc_iova_fast(size, LIMIT32, True, cpu)
        assert pfn
        held[k] = (pfn, size)
    dt = time.perf_counter() - t0
    return 2 * ops / dt, d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=100_000, help="alloc+free pairs per case")
    ap.add_argument("--live", type=int, default=10_000, help="live allocations (tree cases)")
    args = ap.parse_args()

    rate, _ = bench_rcache_hot(args.ops)
    print(f"alloc_iova_fast/free_iova_fast, rcache hot     : {rate:12,.0f} ops/s")
    for name, limit in (("32-bit", LIMIT32), ("48-bit", LIMIT48)):
        rate, d = bench_tree(args.ops // 4, args.live, limit)
        steps = d.stats.tree_walk_steps / max(1, d.stats.tree_allocs)
        print(
            f"alloc_iova/free_iova, {args.live} live, {name} : {rate:12,.0f} ops/s"
            f"  (mean walk {steps:.1f} nodes, {d.tree_size} nodes)"
        )
    rate, d = bench_fast_mixed(args.ops // 4, args.live)
    hits = sum(d.stats.rcache_hits)
    total = hits + sum(d.stats.rcache_misses) + sum(d.stats.uncached_allocs)
    print(
        f"alloc_iova_fast/free_iova_fast, {args.live} live, mixed: {rate:12,.0f} ops/s"
        f"  (rcache hit rate {hits / total:.1%})"
    )


if __name__ == "__main__":
    main()
