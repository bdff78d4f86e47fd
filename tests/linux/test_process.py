"""User-space processes: fd table semantics, SCM_RIGHTS, mmaps holding file references,
exit, and dmabuf_dump accounting (Pss split between processes)."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from socmem.errors import KernelError
from socmem.linux.dmabuf.dma_buf import O_CLOEXEC, O_RDWR, dma_buf_put
from socmem.linux.dmabuf.heaps import (
    DMA_HEAP_IOCTL_ALLOC,
    DmaHeapAllocationData,
    dma_heaps_for_kernel,
)
from socmem.linux.kernel import Kernel
from socmem.linux.process import UserSpace
from socmem.soc.loader import load_soc

MiB = 1 << 20


@pytest.fixture
def env() -> Any:
    k = Kernel.boot(load_soc("reference-mobile"))
    heaps = dma_heaps_for_kernel(k)
    us = UserSpace(k.core)
    us.add_devnodes(heaps.devnodes())
    return k, us


def alloc(p: Any, size: int, heap: str = "system") -> int:
    hfd = p.open(f"/dev/dma_heap/{heap}")
    d = DmaHeapAllocationData(len=size, fd_flags=O_RDWR | O_CLOEXEC)
    p.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, d)
    p.close(hfd)
    return d.fd


def test_fd_table_lowest_free_dup_dup2_close(env: Any) -> None:
    _k, us = env
    p = us.spawn("app")
    a = alloc(p, MiB)
    assert a == 1  # the heap's fd 0 was still open; it is closed now
    b = p.dup(a)
    assert b == 0 and not p.fds[b].cloexec and p.fds[a].cloexec
    buf = p.file(a).dmabuf
    assert buf.file_count == 2
    assert p.dup2(a, 5) == 5 and buf.file_count == 3
    assert p.dup2(a, a) == a and buf.file_count == 3
    p.close(0)
    assert p.dup(a) == 0  # lowest free again
    for bad in (7, -1):
        with pytest.raises(KernelError) as e:
            p.close(bad)
        assert e.value.errno == errno.EBADF
    with pytest.raises(KernelError) as e:
        p.dup(42)
    assert e.value.errno == errno.EBADF
    c = alloc(p, MiB)
    assert p.dup2(a, c) == c  # dup2 over another buffer closes it silently
    assert len(us.dmabuf_dump().entries) == 1


def test_mapping_keeps_buffer_alive_after_close(env: Any) -> None:
    k, us = env
    p = us.spawn("app")
    free0 = k.mem.buddy.nr_free_pages
    fd = alloc(p, MiB)
    buf = p.file(fd).dmabuf
    m = p.mmap(fd, MiB)
    p.close(fd)
    assert not buf.released and buf.file_count == 1
    d = us.dmabuf_dump()
    assert [e.ino for e in d.map_only(p.pid)] == [buf.ino]
    p.munmap(m)
    assert buf.released and k.mem.buddy.nr_free_pages == free0
    with pytest.raises(KernelError):
        p.munmap(m)


def test_send_fd_shares_the_file_and_pss_splits(env: Any) -> None:
    _k, us = env
    cam = us.spawn("camera")
    sf = us.spawn("surfaceflinger")
    fd = alloc(cam, 2 * MiB)
    buf = cam.file(fd).dmabuf
    cam.ioctl(fd, 0x40086201, "preview")  # DMA_BUF_SET_NAME_B
    rfd = cam.send_fd(fd, sf)
    assert sf.file(rfd) is cam.file(fd) and buf.file_count == 2
    sf.mmap(rfd, 2 * MiB)
    own = alloc(sf, MiB)
    d = us.dmabuf_dump()
    shared = next(e for e in d.entries if e.ino == buf.ino)
    assert shared.pids == {cam.pid, sf.pid} and shared.pss == MiB
    assert d.rss(sf.pid) == 3 * MiB and d.pss(sf.pid) == 2 * MiB
    assert d.rss(cam.pid) == 2 * MiB and d.pss(cam.pid) == MiB
    text = d.render()
    assert "surfaceflinger:" in text and "preview" in text and "PROCESS TOTAL" in text
    assert (
        f"{'preview':>22} {2048:>13} kB {1024:>13} kB {2:>16} {buf.ino:>16}  {'system':>22}" in text
    )
    assert text.endswith("dmabuf total: 3072 kB kernel_rss: 0 kB userspace_rss: 5120 kB "
                         "userspace_pss: 3072 kB\n ")  # fmt: skip
    del own


def test_exit_closes_everything_and_reports_kernel_held_leak(env: Any) -> None:
    k, us = env
    p = us.spawn("app")
    q = us.spawn("viewer")
    a = alloc(p, MiB)
    b = alloc(p, MiB)
    shared = p.file(b).dmabuf
    p.send_fd(b, q)
    leaked = p.dma_buf_get(a)  # a driver imported it and never put it
    p.mmap(a, MiB)
    report = p.exit()
    assert report["dmabufs"] == [leaked.ino, shared.ino] or set(report["dmabufs"]) == {
        leaked.ino, shared.ino}  # fmt: skip
    assert p.exited and not p.fds and not p.mappings
    [f] = k.findings.of_kind("process.exit-leak")
    assert str(leaked.ino) in f.subject and not shared.released
    dma_buf_put(leaked)
    assert leaked.released
    q.exit()
    assert shared.released
    with pytest.raises(KernelError) as e:
        p.dup(0)
    assert e.value.errno == errno.ESRCH


def test_fdinfo_of_heap_buffer(env: Any) -> None:
    _k, us = env
    p = us.spawn("app")
    fd = alloc(p, MiB)
    buf = p.file(fd).dmabuf
    assert p.fd_link(fd) == "/dmabuf:"
    assert p.fdinfo(fd) == (
        f"pos:\t0\nflags:\t02000002\nmnt_id:\t10\nino:\t{buf.ino}\nsize:\t{MiB}\n"
        "count:\t1\nexp_name:\tsystem\n"
    )
