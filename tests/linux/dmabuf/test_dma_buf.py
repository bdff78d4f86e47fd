"""dma-buf core (drivers/dma-buf/dma-buf.c, 6.1): export, refcounts, attach/map caching,
dynamic importers, CPU access, vmap, ioctls, poll, bufinfo/fdinfo against the fixtures."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from fixture_paths import QEMU, need
from socmem.errors import KernelError
from socmem.linux.dma.scatterlist import ScatterlistEntry, SgTable
from socmem.linux.dma.types import DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
    DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
    DMA_BUF_IOCTL_SYNC,
    DMA_BUF_SET_NAME_A,
    DMA_BUF_SET_NAME_B,
    DMA_BUF_SYNC_END,
    DMA_BUF_SYNC_READ,
    DMA_BUF_SYNC_RW,
    DMA_BUF_SYNC_START,
    DMA_BUF_SYNC_WRITE,
    EPOLLIN,
    EPOLLOUT,
    IS_ERR,
    O_CLOEXEC,
    O_RDWR,
    SEEK_CUR,
    SEEK_END,
    SEEK_SET,
    DmaBuf,
    DmaBufAttachOps,
    DmaBufExportInfo,
    DmaBufExportSyncFile,
    DmaBufImportSyncFile,
    DmaBufOps,
    DmaBufSync,
    Vma,
    dma_buf_attach,
    dma_buf_begin_cpu_access,
    dma_buf_debug_show,
    dma_buf_detach,
    dma_buf_dynamic_attach,
    dma_buf_end_cpu_access,
    dma_buf_export,
    dma_buf_get,
    dma_buf_list,
    dma_buf_map_attachment,
    dma_buf_mmap,
    dma_buf_move_notify,
    dma_buf_pin,
    dma_buf_put,
    dma_buf_unmap_attachment,
    dma_buf_unpin,
    dma_buf_vmap,
    dma_buf_vunmap,
    get_dma_buf,
)
from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceOps,
    dma_fence_context_alloc,
    dma_fence_signal,
)
from socmem.linux.dmabuf.resv import (
    DmaResvUsage,
    dma_resv_add_fence,
    dma_resv_get_fences,
    dma_resv_lock,
    dma_resv_reserve_fences,
    dma_resv_unlock,
)
from socmem.linux.dmabuf.sync_file import SyncFile, sync_file_create
from socmem.linux.process import UserSpace

PAGE = 4096


class FakeExporter:
    """A minimal exporter recording every op call (like a DRM driver's PRIME export)."""

    def __init__(self, *, dynamic: bool = False, cache: bool = False, mmap: bool = True):
        self.calls: list[tuple[Any, ...]] = []
        self.released = 0
        self.ops = DmaBufOps(
            map_dma_buf=self.map,
            unmap_dma_buf=self.unmap,
            release=self.release,
            attach=lambda b, a: self.calls.append(("attach", a.dev_name)) or 0,
            detach=lambda b, a: self.calls.append(("detach", a.dev_name)),
            pin=(lambda a: self.calls.append(("pin", a.dev_name)) or 0) if dynamic else None,
            unpin=(lambda a: self.calls.append(("unpin", a.dev_name))) if dynamic else None,
            begin_cpu_access=lambda b, d: self.calls.append(("begin", d)) or 0,
            end_cpu_access=lambda b, d: self.calls.append(("end", d)) or 0,
            mmap=(lambda b, v: self.calls.append(("mmap", v.vm_pgoff)) or 0) if mmap else None,
            vmap=lambda b: self.calls.append(("vmap",)) or 0xFFFF800010000000,
            vunmap=lambda b, v: self.calls.append(("vunmap", v)),
            cache_sgt_mapping=cache,
        )

    def map(self, attach: Any, direction: int) -> SgTable:
        self.calls.append(("map", attach.dev_name, direction))
        return SgTable([ScatterlistEntry(0x1000, 0, attach.dmabuf.size, end=True)], 1, 1)

    def unmap(self, attach: Any, sgt: SgTable, direction: int) -> None:
        self.calls.append(("unmap", attach.dev_name, direction))

    def release(self, buf: DmaBuf) -> None:
        self.released += 1
        self.calls.append(("release",))

    def export(self, core: DmaBufCore, size: int = 4 * PAGE, name: str = "fake") -> DmaBuf:
        buf = dma_buf_export(DmaBufExportInfo(name, self.ops, size, O_RDWR, priv=self), core)
        assert isinstance(buf, DmaBuf)
        return buf


class Dev:
    def __init__(self, name: str, secure: bool = False):
        self.name = name
        self.secure = secure


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def _ops(drv: str, tl: str) -> DmaFenceOps:
    return DmaFenceOps(get_driver_name=lambda f: drv, get_timeline_name=lambda f: tl)


def add_fence(buf: DmaBuf, usage: DmaResvUsage, fence: DmaFence) -> None:
    dma_resv_lock(buf.resv)
    assert dma_resv_reserve_fences(buf.resv, 1) == 0
    dma_resv_add_fence(buf.resv, fence, usage)
    dma_resv_unlock(buf.resv)


# -- export -------------------------------------------------------------------------------
def test_export_requires_ops_and_priv(core: DmaBufCore) -> None:
    ex = FakeExporter()
    assert dma_buf_export(DmaBufExportInfo("x", ex.ops, PAGE, priv=None), core) == -errno.EINVAL
    bad = DmaBufOps(map_dma_buf=ex.map, unmap_dma_buf=ex.unmap)  # no release
    assert dma_buf_export(DmaBufExportInfo("x", bad, PAGE, priv=ex), core) == -errno.EINVAL
    half = DmaBufOps(ex.map, ex.unmap, ex.release, pin=lambda a: 0)
    assert dma_buf_export(DmaBufExportInfo("x", half, PAGE, priv=ex), core) == -errno.EINVAL
    both = DmaBufOps(ex.map, ex.unmap, ex.release, pin=lambda a: 0, unpin=lambda a: None,
                     cache_sgt_mapping=True)  # fmt: skip
    assert dma_buf_export(DmaBufExportInfo("x", both, PAGE, priv=ex), core) == -errno.EINVAL
    assert len(core.findings.of_kind("dma-buf.export-invalid")) == 4
    assert len(dma_buf_list(core)) == 0


def test_inode_numbers_monotonic_and_list_newest_first(core: DmaBufCore) -> None:
    ex = FakeExporter()
    bufs = [ex.export(core) for _ in range(3)]
    assert [b.ino for b in bufs] == [1, 2, 3]
    assert [b.ino for b in dma_buf_list(core)] == [3, 2, 1]
    dma_buf_put(bufs[1])
    assert ex.export(core).ino == 4  # never reused
    assert bufs[0].file.f_mode == 0x00080007 and bufs[0].file.f_flags == O_RDWR


def test_flags_keep_only_accmode_and_nonblock(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = dma_buf_export(DmaBufExportInfo("x", ex.ops, PAGE, O_RDWR | O_CLOEXEC, priv=ex), core)
    assert isinstance(b, DmaBuf) and b.file.f_flags == O_RDWR


# -- refcounts and release ----------------------------------------------------------------
def test_release_at_last_put_calls_exporter_release_once(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    get_dma_buf(b)
    assert dma_buf_get(b.file) is b
    assert b.file_count == 3
    dma_buf_put(b)
    dma_buf_put(b)
    assert not b.released and ex.released == 0
    dma_buf_put(b)
    assert b.released and ex.released == 1 and len(dma_buf_list(core)) == 0
    dma_buf_put(b)  # underflow
    assert ex.released == 1
    assert core.findings.of_kind("file.put-after-release")


def test_dma_buf_get_errnos(core: DmaBufCore) -> None:
    assert dma_buf_get(None) == -errno.EBADF
    sf_file = UserSpace(core)
    p = sf_file.spawn("p")
    from socmem.linux.dmabuf.fence import dma_fence_get_stub
    from socmem.linux.process import sync_file_install

    stub = dma_fence_get_stub(core)
    fd = sync_file_install(p, sync_file_create(stub))
    assert dma_buf_get(p.file(fd)) == -errno.EINVAL
    with pytest.raises(KernelError) as e:
        p.dma_buf_get(99)
    assert e.value.errno == errno.EBADF


def test_release_while_attached_is_a_finding(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    a = dma_buf_attach(b, Dev("isp"))
    assert not IS_ERR(a)
    dma_buf_put(b)
    assert b.released
    [f] = core.findings.of_kind("dma-buf.release-while-attached")
    assert "WARN_ON(!list_empty(&dmabuf->attachments))" in f.message
    assert any(h.what == "dma_buf_attach" for h in f.history)
    assert dma_buf_map_attachment(a, DMA_TO_DEVICE) == -errno.EINVAL
    assert core.findings.of_kind("dma-buf.map-without-attach")


def test_release_while_vmapped_is_fatal(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    assert dma_buf_vmap(b)[0] == 0
    dma_buf_put(b)
    [f] = core.findings.of_kind("dma-buf.release-while-vmapped")
    assert f.severity.name == "FATAL"


# -- attach / map -------------------------------------------------------------------------
def test_attach_detach_calls_exporter_and_lists_devices(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    a1 = dma_buf_attach(b, Dev("isp"))
    a2 = dma_buf_attach(b, Dev("display"))
    assert [a.dev_name for a in b.attachments] == ["display", "isp"]  # list_add
    dma_buf_detach(b, a1)
    dma_buf_detach(b, a2)
    assert ex.calls == [("attach", "isp"), ("attach", "display"), ("detach", "isp"),
                        ("detach", "display")]  # fmt: skip
    dma_buf_detach(b, a2)
    assert core.findings.of_kind("dma-buf.use-after-release")
    assert dma_buf_attach(None, Dev("x")) == -errno.EINVAL


def test_attach_refused_by_exporter(core: DmaBufCore) -> None:
    ex = FakeExporter()
    ops = DmaBufOps(ex.map, ex.unmap, ex.release, attach=lambda b, a: -errno.EBUSY)
    b = dma_buf_export(DmaBufExportInfo("x", ops, PAGE, priv=ex), core)
    assert isinstance(b, DmaBuf)
    assert dma_buf_attach(b, Dev("npu")) == -errno.EBUSY and not b.attachments


def test_static_map_not_cached_by_default(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    a = dma_buf_attach(b, Dev("isp"))
    s1 = dma_buf_map_attachment(a, DMA_TO_DEVICE)
    s2 = dma_buf_map_attachment(a, DMA_FROM_DEVICE)
    assert isinstance(s1, SgTable) and isinstance(s2, SgTable) and s1 is not s2
    assert [c for c in ex.calls if c[0] == "map"] == [("map", "isp", 1), ("map", "isp", 2)]
    dma_buf_unmap_attachment(a, s1, DMA_TO_DEVICE)
    dma_buf_unmap_attachment(a, s2, DMA_FROM_DEVICE)
    dma_buf_unmap_attachment(a, s2, DMA_FROM_DEVICE)
    assert core.findings.of_kind("dma-buf.unmap-unknown")
    dma_buf_detach(b, a)


def test_cache_sgt_mapping_same_direction_or_ebusy(core: DmaBufCore) -> None:
    ex = FakeExporter(cache=True)
    b = ex.export(core)
    a = dma_buf_attach(b, Dev("isp"))
    s1 = dma_buf_map_attachment(a, DMA_TO_DEVICE)
    assert dma_buf_map_attachment(a, DMA_TO_DEVICE) is s1
    assert dma_buf_map_attachment(a, DMA_FROM_DEVICE) == -errno.EBUSY
    assert isinstance(s1, SgTable)
    dma_buf_unmap_attachment(a, s1, DMA_TO_DEVICE)  # cached: no-op
    assert [c[0] for c in ex.calls].count("unmap") == 0
    dma_buf_detach(b, a)  # detach unmaps the cached table
    assert ("unmap", "isp", DMA_TO_DEVICE) in ex.calls
    assert not core.findings.of_kind("dma-buf.detach-while-mapped")


def test_dynamic_exporter_static_importer_pins_and_maps_at_attach(core: DmaBufCore) -> None:
    ex = FakeExporter(dynamic=True)
    b = ex.export(core)
    a = dma_buf_attach(b, Dev("display"))
    assert ex.calls[:3] == [("attach", "display"), ("pin", "display"),
                            ("map", "display", DMA_BIDIRECTIONAL)]  # fmt: skip
    assert not IS_ERR(a)
    assert dma_buf_map_attachment(a, DMA_TO_DEVICE) is a.sgt  # bidirectional cache
    dma_buf_detach(b, a)
    assert ex.calls[-3:] == [("unmap", "display", 0), ("unpin", "display"),
                             ("detach", "display")]  # fmt: skip


def test_dynamic_importer_move_notify_pin_unpin(core: DmaBufCore) -> None:
    ex = FakeExporter(dynamic=True)
    b = ex.export(core)
    moved: list[str] = []
    iops = DmaBufAttachOps(move_notify=lambda a: moved.append(a.dev_name), allow_peer2peer=True)
    dyn = dma_buf_dynamic_attach(b, Dev("gpu"), iops)
    stat = dma_buf_attach(FakeExporter().export(core), Dev("isp"))
    assert not IS_ERR(dyn) and dyn.peer2peer and dyn.sgt is None  # type: ignore[union-attr]
    assert dma_buf_dynamic_attach(b, Dev("x"), DmaBufAttachOps()) == -errno.EINVAL
    dma_resv_lock(b.resv)
    assert dma_buf_pin(dyn) == 0  # type: ignore[arg-type]
    sgt = dma_buf_map_attachment(dyn, DMA_TO_DEVICE)  # type: ignore[arg-type]
    assert isinstance(sgt, SgTable)
    dma_buf_move_notify(b)
    dma_buf_unmap_attachment(dyn, sgt, DMA_TO_DEVICE)  # type: ignore[arg-type]
    dma_buf_unpin(dyn)  # type: ignore[arg-type]
    dma_resv_unlock(b.resv)
    assert moved == ["gpu"]
    assert not core.findings.of_kind("dma-resv.not-held")
    # without the lock: lockdep finding; a static attachment may not pin
    dma_buf_map_attachment(dyn, DMA_TO_DEVICE)  # type: ignore[arg-type]
    assert core.findings.of_kind("dma-resv.not-held")
    dma_resv_lock(stat.dmabuf.resv)  # type: ignore[union-attr]
    dma_buf_pin(stat)  # type: ignore[arg-type]
    dma_resv_unlock(stat.dmabuf.resv)  # type: ignore[union-attr]
    assert core.findings.of_kind("dma-buf.pin-static-importer")


def test_static_importer_map_waits_for_kernel_fences(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    ctx = dma_fence_context_alloc(1, core)
    f = DmaFence(_ops("drv", "tl"), ctx, 1, core=core)
    add_fence(b, DmaResvUsage.KERNEL, f)
    core.clock.schedule_in(1000, lambda: dma_fence_signal(f))
    a = dma_buf_attach(b, Dev("isp"))
    sgt = dma_buf_map_attachment(a, DMA_TO_DEVICE)
    assert isinstance(sgt, SgTable) and f.signaled_flag and core.now == 1000


def test_detach_with_mapping_is_a_finding(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    a = dma_buf_attach(b, Dev("isp"))
    dma_buf_map_attachment(a, DMA_TO_DEVICE)
    dma_buf_detach(b, a)
    assert core.findings.of_kind("dma-buf.detach-while-mapped")


# -- CPU access, mmap, vmap ---------------------------------------------------------------
def test_begin_cpu_access_waits_per_direction(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    ctx = dma_fence_context_alloc(1, core)
    rd = DmaFence(_ops("d", "t"), ctx, 1, core=core)
    add_fence(b, DmaResvUsage.READ, rd)
    # a read waits only for WRITE fences: returns at once
    assert dma_buf_begin_cpu_access(b, DMA_FROM_DEVICE) == 0 and core.now == 0
    core.clock.schedule_in(500, lambda: dma_fence_signal(rd))
    assert dma_buf_begin_cpu_access(b, DMA_TO_DEVICE) == 0 and core.now == 500
    assert dma_buf_end_cpu_access(b, DMA_TO_DEVICE) == 0
    assert dma_buf_end_cpu_access(b, DMA_FROM_DEVICE) == 0
    assert not core.findings.of_kind("dma-buf.unbalanced-cpu-access")
    assert dma_buf_end_cpu_access(b, DMA_FROM_DEVICE) == 0
    assert core.findings.of_kind("dma-buf.unbalanced-cpu-access")


def test_vmap_is_refcounted(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    r1, v1 = dma_buf_vmap(b)
    r2, v2 = dma_buf_vmap(b)
    assert r1 == r2 == 0 and v1 == v2 and b.vmapping_counter == 2
    dma_buf_vunmap(b, v1)
    assert [c[0] for c in ex.calls] == ["vmap"]
    dma_buf_vunmap(b, v1)
    assert [c[0] for c in ex.calls] == ["vmap", "vunmap"] and b.vmap_ptr == 0
    dma_buf_vunmap(b, v1)
    assert core.findings.of_kind("dma-buf.vunmap-unbalanced")
    no = FakeExporter()
    ops = DmaBufOps(no.map, no.unmap, no.release)
    nb = dma_buf_export(DmaBufExportInfo("x", ops, PAGE, priv=no), core)
    assert dma_buf_vmap(nb)[0] == -errno.EINVAL  # type: ignore[arg-type]


def test_mmap_bounds_and_missing_op(core: DmaBufCore) -> None:
    ex = FakeExporter()
    b = ex.export(core, 4 * PAGE)
    assert b.file.mmap(Vma(0, 4 * PAGE)) == 0
    assert b.file.mmap(Vma(0, 4 * PAGE, vm_pgoff=1)) == -errno.EINVAL
    vma = Vma(0, 2 * PAGE)
    assert dma_buf_mmap(b, vma, 2) == 0 and vma.file is b.file and b.file_count == 2
    assert dma_buf_mmap(b, Vma(0, 2 * PAGE), 3) == -errno.EINVAL
    nb = FakeExporter(mmap=False).export(core)
    assert nb.file.mmap(Vma(0, PAGE)) == -errno.EINVAL


def test_llseek(core: DmaBufCore) -> None:
    b = FakeExporter().export(core, 3 * PAGE)
    assert b.file.llseek(0, SEEK_END) == 3 * PAGE
    assert b.file.llseek(0, SEEK_SET) == 0
    assert b.file.llseek(0, SEEK_CUR) == -errno.EINVAL
    assert b.file.llseek(1, SEEK_SET) == -errno.EINVAL


# -- ioctls -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "err"),
    [
        (DMA_BUF_SYNC_START, errno.EINVAL),  # no READ/WRITE
        (DMA_BUF_SYNC_END, errno.EINVAL),
        (0x8 | DMA_BUF_SYNC_RW, errno.EINVAL),  # outside the mask
        (1 << 40 | DMA_BUF_SYNC_READ, errno.EINVAL),
        (DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, 0),
        (DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, 0),
        (DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW, 0),
    ],
)
def test_ioctl_sync_flags(core: DmaBufCore, flags: int, err: int) -> None:
    ex = FakeExporter()
    b = ex.export(core)
    if err:
        with pytest.raises(KernelError) as e:
            b.file.ioctl(DMA_BUF_IOCTL_SYNC, DmaBufSync(flags))
        assert e.value.errno == err
        assert not ex.calls
    else:
        assert b.file.ioctl(DMA_BUF_IOCTL_SYNC, DmaBufSync(flags)) == 0
        direction = {1: DMA_FROM_DEVICE, 2: DMA_TO_DEVICE, 3: DMA_BIDIRECTIONAL}[flags & 3]
        assert ex.calls == [("begin", direction)]
        b.file.ioctl(DMA_BUF_IOCTL_SYNC, DmaBufSync(flags | DMA_BUF_SYNC_END))
        assert ex.calls[-1] == ("end", direction)


def test_ioctl_unknown_is_enotty(core: DmaBufCore) -> None:
    b = FakeExporter().export(core)
    with pytest.raises(KernelError) as e:
        b.file.ioctl(0x12345, None)
    assert e.value.errno == errno.ENOTTY


def test_set_name_length_and_renaming_while_attached(core: DmaBufCore) -> None:
    b = FakeExporter().export(core)
    b.file.ioctl(DMA_BUF_SET_NAME_B, "a" * 31)
    assert b.name == "a" * 31
    with pytest.raises(KernelError) as e:
        b.file.ioctl(DMA_BUF_SET_NAME_A, "b" * 32)
    assert e.value.errno == errno.EINVAL and b.name == "a" * 31
    dma_buf_attach(b, Dev("isp"))
    b.file.ioctl(DMA_BUF_SET_NAME_B, "renamed")  # 6.1: allowed with attachments
    assert b.name == "renamed" and b.file.d_path() == "/dmabuf:renamed"
    dma_buf_list(core).set_name_ebusy_if_attached = True  # <= 5.15 behaviour
    with pytest.raises(KernelError) as e:
        b.file.ioctl(DMA_BUF_SET_NAME_B, "again")
    assert e.value.errno == errno.EBUSY


def test_export_sync_file(core: DmaBufCore) -> None:
    b = FakeExporter().export(core)
    arg = DmaBufExportSyncFile(DMA_BUF_SYNC_READ)
    b.file.ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, arg)
    assert isinstance(arg.fd, SyncFile) and arg.fd.fence.signaled_flag  # the stub
    assert arg.fd.fence.context == 0
    for bad in (0, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, 0x10):
        with pytest.raises(KernelError) as e:
            b.file.ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DmaBufExportSyncFile(bad))
        assert e.value.errno == errno.EINVAL
    ctx = dma_fence_context_alloc(2, core)
    w = DmaFence(_ops("d", "w"), ctx, 1, core=core)
    r = DmaFence(_ops("d", "r"), ctx + 1, 1, core=core)
    add_fence(b, DmaResvUsage.WRITE, w)
    add_fence(b, DmaResvUsage.READ, r)
    rd = DmaBufExportSyncFile(DMA_BUF_SYNC_READ)
    b.file.ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, rd)
    assert rd.fd.fence is w  # a read waits for the writer only
    wr = DmaBufExportSyncFile(DMA_BUF_SYNC_WRITE)
    b.file.ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, wr)
    assert {f.timeline_name() for f in wr.fd.fence.fences} == {"w", "r"}  # an array


def test_import_sync_file_usage(core: DmaBufCore) -> None:
    b = FakeExporter().export(core)
    ctx = dma_fence_context_alloc(2, core)
    f1 = DmaFence(_ops("d", "a"), ctx, 1, core=core)
    f2 = DmaFence(_ops("d", "b"), ctx + 1, 1, core=core)
    sf = sync_file_create(f1)
    b.file.ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DmaBufImportSyncFile(DMA_BUF_SYNC_READ, sf))
    b.file.ioctl(
        DMA_BUF_IOCTL_IMPORT_SYNC_FILE,
        DmaBufImportSyncFile(DMA_BUF_SYNC_RW, sync_file_create(f2)),
    )
    assert dma_resv_get_fences(b.resv, DmaResvUsage.WRITE)[1] == [f2]
    assert set(dma_resv_get_fences(b.resv, DmaResvUsage.READ)[1]) == {f1, f2}
    for flags, fd in ((0, sf), (DMA_BUF_SYNC_READ, "not-a-sync-file")):
        with pytest.raises(KernelError) as e:
            b.file.ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DmaBufImportSyncFile(flags, fd))
        assert e.value.errno == errno.EINVAL


def test_poll_in_out_follow_resv(core: DmaBufCore) -> None:
    b = FakeExporter().export(core)
    assert b.file.poll(EPOLLIN | EPOLLOUT) == EPOLLIN | EPOLLOUT
    assert b.file_count == 1  # callbacks ran and dropped their file references
    ctx = dma_fence_context_alloc(1, core)
    rd = DmaFence(_ops("d", "t"), ctx, 1, core=core)
    add_fence(b, DmaResvUsage.READ, rd)
    assert b.file.poll(EPOLLIN | EPOLLOUT) == EPOLLIN  # a reader blocks writers only
    assert b.file_count == 2 and b.cb_out.active  # pending callback holds the file
    assert b.file.poll(EPOLLOUT) == 0  # busy: still not reported
    dma_fence_signal(rd)
    assert b.file_count == 1 and not b.cb_out.active and b.poll_wakeups >= 1
    assert b.file.poll(EPOLLOUT) == EPOLLOUT


# -- bufinfo / fdinfo against the real fixture ------------------------------------------
def test_bufinfo_and_fdinfo_match_fixture_byte_for_byte() -> None:
    """Five virtio_gpu-shaped buffers as the probe made them (export order = inode order;
    each held by the probe's fd, the GEM object's ``obj->dma_buf`` and the PRIME handle
    cache: file count 3; cursor buffers carry a signalled write fence)."""
    bufinfo = need(QEMU / "dma_buf-bufinfo-live.txt").read_text()
    fdinfo = need(QEMU / "dma_buf-fdinfo-live.txt").read_text()
    core = DmaBufCore()
    us = UserSpace(core)
    probe = us.spawn("dmabuf_probe")
    from socmem.linux.dmabuf.dma_buf import File

    for _ in range(4):  # console, pipe, pipe, card0
        probe.open_file(File(core=core))
    ctx = dma_fence_context_alloc(1, core)
    ex = FakeExporter()
    spec = [("scanout-A", 4096000), ("scanout-B", 4096000), ("texture-256", 262144),
            ("cursor-A", 16384), ("cursor-B", 16384)]  # fmt: skip
    seq = {"cursor-A": 7, "cursor-B": 8}
    fds = []
    for name, size in spec:
        b = ex.export(core, size, "virtio_gpu")
        get_dma_buf(b)  # obj->dma_buf
        get_dma_buf(b)  # drm_prime_add_buf_handle
        fd = probe.open_file(b.file, O_CLOEXEC)
        probe.ioctl(fd, DMA_BUF_SET_NAME_B, name)
        if name in seq:
            f = DmaFence(_ops("virtio_gpu", "controlq"), ctx, seq[name], core=core)
            dma_fence_signal(f)
            add_fence(b, DmaResvUsage.WRITE, f)
        fds.append(fd)
    assert fds == [4, 5, 6, 7, 8]
    assert dma_buf_debug_show(core) == bufinfo
    # fdinfo: the dma-buf part of the dump (fds 4..8) must be identical
    ours = "".join(f"== fd {fd} -> {probe.fd_link(fd)}\n" + probe.fdinfo(fd) for fd in fds)
    theirs = fdinfo[fdinfo.index("== fd 4 ->") :]
    assert ours == theirs
