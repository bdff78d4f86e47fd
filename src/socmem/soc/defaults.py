"""What a device tree cannot say, filled in per kind of master or IOMMU.

A device tree describes wiring (stream IDs, DMA windows, coherency, carveouts), not
performance.  When ``socmem soc import`` meets a camera or a display, it gives it the
typical traffic of its kind from perf-anchors.md and records every such value in the
SoC's ``assumptions`` list, so a person can review and edit the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
