"""What a device tree says about memory and DMA, read the way Linux reads it.

The semantic layer above :mod:`socmem.soc.fdt`.  From a parsed blob it extracts, as
frozen dataclasses (plain data; the SoC schema maps them onto its pydantic models):

* RAM banks (``device_type = "memory"``, kernel ``early_init_dt_scan_memory`` in
  drivers/of/fdt.c) and ``/memreserve/`` entries;
* ``/reserved-memory`` children (drivers/of/of_reserved_mem.c, kernel/dma/contiguous.c
  ``rmem_cma_setup``, kernel/dma/coherent.c ``rmem_dma_setup``, kernel/dma/swiotlb.c
  ``rmem_swiotlb_setup``);
* IOMMU providers (nodes with ``#iommu-cells``) and their model;
* DMA masters: ``iommus`` / ``iommu-map`` (drivers/iommu/of_iommu.c
  ``of_iommu_configure``, drivers/of/base.c ``of_map_id``), coherency
  (drivers/of/address.c ``of_dma_is_coherent``), ``dma-ranges`` resolved to CPU physical
  addresses (drivers/of/address.c ``of_dma_get_range``) and the mask and bus limit
  ``of_dma_configure_id`` (drivers/of/device.c) derives from them, ``memory-region``.

Semantic problems (a phandle pointing nowhere, a truncated specifier list) never raise:
they are skipped and reported in :attr:`BoardDT.warnings`.  Only a corrupt blob raises
:class:`socmem.errors.InputError` (from :mod:`socmem.soc.fdt`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from socmem.soc.fdt import Fdt, FdtNode, read_number

__all__ = [
    "KINDS",
    "BoardDT",
    "DmaRange",
    "IommuMapEntry",
    "IommuProvider",
    "IommuRef",
    "Master",
    "MemoryRange",
    "ReservedRegion",
    "classify_kind",
    "dma_get_range",
    "dma_is_coherent",
    "iommu_model",
    "read_board",
]

KINDS = ("camera", "isp", "video-codec", "npu", "display", "gpu", "cpu", "dma-engine", "other")

# -- plain data ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemoryRange:
    """A physical range: a RAM bank of a memory node, or a ``/memreserve/`` entry."""

    base: int
    size: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.base + self.size


@dataclass(frozen=True, slots=True)
class ReservedRegion:
    """One child of ``/reserved-memory`` (drivers/of/of_reserved_mem.c, reserved-memory.yaml).

    ``reg`` holds static ``(base, size)`` pairs; ``size``/``alignment``/``alloc_ranges``
    describe a dynamically placed region.  ``status`` is ``"okay"`` or ``"disabled"``
    (the kernel skips disabled regions).
    """

    name: str
    path: str
    phandle: int | None
    reg: tuple[tuple[int, int], ...]
    size: int | None
    alignment: int | None
    alloc_ranges: tuple[tuple[int, int], ...]
    no_map: bool
    reusable: bool
    compatible: tuple[str, ...]
    cma_default: bool
    dma_default: bool
    status: str

    @property
    def kind(self) -> str:
        """How Linux uses it: ``"cma"`` (shared-dma-pool + reusable, ``rmem_cma_setup``),
        ``"coherent-pool"`` (shared-dma-pool, ``rmem_dma_setup``),
        ``"restricted-dma-pool"`` (``rmem_swiotlb_setup``), ``"carveout"`` (static
        ``reg``) or ``"dynamic"`` (``size`` without ``reg``)."""
        if "restricted-dma-pool" in self.compatible:
            return "restricted-dma-pool"
        if "shared-dma-pool" in self.compatible:
            return "cma" if self.reusable else "coherent-pool"
        if not self.reg and self.size is not None:
            return "dynamic"
        return "carveout"

    @property
    def total_size(self) -> int:
        """Bytes reserved: the sum of ``reg`` sizes, or ``size`` for a dynamic region."""
        return sum(s for _, s in self.reg) if self.reg else (self.size or 0)


@dataclass(frozen=True, slots=True)
class IommuProvider:
    """A node with ``#iommu-cells`` (Documentation/devicetree/bindings/iommu/iommu.txt)."""

    path: str
    name: str
    compatible: tuple[str, ...]
    model: str
    iommu_cells: int
    dma_coherent: bool
    phandle: int | None
    status: str


