"""``socmem soc import``: turn a device tree blob into an SoC description.

The wiring comes from the blob (:mod:`socmem.soc.devicetree` reads it as Linux does);
what a device tree cannot say comes from :mod:`socmem.soc.defaults` and is listed in
``Soc.assumptions``.  Where the blob holds something our schema calls an error but the
kernel tolerates (two reserved regions overlapping, which the kernel reports as
``OF: reserved mem: OVERLAP DETECTED!``; one stream ID on two masters, which the SMMU
driver puts in one IOMMU group), the import keeps what Linux keeps and says so in the
warnings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from socmem.errors import InputError
from socmem.infile import read_bytes
from socmem.soc import devicetree as dt
from socmem.soc.checks import check_soc
from socmem.soc.defaults import MASTER_DEFAULTS, iommu_defaults
from socmem.soc.fdt import parse_fdt
from socmem.soc.schema import (
    Cpu,
    DmaRange,
    Dram,
    DramType,
    Iommu,
    IommuMap,
    IommuModel,
    KernelConfig,
    Master,
    MasterKind,
    Range,
    ReservedRegion,
    Soc,
    StreamId,
)
from socmem.units import GiB, MiB, format_address, format_size

ASSUMED_DRAM_BASE = 0x8000_0000
ASSUMED_DRAM_SIZE = 4 * GiB
#: CONFIG_CMA_SIZE_MBYTES of Debian's arm64 6.1 kernels (the fixtures' kernel config)
DEBIAN_CMA_SIZE = 64 * MiB


@dataclass
class ImportResult:
    """The imported SoC, the DT's model string, and what the import had to decide."""

    soc: Soc
    model: str
    warnings: list[str] = field(default_factory=list)
    board: dt.BoardDT | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "imported-soc"


