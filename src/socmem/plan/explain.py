"""Why a buffer cannot be shared without a copy, and what it would cost to fix.

A :class:`Conflict` names the constraint of one master that collides with a constraint
of another master (or of the SoC: where the CMA pool sits, which heaps exist).  A
:class:`Fix` is one way out with its cost, and :func:`rank_fixes` orders them:

* runtime cost: extra DRAM traffic (bytes/s, as a fraction of the achievable DRAM
  bandwidth), CPU load (fraction of one core: a memcpy at ``cpu.copy_bandwidth``, or the
  swiotlb bounce memcpy) and DMA-engine time per frame;
* engineering cost, by class: ``config`` (a heap choice), ``dt`` (a device-tree change:
  move or add a CMA pool), ``driver`` (``dma_set_max_seg_size`` at probe), ``isp``
  (reprogram the ISP's output format), ``firmware`` (a TEE trusted application),
  ``silicon`` (a respin: give the display an IOMMU).

``score = bandwidth / achievable DRAM bandwidth + cpu_load + ENGINEERING[class]``; fixes
that cannot work (swiotlb cannot bounce a 12 MiB contiguous frame: its largest mapping
is ``IO_TLB_SEGSIZE × IO_TLB_SIZE`` = 256 KiB) are kept, marked, and ranked last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Engineering cost of a fix class, in "fractions of a core" equivalents (see module doc).
ENGINEERING: dict[str, float] = {
    "none": 0.0,
    "config": 0.001,
    "dt": 0.01,
    "driver": 0.02,
    "isp": 0.03,
    "firmware": 0.5,
    "silicon": 5.0,
}

SWIOTLB_MAX_MAPPING = 128 * 2048  # IO_TLB_SEGSIZE slots of IO_TLB_SIZE bytes


@dataclass
class Conflict:
    """Constraint ``constraint`` of ``master`` collides with ``other_constraint`` of ``other``."""

    kind: str
    master: str
    constraint: str
    other: str
    other_constraint: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class Fix:
    """One way to make the pool work, its cost and, for SoC changes, the change itself."""

    kind: str  # copy, heap, swiotlb, isp-conversion, soc-change, driver, drop-compression ...
    description: str
    engineering: str = "none"
    bandwidth: float = 0.0  # extra DRAM bytes per second
    cpu_load: float = 0.0  # fraction of one CPU core
    dma_time: float = 0.0  # seconds of copy-engine time per frame
    applicable: bool = True
    why_not: str = ""
    score: float = 0.0
    soc_change: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def cost_text(self) -> str:
        """A short human cost: bandwidth, CPU, engineering."""
        parts = []
        if self.bandwidth:
            parts.append(f"+{self.bandwidth / 1e9:.2f} GB/s DRAM")
        if self.cpu_load:
            parts.append(f"{self.cpu_load * 100:.0f}% of a core")
        if self.dma_time:
            parts.append(f"{self.dma_time * 1e3:.2f} ms DMA/frame")
        parts.append(f"{self.engineering} change" if self.engineering != "none" else "no change")
        return ", ".join(parts)


def rank_fixes(fixes: list[Fix], achievable_bandwidth: float) -> list[Fix]:
    """Score every fix and sort: applicable ones by score, then the inapplicable ones."""
    seen: set[str] = set()
    unique = []
    for f in fixes:
        if f.description in seen:
            continue
        seen.add(f.description)
        f.score = (
            f.bandwidth / max(achievable_bandwidth, 1.0)
            + f.cpu_load
            + ENGINEERING.get(f.engineering, 1.0)
        )
        unique.append(f)
    return sorted(unique, key=lambda f: (not f.applicable, f.score))


def _copy_fix(plan: Any, ctx: Any, consumer: str, rate: float, why: str) -> Fix:
    """A copy at the hop producer → ``consumer``: by a DMA engine if the SoC has one,
    else by the CPU (memcpy at ``cpu.copy_bandwidth``)."""
    soc = ctx.soc
    producer = next((u.master for u in plan.users if u.writes), "?")
    nbytes = plan.layout.payload_bytes or plan.size
    bw = 2 * nbytes * rate
    engine = next(
        (m for m in soc.masters if m.enabled and m.kind.value == "dma-engine" and m.has_iommu),
        None,
    )
    if engine is not None and engine.traffic.peak_bandwidth:
        t = 2 * nbytes / engine.traffic.peak_bandwidth
        return Fix(
            "copy",
            f"copy at the hop {producer} -> {consumer} with {engine.name} into a second "
            f"buffer {consumer} can use ({why})",
            bandwidth=bw,
            dma_time=t,
        )
    return Fix(
        "copy",
        f"copy at the hop {producer} -> {consumer} on the CPU into a second buffer "
        f"{consumer} can use ({why})",
        bandwidth=bw,
        cpu_load=nbytes * rate / soc.cpu.copy_bandwidth,
    )


def fixes_for(plan: Any, ctx: Any, views: dict[str, Any], rate: float) -> list[Fix]:
    """Candidate fixes for every conflict of ``plan`` (ranked by :func:`rank_fixes`)."""
    from socmem.plan.formats import FORMATS, PAGE_SIZE

    soc = ctx.soc
    fixes: list[Fix] = []
    need = plan.size * plan.count
    producer = next((u for u in plan.users if u.writes), None)
    pview = views.get(producer.master) if producer else None
    for c in plan.conflicts:
        v = views.get(c.master)
        if c.kind in ("reach", "contiguity", "capacity"):
            nommu = [x for x in views.values() if not x.is_cpu and not x.iommu]
            if nommu:
                lo = max(min(r[0] for r in x.reach) for x in nommu)
                hi = min(max(r[1] for r in x.reach) for x in nommu)
                size_mib = max(64, -(-2 * need // (1 << 20)))
                room = [
                    (max(lo, r.base), min(hi, r.end))
                    for r in soc.dram.ranges
                    if min(hi, r.end) - max(lo, r.base) >= size_mib << 20
                ]
                if room:
                    lo, hi = room[0]
                    what = "place the CMA pool" if "cma" in ctx.heaps else "add a CMA pool"
                    fixes.append(Fix(
                        "soc-change",
                        f"{what} ({size_mib} MiB or more, linux,cma) inside [{lo:#x}, {hi:#x}), "
                        f"where {', '.join(x.name for x in nommu)} can reach it",
                        engineering="dt",
                        soc_change={"cma": {"size": size_mib << 20, "alloc_range": [lo, hi]}},
                    ))  # fmt: skip
                for x in nommu:
                    fixes.append(Fix(
                        "soc-change", f"give {x.name} an IOMMU (any memory, any address, no CMA)",
                        engineering="silicon", soc_change={"iommu_for": x.name},
                    ))  # fmt: skip
            for spec, h in ctx.heaps.items():
                if (
                    h.kind == "carveout"
                    and h.size >= need
                    and all(x.reaches(h.base, h.size) for x in views.values() if not x.is_cpu)
                ):
                    fixes.append(Fix("heap", f"allocate from {spec} instead", engineering="config"))
            if c.kind == "reach" and v is not None and not v.iommu:
                seg = plan.size
                ok = seg <= SWIOTLB_MAX_MAPPING
                fixes.append(Fix(
                    "swiotlb",
                    f"let dma-direct bounce {c.master}'s accesses through swiotlb "
                    "(a memcpy per frame)",
                    bandwidth=2 * plan.size * rate,
                    cpu_load=plan.size * rate / soc.cpu.copy_bandwidth,
                    applicable=ok,
                    why_not="" if ok else f"a {plan.size >> 20} MiB contiguous buffer exceeds "
                    f"swiotlb's largest mapping ({SWIOTLB_MAX_MAPPING >> 10} KiB)",
                ))  # fmt: skip
            if v is not None and not v.is_cpu:
                fixes.append(_copy_fix(plan, ctx, c.master, rate, c.constraint))
        elif c.kind == "segment-size":
            fixes.append(Fix(
                "driver", f"{c.master}'s driver calls dma_set_max_seg_size(dev, UINT_MAX) at probe "
                "(constraints.driver_max_segment_size)", engineering="driver",
                soc_change={"max_seg_for": c.master},
            ))  # fmt: skip
        elif c.kind == "format":
            alts = [
                f for f in FORMATS
                if f != plan.format
                and all(x.is_cpu or x.c.supports_format(f) for x in views.values())
                and (pview is None or pview.c.supports_format(f))
            ]  # fmt: skip
            if pview is not None and pview.kind.value == "isp" and alts:
                fixes.append(Fix(
                    "isp-conversion", f"have the ISP ({pview.name}) write {alts[0]} instead of "
                    f"{plan.format} (every user reads {alts[0]})", engineering="isp",
                ))  # fmt: skip
            fixes.append(_copy_fix(plan, ctx, c.master, rate, f"convert {plan.format}"))
        elif c.kind == "modifier":
            saved = plan.bandwidth_raw - plan.bandwidth_compressed
            fixes.append(Fix(
                "drop-compression", "allocate linear (no compression): every user reads it",
                bandwidth=max(saved, 0.0), engineering="config",
            ))  # fmt: skip
            if pview is not None and pview.kind.value == "isp":
                fixes.append(Fix(
                    "isp-conversion", f"have the ISP ({pview.name}) write a second, linear output "
                    f"for {c.master}",
                    bandwidth=plan.layout.payload_bytes * rate,
                    engineering="isp",
                ))  # fmt: skip
            fixes.append(_copy_fix(plan, ctx, c.master, rate, "decompress"))
        elif c.kind == "pitch":
            if pview is not None and pview.kind.value == "isp":
                fixes.append(Fix(
                    "isp-conversion", f"have the ISP ({pview.name}) write at {c.master}'s pitch",
                    engineering="isp",
                ))  # fmt: skip
            hop = c.other if producer is not None and c.master == producer.master else c.master
            fixes.append(_copy_fix(plan, ctx, hop, rate, "re-pitch"))
        elif c.kind == "protected":
            fixes.append(Fix(
                "soc-change", f"run {c.master}'s work in the TEE (a trusted application reads the "
                "protected buffer)", engineering="firmware",
            ))  # fmt: skip
            fixes.append(Fix(
                "copy", f"copy out to normal memory for {c.master}",
                applicable=False, why_not="content protection forbids copying protected frames "
                "to memory the CPU can read",
            ))  # fmt: skip
        elif c.kind == "usage" and v is not None:
            fixes.append(_copy_fix(plan, ctx, c.master, rate, f"{c.master} lacks the usage"))
        elif c.kind == "heap":
            fixes.append(
                Fix("heap", "set heap: auto and let the planner choose", engineering="config")
            )
    del PAGE_SIZE
    return fixes


def apply_soc_change(soc: Any, fix: Fix) -> Any:
    """A copy of ``soc`` with ``fix``'s device-tree or driver change applied, to re-plan and
    prove it (CMA placement, ``dma_set_max_seg_size``); other fixes return None."""
    from socmem.soc.schema import Range, ReservedRegion

    ch = fix.soc_change
    new = soc.model_copy(deep=True)
    if "cma" in ch:
        lo, hi = ch["cma"]["alloc_range"]
        size = ch["cma"]["size"]
        new.reserved_memory = [r for r in new.reserved_memory if not r.is_cma]
        new.reserved_memory.append(ReservedRegion(
            name="linux,cma", compatible=["shared-dma-pool"], reusable=True, size=size,
            alignment=4 << 20, alloc_ranges=[Range(base=lo, size=hi - lo)], cma_default=True,
        ))  # fmt: skip
        return new
    if "max_seg_for" in ch:
        m = new.master(ch["max_seg_for"])
        m.constraints.driver_max_segment_size = 0xFFFF_FFFF
        return new
    return None