class IommuRef(NamedTuple):
    """One ``iommus`` specifier, decoded with the provider's ``#iommu-cells``
    (``of_iommu_xlate``; ``arm_smmu_of_xlate`` for the SMR mask).

    0 cells: no ID; 1: ``stream_id`` (plus the provider's ``stream-match-mask`` as
    ``mask`` on SMMUv1/v2/MMU-500); 2: stream ID and SMR mask; more: ``stream_id`` is the
    first cell and ``args`` keeps all of them.
    """

    iommu_path: str
    stream_id: int | None
    mask: int | None
    args: tuple[int, ...] = ()


class IommuMapEntry(NamedTuple):
    """One ``iommu-map`` tuple (bindings/pci/pci-iommu.txt, ``of_map_id``): requester IDs
    ``[rid_base, rid_base + length)`` map to IDs from ``iommu_base`` on ``iommu_path``."""

    rid_base: int
    iommu_path: str
    iommu_base: int
    length: int


class DmaRange(NamedTuple):
    """A ``struct bus_dma_region``: bus addresses ``[dma_start, dma_start + size)`` reach
    CPU physical ``[cpu_start, cpu_start + size)`` (``of_dma_get_range``)."""

    dma_start: int
    cpu_start: int
    size: int


@dataclass(frozen=True, slots=True)
class Master:
    """A device that does DMA, with what ``of_dma_configure_id`` would give it.

    ``status`` is ``"disabled"`` when the node or one of its ancestors is not available
    (``of_platform_populate`` does not descend into disabled buses).  ``dma_ranges``,
    ``bus_dma_limit`` and ``dma_mask_bits`` follow ``of_dma_get_range`` /
    ``of_dma_configure_id``; without ``dma-ranges`` the limit is ``None`` and the mask the
    platform default of 32 bits.  ``memory_region`` lists reserved-region paths.
    """

    path: str
    name: str
    compatible: tuple[str, ...]
    kind: str
    status: str
    iommus: tuple[IommuRef, ...]
    iommu_map: tuple[IommuMapEntry, ...]
    iommu_map_mask: int | None
    dma_coherent: bool
    dma_ranges: tuple[DmaRange, ...]
    bus_dma_limit: int | None
    dma_mask_bits: int
    memory_region: tuple[str, ...]

    @property
    def behind_iommu(self) -> bool:
        """Whether ``of_iommu_configure`` would find an IOMMU for it."""
        return bool(self.iommus or self.iommu_map)

    @property
    def stream_ids(self) -> tuple[int, ...]:
        """The stream IDs of its ``iommus`` specifiers, in order."""
        return tuple(ref.stream_id for ref in self.iommus if ref.stream_id is not None)


@dataclass(frozen=True, slots=True)
class BoardDT:
    """Everything :func:`read_board` extracts from one blob."""

    source: str
    model: str | None
    compatible: tuple[str, ...]
    memory: tuple[MemoryRange, ...]
    memreserve: tuple[MemoryRange, ...]
    reserved: tuple[ReservedRegion, ...]
    iommus: tuple[IommuProvider, ...]
    masters: tuple[Master, ...]
    cpu_count: int
    warnings: tuple[str, ...]

    def master(self, path: str) -> Master | None:
        """The master at ``path``, or ``None``."""
        return next((m for m in self.masters if m.path == path), None)

    def iommu(self, path: str) -> IommuProvider | None:
        """The IOMMU provider at ``path``, or ``None``."""
        return next((i for i in self.iommus if i.path == path), None)

    def region(self, name_or_path: str) -> ReservedRegion | None:
        """A reserved region by node name or path, or ``None``."""
        return next((r for r in self.reserved if name_or_path in (r.name, r.path)), None)

    def masters_of_kind(self, kind: str) -> tuple[Master, ...]:
        """The masters classified as ``kind``."""
        return tuple(m for m in self.masters if m.kind == kind)


