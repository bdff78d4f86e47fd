"""What-if: re-execute the same captured history on a changed model and say what moved.

``socmem replay CAPTURE --set granule=64K --set invalidation=lazy`` replays the
capture twice — on the model as the capture's kernel was configured (the baseline) and on
the changed one — and compares what the change costs or saves: page-table memory, IOVA
space used and its fragmentation, IOTLB invalidation commands, IOTLB misses on the
detailed IOTLB, CMA failures, swiotlb bounces.

Keys (:data:`WHATIF_KEYS`): ``granule`` (4K, 16K, 64K: the SMMU's translation granule;
buffers are then mapped in whole granules), ``invalidation`` (strict, lazy),
``dma_mask`` (bits) or ``iova_limit`` (highest IOVA), ``cma_size``, ``rcache`` (on,
off), ``iotlb_entries``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from socmem.errors import InputError
from socmem.linux.mm.cma import CMA_MIN_ALIGNMENT_BYTES
from socmem.replay.capture import Capture
from socmem.replay.engine import Metrics, ReplayConfig, ReplayResult, replay
from socmem.units import parse_size

__all__ = ["WHATIF_KEYS", "WhatIf", "parse_sets", "run_whatif"]

#: key -> accepted values (for the error message)
WHATIF_KEYS: dict[str, str] = {
    "granule": "4K, 16K or 64K",
    "invalidation": "strict or lazy",
    "dma_mask": "a number of bits, 32 to 64 (e.g. 32, 40, 48)",
    "iova_limit": "the highest IOVA, a size or address (e.g. 0xffffffff, 1G)",
    "cma_size": "a size (e.g. 16M, 64MiB)",
    "rcache": "on or off",
    "iotlb_entries": "a whole number of entries, 1 or more",
}
_GRANULES = {"4k": 4096, "4096": 4096, "16k": 16384, "16384": 16384, "64k": 65536, "65536": 65536}

#: metrics shown in the what-if table, with labels; lower is better for all but gaps
METRIC_LABELS: dict[str, str] = {
    "pgtable_pages_peak": "page-table pages (peak)",
    "pgtable_bytes_peak": "page-table memory (peak, bytes)",
    "pgtable_pages_final": "page-table pages (end)",
    "iova_bytes_peak": "IOVA space used (peak, bytes)",
    "iova_fragmentation": "IOVA fragmentation (end, 1 - largest gap / free)",
    "iova_alloc_failures": "IOVA allocation failures",
    "tree_allocations": "rbtree allocations (alloc_iova)",
    "rcache_hits": "rcache hits",
    "map_failures": "iommu_map failures",
    "invalidation_commands": "TLB invalidation commands",
    "commands_total": "SMMU commands (all kinds)",
    "fq_flushes": "flush-queue flushes",
    "iotlb_misses": "IOTLB misses (detailed IOTLB)",
    "iotlb_hits": "IOTLB hits",
    "cma_failures": "CMA allocation failures",
    "cma_pages_peak": "CMA pages used (peak)",
    "swiotlb_bounces": "swiotlb bounces",
}


def _bad(key: str, value: str) -> InputError:
    return InputError(
        f"bad value {value!r} for {key}", where=f"--set {key}", expected=WHATIF_KEYS[key]
    )


def parse_sets(items: list[str] | None) -> ReplayConfig:
    """``["granule=64K", "rcache=off"]`` → a :class:`ReplayConfig`.  InputError (exit 2)
    naming the key and the accepted values on anything else."""
    cfg = ReplayConfig()
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        value = value.strip()
        if not sep or not key:
            raise InputError(
                f"expected KEY=VALUE, got {item!r}",
                where="--set",
                expected="one of " + ", ".join(WHATIF_KEYS),
            )
        if key not in WHATIF_KEYS:
            raise InputError(
                f"unknown key {key!r}",
                where="--set",
                expected="one of " + ", ".join(f"{k} ({v})" for k, v in WHATIF_KEYS.items()),
            )
        v = value.lower()
        if key == "granule":
            g = _GRANULES.get(v.removesuffix("ib").removesuffix("b"))
            if g is None:
                raise _bad(key, value)
            cfg = replace(cfg, granule=g)
        elif key == "invalidation":
            if v not in ("strict", "lazy"):
                raise _bad(key, value)
            cfg = replace(cfg, strict=v == "strict")
        elif key == "dma_mask":
            try:
                bits = int(v)
            except ValueError:
                raise _bad(key, value) from None
            if not 32 <= bits <= 64:
                raise _bad(key, value)
            cfg = replace(cfg, dma_limit=(1 << bits) - 1)
        elif key == "iova_limit":
            try:
                lim = parse_size(value)
            except (ValueError, TypeError, InputError):
                raise _bad(key, value) from None
            if lim < 0x100000:
                raise _bad(key, value)
            cfg = replace(cfg, dma_limit=lim if lim & 1 else lim - 1)
        elif key == "cma_size":
            try:
                size = parse_size(value)
            except (ValueError, TypeError, InputError):
                raise _bad(key, value) from None
            if size <= 0 or size % CMA_MIN_ALIGNMENT_BYTES:
                raise InputError(
                    f"bad value {value!r} for cma_size: CMA areas are whole pageblocks",
                    where="--set cma_size",
                    expected=f"a multiple of {CMA_MIN_ALIGNMENT_BYTES >> 20}M (e.g. 2M, 16M)",
                )
            cfg = replace(cfg, cma_size=size)
        elif key == "rcache":
            if v not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
                raise _bad(key, value)
            cfg = replace(cfg, rcache=v in ("on", "1", "true", "yes"))
        elif key == "iotlb_entries":
            try:
                n = int(v, 0)
            except ValueError:
                raise _bad(key, value) from None
            if n < 1:
                raise _bad(key, value)
            cfg = replace(cfg, iotlb_entries=n)
    return cfg


@dataclass
class WhatIf:
    """The baseline replay, the changed replay and the metric deltas between them."""

    baseline: ReplayResult
    changed: ReplayResult
    rows: list[tuple[str, str, float, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: settings and each metric's baseline, what-if and delta."""
        return {
            "set": self.changed.config.describe(),
            "metrics": {
                key: {"baseline": b, "whatif": w, "delta": d} for key, _l, b, w, d in self.rows
            },
            "cmd_counts": {
                "baseline": self.baseline.metrics.cmd_counts,
                "whatif": self.changed.metrics.cmd_counts,
            },
            "notes": self.changed.notes[-5:],
        }


