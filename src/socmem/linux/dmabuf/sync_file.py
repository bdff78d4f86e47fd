"""sync_file: ``drivers/dma-buf/sync_file.c``, ``include/uapi/linux/sync_file.h`` (v6.12).

A :class:`SyncFile` is the open file behind a sync_file fd: it holds one fence (a
container after a merge).  There is no fd table here yet (``linux/process.py`` will own
fds); user-space calls take the :class:`SyncFile` object where the uAPI takes an fd, and
anything that is not an open sync_file plays the part of a bad fd.  At this boundary
errors are raised as :class:`~socmem.errors.KernelError`; in-kernel helpers
(:func:`sync_file_create`, :func:`sync_file_get_fence`) return objects or ``None``.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from socmem.errors import KernelError
from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceCb,
    dma_fence_add_callback,
    dma_fence_get,
    dma_fence_get_status,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_remove_callback,
    dma_fence_set_deadline,
    dma_fence_timestamp,
)
from socmem.linux.dmabuf.fence_unwrap import dma_fence_unwrap_for_each, dma_fence_unwrap_merge

__all__ = [
    "EPOLLIN",
    "SYNC_IOC_FILE_INFO",
    "SYNC_IOC_MERGE",
    "SYNC_IOC_SET_DEADLINE",
    "SyncFenceInfo",
    "SyncFile",
    "SyncFileInfo",
    "SyncMergeData",
    "SyncSetDeadline",
    "sync_file_create",
    "sync_file_get_fence",
    "sync_file_get_name",
]

EPOLLIN = 0x001


def _ioc(direction: int, typ: str, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord(typ) << 8 | nr


_IOC_WRITE, _IOC_READ = 1, 2
SYNC_IOC_MERGE = _ioc(_IOC_READ | _IOC_WRITE, ">", 3, 48)
SYNC_IOC_FILE_INFO = _ioc(_IOC_READ | _IOC_WRITE, ">", 4, 56)
SYNC_IOC_SET_DEADLINE = _ioc(_IOC_WRITE, ">", 5, 16)

_NAME_LEN = 32


def _strscpy(s: str, size: int = _NAME_LEN) -> str:
    return s[: size - 1]


@dataclass
class SyncMergeData:
    """``struct sync_merge_data``: ``name``, ``fd2`` (a :class:`SyncFile`), out ``fence``."""

    name: str = ""
    fd2: object = None
    fence: SyncFile | None = None
    flags: int = 0
    pad: int = 0


@dataclass
class SyncFenceInfo:
    """``struct sync_fence_info``: one leaf fence as FILE_INFO reports it."""

    obj_name: str = ""
    driver_name: str = ""
    status: int = 0
    flags: int = 0
    timestamp_ns: int = 0


@dataclass
class SyncFileInfo:
    """``struct sync_file_info``; ``sync_fence_info`` is the user array (``None`` = NULL)."""

    name: str = ""
    status: int = 0
    flags: int = 0
    num_fences: int = 0
    pad: int = 0
    sync_fence_info: list[SyncFenceInfo] | None = field(default=None)


@dataclass
class SyncSetDeadline:
    """``struct sync_set_deadline`` (6.3+): absolute ``deadline_ns``, ``pad`` must be 0."""

    deadline_ns: int = 0
    pad: int = 0


def _fence_check_cb_func(_f: DmaFence, cb: DmaFenceCb) -> None:
    """``fence_check_cb_func``: wake the poll wait queue."""
    sync_file: SyncFile = cb.data
    sync_file.wakeups += 1


class SyncFile:
    """``struct sync_file``: the file behind a sync_file fd."""

    def __init__(self, fence: DmaFence) -> None:
        self.fence = fence
        self.user_name = ""
        self.cb = DmaFenceCb(data=self)
        self.poll_enabled = False
        self.closed = False
        self.wakeups = 0  # wake_up_all() count on the poll wait queue

    def _check_open(self) -> None:
        if self.closed:
            raise KernelError(errno.EBADF, "sync_file: file already closed")

    # -- file operations -------------------------------------------------------------
    def release(self) -> None:
        """``sync_file_release`` (the last ``close()``); ``EBADF`` if already closed."""
        self._check_open()
        if self.poll_enabled:
            dma_fence_remove_callback(self.fence, self.cb)
        dma_fence_put(self.fence)
        self.closed = True

    close = release

    def poll(self) -> int:
        """``sync_file_poll``: ``EPOLLIN`` once the fence signalled (errors included)."""
        self._check_open()
        if not self.cb.linked and not self.poll_enabled:
            self.poll_enabled = True
            if dma_fence_add_callback(self.fence, self.cb, _fence_check_cb_func) < 0:
                self.wakeups += 1
        return EPOLLIN if dma_fence_is_signaled(self.fence) else 0

    def ioctl(self, cmd: int, arg: object) -> object:
        """``sync_file_ioctl``: dispatch; unknown ``cmd`` → ``ENOTTY``."""
        if cmd == SYNC_IOC_MERGE and isinstance(arg, SyncMergeData):
            return self.ioctl_merge(arg)
        if cmd == SYNC_IOC_FILE_INFO and isinstance(arg, SyncFileInfo):
            return self.ioctl_file_info(arg)
        if cmd == SYNC_IOC_SET_DEADLINE and isinstance(arg, SyncSetDeadline):
            return self.ioctl_set_deadline(arg)
        if cmd in (SYNC_IOC_MERGE, SYNC_IOC_FILE_INFO, SYNC_IOC_SET_DEADLINE):
            raise KernelError(errno.EFAULT, "sync_file_ioctl: bad argument")
        raise KernelError(errno.ENOTTY, f"sync_file_ioctl: unknown cmd {cmd:#x}")

    # -- ioctls ----------------------------------------------------------------------
    def ioctl_merge(self, data: SyncMergeData) -> SyncMergeData:
        """``SYNC_IOC_MERGE``: ``data.fence`` = a new sync_file with both files' fences.

        ``flags``/``pad`` non-zero → ``EINVAL``; ``fd2`` not an open sync_file →
        ``ENOENT``.  The name is truncated to 31 characters.
        """
        self._check_open()
        if data.flags or data.pad:
            raise KernelError(errno.EINVAL, "SYNC_IOC_MERGE: flags and pad must be 0")
        other = data.fd2
        if not isinstance(other, SyncFile) or other.closed:
            raise KernelError(errno.ENOENT, "SYNC_IOC_MERGE: fd2 is not a sync_file")
        merged = _sync_file_merge(_strscpy(data.name), self, other)
        if merged is None:
            raise KernelError(errno.ENOMEM, "SYNC_IOC_MERGE: out of memory")
        data.fence = merged
        return data

    def merge(self, name: str, other: object) -> SyncFile:
        """Convenience for ``SYNC_IOC_MERGE`` (the selftests' ``sync_merge()``)."""
        out = self.ioctl_merge(SyncMergeData(name=name, fd2=other)).fence
        assert out is not None
        return out

    def ioctl_file_info(self, info: SyncFileInfo) -> SyncFileInfo:
        """``SYNC_IOC_FILE_INFO``.

        ``flags``/``pad`` non-zero → ``EINVAL``.  ``num_fences == 0``: only ``name``,
        ``num_fences`` (the count) and ``status`` (``dma_fence_get_status`` of the
        whole).  ``num_fences`` smaller than the count → ``EINVAL``; no array →
        ``EFAULT``.  Otherwise one :class:`SyncFenceInfo` per leaf fence; ``status`` is
        1 if all signalled OK, else that of the first active (0) or failed (<0) fence.
        """
        self._check_open()
        if info.flags or info.pad:
            raise KernelError(errno.EINVAL, "SYNC_IOC_FILE_INFO: flags and pad must be 0")
        leaves = list(dma_fence_unwrap_for_each(self.fence))
        num_fences = len(leaves)
        if not info.num_fences:
            info.status = dma_fence_get_status(self.fence)
        else:
            if info.num_fences < num_fences:
                raise KernelError(errno.EINVAL, "SYNC_IOC_FILE_INFO: num_fences too small")
            if info.sync_fence_info is None:
                raise KernelError(errno.EFAULT, "SYNC_IOC_FILE_INFO: bad sync_fence_info")
            status = 1
            out = []
            for f in leaves:
                fi = _sync_fill_fence_info(f)
                out.append(fi)
                status = status if status <= 0 else fi.status
            info.status = status
            info.sync_fence_info[:] = out
        info.name = sync_file_get_name(self)
        info.num_fences = num_fences
        return info

    def ioctl_set_deadline(self, ts: SyncSetDeadline) -> int:
        """``SYNC_IOC_SET_DEADLINE``: ``pad`` non-zero → ``EINVAL``; forwards the hint."""
        self._check_open()
        if ts.pad:
            raise KernelError(errno.EINVAL, "SYNC_IOC_SET_DEADLINE: pad must be 0")
        dma_fence_set_deadline(self.fence, ts.deadline_ns)
        return 0

    # -- helpers for tests and user-space models --------------------------------------
    def fence_infos(self) -> list[SyncFenceInfo]:
        """FILE_INFO with the two-call protocol of the selftests' ``sync.c``."""
        n = self.ioctl_file_info(SyncFileInfo()).num_fences
        info = self.ioctl_file_info(SyncFileInfo(num_fences=n, sync_fence_info=[]))
        return info.sync_fence_info or []

    def count_with_status(self, status: int) -> int:
        """The selftests' ``sync_fence_count_with_status``."""
        return sum(1 for fi in self.fence_infos() if fi.status == status)

    def __repr__(self) -> str:
        return f"<SyncFile {sync_file_get_name(self)!r} {self.fence!r}>"


def _sync_fill_fence_info(fence: DmaFence) -> SyncFenceInfo:
    """``sync_fill_fence_info``."""
    status = dma_fence_get_status(fence)
    ts = dma_fence_timestamp(fence) if dma_fence_is_signaled(fence) else 0
    return SyncFenceInfo(
        obj_name=_strscpy(fence.timeline_name()),
        driver_name=_strscpy(fence.driver_name()),
        status=status,
        flags=0,
        timestamp_ns=ts,
    )


def sync_file_create(fence: DmaFence) -> SyncFile:
    """``sync_file_create``: a sync_file holding a new reference to ``fence``."""
    dma_fence_get(fence)
    return SyncFile(fence)


def sync_file_get_fence(file: object) -> DmaFence | None:
    """``sync_file_get_fence(fd)``: a new reference to the fence, or ``None``."""
    if not isinstance(file, SyncFile) or file.closed:
        return None
    return dma_fence_get(file.fence)


def sync_file_get_name(sync_file: SyncFile) -> str:
    """``sync_file_get_name``: the merge name, else ``"<drv>-<tl><context>-<seqno>"``."""
    if sync_file.user_name:
        return _strscpy(sync_file.user_name)
    f = sync_file.fence
    return _strscpy(f"{f.driver_name()}-{f.timeline_name()}{f.context}-{f.seqno}")


def _sync_file_merge(name: str, a: SyncFile, b: SyncFile) -> SyncFile | None:
    """``sync_file_merge``: ``dma_fence_unwrap_merge(a->fence, b->fence)``."""
    fence = dma_fence_unwrap_merge(a.fence, b.fence)
    if fence is None:
        return None
    sf = SyncFile(fence)  # takes over the merge's reference
    sf.user_name = _strscpy(name)
    return sf