# -- classification -----------------------------------------------------------------------

_SPLIT = re.compile(r"[,\-_.\s]+")
_EXCLUDE = frozenset(
    {
        "clock",
        "clocks",
        "clk",
        "cru",
        "ccu",
        "reset",
        "resets",
        "phy",
        "dphy",
        "pinctrl",
        "interconnect",
        "iommu",
        "smmu",
        "sysmmu",
        "dart",
        "power",
        "pd",
        "regulator",
        "regulators",
        "syscon",
        "opp",
        "thermal",
        "port",
        "ports",
        "endpoint",
        "panel",
        "backlight",
        "bridge",
        "dsi",
        "hdmi",
        "dp",
        "edp",
        "lvds",
        "blk",
        "qfprom",
        "efuse",
        "mailbox",
        "pmu",
        "timer",
        "watchdog",
        "sram",
        "cache",
        "gpio",
        "trips",
        "alert",
        "crit",
        "leakage",
        "pins",
        "pin",
        "pwm",
    }
)
_BUS_COMPATIBLE = frozenset({"simple-bus", "simple-mfd", "simple-pm-bus", "isa"})
_SIDE_BUSES = frozenset({"i2c", "spi", "i3c", "mdio", "serial"})
_RULES: tuple[tuple[str, frozenset[str]], ...] = (
    ("isp", frozenset({"isp", "rkisp", "rkisp1"})),
    (
        "camera",
        frozenset(
            {"camss", "csi", "csis", "csi2", "csi2rx", "cif", "rkcif", "camera", "vfe", "ife"}
        ),
    ),
    (
        "video-codec",
        frozenset(
            {
                "venus",
                "vpu",
                "vcodec",
                "hantro",
                "mfc",
                "iris",
                "video",
                "vdec",
                "venc",
                "jpeg",
                "wave5",
            }
        ),
    ),
    ("npu", frozenset({"npu", "rknn", "rknpu", "nna", "ethos"})),
    (
        "display",
        frozenset(
            {
                "mdss",
                "dpu",
                "vop",
                "dcss",
                "lcdif",
                "lcdc",
                "display",
                "dss",
                "hdlcd",
                "malidp",
                "disp",
            }
        ),
    ),
    (
        "gpu",
        frozenset(
            {"adreno", "mali", "gpu", "vivante", "gc", "pvr", "sgx", "powervr", "v3d", "lima"}
        ),
    ),
    (
        "dma-engine",
        frozenset(
            {
                "dma",
                "dmac",
                "bam",
                "gpi",
                "pdma",
                "sdma",
                "edma",
                "xdma",
                "udma",
                "udmap",
                "zdma",
                "bdma",
                "mdma",
                "pl330",
                "pl08x",
            }
        ),
    ),
)


def _tokens(text: str) -> set[str]:
    """Words of a compatible or node name, trailing unit digits dropped (``isp0`` → ``isp``)."""
    out: set[str] = set()
    for word in _SPLIT.split(text.lower()):
        if word:
            out.add(word)
            stripped = word.rstrip("0123456789")
            if stripped:
                out.add(stripped)
    return out


def _excluded(words: set[str]) -> bool:
    return bool(words & _EXCLUDE) or any(
        w.endswith(("cc", "phy", "noc")) and len(w) > 2 for w in words
    )


