"""sw_sync: ``drivers/dma-buf/sw_sync.c`` (v6.12, with the 6.3+ deadline ioctl).

Every open of ``<debugfs>/sync/sw_sync`` is a new :class:`SwSyncTimeline` (a fresh fence
context, value 0, named after the opening task).  ``SW_SYNC_IOC_CREATE_FENCE`` makes a
sync point at ``value`` and returns a sync_file; ``SW_SYNC_IOC_INC`` advances the 32-bit
timeline value and signals, in order, every point it reached; closing the timeline
signals every still-pending point with ``-ENOENT``.  Points compare with the 32-bit
wrap-around rule.  A point created at a reached value is born signalled; one created at
the value of a live pending point is that same fence.
"""

from __future__ import annotations

import bisect
import errno
from dataclasses import dataclass

from socmem.errors import KernelError
from socmem.linux.dmabuf.fence import (
    DMA_FENCE_FLAG_USER_BITS,
    DmaBufCore,
    DmaFence,
    DmaFenceOps,
    dma_fence_context_alloc,
    dma_fence_get,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_seqno_is_later,
    dma_fence_set_error,
    dma_fence_signal,
    get_default_core,
)
from socmem.linux.dmabuf.sync_file import SyncFile, sync_file_create, sync_file_get_fence

__all__ = [
    "SW_SYNC_GET_DEADLINE",
    "SW_SYNC_HAS_DEADLINE_BIT",
    "SW_SYNC_IOC_CREATE_FENCE",
    "SW_SYNC_IOC_INC",
    "SwSyncCreateFenceData",
    "SwSyncGetDeadline",
    "SwSyncTimeline",
    "SyncPt",
    "sw_sync_timeline_create",
    "timeline_fence_ops",
]

_U32 = 0xFFFFFFFF
INT_MAX = 0x7FFFFFFF
SW_SYNC_HAS_DEADLINE_BIT = DMA_FENCE_FLAG_USER_BITS


