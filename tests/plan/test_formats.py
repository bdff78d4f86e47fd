from socmem.plan.formats import align, blob_layout, compute_layout, lcm, modifier_supports
from socmem.soc.constraints import Modifier


def test_align_and_lcm() -> None:
    assert align(4800, 256) == 4864 and align(7, 1) == 7
    assert lcm(64, 256) == 256 and lcm(64, 96) == 192 and lcm() == 1


def test_linear_nv12_shares_pitch_and_pads_height() -> None:
    lay = compute_layout("NV12", 1920, 1080, stride_alignment=256, height_alignment=16,
                         plane_alignment=4096)  # fmt: skip
    assert lay.stride == 2048 and lay.alloc_height == 1088
    y, uv = lay.planes
    assert y.pitch == uv.pitch == 2048 and uv.rows == 544
    assert uv.offset % 4096 == 0 and lay.size % 4096 == 0


def test_raw10_packed_line() -> None:
    assert compute_layout("RAW10", 3840, 2160, stride_alignment=64).stride == 4800


def test_afbc_header_and_body() -> None:
    lay = compute_layout("ARGB8888", 1920, 1080, Modifier.AFBC)
    blocks = (1920 // 16) * (1088 // 16)
    header, body = lay.planes
    assert header.size == align(blocks * 16, 1024) and body.offset == header.size
    assert body.size == blocks * 1024  # 16x16x4 bytes, already 128-aligned
    assert lay.meta_bytes == header.size


def test_ubwc_nv12_planes() -> None:
    lay = compute_layout("NV12", 3840, 2160, Modifier.UBWC)
    names = [p.name for p in lay.planes]
    assert names == ["y-meta", "y", "uv-meta", "uv"]
    assert all(p.offset % 4096 == 0 for p in lay.planes)
    assert lay.alloc_height == 2176  # 32-row scanlines
    assert lay.access_bytes(True, 0.5) < lay.access_bytes(False, 0.5)


def test_modifier_support_and_blob() -> None:
    assert not modifier_supports(Modifier.UBWC, "RAW10")
    assert modifier_supports(Modifier.AFBC, "NV12")
    assert blob_layout(1000).size == 4096