def classify_kind(compatible: list[str] | tuple[str, ...], node_name: str) -> str:
    """The media/compute role of a device from its ``compatible`` list and node name.

    One of ``camera``, ``isp``, ``video-codec``, ``npu``, ``display``, ``gpu``, ``cpu``,
    ``dma-engine``, ``other`` (never an error).  Clock, reset, PHY, pin, interconnect,
    power, IOMMU and encoder/bridge (DSI, HDMI, DP) nodes are ``other`` even when their
    name mentions a media block (``qcom,sm8250-videocc``, ``camcc``, ``dispcc``).  The
    compatible strings decide first; the node name is used when they say nothing.
    """
    base = node_name.split("@", 1)[0].lower()
    if base == "cpu":
        return "cpu"
    name_words = _tokens(base)
    comp_words: set[str] = set()
    for comp in compatible:
        comp_words |= _tokens(comp)
    joined = " ".join(compatible).lower()
    if "mali-dp" in joined or "malidp" in joined:  # Arm Mali display processors
        return "display"
    if _excluded(comp_words) or _excluded(name_words):
        return "other"
    for words in (comp_words, name_words):
        for kind, keys in _RULES:
            if words & keys:
                return kind
    return "other"


def iommu_model(compatible: list[str] | tuple[str, ...]) -> str:
    """The IOMMU family from its compatible list (the drivers under drivers/iommu/).

    ``"arm,smmu-v3"``, ``"arm,mmu-500"``, ``"arm,smmu-v2"`` (also SMMUv1, MMU-400/401,
    Cavium and Qualcomm ``*-smmu-v2``), ``"rockchip"``, ``"tegra"``, ``"apple-dart"``,
    ``"mediatek"``, ``"exynos-sysmmu"`` or ``"other"``.
    """
    comps = [c.lower() for c in compatible]
    if "arm,smmu-v3" in comps:
        return "arm,smmu-v3"
    if any(c == "arm,mmu-500" or c.endswith("-smmu-500") for c in comps):
        return "arm,mmu-500"
    v2 = {
        "arm,smmu-v1",
        "arm,smmu-v2",
        "arm,mmu-400",
        "arm,mmu-401",
        "cavium,smmu-v2",
        "qcom,smmu-v2",
    }
    if any(c in v2 or (c.startswith("qcom,") and c.endswith("smmu-v2")) for c in comps):
        return "arm,smmu-v2"
    for prefix, model in (
        ("rockchip,", "rockchip"),
        ("apple,", "apple-dart"),
        ("mediatek,", "mediatek"),
        ("samsung,exynos", "exynos-sysmmu"),
    ):
        if any(c.startswith(prefix) for c in comps):
            return model
    if any(c.startswith("nvidia,tegra") and "smmu" in c for c in comps):
        return "tegra"
    return "other"


# -- DMA helpers (drivers/of/address.c) ----------------------------------------------------

_BAD = -1  # OF_BAD_ADDR
_MAX_ADDR_CELLS = 4  # OF_MAX_ADDR_CELLS


def _status(node: FdtNode) -> str:
    return "okay" if node.is_available() else "disabled"


def _effective_status(node: FdtNode) -> str:
    if not node.is_available():
        return "disabled"
    return "disabled" if any(not a.is_available() for a in node.ancestors()) else "okay"


def _phandle_args(
    fdt: Fdt, node: FdtNode, prop: str, cells_name: str, warnings: list[str]
) -> list[tuple[FdtNode, list[int]]]:
    """``of_parse_phandle_with_args`` over a whole property; bad entries end the list."""
    cells = node.prop_u32s(prop)
    out: list[tuple[FdtNode, list[int]]] = []
    i = 0
    while i < len(cells):
        target = fdt.by_phandle(cells[i])
        if target is None:
            warnings.append(
                f"{node.path}: {prop}[{len(out)}] points to phandle "
                f"0x{cells[i]:x}, which no node has; rest of {prop} skipped"
            )
            break
        count = target.prop_u32(cells_name)
        if count is None:
            warnings.append(
                f"{node.path}: {prop}[{len(out)}] points to {target.path}, "
                f"which has no {cells_name}; rest of {prop} skipped"
            )
            break
        if i + 1 + count > len(cells):
            warnings.append(
                f"{node.path}: {prop}[{len(out)}] is truncated "
                f"({target.path} has {cells_name} = {count})"
            )
            break
        out.append((target, cells[i + 1 : i + 1 + count]))
        i += 1 + count
    return out


