"""What a device tree cannot say, filled in per kind of master or IOMMU.

A device tree describes wiring (stream IDs, DMA windows, coherency, carveouts), not
performance.  When ``socmem soc import`` meets a camera or a display, it gives it the
typical traffic of its kind from perf-anchors.md and records every such value in the
SoC's ``assumptions`` list, so a person can review and edit the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from socmem.soc.constraints import CpuAccess, Modifier, ResolvedConstraints, Usage
from socmem.soc.schema import IommuModel, MasterKind, QosClass, TlbConfig, Traffic


@dataclass(frozen=True)
class KindDefaults:
    """Interconnect class and traffic of a kind of master, and where the numbers come from."""

    qos_class: QosClass
    qos_weight: int
    traffic: Traffic
    source: str
    alignment: int = 4096


_K = MasterKind
MASTER_DEFAULTS: dict[MasterKind, KindDefaults] = {
    _K.CAMERA: KindDefaults(
        QosClass.REALTIME,
        4,
        Traffic(pixel_rate=248.8e6, write_bytes_per_pixel=1.25),
        "4K30 RAW10 sensor write, 0.31 GB/s (perf-anchors.md 2.1, 2.8)",
    ),
    _K.ISP: KindDefaults(
        QosClass.HIGH,
        3,
        Traffic(pixel_rate=1e9, read_bytes_per_pixel=1.25, write_bytes_per_pixel=1.5),
        "1 Gpixel/s RAW10 in, NV12 out (perf-anchors.md 2.4, 7.8)",
        alignment=256,
    ),
    _K.VIDEO_CODEC: KindDefaults(
        QosClass.HIGH,
        2,
        Traffic(pixel_rate=248.8e6, read_bytes_per_pixel=4.5, write_bytes_per_pixel=1.6),
        "4K30 encode: source + 2 references read, recon written (perf-anchors.md 2.16)",
        alignment=256,
    ),
    _K.NPU: KindDefaults(
        QosClass.BEST_EFFORT, 2, Traffic(peak_bandwidth=8e9), "estimate (grade D)"
    ),
    _K.DISPLAY: KindDefaults(
        QosClass.REALTIME,
        8,
        Traffic(pixel_rate=148.5e6, read_bytes_per_pixel=4.0),
        "1080p60 ARGB8888 scan-out incl. blanking, 0.6 GB/s (perf-anchors.md 2.13)",
    ),
    _K.GPU: KindDefaults(
        QosClass.BEST_EFFORT, 2, Traffic(peak_bandwidth=10e9), "estimate (grade D)"
    ),
    _K.DMA_ENGINE: KindDefaults(
        QosClass.BEST_EFFORT, 1, Traffic(peak_bandwidth=1e9), "estimate (grade D)"
    ),
    _K.CPU: KindDefaults(QosClass.HIGH, 2, Traffic(), "no traffic of its own"),
    _K.OTHER: KindDefaults(QosClass.BEST_EFFORT, 1, Traffic(), "no traffic assumed"),
}


@dataclass(frozen=True)
class IommuDefaults:
    """Granules, address sizes and TLB sizes of an IOMMU family, and their source."""

    granules: list[int]
    ias: int
    oas: int
    tlb: TlbConfig = field(default_factory=TlbConfig)
    source: str = ""


IOMMU_DEFAULTS: dict[IommuModel, IommuDefaults] = {
    IommuModel.SMMU_V3: IommuDefaults(
        [4096, 16384, 65536],
        48,
        48,
        TlbConfig(iotlb_entries=2048, utlb_entries=32),
        "SMMU_IDR0/IDR5 read at probe; gem5 SMMUv3 TLB defaults (perf-anchors.md 3.26)",
    ),
    IommuModel.MMU_500: IommuDefaults(
        [4096, 16384, 65536],
        48,
        48,
        TlbConfig(iotlb_entries=512, utlb_entries=32),
        "SMMU_IDR2 read at probe; MMU-500 TRM TLB sizes are configuration options",
    ),
    IommuModel.SMMU_V2: IommuDefaults(
        [4096, 65536],
        40,
        40,
        TlbConfig(iotlb_entries=128, utlb_entries=16),
        "SMMU_IDR2 read at probe; MMU-400/401 class estimate",
    ),
    IommuModel.ROCKCHIP: IommuDefaults(
        [4096],
        32,
        40,
        TlbConfig(iotlb_entries=64, utlb_entries=0, walk_cache_entries=0),
        "rockchip-iommu.c: 32-bit IOVA, two-level 4 KiB tables",
    ),
    IommuModel.TEGRA: IommuDefaults(
        [4096],
        32,
        34,
        TlbConfig(iotlb_entries=64, utlb_entries=0, walk_cache_entries=32),
        "tegra-smmu.c: 32-bit IOVA per address space",
    ),
}
_GENERIC_IOMMU = IommuDefaults([4096], 32, 40, TlbConfig(iotlb_entries=64), "generic estimate")


def iommu_defaults(model: IommuModel) -> IommuDefaults:
    """The defaults of ``model``, or a conservative 32-bit 4 KiB IOMMU."""
    return IOMMU_DEFAULTS.get(model, _GENERIC_IOMMU)


# -- buffer constraints per kind (socmem.soc.constraints) ---------------------------------
def _c(**kw: object) -> ResolvedConstraints:
    base: dict[str, object] = {
        "formats": [],
        "modifiers": [Modifier.LINEAR],
        "stride_alignment": 64,
        "max_pitch": 0,
        "fixed_pitch": False,
        "height_alignment": 1,
        "plane_alignment": 64,
        "max_segments": 0,
        "driver_max_segment_size": 0xFFFF_FFFF,
        "iommu_bypass": False,
        "cpu_read": CpuAccess.NEVER,
        "cpu_write": CpuAccess.NEVER,
        "usages": [],
        "protected_only": False,
    }
    base.update(kw)
    return ResolvedConstraints(**base)  # type: ignore[arg-type]


_U = Usage
_YUV = ["NV12", "NV21", "P010", "YUYV"]
_RAW = ["RAW8", "RAW10", "RAW12", "RAW16"]
_RGB = ["ARGB8888", "XRGB8888", "RGBA8888", "ABGR2101010", "RGB565", "RGB888"]

#: Per-kind buffer constraints.  ``max_segments`` 0 means "1 without an IOMMU (dma-direct
#: needs contiguous memory), unlimited with one"; ``max_pitch`` 0 means no limit;
#: ``driver_max_segment_size`` is what media drivers pass to ``dma_set_max_seg_size()``
#: at probe (drm/msm, venus, rockchip-drm, camss: ``UINT_MAX`` / ``DMA_BIT_MASK(32)``),
#: 0 for kinds whose drivers leave the 64 KiB default.  Pitch alignments: CSI receivers
#: and display engines burst 64 bytes; ISPs and codecs want 256-byte pitches and
#: macroblock-padded heights (16 rows; msm_media_info.h ``VENUS_Y_STRIDE`` 128/256).
CONSTRAINT_DEFAULTS: dict[MasterKind, ResolvedConstraints] = {
    _K.CAMERA: _c(formats=[*_RAW, "YUYV", "NV12"], max_pitch=65535, usages=[_U.CAMERA_WRITE]),
    _K.ISP: _c(
        formats=[*_RAW, *_YUV],
        stride_alignment=256,
        height_alignment=2,
        plane_alignment=256,
        usages=[_U.ISP_READ, _U.ISP_WRITE],
    ),
    _K.VIDEO_CODEC: _c(
        formats=["NV12", "NV21", "P010", "YUYV"],
        modifiers=[Modifier.LINEAR, Modifier.TILED],
        stride_alignment=256,
        height_alignment=16,
        plane_alignment=4096,
        usages=[_U.ENCODER_READ, _U.ENCODER_WRITE, _U.DECODER_READ, _U.DECODER_WRITE],
    ),
    _K.NPU: _c(
        formats=["NV12", "RGB888", "RGBA8888", "RAW8"],
        usages=[_U.NPU_READ, _U.NPU_WRITE],
    ),
    _K.DISPLAY: _c(
        formats=[*_RGB, "NV12", "NV21", "P010", "YUYV"],
        max_pitch=65535,
        height_alignment=1,
        usages=[_U.SCANOUT],
    ),
    _K.GPU: _c(
        modifiers=[Modifier.LINEAR, Modifier.TILED],
        usages=[_U.GPU_SAMPLE, _U.GPU_RENDER],
    ),
    _K.CPU: _c(
        stride_alignment=1,
        plane_alignment=1,
        cpu_read=CpuAccess.OFTEN,
        cpu_write=CpuAccess.OFTEN,
        usages=[_U.CPU_READ_OFTEN, _U.CPU_READ_RARELY, _U.CPU_WRITE_OFTEN, _U.CPU_WRITE_RARELY],
    ),
    _K.DMA_ENGINE: _c(
        stride_alignment=4,
        plane_alignment=4,
        driver_max_segment_size=0,
        usages=[_U.DMA_READ, _U.DMA_WRITE],
    ),
    _K.OTHER: _c(
        stride_alignment=4,
        plane_alignment=4,
        driver_max_segment_size=0,
        usages=[_U.DMA_READ, _U.DMA_WRITE],
    ),
}


def constraint_defaults(kind: MasterKind | str) -> ResolvedConstraints:
    """The buffer constraints of a kind of master (``other`` for unknown kinds)."""
    try:
        return CONSTRAINT_DEFAULTS[MasterKind(kind)]
    except ValueError:
        return CONSTRAINT_DEFAULTS[MasterKind.OTHER]
