"""Rules that span several objects of an SoC description.

Each rule is what would break on a real board: two static carveouts claiming the same
bytes (``of_reserved_mem`` would reserve both and drivers would corrupt each other),
one stream ID routed to two unrelated masters (the SMMU would put them in one IOMMU
group, or arm-smmu would refuse the second with ``-EEXIST`` / "stream match conflict"),
a master pointing at an IOMMU or region that does not exist (``of_iommu_configure``
fails, ``of_reserved_mem_device_init`` returns ``-ENODEV``).

:func:`check_soc` returns problems with the field path of the object at fault, so that
the loader can name the file and line.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from socmem.soc.schema import Iommu, Master, Range, ReservedRegion, Soc
from socmem.units import format_address, format_size


@dataclass(frozen=True)
class Problem:
    """One rule broken: where (field path), what, and whether it is fatal."""

    loc: tuple[str | int, ...]
    message: str
    error: bool = True


def _names(soc: Soc) -> list[Problem]:
    out = []
    sections: tuple[tuple[str, Sequence[Iommu | Master | ReservedRegion]], ...] = (
        ("iommus", soc.iommus),
        ("masters", soc.masters),
        ("reserved_memory", soc.reserved_memory),
    )
    for section, items in sections:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in seen:
                out.append(
                    Problem(
                        (section, i, "name"),
                        f"name '{item.name}' is already used by {section}[{seen[item.name]}]",
                    )
                )
            seen.setdefault(item.name, i)
    return out


def _references(soc: Soc) -> list[Problem]:
    out = []
    iommus = {i.name for i in soc.iommus}
    regions = {r.name for r in soc.reserved_memory}
    for i, m in enumerate(soc.masters):
        for j, s in enumerate(m.iommus):
            if s.iommu not in iommus:
                out.append(
                    Problem(
                        ("masters", i, "iommus", j, "iommu"),
                        f"master '{m.name}' refers to unknown IOMMU '{s.iommu}'"
                        + (f" (known: {', '.join(sorted(iommus))})" if iommus else ""),
                    )
                )
        for j, e in enumerate(m.iommu_map):
            if e.iommu not in iommus:
                out.append(
                    Problem(
                        ("masters", i, "iommu_map", j, "iommu"),
                        f"master '{m.name}' iommu-map refers to unknown IOMMU '{e.iommu}'",
                    )
                )
        for j, r in enumerate(m.memory_region):
            if r not in regions:
                out.append(
                    Problem(
                        ("masters", i, "memory_region", j),
                        f"master '{m.name}' refers to unknown reserved region '{r}'",
                    )
                )
    return out


def _overlaps(soc: Soc) -> list[Problem]:
    out = []
    for i, a in enumerate(soc.dram.ranges):
        for j in range(i):
            if a.overlaps(soc.dram.ranges[j]):
                out.append(Problem(("dram", "ranges", i), f"DRAM range overlaps ranges[{j}]"))
    static: list[tuple[int, int, Range]] = [
        (i, k, r) for i, reg in enumerate(soc.reserved_memory) for k, r in enumerate(reg.reg)
    ]
    static.sort(key=lambda t: t[2].base)
    for (i, _k, a), (j, k2, b) in itertools.pairwise(static):
        if a.overlaps(b):
            ra, rb = soc.reserved_memory[i], soc.reserved_memory[j]
            out.append(
                Problem(
                    ("reserved_memory", j, "reg", k2),
                    f"carveout '{rb.name}' [{format_address(b.base)}+{format_size(b.size)}] "
                    f"overlaps '{ra.name}' [{format_address(a.base)}+{format_size(a.size)}]",
                )
            )
    for i, reg in enumerate(soc.reserved_memory):
        for k, r in enumerate(reg.reg):
            if soc.dram.total_size and not any(
                d.base <= r.base and r.end <= d.end for d in soc.dram.ranges
            ):
                out.append(
                    Problem(
                        ("reserved_memory", i, "reg", k),
                        f"reserved region '{reg.name}' at {format_address(r.base)} "
                        "lies outside DRAM",
                        error=False,
                    )
                )
    defaults = [i for i, r in enumerate(soc.reserved_memory) if r.cma_default]
    for i in defaults[1:]:
        out.append(
            Problem(
                ("reserved_memory", i, "cma_default"),
                f"a second default CMA pool (first: '{soc.reserved_memory[defaults[0]].name}')",
            )
        )
    return out


def _stream_ids(soc: Soc) -> list[Problem]:
    out = []
    claims: list[tuple[int, int]] = [
        (i, j) for i, m in enumerate(soc.masters) if m.enabled for j in range(len(m.iommus))
    ]
    for n, (i, j) in enumerate(claims):
        mi, si = soc.masters[i], soc.masters[i].iommus[j]
        for i2, j2 in claims[:n]:
            if i2 == i:
                continue
            mo, so = soc.masters[i2], soc.masters[i2].iommus[j2]
            if mi.iommu_group and mi.iommu_group == mo.iommu_group:
                continue
            if si.collides(so):
                sid = "the IOMMU" if si.id is None else f"stream ID {si.id:#x}"
                out.append(
                    Problem(
                        ("masters", i, "iommus", j),
                        f"{sid} on '{si.iommu}' of master '{mi.name}' is already claimed by "
                        f"'{mo.name}' (set the same iommu_group on both if they share it)",
                    )
                )
    return out


def check_soc(soc: Soc) -> list[Problem]:
    """Every cross-object problem of ``soc``, errors and warnings, in file order."""
    return _names(soc) + _references(soc) + _overlaps(soc) + _stream_ids(soc)