def _dma_parent(fdt: Fdt, node: FdtNode) -> FdtNode | None:
    """``__of_get_dma_parent``: the ``dma-mem`` interconnect target, else the parent."""
    names = node.prop_strings("interconnect-names") if node.has("interconnect-names") else []
    if "dma-mem" in names:
        paths = _phandle_args(fdt, node, "interconnects", "#interconnect-cells", [])
        index = names.index("dma-mem")
        if index < len(paths):
            return paths[index][0]
    return node.parent


def _dma_chain(fdt: Fdt, node: FdtNode) -> Iterator[FdtNode]:
    """The node, its DMA parent, theirs, ... up to the root (``of_get_next_dma_parent``).

    Stops at a cycle (an ``interconnects`` loop in a malformed tree).
    """
    seen: set[int] = set()
    cur: FdtNode | None = node
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = _dma_parent(fdt, cur)


def dma_is_coherent(fdt: Fdt, node: FdtNode) -> bool:
    """drivers/of/address.c ``of_dma_is_coherent``: the first ``dma-coherent`` or
    ``dma-noncoherent`` on the node or its DMA parents decides; default non-coherent
    (arm64's ``dma_default_coherent``)."""
    for cur in _dma_chain(fdt, node):
        if cur.has("dma-coherent"):
            return True
        if cur.has("dma-noncoherent"):
            return False
    return False


def _is_pci_bus(node: FdtNode) -> bool:
    """``of_bus_pci_match``: device_type pci/pciex/vci/ht, or a node named ``pcie``."""
    return node.prop_str("device_type") in ("pci", "pciex", "vci", "ht") or (
        node.base_name == "pcie" and not node.has("device_type")
    )


def _flag_cells(bus: FdtNode) -> int:
    """Cells of flags in child addresses on this bus (PCI, or ``#address-cells`` == 3)."""
    return 1 if _is_pci_bus(bus) or bus.own_address_cells == 3 else 0


def _child_counts(bus: FdtNode) -> tuple[int, int]:
    """(address, size) cells of a child address on ``bus`` (``count_cells``)."""
    if _is_pci_bus(bus):
        return 3, 2
    return bus.own_address_cells, bus.own_size_cells


def _pci_space(cell: int) -> int:
    return 1 if (cell >> 24) & 3 == 1 else 2  # IO, or memory (32/64-bit)


def _translate_dma(fdt: Fdt, node: FdtNode, addr: list[int]) -> int:
    """``of_translate_dma_address``: an address on ``node``'s parent bus → CPU physical.

    Walks up through DMA parents applying each level's ``dma-ranges`` (missing or empty
    means 1:1); returns ``-1`` (OF_BAD_ADDR) when no entry covers the address.
    """
    bus = _dma_parent(fdt, node)
    if bus is None:
        return _BAD
    na, ns = _child_counts(bus)
    if not (0 < na <= _MAX_ADDR_CELLS and ns > 0) or len(addr) != na:
        return _BAD
    flags = _flag_cells(bus)
    seen = {id(node)}
    while True:
        dev, bus_node = bus, _dma_parent(fdt, bus)
        if bus_node is None:  # dev is the root: addr is a CPU physical address
            return read_number(addr, 0, na) & ((1 << 64) - 1)
        if id(dev) in seen:  # a DMA-parent cycle
            return _BAD
        seen.add(id(dev))
        pna, pns = _child_counts(bus_node)
        if not (0 < pna <= _MAX_ADDR_CELLS and pns > 0):
            return _BAD
        pflags = _flag_cells(bus_node)
        ranges = dev.prop_u32s("dma-ranges")
        if not ranges:
            offset = read_number(addr, flags, na - flags)
            base = [0] * pna
        else:
            rone = na + pna + ns
            da = read_number(addr, flags, na - flags)
            for i in range(0, len(ranges) - rone + 1, rone):
                entry = ranges[i : i + rone]
                if flags and (
                    _pci_space(addr[0]) != _pci_space(entry[0])
                    if _is_pci_bus(dev)
                    else addr[0] != entry[0]
                ):
                    continue
                cp = read_number(entry, flags, na - flags)
                size = read_number(entry, na + pna, ns)
                if cp <= da < cp + size:
                    offset = da - cp
                    base = entry[na : na + pna]
                    break
            else:
                return _BAD
        value = read_number(base, pflags, pna - pflags) + offset
        words = [(value >> (32 * k)) & 0xFFFFFFFF for k in range(pna - pflags - 1, -1, -1)]
        addr = base[:pflags] + words
        na, ns, flags, bus = pna, pns, pflags, bus_node


