"""The SoC description: DRAM, reserved memory, IOMMUs and bus masters, as Linux sees them.

A :class:`Soc` is what a platform team writes (YAML) or what ``socmem soc import`` reads
off a device tree blob.  Field names follow the device-tree bindings and the kernel
(``no_map``, ``reusable``, ``alloc_ranges``, ``memory_region``, ``dma_coherent``,
``dma_ranges``, ``iommus``); the DT spelling with hyphens (``no-map``) is accepted too.
Values are written with units (``512MiB``, ``51.2GB/s``, ``0x8000_0000``, ``33ms``) and
dumped back the same way (see :mod:`socmem.units`).

Where the kernel derives a value from others, so does the schema (peak DRAM bandwidth,
a master's ``bus_dma_limit`` and DMA reach, the IOMMU's page sizes); those are
properties, never fields a user could set inconsistently.

Cross-object rules (overlapping carveouts, stream IDs claimed twice, references to
IOMMUs or regions that do not exist) live in :mod:`socmem.soc.checks`, which reports
them with the field path so the loader can give a line number.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from pydantic import Field, model_validator

from socmem.soc.constraints import MasterConstraints
from socmem.units import (
    Address,
    Bandwidth,
    HexInt,
    PixelRate,
    Size,
    TransferRate,
)
from socmem.yamlfile import InputModel

SCHEMA_VERSION: Final = 1


class DramType(enum.StrEnum):
    """The DRAM standard (JEDEC)."""

    LPDDR4 = "LPDDR4"
    LPDDR4X = "LPDDR4X"
    LPDDR5 = "LPDDR5"
    LPDDR5X = "LPDDR5X"
    DDR4 = "DDR4"
    DDR5 = "DDR5"
    HBM2 = "HBM2"
    HBM2E = "HBM2E"
    HBM3 = "HBM3"
    UNKNOWN = "unknown"


class Range(InputModel):
    """A physical address range ``[base, base + size)``."""

    base: Address
    size: Size

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.base + self.size

    def overlaps(self, other: Range) -> bool:
        """True if the two ranges share at least one byte."""
        return self.base < other.end and other.base < self.end


class Dram(InputModel):
    """Main memory: its standard, data rate, bus width and where it sits in the map.

    Peak bandwidth = data rate × channels × channel width / 8 (perf-anchors.md §1.3-1.4:
    LPDDR5-6400 on 4 × 16-bit channels = 51.2 GB/s).  ``efficiency`` is the achievable
    fraction of peak for streaming media traffic (§1.16 / §8: 0.80 default).
    """

    type: DramType
    data_rate: TransferRate = Field(description="transfers per second per pin, e.g. 6400MT/s")
    channels: int = Field(ge=1, le=64)
    channel_width: int = Field(default=16, description="bits per channel", ge=8, le=1024)
    efficiency: float = Field(default=0.80, gt=0.0, le=1.0)
    ranges: list[Range] = Field(min_length=1, description="DRAM in the physical address map")

    @property
    def peak_bandwidth(self) -> float:
        """Peak bytes per second: data rate × bus width in bytes."""
        return self.data_rate * self.channels * self.channel_width / 8

    @property
    def achievable_bandwidth(self) -> float:
        """Bytes per second the masters can share: peak × efficiency."""
        return self.peak_bandwidth * self.efficiency

    @property
    def total_size(self) -> int:
        """Total DRAM bytes."""
        return sum(r.size for r in self.ranges)


class ReservedKind(enum.StrEnum):
    """How Linux treats a /reserved-memory child (drivers/of/of_reserved_mem.c)."""

    CMA = "cma"  # shared-dma-pool + reusable: rmem_cma_setup()
    COHERENT_POOL = "coherent-pool"  # shared-dma-pool without reusable: rmem_dma_setup()
    RESTRICTED_DMA_POOL = "restricted-dma-pool"  # rmem_swiotlb_setup()
    CARVEOUT = "carveout"  # static reg, owned by a driver (firmware, secure, display ...)
    DYNAMIC = "dynamic"  # size (+ alignment, alloc-ranges), placed at boot


class ReservedRegion(InputModel):
    """One child of ``/reserved-memory`` exactly as the device tree binding defines it.

    Static regions give ``reg``; dynamic ones give ``size`` (with optional ``alignment``
    and ``alloc_ranges``).  ``no_map`` and ``reusable`` are mutually exclusive; a CMA
    pool is ``compatible: shared-dma-pool`` + ``reusable``, and ``cma_default``
    (``linux,cma-default``) makes it the global default CMA area.
    """

    name: str
    compatible: list[str] = Field(default_factory=list)
    reg: list[Range] = Field(default_factory=list)
    size: Size | None = None
    alignment: Size | None = None
    alloc_ranges: list[Range] = Field(default_factory=list)
    no_map: bool = False
    reusable: bool = False
    cma_default: bool = False
    dma_default: bool = False
    secure: bool = Field(
        default=False, description="protected memory: no CPU access, secure masters only"
    )
    source: str | None = Field(default=None, description="device-tree node path, when imported")

    @model_validator(mode="after")
    def _binding_rules(self) -> ReservedRegion:
        if not self.reg and self.size is None:
            raise ValueError("a reserved region needs 'reg' (static) or 'size' (dynamic)")
        if self.reg and self.size is not None:
            raise ValueError("give either 'reg' (static) or 'size' (dynamic), not both")
        if self.no_map and self.reusable:
            raise ValueError(
                "'no_map' and 'reusable' are mutually exclusive (reserved-memory.yaml)"
            )
        if self.cma_default and not self.is_cma:
            raise ValueError(
                "'cma_default' needs compatible 'shared-dma-pool' and 'reusable' "
                "(linux,cma-default)"
            )
        return self

    @property
    def is_cma(self) -> bool:
        """A CMA area: shared-dma-pool + reusable (kernel/dma/contiguous.c rmem_cma_setup)."""
        return "shared-dma-pool" in self.compatible and self.reusable

    @property
    def kind(self) -> ReservedKind:
        """How the kernel will use this region."""
        if "shared-dma-pool" in self.compatible:
            return ReservedKind.CMA if self.reusable else ReservedKind.COHERENT_POOL
        if "restricted-dma-pool" in self.compatible:
            return ReservedKind.RESTRICTED_DMA_POOL
        return ReservedKind.CARVEOUT if self.reg else ReservedKind.DYNAMIC

    @property
    def total_size(self) -> int:
        """Bytes reserved, static or dynamic."""
        return sum(r.size for r in self.reg) if self.reg else (self.size or 0)


class IommuModel(enum.StrEnum):
    """IOMMU hardware families, by the compatible strings Linux binds drivers to."""

    SMMU_V3 = "arm,smmu-v3"
    MMU_500 = "arm,mmu-500"
    SMMU_V2 = "arm,smmu-v2"
    ROCKCHIP = "rockchip"
    TEGRA = "tegra"
    APPLE_DART = "apple-dart"
    MEDIATEK = "mediatek"
    EXYNOS = "exynos-sysmmu"
    OTHER = "other"

    @property
    def is_arm_smmu(self) -> bool:
        """Driven by arm-smmu-v3.c or arm-smmu.c (LPAE page tables, stream IDs)."""
        return self in (IommuModel.SMMU_V3, IommuModel.MMU_500, IommuModel.SMMU_V2)


class Invalidation(enum.StrEnum):
    """IOTLB invalidation policy of DMA domains (iommu.strict=1 / 0)."""

    STRICT = "strict"
    LAZY = "lazy"


class TlbConfig(InputModel):
    """Translation caches of an SMMU (perf-anchors.md §3d: MMU-500/600 TBU/TCU sizes)."""

    iotlb_entries: int = Field(default=2048, ge=0, description="main TLB (TCU / shared) entries")
    utlb_entries: int = Field(default=32, ge=0, description="micro-TLB entries per TBU")
    walk_cache_entries: int = Field(default=64, ge=0, description="page-table walk cache entries")


_GRANULES = (4096, 16384, 65536)


class Iommu(InputModel):
    """An IOMMU instance: model, page-table granules, address sizes, TLBs, invalidation."""

    name: str
    model: IommuModel
    compatible: list[str] = Field(default_factory=list)
    granules: list[Size] = Field(default_factory=lambda: [4096])
    ias: int = Field(default=48, ge=32, le=52, description="input (IOVA) address bits")
    oas: int = Field(default=48, ge=32, le=52, description="output (physical) address bits")
    tlb: TlbConfig = Field(default_factory=TlbConfig)
    invalidation: Invalidation = Invalidation.STRICT
    coherent_walk: bool = Field(default=True, description="page-table walks snoop CPU caches")
    source: str | None = None

    @model_validator(mode="after")
    def _granules_known(self) -> Iommu:
        for g in self.granules:
            if g not in _GRANULES:
                raise ValueError(f"granule {g} is not one of 4K, 16K, 64K")
        if not self.granules:
            raise ValueError("an IOMMU needs at least one granule")
        return self

    @property
    def page_sizes(self) -> list[int]:
        """Page and block sizes per granule, as arm_lpae_restrict_pgsizes() allows."""
        sizes: set[int] = set()
        for g in self.granules:
            if g == 4096:
                sizes |= {4096, 2 << 20, 1 << 30}
            elif g == 16384:
                sizes |= {16384, 32 << 20}
            else:
                sizes |= {65536, 512 << 20}
        return sorted(sizes)


class MasterKind(enum.StrEnum):
    """What a bus master is, for defaults and for reports."""

    CAMERA = "camera"
    ISP = "isp"
    VIDEO_CODEC = "video-codec"
    NPU = "npu"
    DISPLAY = "display"
    GPU = "gpu"
    CPU = "cpu"
    DMA_ENGINE = "dma-engine"
    OTHER = "other"


class QosClass(enum.StrEnum):
    """Interconnect priority class: real-time traffic must never starve."""

    REALTIME = "realtime"
    HIGH = "high"
    BEST_EFFORT = "best-effort"


class StreamId(InputModel):
    """One ``iommus`` specifier: the IOMMU, a stream ID and an SMR mask (``<&smmu sid mask>``).

    ``id`` is None for single-master IOMMUs with ``#iommu-cells = <0>`` (Rockchip).
    """

    iommu: str
    id: HexInt | None = None
    mask: HexInt = 0

    def matches(self, sid: int) -> bool:
        """True if stream ``sid`` hits this entry: ``(sid ^ id) & ~mask == 0`` (SMR match)."""
        return self.id is not None and ((sid ^ self.id) & ~self.mask) == 0

    def collides(self, other: StreamId) -> bool:
        """True if some stream ID is matched by both entries on the same IOMMU."""
        if self.iommu != other.iommu:
            return False
        if self.id is None or other.id is None:
            return self.id is None and other.id is None
        return ((self.id ^ other.id) & ~(self.mask | other.mask)) == 0


class IommuMap(InputModel):
    """One PCI ``iommu-map`` entry: RIDs ``[rid_base, rid_base+length)`` → ``iommu_base + ...``."""

    rid_base: HexInt
    iommu: str
    iommu_base: HexInt
    length: HexInt


class DmaRange(InputModel):
    """One bus translation window, resolved to CPU physical (of_dma_get_range())."""

    dma_start: Address
    cpu_start: Address
    size: Size

    @property
    def offset(self) -> int:
        """cpu_start − dma_start, as struct bus_dma_region's ``offset``."""
        return self.cpu_start - self.dma_start


