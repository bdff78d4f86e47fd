"""Pixel formats, format modifiers and buffer layouts: pitch, planes, padding, total size.

The rules follow the kernel's and the vendors' layout code:

* **linear** (``DRM_FORMAT_MOD_LINEAR``): every plane has a pitch of
  ``ALIGN(width × cpp, stride_alignment)`` (chroma planes of NV12/P010 share the luma
  pitch, as ``drm_format_info`` and V4L2 ``NV12M`` drivers expect), rows padded to
  ``height_alignment``; plane offsets aligned to ``plane_alignment``.  Packed RAW10/12
  lines are ``ceil(width × bits / 8)`` bytes (V4L2 ``SRGGB10P``).
* **tiled** (64×32 tiles, ``DRM_FORMAT_MOD_SAMSUNG_64_32_TILE`` / NV12MT style): width
  padded to 64 pixels, luma and chroma heights to 32 rows, planes to 8 KiB (s5p-mfc).
* **afbc** (``DRM_FORMAT_MOD_ARM_AFBC(16x16)``): one plane, width and height padded to
  16; a header of 16 bytes per 16×16 superblock, the body starting at a 1024-byte
  boundary; every superblock body allocated at its uncompressed size rounded to 128
  bytes (``komeda_fb_afbc_size_check``, ``drm_gem_fb_afbc_init``: ``AFBC_HEADER_SIZE``
  16, ``AFBC_BODY_START_ALIGNMENT`` 1024, ``AFBC_SUPERBLK_ALIGNMENT`` 128).  NV12 and
  P010 are AFBC's ``YUV420_8BIT`` / ``YUV420_10BIT`` (12 / 15 bits per pixel).
* **ubwc** (``DRM_FORMAT_MOD_QCOM_COMPRESSED``): for YUV 4:2:0, Y and UV planes with a
  pitch of ``ALIGN(width × cpp, 128)`` and 32-row scanline padding, plus a Y and a UV
  metadata plane (meta pitch ``ALIGN(ceil(w/32), 64)`` × ``ALIGN(ceil(h/8), 16)`` rows
  for Y, ``ALIGN(ceil(w/2/16), 64)`` × ``ALIGN(ceil(h/2/8), 16)`` for UV); for RGB, a
  pitch of ``ALIGN(width, 64) × cpp``, 16-row padding and one meta plane
  (``ALIGN(ceil(w/16), 64)`` × ``ALIGN(ceil(h/4), 16)``); every plane 4 KiB aligned
  (``msm_media_info.h`` ``VENUS_*`` macros, dpu_formats.c
  ``_dpu_format_get_plane_sizes_ubwc``).  Memory order: Y meta, Y, UV meta, UV.

Compressed buffers are allocated at their worst-case (uncompressed) size; the saving is
bandwidth, not footprint: ``payload × ratio + metadata`` bytes move per full access.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from socmem.soc.constraints import Modifier

PAGE_SIZE = 4096


def align(x: int, a: int) -> int:
    """``ALIGN(x, a)`` for any positive ``a`` (not only powers of two)."""
    return x if a <= 1 else -(-x // a) * a


def lcm(*values: int) -> int:
    """Least common multiple of positive integers (1 for none)."""
    out = 1
    for v in values:
        if v > 0:
            out = out * v // math.gcd(out, v)
    return out


@dataclass(frozen=True)
class PlaneSpec:
    """One plane of a format: bytes per pixel along a row and vertical subsampling."""

    name: str
    cpp: Fraction
    vsub: int = 1


_F = Fraction
#: DRM fourcc-style planar layouts (``drm_format_info``: cpp, vsub).
FORMATS: dict[str, tuple[PlaneSpec, ...]] = {
    "RAW8": (PlaneSpec("raw", _F(1)),),
    "RAW10": (PlaneSpec("raw", _F(5, 4)),),
    "RAW12": (PlaneSpec("raw", _F(3, 2)),),
    "RAW16": (PlaneSpec("raw", _F(2)),),
    "NV12": (PlaneSpec("y", _F(1)), PlaneSpec("uv", _F(1), 2)),
    "NV21": (PlaneSpec("y", _F(1)), PlaneSpec("vu", _F(1), 2)),
    "P010": (PlaneSpec("y", _F(2)), PlaneSpec("uv", _F(2), 2)),
    "YUYV": (PlaneSpec("yuyv", _F(2)),),
    "RGB565": (PlaneSpec("rgb", _F(2)),),
    "RGB888": (PlaneSpec("rgb", _F(3)),),
    "RGBA8888": (PlaneSpec("rgb", _F(4)),),
    "ARGB8888": (PlaneSpec("rgb", _F(4)),),
    "XRGB8888": (PlaneSpec("rgb", _F(4)),),
    "ABGR2101010": (PlaneSpec("rgb", _F(4)),),
    "RGBA16F": (PlaneSpec("rgb", _F(8)),),
}

#: Bits per pixel AFBC stores for a format (``drm_format_info_bpp``; YUV420_8BIT = 12).
_AFBC_BPP = {
    "NV12": 12,
    "P010": 15,
    "RGB565": 16,
    "RGB888": 24,
    "RGBA8888": 32,
    "ARGB8888": 32,
    "XRGB8888": 32,
    "ABGR2101010": 32,
}
_UBWC_FORMATS = {"NV12", "P010", "RGB565", "RGBA8888", "ARGB8888", "XRGB8888", "ABGR2101010"}
_TILED_FORMATS = {"NV12", "NV21", "P010", "RGBA8888", "ARGB8888", "XRGB8888"}

AFBC_SUPERBLOCK = 16
AFBC_HEADER_SIZE = 16
AFBC_BODY_START_ALIGNMENT = 1024
AFBC_SUPERBLK_ALIGNMENT = 128
UBWC_PLANE_ALIGNMENT = 4096
TILE_W, TILE_H, TILED_PLANE_ALIGNMENT = 64, 32, 8192


def modifier_supports(modifier: Modifier, fmt: str) -> bool:
    """True if ``fmt`` can be laid out with ``modifier``."""
    fmt = fmt.upper()
    if fmt not in FORMATS:
        return False
    if modifier is Modifier.LINEAR:
        return True
    if modifier is Modifier.AFBC:
        return fmt in _AFBC_BPP
    if modifier is Modifier.UBWC:
        return fmt in _UBWC_FORMATS
    return fmt in _TILED_FORMATS


@dataclass
class Plane:
    """One plane in the buffer: ``kind`` is ``data``, ``header`` (AFBC) or ``meta`` (UBWC)."""

    name: str
    offset: int
    pitch: int
    rows: int
    size: int
    kind: str = "data"


@dataclass
class Layout:
    """How one buffer is laid out: planes, pitch, padded height, total bytes."""

    format: str
    modifier: str
    width: int
    height: int
    alloc_height: int
    stride: int
    planes: list[Plane] = field(default_factory=list)
    size: int = 0

    @property
    def payload_bytes(self) -> int:
        """Bytes of the data planes (what compression shrinks)."""
        return sum(p.size for p in self.planes if p.kind == "data")

    @property
    def meta_bytes(self) -> int:
        """Bytes of AFBC headers and UBWC metadata."""
        return sum(p.size for p in self.planes if p.kind != "data")

    def access_bytes(self, compressed: bool, ratio: float) -> int:
        """Bytes one full read or write of the frame moves over DRAM."""
        if not compressed:
            return self.payload_bytes
        return int(self.payload_bytes * ratio) + self.meta_bytes

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def blob_layout(size: int, base_alignment: int = PAGE_SIZE) -> Layout:
    """A byte buffer (bitstream, tensor, metadata): one plane, page-rounded."""
    total = align(size, max(PAGE_SIZE, base_alignment))
    return Layout("BLOB", Modifier.LINEAR.value, 0, 0, 0, 0, [Plane("data", 0, 0, 0, size)], total)


def linear_pitch(fmt: str, width: int, stride_alignment: int) -> int:
    """``ALIGN(ceil(width × cpp), stride_alignment)`` of the first plane."""
    spec = FORMATS[fmt.upper()][0]
    return align(math.ceil(width * spec.cpp), stride_alignment)


def compute_layout(
    fmt: str,
    width: int,
    height: int,
    modifier: Modifier = Modifier.LINEAR,
    *,
    stride_alignment: int = 1,
    height_alignment: int = 1,
    plane_alignment: int = 1,
) -> Layout:
    """The layout of a ``width × height`` ``fmt`` image with ``modifier`` (module docstring)."""
    fmt = fmt.upper()
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    if not modifier_supports(modifier, fmt):
        raise ValueError(f"{fmt} has no {modifier.value} layout")
    if modifier is Modifier.AFBC:
        return _afbc(fmt, width, height, height_alignment)
    if modifier is Modifier.UBWC:
        return _ubwc(fmt, width, height, stride_alignment, height_alignment)
    if modifier is Modifier.TILED:
        return _tiled(fmt, width, height, stride_alignment, height_alignment)
    specs = FORMATS[fmt]
    pitch = align(math.ceil(width * specs[0].cpp), stride_alignment)
    rows = align(height, height_alignment)
    planes: list[Plane] = []
    offset = 0
    for s in specs:  # chroma planes of NV12/P010 share the luma pitch
        r = -(-rows // s.vsub)
        offset = align(offset, plane_alignment)
        planes.append(Plane(s.name, offset, pitch, r, pitch * r))
        offset += pitch * r
    return Layout(fmt, modifier.value, width, height, rows, pitch, planes, align(offset, PAGE_SIZE))


def _tiled(
    fmt: str, width: int, height: int, stride_alignment: int, height_alignment: int
) -> Layout:
    specs = FORMATS[fmt]
    pitch = align(math.ceil(align(width, TILE_W) * specs[0].cpp), stride_alignment)
    rows = align(height, lcm(TILE_H, height_alignment))
    planes: list[Plane] = []
    offset = 0
    for s in specs:
        r = align(-(-rows // s.vsub), TILE_H)
        size = align(pitch * r, TILED_PLANE_ALIGNMENT)
        planes.append(Plane(s.name, offset, pitch, r, size))
        offset += size
    return Layout(
        fmt, Modifier.TILED.value, width, height, rows, pitch, planes, align(offset, PAGE_SIZE)
    )


def _afbc(fmt: str, width: int, height: int, height_alignment: int) -> Layout:
    bpp = _AFBC_BPP[fmt]
    aw = align(width, AFBC_SUPERBLOCK)
    ah = align(height, lcm(AFBC_SUPERBLOCK, height_alignment))
    blocks = (aw // AFBC_SUPERBLOCK) * (ah // AFBC_SUPERBLOCK)
    header = align(blocks * AFBC_HEADER_SIZE, AFBC_BODY_START_ALIGNMENT)
    block_body = align(AFBC_SUPERBLOCK * AFBC_SUPERBLOCK * bpp // 8, AFBC_SUPERBLK_ALIGNMENT)
    body = blocks * block_body
    pitch = aw * bpp // 8  # the DRM pitch of an AFBC framebuffer: AFBC width × bpp / 8
    planes = [
        Plane("header", 0, 0, ah // AFBC_SUPERBLOCK, header, "header"),
        Plane("body", header, pitch, ah, body),
    ]
    return Layout(
        fmt, Modifier.AFBC.value, width, height, ah, pitch, planes, align(header + body, PAGE_SIZE)
    )


def _ubwc(
    fmt: str, width: int, height: int, stride_alignment: int, height_alignment: int
) -> Layout:
    specs = FORMATS[fmt]
    a = UBWC_PLANE_ALIGNMENT
    planes: list[Plane] = []
    offset = 0

    def add(name: str, pitch: int, rows: int, kind: str) -> None:
        nonlocal offset
        size = align(pitch * rows, a)
        planes.append(Plane(name, offset, pitch, rows, size, kind))
        offset += size

    if len(specs) == 2:  # YUV 4:2:0: Y meta, Y, UV meta, UV
        pitch = align(math.ceil(width * specs[0].cpp), lcm(128, stride_alignment))
        y_rows = align(height, lcm(32, height_alignment))
        uv_rows = align(-(-y_rows // 2), 32)
        add("y-meta", align(-(-width // 32), 64), align(-(-height // 8), 16), "meta")
        add("y", pitch, y_rows, "data")
        add(
            "uv-meta",
            align(-(-((width + 1) // 2) // 16), 64),
            align(-(-((height + 1) // 2) // 8), 16),
            "meta",
        )
        add("uv", pitch, uv_rows, "data")
        rows = y_rows
    else:
        pitch = align(align(width, 64) * int(specs[0].cpp), stride_alignment)
        rows = align(height, lcm(16, height_alignment))
        add("meta", align(-(-width // 16), 64), align(-(-height // 4), 16), "meta")
        add("rgb", pitch, rows, "data")
    return Layout(
        fmt, Modifier.UBWC.value, width, height, rows, pitch, planes, align(offset, PAGE_SIZE)
    )