def metric_rows(a: Metrics, b: Metrics) -> list[tuple[str, str, float, float, float]]:
    """``(key, label, baseline, what-if, delta)`` for every metric of the table."""
    sa, sb = a.scalars(), b.scalars()
    rows = []
    for key, label in METRIC_LABELS.items():
        x, y = sa.get(key, 0), sb.get(key, 0)
        d = y - x
        if isinstance(d, float):
            d = round(d, 6)
        rows.append((key, label, x, y, d))
    return rows


def run_whatif(
    cap: Capture, soc: Any, cfg: ReplayConfig, baseline: ReplayResult | None = None
) -> WhatIf:
    """Replay ``cap`` as captured (unless ``baseline`` is given) and with ``cfg``."""
    base = baseline if baseline is not None else replay(cap, soc, ReplayConfig())
    changed = replay(cap, soc, cfg)
    w = WhatIf(base, changed, metric_rows(base.metrics, changed.metrics))
    if cfg.strict is False and base.strict:
        changed.notes.append(
            "lazy: unmaps queue their IOVAs in the per-CPU flush queue; the 10 ms timer runs"
            " on the capture's timestamps (TCG time: ordering is right, durations are not)"
        )
    if cfg.granule is not None:
        changed.notes.append(
            "granule: each buffer is mapped in whole granules around the physical pages the"
            " kernel used (from __iommu_map's paddr); IOVA sizes follow"
        )
    return w
