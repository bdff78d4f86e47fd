"""``socmem soc show``: an SoC summary for a terminal (rich tables)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from socmem.soc.schema import Soc
from socmem.soc.summary import summarize
from socmem.units import format_address, format_size


def _sid(s: dict[str, Any]) -> str:
    if s["id"] is None:
        return "(single master)"
    return f"{s['id']:#x}" + (f"/{s['mask']:#x}" if s["mask"] else "")


def render_soc(soc: Soc, warnings: list[str] | None = None) -> Group:
    """The renderables of ``socmem soc show`` for ``soc``."""
    s = summarize(soc)
    parts: list[Any] = []
    title = Text(soc.name, style="bold")
    if soc.description:
        title.append("\n" + " ".join(soc.description.split()), style="dim")
    parts.append(Panel(title, expand=False))

    dram = s["dram"]
    parts.append(
        Text.assemble(
            ("DRAM  ", "bold"), dram["text"], f", {format_size(dram['size'], exact=False)}"
        )
    )

    mm = Table(title="Memory map", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("region", "kind", "start", "end", "size"):
        mm.add_column(col, no_wrap=True)
    mm.add_column("notes", min_width=24)
    for row in s["memory_map"]:
        notes = list(row["flags"])
        if row["base"] is None:
            start, end = "dynamic", ""
            notes.insert(0, f"in {row.get('placement', '')}")
        else:
            start = format_address(row["base"])
            end = format_address(row["base"] + row["size"] - 1)
        if row["users"]:
            notes.append("used by " + ", ".join(row["users"]))
        style = "bold" if row["kind"] == "dram" else ("cyan" if row["kind"] == "cma" else "")
        mm.add_row(
            row["name"],
            row["kind"],
            start,
            end,
            format_size(row["size"], exact=False),
            "; ".join(notes),
            style=style,
        )
    parts.append(mm)

    for io in s["iommus"]:
        granules = ", ".join(format_size(g) for g in io["granules"])
        tlb = io["tlb"]
        t = Table(
            title=f"IOMMU {io['name']}  {io['model']}  granules {granules}  "
            f"IAS {io['ias']} / OAS {io['oas']} bits  {io['invalidation']}  "
            f"TLB {tlb['iotlb_entries']} + uTLB {tlb['utlb_entries']}, "
            f"walk cache {tlb['walk_cache_entries']}",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("master", "kind"):
            t.add_column(col, no_wrap=True)
        t.add_column("stream IDs (id/mask)")
        t.add_column("coherent", no_wrap=True)
        t.add_column("DMA reach")
        for m in s["masters"]:
            if m["name"] not in io["masters"]:
                continue
            sids = [_sid(x) for x in m["stream_ids"] if x["iommu"] == io["name"]]
            sids += [
                f"RID {e['rid_base']:#x}+{e['length']:#x} -> SID {e['iommu_base']:#x}"
                for e in m["iommu_map"]
                if e["iommu"] == io["name"]
            ]
            t.add_row(
                m["name"],
                m["kind"],
                ", ".join(sids),
                "yes" if m["dma_coherent"] else "no",
                m["reach"]["text"],
                style="" if m["enabled"] else "dim",
            )
        parts.append(t)

    direct = [m for m in s["masters"] if m["reach"]["via"] == "direct"]
    if direct:
        t = Table(
            title="Masters without an IOMMU (dma-direct)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for col in ("master", "kind", "coherent", "mask", "DMA reach"):
            t.add_column(col)
        for m in direct:
            t.add_row(
                m["name"],
                m["kind"],
                "yes" if m["dma_coherent"] else "no",
                f"{m['dma_mask_bits']}-bit",
                m["reach"]["text"],
                style="" if m["enabled"] else "dim",
            )
        parts.append(t)

    disabled = sum(1 for m in s["masters"] if not m["enabled"])
    cpu = s["cpu"]
    parts.append(
        Text(
            f"{len(s['masters'])} masters ({disabled} disabled, shown dim); "
            f"CPU: {cpu['cores']} cores, {cpu['cache_line']}-byte lines",
            style="dim",
        )
    )
    if soc.assumptions:
        parts.append(
            Text("Assumptions (not read from the source; review them):", style="bold yellow")
        )
        parts.extend(Text(f"  - {a}") for a in soc.assumptions)
    for w in warnings or []:
        parts.append(Text(f"warning: {w}", style="yellow"))
    return Group(*parts)


def print_soc(soc: Soc, console: Console, warnings: list[str] | None = None) -> None:
    """Print the summary of ``soc`` to ``console``."""
    console.print(render_soc(soc, warnings))
