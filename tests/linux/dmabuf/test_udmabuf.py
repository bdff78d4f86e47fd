"""udmabuf (drivers/dma-buf/udmabuf.c, 6.1): the errno table the kernel selftest
(tools/testing/selftests/drivers/dma-buf/udmabuf.c) checks, aliasing of memfd pages,
and the buffer ops."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from socmem.errors import KernelError
from socmem.linux.dma.types import DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SYNC_END,
    DMA_BUF_SYNC_RW,
    DMA_BUF_SYNC_START,
    IS_ERR,
    O_RDWR,
    DmaBufSync,
    File,
    dma_buf_attach,
    dma_buf_detach,
    dma_buf_map_attachment,
    dma_buf_unmap_attachment,
)
from socmem.linux.dmabuf.udmabuf import (
    F_SEAL_FUTURE_WRITE,
    F_SEAL_SHRINK,
    F_SEAL_WRITE,
    MFD_ALLOW_SEALING,
    UDMABUF_CREATE,
    UDMABUF_CREATE_LIST,
    UDMABUF_FLAGS_CLOEXEC,
    UdmabufCreate,
    UdmabufCreateItem,
    UdmabufCreateList,
    UdmabufDevice,
    memfd_create,
)
from socmem.linux.kernel import Kernel
from socmem.linux.process import MAP_PRIVATE, UserSpace
from socmem.soc.loader import load_soc

PAGE = 4096
NUM_PAGES = 4
MEMFD_PAGES = 1024


@pytest.fixture(scope="module")
def soc() -> Any:
    return load_soc("reference-mobile")


@pytest.fixture
def env(soc: Any) -> Any:
    k = Kernel.boot(soc)
    us = UserSpace(k.core)
    dev = UdmabufDevice(k.device("dma0"), k.core)
    us.add_devnodes({"/dev/udmabuf": dev.open})
    p = us.spawn("udmabuf-test")
    # fd 0: stdin (not a memfd)
    p.open_file(File(core=k.core))
    return k, us, dev, p


def memfd(k: Kernel, p: Any, pages: int, seals: int = F_SEAL_SHRINK, sealing: bool = True) -> int:
    m = memfd_create("udmabuf-test", MFD_ALLOW_SEALING if sealing else 0, k.mem, k.core)
    assert m.ftruncate(pages * PAGE) == 0
    if seals:
        m.add_seals(seals)
    return p.open_file(m)


def create(p: Any, ufd: int, mfd: int, offset: int, size: int, flags: int = 0) -> int:
    return p.ioctl(ufd, UDMABUF_CREATE, UdmabufCreate(mfd, flags, offset, size))


def errno_of(fn: Any) -> int:
    with pytest.raises(KernelError) as e:
        fn()
    return e.value.errno


def test_selftest_errno_table(env: Any) -> None:
    k, _us, _dev, p = env
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, NUM_PAGES)
    size = NUM_PAGES * PAGE
    assert errno_of(lambda: create(p, ufd, mfd, PAGE // 2, PAGE)) == errno.EINVAL  # 1
    assert errno_of(lambda: create(p, ufd, mfd, 0, PAGE // 2)) == errno.EINVAL  # 2
    assert errno_of(lambda: create(p, ufd, 0, 0, size)) == errno.EBADFD  # 3 (stdin)
    fd = create(p, ufd, mfd, 0, size)  # 4: a valid dma-buf fd
    b = p.file(fd).dmabuf
    assert b.size == size and b.exp_name == "udmabuf" and b.file.f_flags == O_RDWR


@pytest.mark.parametrize(
    ("seals", "sealing", "err"),
    [
        (0, True, errno.EINVAL),  # F_SEAL_SHRINK missing
        (F_SEAL_SHRINK | F_SEAL_WRITE, True, errno.EINVAL),
        (0, False, errno.EINVAL),  # no MFD_ALLOW_SEALING: cannot add the seal
        (F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE, True, 0),  # 6.1 still allows it
    ],
)
def test_seal_rules(env: Any, seals: int, sealing: bool, err: int) -> None:
    k, _us, _dev, p = env
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, NUM_PAGES, seals, sealing)
    if err:
        assert errno_of(lambda: create(p, ufd, mfd, 0, PAGE)) == err
    else:
        assert create(p, ufd, mfd, 0, PAGE) > 0


def test_future_write_denied_on_newer_kernels(env: Any) -> None:
    k, _us, dev, p = env
    dev.deny_future_write = True
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, NUM_PAGES, F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE)
    assert errno_of(lambda: create(p, ufd, mfd, 0, PAGE)) == errno.EINVAL


def test_limits(env: Any) -> None:
    k, _us, dev, p = env
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, 64 * 256 + 1)
    assert errno_of(lambda: create(p, ufd, mfd, 0, 64 * 256 * PAGE + PAGE)) == errno.EINVAL
    assert create(p, ufd, mfd, 0, 64 * 256 * PAGE) > 0  # exactly size_limit_mb
    assert errno_of(lambda: create(p, ufd, mfd, 0, 0)) == errno.EINVAL  # no pages
    assert errno_of(lambda: create(p, ufd, mfd, 64 * 256 * PAGE, 2 * PAGE)) == errno.EINVAL
    items = [UdmabufCreateItem(mfd, 0, 0, PAGE)] * 1025
    big = UdmabufCreateList(0, None, items)
    assert errno_of(lambda: p.ioctl(ufd, UDMABUF_CREATE_LIST, big)) == errno.EINVAL
    assert p.ioctl(ufd, UDMABUF_CREATE_LIST, UdmabufCreateList(0, None, items[:1024])) > 0
    assert errno_of(lambda: p.ioctl(ufd, UDMABUF_CREATE_LIST, UdmabufCreateList())) == errno.EINVAL
    assert errno_of(lambda: p.ioctl(ufd, 0x1234, None)) == errno.ENOTTY
    del dev


def test_create_list_aliases_memfd_pages_in_item_order(env: Any) -> None:
    """Selftest case 5: item i = (i * size/4, 4 pages); dma-buf page k is memfd page
    (k // 4) * 256 + k % 4, the same physical page (no copy)."""
    k, _us, _dev, p = env
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, MEMFD_PAGES)
    step = MEMFD_PAGES * PAGE // NUM_PAGES
    items = [UdmabufCreateItem(mfd, 0, i * step, NUM_PAGES * PAGE) for i in range(NUM_PAGES)]
    fd = p.ioctl(ufd, UDMABUF_CREATE_LIST, UdmabufCreateList(UDMABUF_FLAGS_CLOEXEC, 4, items))
    assert p.fds[fd].cloexec
    m = p.mmap(fd, 16 * PAGE)
    ub = p.file(fd).dmabuf.priv
    mf = p.file(mfd)
    for kpg in range(16):
        assert ub.pfn_at(kpg) == mf.pfn_at((kpg // 4) * 256 + kpg % 4)
    with pytest.raises(KernelError) as e:
        p.mmap(fd, PAGE, flags=MAP_PRIVATE)
    assert e.value.errno == errno.EINVAL
    p.munmap(m)


def test_sync_end_before_start_is_einval_and_pages_outlive_memfd(env: Any) -> None:
    k, _us, _dev, p = env
    free0 = k.mem.buddy.nr_free_pages
    ufd = p.open("/dev/udmabuf")
    mfd = memfd(k, p, NUM_PAGES)
    fd = create(p, ufd, mfd, 0, NUM_PAGES * PAGE)
    end = DmaBufSync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW)
    assert errno_of(lambda: p.ioctl(fd, DMA_BUF_IOCTL_SYNC, end)) == errno.EINVAL
    p.ioctl(fd, DMA_BUF_IOCTL_SYNC, DmaBufSync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW))
    p.ioctl(fd, DMA_BUF_IOCTL_SYNC, end)
    p.close(mfd)  # pages stay pinned by the udmabuf
    assert k.mem.buddy.nr_free_pages < free0
    b = p.file(fd).dmabuf
    a = dma_buf_attach(b, k.device("isp"))
    s = dma_buf_map_attachment(a, DMA_TO_DEVICE)
    assert not IS_ERR(s) and s.orig_nents == 1  # type: ignore[union-attr]
    dma_buf_unmap_attachment(a, s, DMA_TO_DEVICE)  # type: ignore[arg-type]
    dma_buf_detach(b, a)  # type: ignore[arg-type]
    p.close(fd)
    assert k.mem.buddy.nr_free_pages == free0