class _Names:
    """Unique, readable names: the node name, then ``name-2`` ... on collisions."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def take(self, name: str, path: str = "") -> str:
        if name in self.used and path:
            # qualify by the nearest ancestor with a unit address: remoteproc@8300000/...
            parts = path.strip("/").split("/")[:-1]
            anchor = next((p for p in reversed(parts) if "@" in p), parts[-1] if parts else "")
            if anchor:
                name = f"{anchor}/{name}"
        candidate, n = name, 2
        while candidate in self.used:
            candidate, n = f"{name}-{n}", n + 1
        self.used.add(candidate)
        return candidate


def _dram(board: dt.BoardDT, assumptions: list[str]) -> Dram:
    banks = [m for m in board.memory if m.size > 0]
    if banks:
        ranges = [Range(base=m.base, size=m.size) for m in banks]
    else:
        base = board.memory[0].base if board.memory else ASSUMED_DRAM_BASE
        ranges = [Range(base=base, size=ASSUMED_DRAM_SIZE)]
        assumptions.append(
            f"dram.ranges: the memory node gives no size (the bootloader fills it in); "
            f"assumed {format_size(ASSUMED_DRAM_SIZE)} at {format_address(base)}"
        )
    assumptions.append(
        "dram: type, data rate and channels are not in a device tree; assumed "
        "LPDDR4X-4266 on 2 x 16-bit channels (17.1 GB/s peak, perf-anchors.md 1.3) at 0.80 "
        "efficiency (perf-anchors.md 1.16)"
    )
    return Dram(
        type=DramType.UNKNOWN,
        data_rate=4266e6,
        channels=2,
        channel_width=16,
        efficiency=0.80,
        ranges=ranges,
    )


def _reserved(
    board: dt.BoardDT, warnings: list[str]
) -> tuple[list[ReservedRegion], dict[str, str]]:
    names = _Names()
    out: list[ReservedRegion] = []
    by_path: dict[str, str] = {}
    taken: list[tuple[int, int, str]] = []
    for r in board.reserved:
        if r.status != "okay":
            continue
        if not r.reg and r.size is None:
            warnings.append(f"{r.path}: reserved region without reg or size; skipped")
            continue
        clash = next(
            (
                (b, s, n)
                for base, size in r.reg
                for (b, s, n) in taken
                if base < b + s and b < base + size
            ),
            None,
        )
        if clash:
            warnings.append(
                f"{r.path}: OF: reserved mem: OVERLAP DETECTED! overlaps '{clash[2]}' "
                f"[{format_address(clash[0])}+{format_size(clash[1])}]; kept only the first"
            )
            continue
        no_map, reusable = r.no_map, r.reusable
        if no_map and reusable:
            warnings.append(f"{r.path}: both no-map and reusable; kept no-map as the kernel does")
            reusable = False
        is_cma = "shared-dma-pool" in r.compatible and reusable
        name = names.take(r.name, r.path)
        out.append(
            ReservedRegion(
                name=name,
                compatible=list(r.compatible),
                reg=[Range(base=b, size=s) for b, s in r.reg],
                size=None if r.reg else r.size,
                alignment=r.alignment,
                alloc_ranges=[Range(base=b, size=s) for b, s in r.alloc_ranges],
                no_map=no_map,
                reusable=reusable,
                cma_default=r.cma_default and is_cma,
                dma_default=r.dma_default,
                source=r.path,
            )
        )
        by_path[r.path] = name
        taken.extend((b, s, name) for b, s in r.reg)
    return out, by_path


def _iommus(board: dt.BoardDT, assumptions: list[str]) -> tuple[list[Iommu], dict[str, str]]:
    names = _Names()
    out: list[Iommu] = []
    by_path: dict[str, str] = {}
    models_seen: set[IommuModel] = set()
    for p in board.iommus:
        try:
            model = IommuModel(p.model)
        except ValueError:
            model = IommuModel.OTHER
        d = iommu_defaults(model)
        name = names.take(p.name, p.path)
        out.append(
            Iommu(
                name=name,
                model=model,
                compatible=list(p.compatible),
                granules=d.granules,
                ias=d.ias,
                oas=d.oas,
                tlb=d.tlb,
                coherent_walk=p.dma_coherent,
                source=p.path,
            )
        )
        by_path[p.path] = name
        if model not in models_seen:
            models_seen.add(model)
            assumptions.append(
                f"iommus ({model.value}): granules, address sizes and TLB sizes are read from "
                f"the hardware at probe, not the DT; assumed granules "
                f"{', '.join(format_size(g) for g in d.granules)}, IAS {d.ias} / OAS {d.oas} "
                f"bits, TLB {d.tlb.iotlb_entries} entries ({d.source}); strict invalidation "
                "(arm64 default)"
            )
    return out, by_path


def _masters(
    board: dt.BoardDT,
    iommu_names: dict[str, str],
    region_names: dict[str, str],
    warnings: list[str],
    assumptions: list[str],
) -> list[Master]:
    names = _Names()
    out: list[Master] = []
    kinds_seen: set[MasterKind] = set()
    for m in board.masters:
        kind = MasterKind(m.kind) if m.kind in MasterKind._value2member_map_ else MasterKind.OTHER
        d = MASTER_DEFAULTS[kind]
        sids = []
        for ref in m.iommus:
            iommu = iommu_names.get(ref.iommu_path)
            if iommu is None:
                warnings.append(f"{m.path}: iommus points at {ref.iommu_path}, not an IOMMU")
                continue
            sids.append(StreamId(iommu=iommu, id=ref.stream_id, mask=ref.mask or 0))
        imap = [
            IommuMap(
                rid_base=e.rid_base,
                iommu=iommu_names[e.iommu_path],
                iommu_base=e.iommu_base,
                length=e.length,
            )
            for e in m.iommu_map
            if e.iommu_path in iommu_names
        ]
        regions = []
        for path in m.memory_region:
            if path in region_names:
                regions.append(region_names[path])
            else:
                warnings.append(f"{m.path}: memory-region {path} is not an imported region")
        out.append(
            Master(
                name=names.take(m.name, m.path),
                kind=kind,
                compatible=list(m.compatible),
                enabled=m.status == "okay",
                iommus=sids,
                iommu_map=imap,
                dma_coherent=m.dma_coherent,
                dma_mask_bits=max(8, min(64, m.dma_mask_bits)),
                dma_ranges=[
                    DmaRange(dma_start=r.dma_start, cpu_start=r.cpu_start, size=r.size)
                    for r in m.dma_ranges
                ],
                alignment=d.alignment,
                qos_class=d.qos_class,
                qos_weight=d.qos_weight,
                memory_region=regions,
                traffic=d.traffic,
                source=m.path,
            )
        )
        if kind not in kinds_seen:
            kinds_seen.add(kind)
    for kind in sorted(kinds_seen, key=lambda k: list(MasterKind).index(k)):
        d = MASTER_DEFAULTS[kind]
        assumptions.append(
            f"masters ({kind.value}): QoS class {d.qos_class.value}, weight {d.qos_weight}, "
            f"traffic: {d.source}"
        )
    assumptions.append(
        "masters: dma_mask_bits is what of_dma_configure_id() sets from dma-ranges (32 bits "
        "without them); drivers often raise it with dma_set_mask_and_coherent()"
    )
    return out


def _group_shared_stream_ids(soc: Soc, warnings: list[str]) -> None:
    """Put enabled masters that share a stream ID into one IOMMU group, as Linux does."""
    for problem in check_soc(soc):
        loc = problem.loc
        if not (problem.error and len(loc) >= 2 and loc[0] == "masters" and "iommus" in loc):
            continue
        m = soc.masters[int(loc[1])]
        sid = m.iommus[int(loc[3])]
        others = [
            o
            for o in soc.masters
            if o is not m and o.enabled and any(sid.collides(s) for s in o.iommus)
        ]
        group = others[0].iommu_group or f"group-{others[0].name}"
        for o in (others[0], m):
            o.iommu_group = group
        note = (
            f"{m.source}: shares a stream ID with {others[0].source}; "
            f"both put in IOMMU group '{group}'"
        )
        if note not in warnings:
            warnings.append(note)


def board_to_soc(board: dt.BoardDT, name: str | None = None) -> ImportResult:
    """Build the :class:`Soc` for a board read by :func:`socmem.soc.devicetree.read_board`."""
    warnings = list(board.warnings)
    assumptions: list[str] = []
    dram = _dram(board, assumptions)
    reserved, region_names = _reserved(board, warnings)
    iommus, iommu_names = _iommus(board, assumptions)
    masters = _masters(board, iommu_names, region_names, warnings, assumptions)
    model = board.model or (board.compatible[0] if board.compatible else "unknown board")
    cpu = Cpu(cores=board.cpu_count or 1)
    if not board.cpu_count:
        assumptions.append("cpu.cores: no /cpus node; assumed 1")
    assumptions.append("cpu: cache line 64 bytes and memcpy 8 GB/s per core (perf-anchors.md 5)")
    kernel = KernelConfig()
    if not any(r.cma_default for r in reserved):
        kernel.cma_size = DEBIAN_CMA_SIZE
        assumptions.append(
            "kernel.cma_size: the DT has no linux,cma-default pool, so the kernel reserves "
            "its global CMA area from its configuration; assumed Debian arm64 6.1's "
            "CONFIG_CMA_SIZE_MBYTES=64 (set cma= or edit kernel.cma_size for your kernel)"
        )
    soc = Soc(
        name=name or _slug(model),
        description=f"Imported from the device tree of {model}"
        + (f" ({', '.join(board.compatible)})" if board.compatible else ""),
        dram=dram,
        reserved_memory=reserved,
        iommus=iommus,
        masters=masters,
        cpu=cpu,
        kernel=kernel,
        assumptions=assumptions,
        sources={"wiring": f"device tree blob {board.source}"},
    )
    for _ in range(len(soc.masters)):
        before = len(warnings)
        _group_shared_stream_ids(soc, warnings)
        if len(warnings) == before:
            break
    fatal = [p for p in check_soc(soc) if p.error]
    if fatal:  # a bug of ours, not of the user's blob: say so plainly
        raise InputError(
            f"imported description breaks a rule: {fatal[0].message}", where=board.source
        )
    return ImportResult(soc=soc, model=model, warnings=warnings, board=board)


def import_dtb(path: str | Path, name: str | None = None) -> ImportResult:
    """Read a DTB file (or ``/sys/firmware/fdt``) and import it."""
    p = Path(path)
    board = dt.read_board(parse_fdt(read_bytes(p, "a device tree blob"), str(p)))
    return board_to_soc(board, name)