def dma_get_range(fdt: Fdt, node: FdtNode, warnings: list[str] | None = None) -> list[DmaRange]:
    """drivers/of/address.c ``of_dma_get_range``: the DMA regions for a device node.

    Looks at the node, then up its DMA parents, for the first non-empty ``dma-ranges``
    (an empty one means "no translation here, keep looking"; a missing one above the
    device ends the search).  Each entry ``<child-addr parent-addr size>`` (cells:
    that bus's ``#address-cells``, its parent's, its ``#size-cells``) is translated to a
    CPU physical address; contiguous entries are merged as ``of_pci_range_parser_one``
    does.  ``[]`` means no dma-ranges (``-ENODEV``).
    """
    warnings = warnings if warnings is not None else []
    cur: FdtNode | None = None
    for level, candidate in enumerate(_dma_chain(fdt, node)):
        raw = candidate.get("dma-ranges")
        if raw:
            cur = candidate
            break
        if level and raw is None:  # a missing dma-ranges above the device: -ENODEV
            return []
    if cur is None:
        return []
    na, ns = cur.own_address_cells, cur.own_size_cells
    pna = cur.address_cells
    flags = _flag_cells(cur)
    cells = cur.prop_u32s("dma-ranges")
    rone = na + pna + ns
    if rone == 0 or len(cells) % rone:
        warnings.append(
            f"{cur.path}: dma-ranges has {len(cells)} cells, not a multiple of "
            f"{na} + {pna} + {ns}; ignored"
        )
        return []
    out: list[tuple[int, DmaRange]] = []
    for i in range(0, len(cells), rone):
        entry = cells[i : i + rone]
        flag = entry[0] if flags else 0
        dma = read_number(entry, flags, na - flags)
        cpu = _translate_dma(fdt, cur, entry[na : na + pna])
        size = read_number(entry, na + pna, ns)
        if cpu == _BAD:
            warnings.append(
                f"{cur.path}: translation of DMA address 0x{dma:x} to a CPU "
                f"address failed; range skipped"
            )
            continue
        if out:
            pflag, prev = out[-1]
            if (
                pflag == flag
                and dma == prev.dma_start + prev.size
                and cpu == prev.cpu_start + prev.size
            ):
                out[-1] = (pflag, DmaRange(prev.dma_start, prev.cpu_start, prev.size + size))
                continue
        out.append((flag, DmaRange(dma, cpu, size)))
    return [r for _, r in out]


def _dma_limit(path: str, ranges: list[DmaRange], warnings: list[str]) -> tuple[int | None, int]:
    """``of_dma_configure_id``: (bus_dma_limit, mask bits) from the DMA regions."""
    if not ranges:
        return None, 32
    start = min(r.dma_start for r in ranges)
    size = max(r.dma_start + r.size for r in ranges) - start
    if size & 1:
        warnings.append(f"{path}: Invalid size 0x{size:x} for dma-range(s)")
        size += 1
    if size == 0:
        warnings.append(f"{path}: Adjusted size 0x{size:x} invalid")
        return None, 32
    end = start + size - 1
    return end, min(64, end.bit_length())


# -- the board ----------------------------------------------------------------------------