class Traffic(InputModel):
    """What a master moves, for the simulator: rates and bytes per pixel (perf-anchors §2)."""

    pixel_rate: PixelRate | None = None
    read_bytes_per_pixel: float = Field(default=0.0, ge=0)
    write_bytes_per_pixel: float = Field(default=0.0, ge=0)
    peak_bandwidth: Bandwidth | None = Field(
        default=None, description="burst bandwidth the master can issue"
    )
    compression: list[str] = Field(default_factory=list, description="e.g. afbc, ubwc")

    @property
    def read_bandwidth(self) -> float:
        """Average read bytes per second at ``pixel_rate``."""
        return (self.pixel_rate or 0.0) * self.read_bytes_per_pixel

    @property
    def write_bandwidth(self) -> float:
        """Average write bytes per second at ``pixel_rate``."""
        return (self.pixel_rate or 0.0) * self.write_bytes_per_pixel


class Master(InputModel):
    """A DMA-capable bus master and how the kernel will set up its DMA.

    ``iommus`` empty means no IOMMU: the device uses dma-direct, needs contiguous
    buffers, and reaches memory only through ``dma_ranges`` and its DMA mask.
    """

    name: str
    kind: MasterKind = MasterKind.OTHER
    compatible: list[str] = Field(default_factory=list)
    enabled: bool = True
    iommus: list[StreamId] = Field(default_factory=list)
    iommu_map: list[IommuMap] = Field(default_factory=list)
    iommu_group: str | None = Field(
        default=None, description="masters sharing a group may share stream IDs (iommu_group)"
    )
    dma_coherent: bool = False
    dma_mask_bits: int = Field(default=32, ge=8, le=64)
    dma_ranges: list[DmaRange] = Field(default_factory=list)
    max_segment_size: Size = Field(
        default=65536,
        description="dma_parms max_segment_size, an unsigned int (default 64K, at most "
        "0xffff_ffff = UINT_MAX)",
        le=0xFFFF_FFFF,
    )
    segment_boundary_mask: HexInt = 0xFFFF_FFFF
    alignment: Size = Field(default=4096, description="base alignment the hardware needs")
    qos_class: QosClass = QosClass.BEST_EFFORT
    qos_weight: int = Field(default=1, ge=1)
    qos_regulator: Bandwidth | None = Field(
        default=None,
        description="QoS-400 issuing-rate regulator on the master's port, per direction "
        "(read and write channels are regulated separately; perf-anchors.md 7.5)",
    )
    secure: bool = Field(default=False, description="may access protected (secure) memory")
    memory_region: list[str] = Field(default_factory=list)
    traffic: Traffic = Field(default_factory=Traffic)
    constraints: MasterConstraints = Field(
        default_factory=MasterConstraints,
        description="buffer formats, layouts, usages (unset fields: defaults of the kind)",
    )
    source: str | None = Field(default=None, description="device-tree node path, when imported")

    @property
    def has_iommu(self) -> bool:
        """True if the master translates through an IOMMU."""
        return bool(self.iommus or self.iommu_map)

    @property
    def bus_dma_limit(self) -> int | None:
        """Highest bus address of the dma-ranges windows (of_dma_configure_id), or None."""
        if not self.dma_ranges:
            return None
        return max(r.dma_start + r.size - 1 for r in self.dma_ranges)

    @property
    def dma_limit(self) -> int:
        """Highest DMA address the device can emit: min_not_zero(mask, bus_dma_limit)."""
        mask = (1 << self.dma_mask_bits) - 1
        limit = self.bus_dma_limit
        return mask if limit is None else min(mask, limit)

    def phys_reach(self) -> list[tuple[int, int]]:
        """CPU physical ranges ``[start, end)`` the device reaches without an IOMMU."""
        limit = self.dma_limit
        if not self.dma_ranges:
            return [(0, limit + 1)]
        out = []
        for r in self.dma_ranges:
            top = min(r.dma_start + r.size - 1, limit)
            if top >= r.dma_start:
                out.append((r.cpu_start, top - r.dma_start + r.cpu_start + 1))
        return out


