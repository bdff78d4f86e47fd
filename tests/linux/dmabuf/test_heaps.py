"""DMA-BUF heaps on a booted reference-mobile kernel: dma-heap.c ioctl rules, the
dmabuf-heaps selftest flow, system/CMA/carveout/protected heap behaviour through the
lead's DMA API."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from socmem.errors import KernelError
from socmem.linux.dma import mapping as dma_mapping
from socmem.linux.dma.types import DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SYNC_END,
    DMA_BUF_SYNC_RW,
    DMA_BUF_SYNC_START,
    IS_ERR,
    O_CLOEXEC,
    O_RDWR,
    DmaBuf,
    DmaBufSync,
    dma_buf_attach,
    dma_buf_begin_cpu_access,
    dma_buf_detach,
    dma_buf_end_cpu_access,
    dma_buf_map_attachment,
    dma_buf_put,
    dma_buf_unmap_attachment,
    dma_buf_vmap,
    dma_buf_vunmap,
)
from socmem.linux.dmabuf.heaps import (
    DMA_HEAP_IOCTL_ALLOC,
    DmaHeapAllocationData,
    DmaHeapOps,
    dma_heap_buffer_alloc,
    dma_heaps_for_kernel,
    get_order,
)
from socmem.linux.kernel import Kernel
from socmem.linux.process import MAP_PRIVATE, UserSpace
from socmem.soc.loader import load_soc

MiB = 1 << 20
PAGE = 4096
RW_CLOEXEC = O_RDWR | O_CLOEXEC


@pytest.fixture(scope="module")
def soc() -> Any:
    return load_soc("reference-mobile")


@pytest.fixture
def kernel(soc: Any) -> Kernel:
    return Kernel.boot(soc)


@pytest.fixture
def heaps(kernel: Kernel) -> Any:
    return dma_heaps_for_kernel(kernel)


@pytest.fixture
def proc(kernel: Kernel, heaps: Any) -> Any:
    us = UserSpace(kernel.core)
    us.add_devnodes(heaps.devnodes())
    return us.spawn("heaptest")


def alloc(proc: Any, heap: str, length: int, fd_flags: int = RW_CLOEXEC, **kw: Any) -> int:
    hfd = proc.open(f"/dev/dma_heap/{heap}", O_RDWR)
    data = DmaHeapAllocationData(len=length, fd_flags=fd_flags, **kw)
    try:
        assert proc.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, data) == 0
    finally:
        proc.close(hfd)
    return data.fd


def test_registry_names(heaps: Any) -> None:
    assert heaps.names() == ["cont-splash", "linux,cma", "protected,secure-video", "system"]
    assert heaps.dma_heap_add("system", DmaHeapOps(lambda *a: -1)) == -errno.EINVAL
    assert heaps.dma_heap_add("", DmaHeapOps(lambda *a: -1)) == -errno.EINVAL
    assert heaps.dma_heap_add("x", DmaHeapOps(None)) == -errno.EINVAL


# -- dma-heap.c ioctl validation (selftest test_alloc_errors + kernel order) --------------
@pytest.mark.parametrize(
    ("kw", "err"),
    [
        ({"fd": 3}, errno.EINVAL),
        ({"fd_flags": ~RW_CLOEXEC & 0xFFFFFFFF}, errno.EINVAL),
        ({"fd_flags": 0o4000}, errno.EINVAL),  # O_NONBLOCK
        ({"heap_flags": 0x111111}, errno.EINVAL),
        ({"len": 0}, errno.EINVAL),
        ({"len": (1 << 64) - 1}, errno.EINVAL),  # PAGE_ALIGN wraps to 0
        ({"len": 1 << 40}, errno.ENOMEM),
    ],
)
def test_alloc_errors(proc: Any, kw: dict[str, int], err: int) -> None:
    hfd = proc.open("/dev/dma_heap/system")
    data = DmaHeapAllocationData(**{"len": PAGE, "fd_flags": RW_CLOEXEC, **kw})
    with pytest.raises(KernelError) as e:
        proc.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, data)
    assert e.value.errno == err


def test_alloc_ioctl_on_non_heap_fd_and_bad_nr(proc: Any) -> None:
    fd = alloc(proc, "system", PAGE)
    with pytest.raises(KernelError) as e:  # "fd 0 is stdin": not a heap
        proc.ioctl(fd, DMA_HEAP_IOCTL_ALLOC, DmaHeapAllocationData(len=PAGE))
    assert e.value.errno == errno.ENOTTY
    hfd = proc.open("/dev/dma_heap/system")
    with pytest.raises(KernelError) as e:
        proc.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC + 1, DmaHeapAllocationData(len=PAGE))
    assert e.value.errno == errno.EINVAL


def test_alloc_compat_struct_sizes(proc: Any) -> None:
    """Selftest test_alloc_compat: a 16-byte (older) and a 48-byte (newer) struct work."""
    hfd = proc.open("/dev/dma_heap/system")
    older = (DMA_HEAP_IOCTL_ALLOC & ~(0x3FFF << 16)) | (16 << 16)
    d = DmaHeapAllocationData(len=PAGE, fd_flags=RW_CLOEXEC, heap_flags=0x111, size=16)
    assert proc.ioctl(hfd, older, d) == 0 and d.fd > 0  # heap_flags not copied in
    newer = (DMA_HEAP_IOCTL_ALLOC & ~(0x3FFF << 16)) | (48 << 16)
    d2 = DmaHeapAllocationData(len=PAGE, fd_flags=RW_CLOEXEC, size=48)
    assert proc.ioctl(hfd, newer, d2) == 0 and d2.fd > d.fd


def test_open_unknown_heap(proc: Any) -> None:
    with pytest.raises(KernelError) as e:
        proc.open("/dev/dma_heap/nope")
    assert e.value.errno == errno.ENOENT


def test_selftest_alloc_mmap_sync_close(kernel: Kernel, proc: Any, heaps: Any) -> None:
    """test_alloc_and_import without vgem: alloc 1 MiB, mmap, SYNC_START/END, close."""
    free0 = kernel.mem.buddy.nr_free_pages
    fd = alloc(proc, "system", MiB)
    assert proc.fdinfo(fd).splitlines()[1] == "flags:\t02000002"
    m = proc.mmap(fd, MiB)
    proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, DmaBufSync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW))
    proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, DmaBufSync(DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW))
    proc.munmap(m)
    proc.close(fd)
    assert kernel.mem.buddy.nr_free_pages == free0
    assert heaps["system"].bytes_zeroed == MiB


@pytest.mark.parametrize("size", [4096, MiB])
def test_alloc_zeroed_recycled_pages(kernel: Kernel, proc: Any, heaps: Any, size: int) -> None:
    """test_alloc_zeroed: 32 buffers, freed, 32 new ones: every allocation is zeroed."""
    fds = [alloc(proc, "system", size) for _ in range(32)]
    pfns1 = {proc.file(fd).dmabuf.priv.pfn_at(0) for fd in fds}
    for fd in fds:
        proc.close(fd)
    fds = [alloc(proc, "system", size) for _ in range(32)]
    pfns2 = {proc.file(fd).dmabuf.priv.pfn_at(0) for fd in fds}
    assert pfns1 & pfns2  # recycled pages ...
    assert heaps["system"].bytes_zeroed == 64 * size  # ... zeroed again


# -- system heap --------------------------------------------------------------------------
def test_system_heap_orders(kernel: Kernel, heaps: Any) -> None:
    b = dma_heap_buffer_alloc(heaps["system"], MiB + 68 * 1024, O_RDWR, 0)
    assert isinstance(b, DmaBuf)
    assert [o for _pfn, o in b.priv.chunks] == [8, 4, 0]
    sgt = b.priv.sg_table()
    assert [sg.length for sg in sgt.sgl] == [MiB, 64 * 1024, PAGE]
    b2 = dma_heap_buffer_alloc(heaps["system"], 3 * 64 * 1024 + 2 * PAGE, O_RDWR, 0)
    assert [o for _pfn, o in b2.priv.chunks] == [4, 4, 4, 0, 0]  # type: ignore[union-attr]
    assert b.exp_name == "system" and b.file.f_flags == O_RDWR


def test_system_heap_falls_back_when_no_order8(
    kernel: Kernel, heaps: Any, monkeypatch: Any
) -> None:
    real = kernel.mem.alloc_pages
    monkeypatch.setattr(
        kernel.mem,
        "alloc_pages",
        lambda order, *a, **k: None if order == 8 else real(order, *a, **k),
    )
    b = dma_heap_buffer_alloc(heaps["system"], MiB, O_RDWR, 0)
    assert [o for _p, o in b.priv.chunks] == [4] * 16  # type: ignore[union-attr]


def test_map_goes_through_dma_api_and_cpu_access_syncs_each_mapped_attachment(
    kernel: Kernel, heaps: Any, monkeypatch: Any
) -> None:
    calls: list[tuple[str, str, int]] = []
    for fn in ("dma_sync_sgtable_for_cpu", "dma_sync_sgtable_for_device"):
        real = getattr(dma_mapping, fn)

        def spy(dev: Any, sgt: Any, d: int, _fn: str = fn, _real: Any = real) -> None:
            calls.append((_fn, dev.name, int(d)))
            _real(dev, sgt, d)

        monkeypatch.setattr(dma_mapping, fn, spy)
    b = dma_heap_buffer_alloc(heaps["system"], 2 * MiB, O_RDWR, 0)
    assert isinstance(b, DmaBuf)
    isp, disp, npu = kernel.device("isp"), kernel.device("display"), kernel.device("npu")
    a_isp, a_disp, a_npu = (dma_buf_attach(b, d) for d in (isp, disp, npu))
    s_isp = dma_buf_map_attachment(a_isp, DMA_TO_DEVICE)
    s_disp = dma_buf_map_attachment(a_disp, DMA_BIDIRECTIONAL)
    assert not IS_ERR(s_isp) and not IS_ERR(s_disp)
    assert s_isp is not s_disp  # per-attachment tables
    assert s_isp.nents >= 1 and s_isp.sgl[0].dma_address  # type: ignore[union-attr]
    assert dma_buf_begin_cpu_access(b, DMA_FROM_DEVICE) == 0
    assert dma_buf_end_cpu_access(b, DMA_TO_DEVICE) == 0
    # npu is attached but not mapped: not synced; newest attachment first (list_add)
    assert calls == [
        ("dma_sync_sgtable_for_cpu", "display", DMA_FROM_DEVICE),
        ("dma_sync_sgtable_for_cpu", "isp", DMA_FROM_DEVICE),
        ("dma_sync_sgtable_for_device", "display", DMA_TO_DEVICE),
        ("dma_sync_sgtable_for_device", "isp", DMA_TO_DEVICE),
    ]
    dma_buf_unmap_attachment(a_isp, s_isp, DMA_TO_DEVICE)  # type: ignore[arg-type]
    dma_buf_unmap_attachment(a_disp, s_disp, DMA_BIDIRECTIONAL)  # type: ignore[arg-type]
    for a in (a_isp, a_disp, a_npu):
        dma_buf_detach(b, a)  # type: ignore[arg-type]
    free0 = kernel.mem.buddy.nr_free_pages
    dma_buf_put(b)
    assert kernel.mem.buddy.nr_free_pages == free0 + 512
    assert not kernel.findings.of_kind("dma-buf")


def test_vmap_refcount_heap(heaps: Any) -> None:
    b = dma_heap_buffer_alloc(heaps["system"], MiB, O_RDWR, 0)
    r, v = dma_buf_vmap(b)  # type: ignore[arg-type]
    assert r == 0 and dma_buf_vmap(b)[1] == v and b.priv.vmap_cnt == 1  # type: ignore[union-attr]
    dma_buf_vunmap(b, v)  # type: ignore[arg-type]
    dma_buf_vunmap(b, v)  # type: ignore[arg-type]
    assert b.priv.vmap_cnt == 0  # type: ignore[union-attr]


# -- CMA heap ----------------------------------------------------------------------------
def test_cma_heap_contiguous_single_segment(kernel: Kernel, proc: Any, heaps: Any) -> None:
    cma = kernel.mem.default_cma
    used0 = cma.used()
    fd = alloc(proc, "linux,cma", 3 * MiB + 1)
    b = proc.file(fd).dmabuf
    assert b.size == 3 * MiB + PAGE and b.exp_name == "linux,cma"
    assert cma.used() - used0 == b.size // PAGE
    assert b.priv.base % (PAGE << get_order(b.size)) == 0  # align = get_order(size) <= 8
    assert len(b.priv.sg_table().sgl) == 1
    with pytest.raises(KernelError) as e:
        proc.mmap(fd, PAGE, flags=MAP_PRIVATE)  # cma_heap_mmap: shared only
    assert e.value.errno == errno.EINVAL
    proc.mmap(fd, PAGE)
    a = dma_buf_attach(b, kernel.device("display"))
    s = dma_buf_map_attachment(a, DMA_TO_DEVICE)
    assert not IS_ERR(s)
    dma_buf_unmap_attachment(a, s, DMA_TO_DEVICE)  # type: ignore[arg-type]
    dma_buf_detach(b, a)  # type: ignore[arg-type]
    proc.exit()
    assert cma.used() == used0


def test_cma_alignment_capped_at_8(heaps: Any) -> None:
    b = dma_heap_buffer_alloc(heaps["linux,cma"], 8 * MiB, O_RDWR, 0)
    assert isinstance(b, DmaBuf) and b.priv.base % MiB == 0
    trace = heaps["linux,cma"].priv.trace
    assert [t for t in trace if t[0] == "cma_alloc_start"][-1][1]["align"] == 8


# -- carveout and protected heaps --------------------------------------------------------
def test_carveout_heap(kernel: Kernel, heaps: Any) -> None:
    pool = kernel.mem.pools["cont-splash"]
    avail = pool.gen_pool_avail()
    b = dma_heap_buffer_alloc(heaps["cont-splash"], MiB, O_RDWR, 0)
    assert isinstance(b, DmaBuf) and pool.gen_pool_avail() == avail - MiB
    assert kernel.mem.region_of(b.priv.base).name == "cont-splash"
    assert dma_heap_buffer_alloc(heaps["cont-splash"], 64 * MiB, O_RDWR, 0) == -errno.ENOMEM
    dma_buf_put(b)
    assert pool.gen_pool_avail() == avail


def test_protected_heap_refuses_cpu_and_insecure_devices(kernel: Kernel, proc: Any) -> None:
    fd = alloc(proc, "protected,secure-video", 4 * MiB)
    b = proc.file(fd).dmabuf
    assert kernel.mem.region_of(b.priv.base).name == "secure-video"
    with pytest.raises(KernelError) as e:
        proc.mmap(fd, PAGE)
    assert e.value.errno == errno.EPERM
    with pytest.raises(KernelError) as e:
        proc.ioctl(fd, DMA_BUF_IOCTL_SYNC, DmaBufSync(DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW))
    assert e.value.errno == errno.EPERM
    assert dma_buf_vmap(b)[0] == -errno.EPERM
    assert dma_buf_attach(b, kernel.device("gpu")) == -errno.EPERM  # not secure
    a = dma_buf_attach(b, kernel.device("vdec"))  # secure master
    s = dma_buf_map_attachment(a, DMA_FROM_DEVICE)
    assert not IS_ERR(s)
    dma_buf_unmap_attachment(a, s, DMA_FROM_DEVICE)  # type: ignore[arg-type]
    dma_buf_detach(b, a)  # type: ignore[arg-type]
    assert len(kernel.findings.of_kind("dma-heap.protected-access")) == 4