def _memory(fdt: Fdt, warnings: list[str]) -> list[MemoryRange]:
    """``early_init_dt_scan_memory``: available memory nodes, ``linux,usable-memory``
    first, zero-sized banks skipped."""
    out: list[MemoryRange] = []
    for node in fdt.root.children:
        if node.prop_str("device_type") != "memory" or not node.is_available():
            continue
        prop = "linux,usable-memory" if node.has("linux,usable-memory") else "reg"
        for base, size in node.pairs(prop, node.address_cells, node.size_cells):
            if size == 0:
                warnings.append(
                    f"{node.path}: memory bank at 0x{base:x} has size 0 "
                    f"(left for the bootloader to fill in); skipped"
                )
                continue
            out.append(MemoryRange(base, size))
    return out


def _rmem_number(node: FdtNode, prop: str, cells: int, warnings: list[str]) -> int | None:
    """``size`` / ``alignment`` of a reserved region (``__reserved_mem_alloc_size``).

    The kernel only reads them for a dynamic region (no ``reg``) and rejects a length
    other than ``cells`` cells there; a static region's stray value is kept as written.
    """
    values = node.prop_u32s(prop)
    if not node.has(prop):
        return None
    if len(values) != cells and not node.has("reg"):
        warnings.append(
            f"{node.path}: invalid {prop} property ({len(values)} cells, expected {cells})"
        )
    return read_number(values, 0, len(values))


def _reserved(fdt: Fdt, warnings: list[str]) -> list[ReservedRegion]:
    """``fdt_scan_reserved_mem`` / ``__reserved_mem_reserve_reg``: /reserved-memory children."""
    parent = fdt.find("/reserved-memory")
    if parent is None:
        return []
    out = []
    na, ns = parent.own_address_cells, parent.own_size_cells
    for node in parent.children:
        out.append(
            ReservedRegion(
                name=node.name,
                path=node.path,
                phandle=node.phandle,
                reg=tuple(node.reg()),
                size=_rmem_number(node, "size", ns, warnings),
                alignment=_rmem_number(node, "alignment", na, warnings),
                alloc_ranges=tuple(node.pairs("alloc-ranges", na, ns)),
                no_map=node.has("no-map"),
                reusable=node.has("reusable"),
                compatible=tuple(node.prop_strings("compatible")),
                cma_default=node.has("linux,cma-default"),
                dma_default=node.has("linux,dma-default"),
                status=_status(node),
            )
        )
    return out


def _iommu_refs(
    fdt: Fdt, node: FdtNode, models: dict[str, str], warnings: list[str]
) -> list[IommuRef]:
    refs = []
    for target, args in _phandle_args(fdt, node, "iommus", "#iommu-cells", warnings):
        sid = args[0] if args else None
        mask = args[1] if len(args) == 2 else None
        if len(args) == 1 and models.get(target.path) in ("arm,mmu-500", "arm,smmu-v2"):
            mask = target.prop_u32("stream-match-mask")
        refs.append(IommuRef(target.path, sid, mask, tuple(args) if len(args) > 2 else ()))
    return refs


def _iommu_map(fdt: Fdt, node: FdtNode, warnings: list[str]) -> list[IommuMapEntry]:
    cells = node.prop_u32s("iommu-map")
    if len(cells) % 4:
        warnings.append(f"{node.path}: Bad iommu-map length {len(cells) * 4}; ignored")
        return []
    out = []
    for i in range(0, len(cells), 4):
        rid, ph, base, length = cells[i : i + 4]
        target = fdt.by_phandle(ph)
        if target is None:
            warnings.append(
                f"{node.path}: iommu-map entry for rid 0x{rid:x} points to "
                f"phandle 0x{ph:x}, which no node has; entry skipped"
            )
            continue
        out.append(IommuMapEntry(rid, target.path, base, length))
    return out


def _memory_regions(fdt: Fdt, node: FdtNode, warnings: list[str]) -> list[str]:
    out = []
    for ph in node.prop_u32s("memory-region"):
        target = fdt.by_phandle(ph)
        if target is None:
            warnings.append(
                f"{node.path}: memory-region points to phandle 0x{ph:x}, which no node has; skipped"
            )
        else:
            out.append(target.path)
    return out


