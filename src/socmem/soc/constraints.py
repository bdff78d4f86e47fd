"""What a bus master can do with a shared image buffer: formats, layouts, usages.

These are the constraints a gralloc HAL or a GBM backend keeps per device and intersects
when a buffer is allocated for several users (Android ``AHardwareBuffer`` usage bits,
``gbm_bo_create_with_modifiers2``, the ``IN_FORMATS`` blob of a DRM plane), written down
per master of the SoC:

* **formats and modifiers**: DRM fourcc-style names (``NV12``, ``ARGB8888`` …) and format
  modifiers (``linear`` = ``DRM_FORMAT_MOD_LINEAR``, ``tiled``, ``afbc`` =
  ``DRM_FORMAT_MOD_ARM_AFBC(16x16)``, ``ubwc`` = ``DRM_FORMAT_MOD_QCOM_COMPRESSED``);
* **layout**: pitch (stride) alignment and maximum, whether the pitch is programmable at
  all (``fixed_pitch``: lines packed at ``ALIGN(width × cpp, stride_alignment)``), height
  padding, alignment of plane offsets inside the buffer; the base alignment is the
  master's own ``alignment`` field;
* **scatter-gather**: how many DMA segments the engine takes (``max_segments``; one means
  physically contiguous unless an IOMMU makes the IOVA contiguous), and what the driver
  passes to ``dma_set_max_seg_size()`` at probe (``driver_max_segment_size``: drm/msm,
  venus and rockchip-drm set ``UINT_MAX``; a driver that does not leaves the kernel's
  64 KiB default in ``dma_parms``);
* **CPU access** of the runtime driving the master (``cpu_read``/``cpu_write``: never,
  rarely, often), **usages** it supports (``camera-write``, ``scanout`` …),
  ``protected_only`` (the master only ever touches protected memory) and
  ``iommu_bypass`` (the master's stream bypasses its SMMU, e.g. a boot-splash display).

Every field is optional: ``None`` means "the default of the master's kind"
(:data:`socmem.soc.defaults.CONSTRAINT_DEFAULTS`), so a YAML file states only what
differs, and :meth:`MasterConstraints.resolve` gives the complete set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from socmem.units import Size
from socmem.yamlfile import InputModel


class Usage(enum.StrEnum):
    """How one user touches a buffer, in the style of gralloc ``BufferUsage`` / GBM flags.

    ``*-write`` usages make the user a producer (``GRALLOC_USAGE_HW_CAMERA_WRITE``,
    ``HW_VIDEO_DECODER``, ``GPU_RENDER_TARGET``); ``scanout`` is
    ``GRALLOC_USAGE_HW_COMPOSER``/``GBM_BO_USE_SCANOUT``; ``cpu-*-often`` /
    ``cpu-*-rarely`` are ``CPU_READ_OFTEN`` … ``CPU_WRITE_RARELY``.
    """

    CAMERA_WRITE = "camera-write"
    ISP_READ = "isp-read"
    ISP_WRITE = "isp-write"
    ENCODER_READ = "encoder-read"
    ENCODER_WRITE = "encoder-write"
    DECODER_READ = "decoder-read"
    DECODER_WRITE = "decoder-write"
    NPU_READ = "npu-read"
    NPU_WRITE = "npu-write"
    GPU_SAMPLE = "gpu-sample"
    GPU_RENDER = "gpu-render"
    SCANOUT = "scanout"
    DMA_READ = "dma-read"
    DMA_WRITE = "dma-write"
    CPU_READ_OFTEN = "cpu-read-often"
    CPU_READ_RARELY = "cpu-read-rarely"
    CPU_WRITE_OFTEN = "cpu-write-often"
    CPU_WRITE_RARELY = "cpu-write-rarely"

    @property
    def writes(self) -> bool:
        """True for producer usages (the device or CPU writes the buffer)."""
        return self.value.endswith("-write") or self.value in (
            "gpu-render",
            "cpu-write-often",
            "cpu-write-rarely",
        )

    @property
    def is_cpu(self) -> bool:
        """True for CPU usages."""
        return self.value.startswith("cpu-")


class CpuAccess(enum.StrEnum):
    """How often the CPU touches a buffer (gralloc ``CPU_{READ,WRITE}_{NEVER,RARELY,OFTEN}``)."""

    NEVER = "never"
    RARELY = "rarely"
    OFTEN = "often"


class Modifier(enum.StrEnum):
    """DRM format modifiers socmem knows (``include/uapi/drm/drm_fourcc.h``)."""

    LINEAR = "linear"  # DRM_FORMAT_MOD_LINEAR
    TILED = "tiled"  # a vendor 64x32 tiling (DRM_FORMAT_MOD_SAMSUNG_64_32_TILE style)
    AFBC = "afbc"  # DRM_FORMAT_MOD_ARM_AFBC(AFBC_FORMAT_MOD_BLOCK_SIZE_16x16)
    UBWC = "ubwc"  # DRM_FORMAT_MOD_QCOM_COMPRESSED

    @property
    def compressed(self) -> bool:
        """True for frame-buffer compression (AFBC, UBWC)."""
        return self in (Modifier.AFBC, Modifier.UBWC)


class MasterConstraints(InputModel):
    """A master's buffer constraints; ``None`` fields take the default of its kind."""

    formats: list[str] | None = Field(
        default=None,
        description="pixel formats the engine reads/writes (empty: every known format)",
    )
    modifiers: list[Modifier] | None = Field(default=None, description="linear, tiled, afbc, ubwc")
    stride_alignment: Size | None = Field(default=None, description="pitch alignment in bytes")
    max_pitch: Size | None = Field(default=None, description="largest programmable pitch in bytes")
    fixed_pitch: bool | None = Field(
        default=None,
        description="pitch not programmable: lines packed at ALIGN(width*cpp, stride_alignment)",
    )
    height_alignment: int | None = Field(default=None, ge=1, description="rows are padded to this")
    plane_alignment: Size | None = Field(default=None, description="alignment of plane offsets")
    max_segments: int | None = Field(
        default=None,
        ge=1,
        description="DMA segments the engine takes (default: 1 without an IOMMU)",
    )
    driver_max_segment_size: Size | None = Field(
        default=None,
        description="what the driver's probe passes to dma_set_max_seg_size() (0: leaves "
        "dma_parms alone)",
    )
    iommu_bypass: bool | None = Field(default=None, description="the stream bypasses the IOMMU")
    cpu_read: CpuAccess | None = Field(
        default=None, description="CPU reads by the master's runtime"
    )
    cpu_write: CpuAccess | None = Field(
        default=None, description="CPU writes by the master's runtime"
    )
    usages: list[Usage] | None = Field(default=None, description="usages the master supports")
    protected_only: bool | None = Field(
        default=None, description="the master only ever accesses protected (secure) memory"
    )

    def resolve(self, kind: Any) -> ResolvedConstraints:
        """The complete constraints: these fields over the defaults of ``kind``."""
        from socmem.soc.defaults import constraint_defaults

        base = constraint_defaults(kind)
        values = {
            name: (getattr(self, name) if getattr(self, name) is not None else getattr(base, name))
            for name in ResolvedConstraints.__dataclass_fields__
        }
        return ResolvedConstraints(**values)


@dataclass(frozen=True)
class ResolvedConstraints:
    """Every constraint of a master, defaults applied (see :class:`MasterConstraints`)."""

    formats: list[str]
    modifiers: list[Modifier]
    stride_alignment: int
    max_pitch: int
    fixed_pitch: bool
    height_alignment: int
    plane_alignment: int
    max_segments: int
    driver_max_segment_size: int
    iommu_bypass: bool
    cpu_read: CpuAccess
    cpu_write: CpuAccess
    usages: list[Usage]
    protected_only: bool

    def supports_format(self, fmt: str) -> bool:
        """True if ``fmt`` is one of the formats (an empty list means all)."""
        return not self.formats or fmt.upper() in (f.upper() for f in self.formats)
