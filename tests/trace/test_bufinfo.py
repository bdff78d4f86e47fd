"""bufinfo / fdinfo readers and the bufinfo writer against the real fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_paths import FIXTURES
from socmem.errors import InputError
from socmem.trace.bufinfo import (
    BufFence,
    DmaBufInfo,
    parse_bufinfo,
    parse_fd_links,
    parse_fdinfo,
    read_bufinfo,
    read_fdinfo,
    render_bufinfo,
    render_fdinfo,
)

D = FIXTURES / "real-kernel/qemu-virt-smmuv3"
pytestmark = pytest.mark.skipif(not D.exists(), reason="fixtures not present")


def test_bufinfo_live() -> None:
    info = read_bufinfo(D / "dma_buf-bufinfo-live.txt")
    assert info.warnings == []
    assert (info.total_objects, info.total_bytes) == (5, 8486912)
    assert len(info.buffers) == 5 and sum(b.size for b in info.buffers) == 8486912
    assert info.attached_devices == 0
    assert [b.name for b in info.buffers] == [
        "cursor-B",
        "cursor-A",
        "texture-256",
        "scanout-B",
        "scanout-A",
    ]
    names = info.by_name()
    assert names["scanout-A"].size == 4096000 == 1280 * 800 * 4
    assert names["texture-256"].size == 262144 == 256 * 256 * 4
    assert names["cursor-A"].size == 16384 == 64 * 64 * 4
    assert all(b.exp_name == "virtio_gpu" and b.count == 3 for b in info.buffers)
    assert all(b.flags == 0o2 and b.mode == 0x80007 for b in info.buffers)
    assert {b.ino for b in info.buffers} == {1, 2, 3, 4, 5}
    assert names["cursor-B"].fences == [
        BufFence(
            "write",
            "virtio_gpu",
            "controlq",
            8,
            True,
            "\twrite fence:virtio_gpu controlq seq 8 signalled",
        )
    ]
    assert names["scanout-A"].fences == []


@pytest.mark.parametrize("name", ["dma_buf-bufinfo-live.txt", "dma_buf-bufinfo-after-release.txt"])
def test_render_is_byte_identical(name: str) -> None:
    raw = (D / name).read_bytes()
    info = parse_bufinfo(raw.decode())
    assert render_bufinfo(info.buffers).encode() == raw


def test_bufinfo_after_release_and_attachments() -> None:
    info = read_bufinfo(D / "dma_buf-bufinfo-after-release.txt")
    assert (info.total_objects, info.total_bytes, info.buffers) == (0, 0, [])
    b = DmaBufInfo(8192, 0o2000002, 0x80007, 2, "system", 7, None, attached=["ff900000.vop"])
    text = render_bufinfo([b])
    assert "00008192\t00080002\t00080007\t00000002\tsystem\t00000007\t<none>\n" in text
    assert "\tAttached Devices:\n\tff900000.vop\nTotal 1 devices attached\n" in text
    back = parse_bufinfo(text)
    assert back.attached_devices == 1 and back.buffers[0].name == "<none>" and back.warnings == []


def test_bufinfo_tolerates_junk() -> None:
    info = parse_bufinfo("hello\n")
    assert info.buffers == [] and info.warnings
    bad_total = parse_bufinfo(
        (D / "dma_buf-bufinfo-live.txt").read_text().replace("Total 5 objects", "Total 6 objects")
    )
    assert any("6 objects" in w for w in bad_total.warnings)


def test_fdinfo_live() -> None:
    fds = read_fdinfo(D / "dma_buf-fdinfo-live.txt")
    assert [f.fd for f in fds] == [10, 11, 4, 5, 6, 7, 8]
    bufs = [f for f in fds if f.is_dmabuf]
    assert [f.name for f in bufs] == [
        "scanout-A",
        "scanout-B",
        "texture-256",
        "cursor-A",
        "cursor-B",
    ]
    assert [f.ino for f in bufs] == [1, 2, 3, 4, 5]
    assert all(
        f.flags == 0o2000002
        and f.mnt_id == 10
        and f.count == 3
        and f.pos == 0
        and f.exp_name == "virtio_gpu"
        for f in bufs
    )
    assert sum(f.size or 0 for f in bufs) == 8486912
    sync = fds[0]
    assert not sync.is_dmabuf and sync.target == "anon_inode:sync_file" and sync.flags == 0o2000000
    # fdinfo and bufinfo agree buffer by buffer (ino, size, name)
    by_ino = {b.ino: b for b in read_bufinfo(D / "dma_buf-bufinfo-live.txt").buffers}
    for f in bufs:
        assert (by_ino[f.ino].size, by_ino[f.ino].name) == (f.size, f.name)
    text = (D / "dma_buf-fdinfo-live.txt").read_text()
    assert render_fdinfo(bufs[0]) in text


def test_fd_links() -> None:
    links = parse_fd_links((D / "dma_buf-probe-fds.txt").read_text())
    assert links[4] == "/dmabuf:scanout-A" and links[3] == "/dev/dri/card0"
    assert sorted(fd for fd, t in links.items() if t.startswith("/dmabuf:")) == [4, 5, 6, 7, 8]


def test_single_fdinfo_and_missing_file(tmp_path: Path) -> None:
    one = parse_fdinfo(
        "pos:\t0\nflags:\t02000002\nmnt_id:\t10\nino:\t1\nsize:\t4096\n"
        "count:\t1\nexp_name:\tsystem\n"
    )
    assert len(one) == 1 and one[0].fd is None and one[0].name is None and one[0].size == 4096
    with pytest.raises(InputError):
        read_bufinfo(tmp_path / "none")
