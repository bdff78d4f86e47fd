"""Derived facts about an SoC, as data: the memory map, DMA reach, who is behind which IOMMU.

Both ``socmem soc show`` (console) and ``socmem soc show --json`` render this one
structure, so a script sees exactly what a person sees.
"""

from __future__ import annotations

from typing import Any

from socmem.soc.schema import Master, ReservedRegion, Soc
from socmem.units import format_address, format_bandwidth, format_size


def dma_reach(soc: Soc, m: Master) -> dict[str, Any]:
    """What ``m`` can reach and how: through its IOMMU, or directly with its mask and dma-ranges.

    Behind an IOMMU the limit is on the IOVA (``min(dma mask, bus_dma_limit, 2^ias)``, as
    dma-iommu's ``iommu_dma_alloc_iova`` caps it) and any physical page below ``2^oas``
    can be mapped.  Without one, dma-direct's ``dma_capable()`` decides: the physical
    range reached through the dma-ranges windows under ``min_not_zero(mask, bus limit)``.
    """
    if m.has_iommu:
        names = sorted({s.iommu for s in m.iommus} | {e.iommu for e in m.iommu_map})
        iommus = [soc.iommu(n) for n in names]
        ias = min((i.ias for i in iommus if i), default=48)
        oas = min((i.oas for i in iommus if i), default=48)
        iova_limit = min(m.dma_limit, (1 << ias) - 1)
        return {
            "via": "iommu",
            "iommus": names,
            "iova_limit": iova_limit,
            "iova_space": iova_limit + 1,
            "phys_limit": (1 << oas) - 1,
            "all_dram": all(r.end - 1 <= (1 << oas) - 1 for r in soc.dram.ranges),
            "text": f"IOVA < {format_size(iova_limit + 1, exact=False)}, PA < 2^{oas}",
        }
    windows = m.phys_reach()
    dram_total = soc.dram.total_size
    reached = 0
    for d in soc.dram.ranges:
        for lo, hi in windows:
            reached += max(0, min(hi, d.end) - max(lo, d.base))
    text = ", ".join(f"{format_address(lo)}-{format_address(hi - 1)}" for lo, hi in windows)
    return {
        "via": "direct",
        "phys_windows": [{"start": lo, "end": hi} for lo, hi in windows],
        "dram_reached": reached,
        "dram_total": dram_total,
        "all_dram": reached >= dram_total,
        "text": f"PA {text} ({format_size(reached, exact=False)} of "
        f"{format_size(dram_total, exact=False)} DRAM), contiguous only",
    }


def _region_users(soc: Soc, region: ReservedRegion) -> list[str]:
    users = [m.name for m in soc.masters if region.name in m.memory_region]
    if region.cma_default or (region.is_cma and soc.default_cma() is region):
        users.append("(default CMA)")
    return users


def memory_map(soc: Soc) -> list[dict[str, Any]]:
    """Every DRAM range and reserved region, static ones sorted by address."""
    rows: list[dict[str, Any]] = []
    for r in soc.dram.ranges:
        rows.append(
            {
                "name": "DRAM",
                "kind": "dram",
                "base": r.base,
                "size": r.size,
                "flags": [],
                "users": [],
            }
        )
    for reg in soc.effective_reserved_memory():
        flags = [
            f
            for f, on in (
                ("no-map", reg.no_map),
                ("reusable", reg.reusable),
                ("secure", reg.secure),
                ("default", reg.cma_default or reg.dma_default),
            )
            if on
        ]
        common = {
            "name": reg.name,
            "kind": reg.kind.value,
            "flags": flags,
            "users": _region_users(soc, reg),
        }
        if reg.reg:
            for r in reg.reg:
                rows.append({**common, "base": r.base, "size": r.size})
        else:
            placement = ", ".join(
                f"{format_address(a.base)}-{format_address(a.end - 1)}" for a in reg.alloc_ranges
            )
            rows.append(
                {
                    **common,
                    "base": None,
                    "size": reg.size,
                    "alignment": reg.alignment,
                    "placement": placement or "anywhere in DRAM",
                }
            )
    rows.sort(key=lambda r: (r["base"] is None, r["base"] or 0, r["kind"] != "dram"))
    return rows


def summarize(soc: Soc) -> dict[str, Any]:
    """The whole summary as JSON-ready data (addresses and sizes as integers)."""
    d = soc.dram
    return {
        "name": soc.name,
        "description": soc.description,
        "dram": {
            "type": d.type.value,
            "data_rate": d.data_rate,
            "channels": d.channels,
            "channel_width": d.channel_width,
            "peak_bandwidth": d.peak_bandwidth,
            "efficiency": d.efficiency,
            "achievable_bandwidth": d.achievable_bandwidth,
            "size": d.total_size,
            "text": f"{d.type.value}-{d.data_rate / 1e6:.0f} {d.channels}x{d.channel_width}-bit: "
            f"{format_bandwidth(d.peak_bandwidth)} peak, "
            f"{format_bandwidth(d.achievable_bandwidth)} at {d.efficiency:.0%}",
        },
        "memory_map": memory_map(soc),
        "iommus": [
            {
                "name": i.name,
                "model": i.model.value,
                "granules": i.granules,
                "page_sizes": i.page_sizes,
                "ias": i.ias,
                "oas": i.oas,
                "tlb": i.tlb.model_dump(),
                "invalidation": i.invalidation.value,
                "masters": [m.name for m in soc.masters_of(i.name)],
            }
            for i in soc.iommus
        ],
        "masters": [
            {
                "name": m.name,
                "kind": m.kind.value,
                "enabled": m.enabled,
                "stream_ids": [{"iommu": s.iommu, "id": s.id, "mask": s.mask} for s in m.iommus],
                "iommu_map": [e.model_dump() for e in m.iommu_map],
                "dma_coherent": m.dma_coherent,
                "dma_mask_bits": m.dma_mask_bits,
                "bus_dma_limit": m.bus_dma_limit,
                "reach": dma_reach(soc, m),
                "qos_class": m.qos_class.value,
                "secure": m.secure,
                "memory_region": m.memory_region,
                "source": m.source,
            }
            for m in soc.masters
        ],
        "cpu": soc.cpu.model_dump(),
        "assumptions": soc.assumptions,
    }