class KernelConfig(InputModel):
    """Kernel settings that change what the memory map holds at boot."""

    cma_size: Size | None = Field(
        default=None,
        description="the global CMA area the kernel reserves when no linux,cma-default "
        "region exists (CONFIG_CMA_SIZE_MBYTES or cma=; Debian arm64 6.1: 64MiB); "
        "placed top-down below 4 GiB (dma_contiguous_reserve(arm64_dma_phys_limit))",
    )


class Cpu(InputModel):
    """The application processor cluster, as a master and as a cache owner."""

    cores: int = Field(default=8, ge=1)
    cache_line: int = Field(default=64, description="bytes per cache line (L1 D-cache)")
    copy_bandwidth: Bandwidth = Field(
        default=8e9, description="memcpy bytes/s per core (perf-anchors §5.1-5.2: 5-12 GB/s)"
    )


class Soc(InputModel):
    """An SoC's memory architecture: what socmem's kernel model boots on."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    dram: Dram
    reserved_memory: list[ReservedRegion] = Field(default_factory=list)
    iommus: list[Iommu] = Field(default_factory=list)
    masters: list[Master] = Field(default_factory=list)
    cpu: Cpu = Field(default_factory=Cpu)
    kernel: KernelConfig = Field(default_factory=KernelConfig)
    assumptions: list[str] = Field(
        default_factory=list, description="values not read from the source, to review"
    )
    sources: dict[str, str] = Field(
        default_factory=dict, description="where each number comes from"
    )

    def iommu(self, name: str) -> Iommu | None:
        """The IOMMU called ``name``, or None."""
        return next((i for i in self.iommus if i.name == name), None)

    def master(self, name: str) -> Master | None:
        """The master called ``name``, or None."""
        return next((m for m in self.masters if m.name == name), None)

    def region(self, name: str) -> ReservedRegion | None:
        """The reserved region called ``name``, or None."""
        return next((r for r in self.reserved_memory if r.name == name), None)

    def kernel_cma(self) -> ReservedRegion | None:
        """The global CMA area ``dma_contiguous_reserve()`` creates from the kernel
        configuration (``kernel.cma_size``) when no region is ``linux,cma-default``;
        named ``reserved`` as the kernel names it, below 4 GiB as arm64 places it."""
        size = self.kernel.cma_size
        if not size or any(r.cma_default for r in self.reserved_memory):
            return None
        return ReservedRegion(
            name="reserved",
            compatible=["shared-dma-pool"],
            size=size,
            alloc_ranges=[Range(base=0, size=1 << 32)],
            reusable=True,
            cma_default=True,
            source="kernel: CONFIG_CMA_SIZE_MBYTES / cma=",
        )

    def effective_reserved_memory(self) -> list[ReservedRegion]:
        """Reserved memory as the booted kernel has it: the DT's regions and, if any, the
        CMA area the kernel configuration adds (:meth:`kernel_cma`)."""
        extra = self.kernel_cma()
        return [*self.reserved_memory, extra] if extra is not None else list(self.reserved_memory)

    def default_cma(self) -> ReservedRegion | None:
        """The default CMA area: the ``linux,cma-default`` pool, else the kernel's own
        (:meth:`kernel_cma`), else the only CMA pool if there is just one."""
        cmas = [r for r in self.effective_reserved_memory() if r.is_cma]
        default = [r for r in cmas if r.cma_default]
        return default[0] if default else (cmas[0] if len(cmas) == 1 else None)

    def masters_of(self, iommu: str) -> list[Master]:
        """Masters behind IOMMU ``iommu``."""
        return [
            m
            for m in self.masters
            if any(s.iommu == iommu for s in m.iommus) or any(e.iommu == iommu for e in m.iommu_map)
        ]