def _is_master(node: FdtNode, compatible: tuple[str, ...], kind: str) -> bool:
    """Which nodes are listed as DMA masters.

    Anything with ``iommus`` / ``iommu-map`` or ``memory-region``; a ``dma-coherent``
    node unless it is a plain bus (``simple-bus``...) or an IOMMU; and a device with
    ``compatible`` and ``reg`` whose :func:`classify_kind` is a media/DMA kind, unless it
    sits on a control bus (a camera sensor on I2C does no DMA).
    """
    if node.has("iommus") or node.has("iommu-map") or node.has("memory-region"):
        return True
    if node.has("#iommu-cells") or _BUS_COMPATIBLE.intersection(compatible):
        return False
    if node.has("dma-coherent"):
        return True
    if kind in ("other", "cpu") or not compatible or not node.has("reg"):
        return False
    parent = node.parent
    return parent is None or not (_tokens(parent.base_name) & _SIDE_BUSES)


def read_board(fdt: Fdt) -> BoardDT:
    """Extract memory, reserved memory, IOMMUs and DMA masters from a parsed blob.

    The one-stop entry of this module: what ``unflatten_device_tree``,
    ``fdt_scan_reserved_mem``, ``of_platform_populate`` + ``of_dma_configure_id`` +
    ``of_iommu_configure`` would together learn about DMA on this board.  CPUs (``/cpus``
    children with ``device_type = "cpu"``) are counted, not listed as masters.
    """
    warnings: list[str] = []
    root = fdt.root
    memory = _memory(fdt, warnings)
    reserved = _reserved(fdt, warnings)
    reserved_root = fdt.find("/reserved-memory")

    providers: list[IommuProvider] = []
    models: dict[str, str] = {}
    for node in fdt.walk():
        cells = node.prop_u32("#iommu-cells")
        if cells is None:
            continue
        compatible = tuple(node.prop_strings("compatible"))
        model = iommu_model(compatible)
        models[node.path] = model
        providers.append(
            IommuProvider(
                path=node.path,
                name=node.name,
                compatible=compatible,
                model=model,
                iommu_cells=cells,
                dma_coherent=node.has("dma-coherent"),
                phandle=node.phandle,
                status=_effective_status(node),
            )
        )

    cpus = fdt.find("/cpus")
    cpu_count = sum(1 for c in cpus.children if c.prop_str("device_type") == "cpu") if cpus else 0

    masters: list[Master] = []
    skip = {id(n) for n in cpus.walk()} if cpus is not None else set()
    skip.add(id(root))
    in_reserved_tree = {id(n) for n in reserved_root.walk()} if reserved_root else set()
    for node in fdt.walk():
        if id(node) in skip:
            continue
        if id(node) in in_reserved_tree:
            continue
        compatible = tuple(node.prop_strings("compatible"))
        kind = classify_kind(compatible, node.name)
        if not _is_master(node, compatible, kind):
            continue
        ranges = dma_get_range(fdt, node, warnings)
        limit, bits = _dma_limit(node.path, ranges, warnings)
        mask = node.prop_u32("iommu-map-mask")
        masters.append(
            Master(
                path=node.path,
                name=node.name,
                compatible=compatible,
                kind=kind,
                status=_effective_status(node),
                iommus=tuple(_iommu_refs(fdt, node, models, warnings)),
                iommu_map=tuple(_iommu_map(fdt, node, warnings)),
                iommu_map_mask=mask,
                dma_coherent=dma_is_coherent(fdt, node),
                dma_ranges=tuple(ranges),
                bus_dma_limit=limit,
                dma_mask_bits=bits,
                memory_region=tuple(_memory_regions(fdt, node, warnings)),
            )
        )

    return BoardDT(
        source=fdt.source,
        model=root.prop_str("model"),
        compatible=tuple(root.prop_strings("compatible")),
        memory=tuple(memory),
        memreserve=tuple(MemoryRange(a, s) for a, s in fdt.memreserve),
        reserved=tuple(reserved),
        iommus=tuple(providers),
        masters=tuple(masters),
        cpu_count=cpu_count,
        warnings=tuple(warnings),
    )
