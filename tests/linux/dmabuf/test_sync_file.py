"""sync_file uAPI: SYNC_IOC_MERGE / SYNC_IOC_FILE_INFO / poll, every errno."""

from __future__ import annotations

import errno

import pytest

from socmem.errors import KernelError
from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceOps,
    dma_fence_put,
    dma_fence_signal,
)
from socmem.linux.dmabuf.fence_array import to_dma_fence_array
from socmem.linux.dmabuf.sw_sync import sw_sync_timeline_create
from socmem.linux.dmabuf.sync_file import (
    EPOLLIN,
    SYNC_IOC_FILE_INFO,
    SYNC_IOC_MERGE,
    SyncFileInfo,
    SyncMergeData,
    SyncSetDeadline,
    sync_file_create,
    sync_file_get_fence,
    sync_file_get_name,
)

MOCK_OPS = DmaFenceOps(get_driver_name=lambda f: "drv", get_timeline_name=lambda f: "tl")


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def test_ioctl_numbers() -> None:
    # include/uapi/linux/sync_file.h
    assert SYNC_IOC_MERGE == 0xC0303E03
    assert SYNC_IOC_FILE_INFO == 0xC0383E04


def test_create_get_fence_name(core: DmaBufCore) -> None:
    f = DmaFence(MOCK_OPS, 12, 34, core=core)
    sf = sync_file_create(f)
    assert f.refcount == 2
    got = sync_file_get_fence(sf)
    assert got is f and f.refcount == 3
    dma_fence_put(got)
    assert sync_file_get_fence(object()) is None
    assert sync_file_get_name(sf) == "drv-tl12-34"
    sf.close()
    assert f.refcount == 1
    assert sync_file_get_fence(sf) is None
    with pytest.raises(KernelError) as ei:
        sf.close()
    assert ei.value.errno == errno.EBADF


def test_merge_errors(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    a = tl.create_fence(1)
    for kw in ({"flags": 1}, {"pad": 1}):
        with pytest.raises(KernelError) as ei:
            a.ioctl_merge(SyncMergeData(name="m", fd2=a, **kw))
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as ei:
        a.ioctl_merge(SyncMergeData(name="m", fd2=None))
    assert ei.value.errno == errno.ENOENT
    b = tl.create_fence(2)
    b.close()
    with pytest.raises(KernelError) as ei:
        a.merge("m", b)
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(KernelError) as ei:
        a.ioctl(0x1234, None)
    assert ei.value.errno == errno.ENOTTY


def test_merge_name_truncated_and_inputs_stay_valid(core: DmaBufCore) -> None:
    t1, t2 = sw_sync_timeline_create("a", core), sw_sync_timeline_create("b", core)
    f1, f2 = t1.create_fence(1), t2.create_fence(1)
    m = f1.ioctl(SYNC_IOC_MERGE, SyncMergeData(name="x" * 40, fd2=f2)).fence  # type: ignore[union-attr]
    assert sync_file_get_name(m) == "x" * 31
    assert to_dma_fence_array(m.fence) is not None
    assert f1.poll() == 0 and f2.poll() == 0 and m.poll() == 0


def test_file_info_errors(core: DmaBufCore) -> None:
    t1, t2 = sw_sync_timeline_create("a", core), sw_sync_timeline_create("b", core)
    m = t1.create_fence(1).merge("m", t2.create_fence(1))
    for kw in ({"flags": 1}, {"pad": 1}):
        with pytest.raises(KernelError) as ei:
            m.ioctl_file_info(SyncFileInfo(**kw))
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as ei:
        m.ioctl_file_info(SyncFileInfo(num_fences=1, sync_fence_info=[]))
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as ei:
        m.ioctl_file_info(SyncFileInfo(num_fences=2, sync_fence_info=None))
    assert ei.value.errno == errno.EFAULT


def test_file_info_count_and_fill(core: DmaBufCore) -> None:
    t1, t2 = sw_sync_timeline_create("tlA", core), sw_sync_timeline_create("tlB", core)
    m = t1.create_fence(1).merge("merged", t2.create_fence(1))
    info = m.ioctl(SYNC_IOC_FILE_INFO, SyncFileInfo())
    assert isinstance(info, SyncFileInfo)
    assert (info.name, info.num_fences, info.status, info.sync_fence_info) == (
        "merged",
        2,
        0,
        None,
    )
    out = m.ioctl_file_info(SyncFileInfo(num_fences=5, sync_fence_info=[]))
    assert out.num_fences == 2 and out.status == 0
    assert [(i.obj_name, i.driver_name, i.status) for i in out.sync_fence_info or []] == [
        ("tlA", "sw_sync", 0),
        ("tlB", "sw_sync", 0),
    ]
    core.clock.advance(1000)
    t1.inc(1)
    t2.close()  # errors the pending point with -ENOENT
    out = m.ioctl_file_info(SyncFileInfo(num_fences=2, sync_fence_info=[]))
    infos = out.sync_fence_info or []
    assert [i.status for i in infos] == [1, -errno.ENOENT]
    assert [i.timestamp_ns for i in infos] == [1000, 1000]
    assert out.status == -errno.ENOENT
    # num_fences == 0: status of the whole merged fence (array: first member error)
    assert m.ioctl_file_info(SyncFileInfo()).status == -errno.ENOENT


def test_file_info_status_aggregation_first_non_positive(core: DmaBufCore) -> None:
    ts = [sw_sync_timeline_create(f"t{i}", core) for i in range(3)]
    m = ts[0].create_fence(1)
    for t in ts[1:]:
        m = m.merge("m", t.create_fence(1))
    ts[1].close()  # middle fails
    infos = m.fence_infos()
    assert [i.status for i in infos] == [0, -errno.ENOENT, 0]
    assert m.ioctl_file_info(SyncFileInfo(num_fences=3, sync_fence_info=[])).status == 0
    ts[0].inc(1)
    assert m.ioctl_file_info(SyncFileInfo(num_fences=3, sync_fence_info=[])).status == -errno.ENOENT


def test_poll(core: DmaBufCore) -> None:
    f = DmaFence(MOCK_OPS, 1, 1, core=core)
    sf = sync_file_create(f)
    assert sf.poll() == 0
    assert f.pending_callbacks() == 1
    assert sf.poll() == 0 and f.pending_callbacks() == 1  # one callback only
    f.set_error(-errno.EIO)
    dma_fence_signal(f)
    assert sf.wakeups == 1
    assert sf.poll() == EPOLLIN  # also for a failed fence; never POLLERR


def test_poll_already_signalled_wakes(core: DmaBufCore) -> None:
    f = DmaFence(MOCK_OPS, 1, 1, core=core)
    dma_fence_signal(f)
    sf = sync_file_create(f)
    assert sf.poll() == EPOLLIN and sf.wakeups == 1


def test_close_removes_poll_callback(core: DmaBufCore) -> None:
    f = DmaFence(MOCK_OPS, 1, 1, core=core)
    sf = sync_file_create(f)
    sf.poll()
    sf.close()
    assert f.pending_callbacks() == 0
    dma_fence_put(f)
    assert not core.findings.of_kind("dma-fence.released-unsignaled")


def test_set_deadline(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    sf = tl.create_fence(3)
    with pytest.raises(KernelError) as ei:
        sf.ioctl_set_deadline(SyncSetDeadline(deadline_ns=5, pad=1))
    assert ei.value.errno == errno.EINVAL
    assert sf.ioctl_set_deadline(SyncSetDeadline(deadline_ns=500)) == 0
    assert sf.fence.deadline_ns == 500  # type: ignore[attr-defined]