def _ioc(direction: int, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord("W") << 8 | nr


SW_SYNC_IOC_CREATE_FENCE = _ioc(3, 0, 40)
SW_SYNC_IOC_INC = _ioc(1, 1, 4)
SW_SYNC_GET_DEADLINE = _ioc(3, 2, 16)


@dataclass
class SwSyncCreateFenceData:
    """``struct sw_sync_create_fence_data``: ``value``, ``name`` (ignored), out ``fence``."""

    value: int = 0
    name: str = ""
    fence: SyncFile | None = None


@dataclass
class SwSyncGetDeadline:
    """``struct sw_sync_get_deadline``: in ``fence_fd``; out ``deadline_ns``."""

    deadline_ns: int = 0
    pad: int = 0
    fence_fd: object = None


def _timeline_signaled(fence: DmaFence) -> bool:
    pt = fence
    assert isinstance(pt, SyncPt)
    return not dma_fence_seqno_is_later(pt.seqno, pt.parent.value)


def _timeline_release(fence: DmaFence) -> None:
    assert isinstance(fence, SyncPt)
    parent = fence.parent
    parent._unlink(fence)
    parent._put()


def _timeline_set_deadline(fence: DmaFence, deadline: int) -> None:
    assert isinstance(fence, SyncPt)
    if fence._set_bit(SW_SYNC_HAS_DEADLINE_BIT):
        if deadline < fence.deadline_ns:
            fence.deadline_ns = deadline
    else:
        fence.deadline_ns = deadline


timeline_fence_ops = DmaFenceOps(
    get_driver_name=lambda f: "sw_sync",
    get_timeline_name=lambda f: f.parent.name,  # type: ignore[attr-defined]
    enable_signaling=lambda f: True,
    signaled=_timeline_signaled,
    release=_timeline_release,
    fence_value_str=lambda f: str(f.seqno),
    timeline_value_str=lambda f: str(_s32(f.parent.value)),  # type: ignore[attr-defined]
    set_deadline=_timeline_set_deadline,
)


def _s32(v: int) -> int:
    v &= _U32
    return v - (1 << 32) if v & 0x80000000 else v


class SyncPt(DmaFence):
    """``struct sync_pt``: a point on a sw_sync timeline."""

    def __init__(self, parent: SwSyncTimeline, value: int) -> None:
        super().__init__(timeline_fence_ops, parent.context, value & _U32, core=parent.core)
        self.parent = parent
        self.linked = False  # on parent's pt_list / pt_tree
        self.deadline_ns = 0


class SwSyncTimeline:
    """``struct sync_timeline`` plus its debugfs file (``sw_sync_debugfs_fops``)."""

    def __init__(self, name: str = "sw_sync", core: DmaBufCore | None = None) -> None:
        self.core = core if core is not None else get_default_core()
        self.kref = 1  # the file's reference; each point holds one more
        self.context = dma_fence_context_alloc(1, self.core)
        self.name = name[:31]
        self.value = 0
        self.pt_list: list[SyncPt] = []  # sorted pending points
        self._by_value: dict[int, SyncPt] = {}
        self.closed = False

    # -- kref ------------------------------------------------------------------------
    def _get(self) -> None:
        self.kref += 1

    def _put(self) -> None:
        self.kref -= 1

    def _key(self, pt: SyncPt) -> int:
        return (pt.seqno - self.value) & _U32

    def _unlink(self, pt: SyncPt) -> None:
        if not pt.linked:
            return
        pt.linked = False
        i = bisect.bisect_left(self.pt_list, self._key(pt), key=self._key)
        if i < len(self.pt_list) and self.pt_list[i] is pt:
            del self.pt_list[i]
        else:  # not where the order says: fall back to a scan
            self.pt_list = [p for p in self.pt_list if p is not pt]
        if self._by_value.get(pt.seqno) is pt:
            del self._by_value[pt.seqno]

    # -- kernel internals ------------------------------------------------------------
    def sync_timeline_signal(self, inc: int) -> None:
        """``sync_timeline_signal``: ``value += inc``, signal reached points in order."""
        self.value = (self.value + inc) & _U32
        while self.pt_list:
            pt = self.pt_list[0]
            if not _timeline_signaled(pt):
                break
            del self.pt_list[0]
            pt.linked = False
            if self._by_value.get(pt.seqno) is pt:
                del self._by_value[pt.seqno]
            dma_fence_signal(pt)

    def sync_pt_create(self, value: int) -> SyncPt:
        """``sync_pt_create``: a new point, or the live pending point with that value."""
        value &= _U32
        pt = SyncPt(self, value)
        self._get()
        if not dma_fence_is_signaled(pt):
            other = self._by_value.get(value)
            if other is not None and other.refcount > 0:  # dma_fence_get_rcu succeeded
                dma_fence_get(other)
                self._put()
                pt.freed = True
                return other
            key = self._key(pt)
            i = bisect.bisect_right(self.pt_list, key, key=self._key)
            self.pt_list.insert(i, pt)
            pt.linked = True
            self._by_value[value] = pt
        return pt

    def _check_open(self) -> None:
        if self.closed:
            raise KernelError(errno.EBADF, "sw_sync: timeline file already closed")

    # -- file operations / ioctls ---------------------------------------------------
    def release(self) -> None:
        """``sw_sync_debugfs_release``: pending points fail with ``-ENOENT`` and signal."""
        self._check_open()
        self.closed = True
        pending, self.pt_list = self.pt_list, []
        self._by_value.clear()
        for pt in pending:
            pt.linked = False
            dma_fence_set_error(pt, -errno.ENOENT)
            dma_fence_signal(pt)
        self._put()

    close = release

    def ioctl(self, cmd: int, arg: object) -> object:
        """``sw_sync_ioctl``: dispatch; unknown ``cmd`` → ``ENOTTY``."""
        self._check_open()
        if cmd == SW_SYNC_IOC_CREATE_FENCE and isinstance(arg, SwSyncCreateFenceData):
            return self.ioctl_create_fence(arg)
        if cmd == SW_SYNC_IOC_INC and isinstance(arg, int):
            return self.inc(arg)
        if cmd == SW_SYNC_GET_DEADLINE and isinstance(arg, SwSyncGetDeadline):
            return self.ioctl_get_deadline(arg)
        if cmd in (SW_SYNC_IOC_CREATE_FENCE, SW_SYNC_IOC_INC, SW_SYNC_GET_DEADLINE):
            raise KernelError(errno.EFAULT, "sw_sync_ioctl: bad argument")
        raise KernelError(errno.ENOTTY, f"sw_sync_ioctl: unknown cmd {cmd:#x}")

    def ioctl_create_fence(self, data: SwSyncCreateFenceData) -> SwSyncCreateFenceData:
        """``SW_SYNC_IOC_CREATE_FENCE``: ``data.fence`` = sync_file of a point at ``value``."""
        self._check_open()
        pt = self.sync_pt_create(data.value)
        sync_file = sync_file_create(pt)
        dma_fence_put(pt)
        data.fence = sync_file
        return data

    def create_fence(self, value: int, name: str = "") -> SyncFile:
        """Convenience for ``SW_SYNC_IOC_CREATE_FENCE`` (``sw_sync_fence_create``)."""
        out = self.ioctl_create_fence(SwSyncCreateFenceData(value=value, name=name)).fence
        assert out is not None
        return out

    def inc(self, count: int) -> int:
        """``SW_SYNC_IOC_INC``: add the ``__u32`` ``count`` (in ``INT_MAX`` steps); 0."""
        self._check_open()
        value = count & _U32
        while value > INT_MAX:
            self.sync_timeline_signal(INT_MAX)
            value -= INT_MAX
        self.sync_timeline_signal(value)
        return 0

    def ioctl_get_deadline(self, data: SwSyncGetDeadline) -> SwSyncGetDeadline:
        """``SW_SYNC_GET_DEADLINE`` (6.3+): earliest deadline set on a sw_sync fence.

        Non-zero ``deadline_ns``/``pad`` in, a non-sync_file fd or a fence not of sw_sync →
        ``EINVAL``; no deadline ever set → ``ENOENT``.
        """
        self._check_open()
        if data.deadline_ns or data.pad:
            raise KernelError(errno.EINVAL, "SW_SYNC_GET_DEADLINE: deadline_ns/pad must be 0")
        fence = sync_file_get_fence(data.fence_fd)
        if fence is None:
            raise KernelError(errno.EINVAL, "SW_SYNC_GET_DEADLINE: not a sync_file")
        try:
            if fence.ops is not timeline_fence_ops:
                raise KernelError(errno.EINVAL, "SW_SYNC_GET_DEADLINE: not a sw_sync fence")
            assert isinstance(fence, SyncPt)
            if not fence.test_bit(SW_SYNC_HAS_DEADLINE_BIT):
                raise KernelError(errno.ENOENT, "SW_SYNC_GET_DEADLINE: no deadline set")
            data.deadline_ns = fence.deadline_ns
            return data
        finally:
            dma_fence_put(fence)

    def __repr__(self) -> str:
        return (
            f"<SwSyncTimeline {self.name!r} ctx={self.context} value={self.value}"
            f" pending={len(self.pt_list)}>"
        )


def sw_sync_timeline_create(
    name: str = "sw_sync", core: DmaBufCore | None = None
) -> SwSyncTimeline:
    """``sw_sync_debugfs_open`` → ``sync_timeline_create(name)``: a new timeline file."""
    return SwSyncTimeline(name, core)


def sw_sync_ioctl(file: object, cmd: int, arg: object) -> object:
    """``ioctl(fd, cmd, arg)`` on something that should be a sw_sync timeline file.

    Not an open timeline (e.g. ``None`` for fd -1) → ``EBADF``.
    """
    if not isinstance(file, SwSyncTimeline) or file.closed:
        raise KernelError(errno.EBADF, "ioctl: bad file descriptor")
    return file.ioctl(cmd, arg)
