"""dma-buf: ``drivers/dma-buf/dma-buf.c``, ``include/linux/dma-buf.h``,
``include/uapi/linux/dma-buf.h`` (Linux **6.1** semantics, the kernel of the fixtures).

Objects and their kernel names:

* :class:`File` — the slice of ``struct file`` the model needs (``f_count``, ``f_flags``,
  ``f_mode``, the inode number, ``fput``/``get_file``, ``f_op->release``/``mmap``/
  ``poll``/``unlocked_ioctl``/``show_fdinfo``).  Processes (:mod:`socmem.linux.process`)
  hold files in their fd tables and mmaps.
* :class:`DmaBuf` — ``struct dma_buf``; :class:`DmaBufFile` is its one file.
* :class:`DmaBufOps` (``struct dma_buf_ops``), :class:`DmaBufAttachOps`
  (``struct dma_buf_attach_ops``), :class:`DmaBufExportInfo`
  (``struct dma_buf_export_info``), :class:`DmaBufAttachment`, :class:`Vma`
  (``struct vm_area_struct``, only what mmap reads).

Rules (6.1):

* :func:`dma_buf_export` WARNs and returns ``-EINVAL`` without ``priv``, ``ops``,
  ``map_dma_buf``, ``unmap_dma_buf`` or ``release``, with ``cache_sgt_mapping`` together
  with pin/unpin, or with only one of pin/unpin.  The inode number comes from a counter
  private to the dma-buf file system (first buffer = 1, per :class:`DmaBufCore`); the
  buffer joins the global list at the head (bufinfo lists newest first); ``f_flags`` keep
  only ``O_ACCMODE | O_NONBLOCK``; ``f_mode`` is ``OPEN_FMODE | FMODE_LSEEK |
  FMODE_OPENED`` (``0x00080007`` for ``O_RDWR``, as in the fixtures).
* The buffer lives as long as its file: fds, mmaps, ``dma_buf_get``/``get_dma_buf``
  references and in-flight poll callbacks each hold one ``f_count``.  The last
  ``fput`` runs ``dma_buf_file_release`` (off the list) then ``dma_buf_release``:
  ``BUG_ON(vmapping_counter)`` (FATAL finding ``dma-buf.release-while-vmapped``),
  ``ops->release``, ``dma_resv_fini`` of an embedded resv, and
  ``WARN_ON(!list_empty(&dmabuf->attachments))`` (finding
  ``dma-buf.release-while-attached``).
* Attachments: :func:`dma_buf_dynamic_attach` (``importer_ops`` must have
  ``move_notify``), the 6.1 *cached mapping* when importer and exporter disagree on
  dynamic-ness (pin + map ``DMA_BIDIRECTIONAL`` at attach time, cached in
  ``attach.sgt``); :func:`dma_buf_map_attachment` returns the cached table (``-EBUSY``
  for another direction unless the cache is bidirectional), otherwise calls
  ``ops->map_dma_buf`` (pinning first for dynamic exporters when
  ``CONFIG_DMABUF_MOVE_NOTIFY`` is off) and, for static importers, waits for the KERNEL
  fences; ``ops.cache_sgt_mapping`` caches the first mapping.  Unmapping the cached table
  is a no-op; detach unmaps (and unpins) it.
* CPU access: ``begin_cpu_access`` calls the exporter, then waits (interruptible, no
  timeout) for the implicit fences: a write waits for usage <= READ, a read for usage
  <= WRITE.  ``end_cpu_access`` only calls the exporter.  The kernel never checks the
  pairing; the model counts open accesses per buffer and reports an ``end`` without a
  ``begin`` as ``dma-buf.unbalanced-cpu-access`` (what a reviewer would flag).
* vmap is counted (``vmapping_counter``): the exporter is called on the first vmap and
  the last vunmap only; an unbalanced or mismatched vunmap is a kernel ``BUG_ON``
  (FATAL finding ``dma-buf.vunmap-unbalanced``).
* uAPI (:meth:`DmaBufFile.ioctl`): ``DMA_BUF_IOCTL_SYNC`` (bits outside ``0x7`` or no
  READ/WRITE bit → ``EINVAL``), ``DMA_BUF_SET_NAME_A/B`` (``strndup_user(buf, 32)``: 31
  characters at most, else ``EINVAL``; 6.1 renames at any time — the ``-EBUSY``-when-
  attached rule of ≤ 5.15 kernels is :attr:`DmaBufList.set_name_ebusy_if_attached`),
  ``DMA_BUF_IOCTL_EXPORT_SYNC_FILE`` / ``IMPORT_SYNC_FILE`` (6.0+), anything else
  ``ENOTTY``.  ``llseek`` knows only ``(0, SEEK_SET)`` and ``(0, SEEK_END)``.
* poll: ``EPOLLIN`` when every fence of usage <= WRITE signalled, ``EPOLLOUT`` for usage
  <= READ; one callback per direction in flight, holding a file reference.

Return conventions: in-kernel functions return ``0``/``-errno``, or an object or a
negative errno where the kernel returns ``ERR_PTR`` (test with :func:`IS_ERR`); file
operations reached from user space raise :class:`~socmem.errors.KernelError`.  WARNs and
BUGs become :class:`~socmem.check.finding.Finding` records in the core's log (kinds
``dma-buf.*``) and execution continues as after a WARN.

Cost: objects per buffer, attachment and mapping; nothing per byte or per page.
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.errors import KernelError
from socmem.linux.clock import MAX_SCHEDULE_TIMEOUT, ns_to_s
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE
from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceCb,
    dma_fence_add_callback,
    dma_fence_get,
    dma_fence_get_stub,
    dma_fence_put,
    get_default_core,
)
from socmem.linux.dmabuf.fence_unwrap import dma_fence_unwrap_for_each
from socmem.linux.dmabuf.resv import (
    DmaResv,
    DmaResvUsage,
    dma_resv_add_fence,
    dma_resv_assert_held,
    dma_resv_fini,
    dma_resv_for_each_fence,
    dma_resv_get_singleton,
    dma_resv_lock,
    dma_resv_reserve_fences,
    dma_resv_unlock,
    dma_resv_usage_rw,
    dma_resv_wait_timeout,
)
from socmem.linux.dmabuf.sync_file import SyncFile, sync_file_create, sync_file_get_fence
from socmem.trace.bufinfo import BufFence, DmaBufInfo, FdInfo, render_bufinfo, render_fdinfo

__all__ = [
    "DMA_BUF_IOCTL_EXPORT_SYNC_FILE",
    "DMA_BUF_IOCTL_IMPORT_SYNC_FILE",
    "DMA_BUF_IOCTL_SYNC",
    "DMA_BUF_NAME_LEN",
    "DMA_BUF_SET_NAME_A",
    "DMA_BUF_SET_NAME_B",
    "DMA_BUF_SYNC_END",
    "DMA_BUF_SYNC_READ",
    "DMA_BUF_SYNC_RW",
    "DMA_BUF_SYNC_START",
    "DMA_BUF_SYNC_VALID_FLAGS_MASK",
    "DMA_BUF_SYNC_WRITE",
    "EPOLLERR",
    "EPOLLIN",
    "EPOLLOUT",
    "IS_ERR",
    "O_ACCMODE",
    "O_CLOEXEC",
    "O_NONBLOCK",
    "O_RDONLY",
    "O_RDWR",
    "O_WRONLY",
    "PTR_ERR",
    "VM_SHARED",
    "DmaBuf",
    "DmaBufAttachOps",
    "DmaBufAttachment",
    "DmaBufExportInfo",
    "DmaBufExportSyncFile",
    "DmaBufFile",
    "DmaBufImportSyncFile",
    "DmaBufList",
    "DmaBufOps",
    "DmaBufSync",
    "FdContext",
    "File",
    "SyncFileFile",
    "Vma",
    "dma_buf_attach",
    "dma_buf_attachment_is_dynamic",
    "dma_buf_begin_cpu_access",
    "dma_buf_debug_show",
    "dma_buf_detach",
    "dma_buf_dynamic_attach",
    "dma_buf_end_cpu_access",
    "dma_buf_export",
    "dma_buf_get",
    "dma_buf_infos",
    "dma_buf_is_dynamic",
    "dma_buf_list",
    "dma_buf_map_attachment",
    "dma_buf_map_attachment_unlocked",
    "dma_buf_mmap",
    "dma_buf_move_notify",
    "dma_buf_pin",
    "dma_buf_put",
    "dma_buf_show_fdinfo",
    "dma_buf_unmap_attachment",
    "dma_buf_unmap_attachment_unlocked",
    "dma_buf_unpin",
    "dma_buf_vmap",
    "dma_buf_vunmap",
    "get_dma_buf",
    "live_buffers",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# include/uapi/asm-generic/fcntl.h
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3
O_NONBLOCK = 0o4000
O_CLOEXEC = 0o2000000
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2

# include/linux/fs.h (6.1)
FMODE_READ = 0x1
FMODE_WRITE = 0x2
FMODE_LSEEK = 0x4
FMODE_OPENED = 0x80000

# include/linux/mm.h
VM_READ = 0x1
VM_WRITE = 0x2
VM_SHARED = 0x8
VM_MAYSHARE = 0x80

# include/uapi/linux/eventpoll.h
EPOLLIN = 0x001
EPOLLOUT = 0x004
EPOLLERR = 0x008

# include/uapi/linux/dma-buf.h
DMA_BUF_SYNC_READ = 1 << 0
DMA_BUF_SYNC_WRITE = 2 << 0
DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE
DMA_BUF_SYNC_START = 0 << 2
DMA_BUF_SYNC_END = 1 << 2
DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END
DMA_BUF_NAME_LEN = 32

_IOC_WRITE, _IOC_READ = 1, 2


def _ioc(direction: int, typ: str, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord(typ) << 8 | nr


DMA_BUF_IOCTL_SYNC = _ioc(_IOC_WRITE, "b", 0, 8)
DMA_BUF_SET_NAME_A = _ioc(_IOC_WRITE, "b", 1, 4)  # u32 (32-bit user space)
DMA_BUF_SET_NAME_B = _ioc(_IOC_WRITE, "b", 1, 8)  # u64
DMA_BUF_IOCTL_EXPORT_SYNC_FILE = _ioc(_IOC_READ | _IOC_WRITE, "b", 2, 8)
DMA_BUF_IOCTL_IMPORT_SYNC_FILE = _ioc(_IOC_WRITE, "b", 3, 8)

#: mount id of the dmabuf pseudo file system as /proc/<pid>/fdinfo prints it (opaque,
#: system specific; 10 on the fixture board).
DMABUF_MNT_ID = 10
ANON_INODE_MNT_ID = 13


def IS_ERR(x: object) -> bool:
    """``IS_ERR()``: a negative errno stands for ``ERR_PTR(-errno)``."""
    return isinstance(x, int) and not isinstance(x, bool) and x < 0


def PTR_ERR(x: object) -> int:
    """``PTR_ERR()``: the errno of an error value (0 for a valid object)."""
    return x if IS_ERR(x) else 0  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------
# struct file
# ---------------------------------------------------------------------------------------
class FdContext(Protocol):
    """What a file operation needs from the calling process: fd lookup and install."""

    def fget(self, fd: int) -> File | None:
        """``fget(fd)``: the open file (a new reference) or ``None``."""
        ...

    def install(self, file: File, flags: int) -> int:
        """``get_unused_fd_flags`` + ``fd_install``: the new fd (takes the reference)."""
        ...


class File:
    """``struct file``: a reference-counted open file.

    ``fput`` of the last reference runs :meth:`release` (``f_op->release`` and the dentry
    release).  Subclasses are the kernel's ``file_operations``.
    """

    mnt_id = ANON_INODE_MNT_ID

    def __init__(self, *, f_flags: int = O_RDWR, ino: int = 0, core: DmaBufCore | None = None):
        self.core = core if core is not None else get_default_core()
        self.f_count = 1
        self.f_flags = f_flags
        self.f_mode = ((f_flags + 1) & O_ACCMODE) | FMODE_LSEEK | FMODE_OPENED
        self.f_pos = 0
        self.ino = ino
        self.released = False

    # -- refcount -------------------------------------------------------------------
    def get_file(self) -> File:
        """``get_file()``: one more reference."""
        if self.f_count <= 0:
            self.core.warn(
                "file.get-after-release",
                "refcount_t: addition on 0; use-after-free.",
                subject=self.d_path(),
                severity=Severity.ERROR,
            )
            return self
        self.f_count += 1
        return self

    def fput(self) -> None:
        """``fput()``: drop a reference; the last one releases the file."""
        if self.f_count <= 0:
            self.core.warn(
                "file.put-after-release",
                "refcount_t: underflow; use-after-free.",
                subject=self.d_path(),
                severity=Severity.ERROR,
            )
            return
        self.f_count -= 1
        if self.f_count == 0:
            self.released = True
            self.release()

    # -- file operations ------------------------------------------------------------
    def release(self) -> None:
        """``f_op->release`` (and the dentry's ``d_release``)."""

    def d_path(self) -> str:
        """The ``/proc/<pid>/fd/<fd>`` link target."""
        return "anon_inode:[file]"

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int:
        """``f_op->unlocked_ioctl``; the default is ``ENOTTY``."""
        raise KernelError(errno.ENOTTY, f"ioctl {cmd:#x}: not supported by this file")

    def mmap(self, vma: Vma) -> int:
        """``f_op->mmap``: 0 or ``-errno``; files without one give ``-ENODEV``."""
        return -errno.ENODEV

    def llseek(self, offset: int, whence: int) -> int:
        """``f_op->llseek``; non-seekable by default (``-ESPIPE``)."""
        return -errno.ESPIPE

    def poll(self, events: int = EPOLLIN | EPOLLOUT) -> int:
        """``f_op->poll``: ready events (``DEFAULT_POLLMASK`` subset by default)."""
        return events

    def show_fdinfo(self) -> dict[str, Any]:
        """Fields ``f_op->show_fdinfo`` adds to ``/proc/<pid>/fdinfo/<fd>``."""
        return {}


class SyncFileFile(File):
    """The ``anon_inode:sync_file`` file around a :class:`SyncFile` (sync_file.c fops)."""

    mnt_id = ANON_INODE_MNT_ID

    def __init__(self, sync_file: SyncFile, core: DmaBufCore | None = None) -> None:
        super().__init__(f_flags=O_RDONLY, core=core or sync_file.fence.core)
        self.sync_file = sync_file

    def release(self) -> None:
        """``sync_file_release``."""
        if not self.sync_file.closed:
            self.sync_file.release()

    def d_path(self) -> str:
        return "anon_inode:sync_file"

    def poll(self, events: int = EPOLLIN) -> int:
        """``sync_file_poll``."""
        return self.sync_file.poll()

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int:
        """``sync_file_ioctl``."""
        self.sync_file.ioctl(cmd, arg)
        return 0


# ---------------------------------------------------------------------------------------
# ops, export info, attachments
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DmaBufOps:
    """``struct dma_buf_ops`` (6.1).  Hooks take what the C hooks take.

    ``map_dma_buf(attach, dir) -> SgTable | -errno``; ``vmap(dmabuf) -> vaddr | -errno``
    (the ``iosys_map`` is its address); ``mmap(dmabuf, vma) -> 0 | -errno``;
    ``begin/end_cpu_access(dmabuf, dir) -> 0 | -errno``; ``attach(dmabuf, attach) -> 0 |
    -errno``; ``pin(attach) -> 0 | -errno``.
    """

    map_dma_buf: Callable[[DmaBufAttachment, int], SgTable | int] | None = None
    unmap_dma_buf: Callable[[DmaBufAttachment, SgTable, int], None] | None = None
    release: Callable[[DmaBuf], None] | None = None
    attach: Callable[[DmaBuf, DmaBufAttachment], int] | None = None
    detach: Callable[[DmaBuf, DmaBufAttachment], None] | None = None
    pin: Callable[[DmaBufAttachment], int] | None = None
    unpin: Callable[[DmaBufAttachment], None] | None = None
    begin_cpu_access: Callable[[DmaBuf, int], int] | None = None
    end_cpu_access: Callable[[DmaBuf, int], int] | None = None
    mmap: Callable[[DmaBuf, Vma], int] | None = None
    vmap: Callable[[DmaBuf], int] | None = None
    vunmap: Callable[[DmaBuf, int], None] | None = None
    cache_sgt_mapping: bool = False


@dataclass(frozen=True)
class DmaBufAttachOps:
    """``struct dma_buf_attach_ops``: a dynamic importer's hooks."""

    move_notify: Callable[[DmaBufAttachment], None] | None = None
    allow_peer2peer: bool = False


@dataclass
class DmaBufExportInfo:
    """``struct dma_buf_export_info`` (``DEFINE_DMA_BUF_EXPORT_INFO``: ``flags`` 0)."""

    exp_name: str = ""
    ops: DmaBufOps | None = None
    size: int = 0
    flags: int = 0
    resv: DmaResv | None = None
    priv: Any = None
    owner: str = ""


@dataclass(eq=False)
class DmaBufAttachment:
    """``struct dma_buf_attachment``.

    ``sgt``/``dir`` are the cached mapping (6.1); ``mappings`` are the sg tables handed
    out and not yet unmapped (model bookkeeping for findings).
    """

    dmabuf: DmaBuf
    dev: Any
    importer_ops: DmaBufAttachOps | None = None
    importer_priv: Any = None
    peer2peer: bool = False
    priv: Any = None
    sgt: SgTable | None = None
    dir: int = DMA_BIDIRECTIONAL
    mappings: list[tuple[SgTable, int]] = field(default_factory=list)
    detached: bool = False
    pins: int = 0

    @property
    def dev_name(self) -> str:
        """``dev_name(attach->dev)``."""
        return str(getattr(self.dev, "name", self.dev))

    def __repr__(self) -> str:
        return f"<DmaBufAttachment {self.dev_name} ino={self.dmabuf.ino}>"


@dataclass(eq=False)
class Vma:
    """``struct vm_area_struct``: what dma-buf mmap code reads."""

    vm_start: int
    vm_end: int
    vm_pgoff: int = 0
    vm_flags: int = VM_READ | VM_WRITE | VM_SHARED | VM_MAYSHARE
    file: File | None = None
    vm_private_data: Any = None

    @property
    def pages(self) -> int:
        """``vma_pages()``."""
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT


# ---------------------------------------------------------------------------------------
# the global list (db_list) and the inode counter, per core
# ---------------------------------------------------------------------------------------
class DmaBufList:
    """``db_list`` and ``dmabuf_inode`` of dma-buf.c, one per :class:`DmaBufCore`."""

    def __init__(self, core: DmaBufCore) -> None:
        self.core = core
        self.buffers: list[DmaBuf] = []  # head first: newest first
        self.next_ino = 0
        self.exported = 0
        self.released = 0
        #: kernels <= 5.15 refused DMA_BUF_SET_NAME with attachments (-EBUSY); 6.1 does not
        self.set_name_ebusy_if_attached = False

    def __iter__(self) -> Any:
        return iter(list(self.buffers))

    def __len__(self) -> int:
        return len(self.buffers)

    @property
    def total_bytes(self) -> int:
        """Sum of the live buffers' sizes (bufinfo's total)."""
        return sum(b.size for b in self.buffers)


_LISTS: weakref.WeakKeyDictionary[DmaBufCore, DmaBufList] = weakref.WeakKeyDictionary()


def dma_buf_list(core: DmaBufCore | None = None) -> DmaBufList:
    """The live buffers of ``core`` (``db_list``)."""
    core = core if core is not None else get_default_core()
    lst = _LISTS.get(core)
    if lst is None:
        lst = DmaBufList(core)
        _LISTS[core] = lst
    return lst


@dataclass(eq=False)
class _PollCb:
    """``struct dma_buf_poll_cb_t``."""

    cb: DmaFenceCb
    active: int = 0


class DmaBuf:
    """``struct dma_buf``: size, exporter, ops, priv, resv, attachments, vmap count."""

    def __init__(self, exp_info: DmaBufExportInfo, core: DmaBufCore) -> None:
        assert exp_info.ops is not None
        self.core = core
        self.ops: DmaBufOps = exp_info.ops
        self.size = exp_info.size
        self.exp_name = exp_info.exp_name
        self.owner = exp_info.owner
        self.priv = exp_info.priv
        self.name: str | None = None
        self.own_resv = exp_info.resv is None
        self.resv = exp_info.resv if exp_info.resv is not None else DmaResv(core)
        self.attachments: list[DmaBufAttachment] = []
        self.vmapping_counter = 0
        self.vmap_ptr = 0
        self.cpu_access = 0  # open begin_cpu_access brackets (model bookkeeping)
        self.cb_in = _PollCb(DmaFenceCb(data=self))
        self.cb_out = _PollCb(DmaFenceCb(data=self))
        self.poll_wakeups = 0
        self.released = False
        self.history: list[HistoryEvent] = []
        lst = dma_buf_list(core)
        lst.next_ino += 1
        self.ino = lst.next_ino
        self.resv.name = f"dmabuf:{self.ino}"
        self.file = DmaBufFile(self, exp_info.flags)
        self.event("dma_buf_export", f"{self.exp_name} size={self.size} ino={self.ino}")

    # -- helpers -----------------------------------------------------------------------
    def event(self, what: str, detail: str = "") -> None:
        """Append to the buffer's history."""
        self.history.append(HistoryEvent(ns_to_s(self.core.now), what, detail))

    def label(self) -> str:
        """``dmabuf:<ino>(<exp_name>[/<name>])`` for findings."""
        name = f"/{self.name}" if self.name else ""
        return f"dmabuf:{self.ino}({self.exp_name}{name})"

    def warn(
        self, kind: str, message: str, severity: Severity = Severity.WARNING, **data: Any
    ) -> Finding:
        """Record a finding about this buffer, with its history."""
        f = self.core.warn(kind, message, subject=self.label(), severity=severity, **data)
        f.history.extend(self.history)
        return f

    @property
    def file_count(self) -> int:
        """``file_count(dmabuf->file)``."""
        return self.file.f_count

    def __repr__(self) -> str:
        state = "released" if self.released else f"count={self.file.f_count}"
        return f"<DmaBuf ino={self.ino} {self.exp_name} {self.size} {self.name!r} {state}>"


class DmaBufFile(File):
    """The dma-buf's ``struct file`` (``dma_buf_fops``, ``alloc_file_pseudo``)."""

    mnt_id = DMABUF_MNT_ID

    def __init__(self, dmabuf: DmaBuf, flags: int) -> None:
        super().__init__(f_flags=flags & (O_ACCMODE | O_NONBLOCK), ino=dmabuf.ino, core=dmabuf.core)
        # alloc_file_pseudo(flags): OPEN_FMODE(flags) before the flags are masked
        self.f_mode = ((flags + 1) & O_ACCMODE) | FMODE_LSEEK | FMODE_OPENED
        self.dmabuf = dmabuf

    def release(self) -> None:
        """``dma_buf_file_release`` (off ``db_list``) then ``dma_buf_release``."""
        buf = self.dmabuf
        lst = dma_buf_list(buf.core)
        if buf in lst.buffers:
            lst.buffers.remove(buf)
        _dma_buf_release(buf)

    def d_path(self) -> str:
        """``dmabuffs_dname``: ``/dmabuf:<name>`` (empty name allowed)."""
        return f"/dmabuf:{(self.dmabuf.name or '')[: DMA_BUF_NAME_LEN - 1]}"

    def mmap(self, vma: Vma) -> int:
        """``dma_buf_mmap_internal``."""
        buf = self.dmabuf
        if buf.ops.mmap is None:
            return -errno.EINVAL
        if vma.vm_pgoff + vma.pages > buf.size >> PAGE_SHIFT:
            return -errno.EINVAL
        ret = buf.ops.mmap(buf, vma)
        if ret == 0:
            buf.event("mmap", f"pgoff={vma.vm_pgoff} pages={vma.pages}")
        return ret

    def llseek(self, offset: int, whence: int) -> int:
        """``dma_buf_llseek``: the size for ``(0, SEEK_END)``, 0 for ``(0, SEEK_SET)``."""
        if whence == SEEK_END:
            base = self.dmabuf.size
        elif whence == SEEK_SET:
            base = 0
        else:
            return -errno.EINVAL
        if offset != 0:
            return -errno.EINVAL
        return base + offset

    def poll(self, events: int = EPOLLIN | EPOLLOUT) -> int:
        """``dma_buf_poll``."""
        return _dma_buf_poll(self.dmabuf, events)

    def show_fdinfo(self) -> dict[str, Any]:
        """``dma_buf_show_fdinfo``: size, count (without procfs' temporary ref), names."""
        buf = self.dmabuf
        return {
            "size": buf.size,
            "count": self.f_count,
            "exp_name": buf.exp_name,
            "name": buf.name,
        }

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int:
        """``dma_buf_ioctl``: raises :class:`KernelError` with the kernel's errno."""
        ret = _dma_buf_ioctl(self.dmabuf, cmd, arg, files)
        if ret < 0:
            raise KernelError(-ret, f"dma_buf_ioctl({cmd:#x}) on {self.dmabuf.label()}")
        return ret


# ---------------------------------------------------------------------------------------
# export / get / put / release
# ---------------------------------------------------------------------------------------
def dma_buf_export(exp_info: DmaBufExportInfo, core: DmaBufCore | None = None) -> DmaBuf | int:
    """``dma_buf_export``: a new buffer (file count 1) or ``-EINVAL``."""
    core = core if core is not None else get_default_core()
    ops = exp_info.ops
    if (
        exp_info.priv is None
        or ops is None
        or ops.map_dma_buf is None
        or ops.unmap_dma_buf is None
        or ops.release is None
    ):
        core.warn(
            "dma-buf.export-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_export: WARN_ON(!exp_info->priv || "
            "!exp_info->ops || !ops->map_dma_buf || !ops->unmap_dma_buf || !ops->release)",
            subject=exp_info.exp_name,
        )
        return -errno.EINVAL
    if ops.cache_sgt_mapping and (ops.pin is not None or ops.unpin is not None):
        core.warn(
            "dma-buf.export-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_export: "
            "WARN_ON(ops->cache_sgt_mapping && (ops->pin || ops->unpin))",
            subject=exp_info.exp_name,
        )
        return -errno.EINVAL
    if (ops.pin is None) != (ops.unpin is None):
        core.warn(
            "dma-buf.export-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_export: WARN_ON(!ops->pin != !ops->unpin)",
            subject=exp_info.exp_name,
        )
        return -errno.EINVAL
    buf = DmaBuf(exp_info, core)
    lst = dma_buf_list(core)
    lst.buffers.insert(0, buf)  # list_add: at the head
    lst.exported += 1
    return buf


def get_dma_buf(dmabuf: DmaBuf) -> DmaBuf:
    """``get_dma_buf``: one more file reference."""
    dmabuf.file.get_file()
    return dmabuf


def dma_buf_get(file: File | None) -> DmaBuf | int:
    """``dma_buf_get(fd)`` given the fd's file (``fget`` done by the caller, or ``None``).

    Takes a file reference: ``-EBADF`` for no file, ``-EINVAL`` for another kind of
    file.  :meth:`socmem.linux.process.Process.dma_buf_get` takes an fd.
    """
    if file is None or file.released:
        return -errno.EBADF
    if not isinstance(file, DmaBufFile):
        return -errno.EINVAL
    file.get_file()
    return file.dmabuf


def dma_buf_put(dmabuf: DmaBuf | None) -> None:
    """``dma_buf_put``: ``fput`` of the buffer's file."""
    if dmabuf is None:
        get_default_core().warn(
            "dma-buf.put-null",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_put: WARN_ON(!dmabuf || !dmabuf->file)",
        )
        return
    dmabuf.file.fput()


def _dma_buf_release(buf: DmaBuf) -> None:
    """``dma_buf_release`` (the dentry's ``d_release``)."""
    buf.event("dma_buf_release")
    if buf.vmapping_counter:
        buf.warn(
            "dma-buf.release-while-vmapped",
            "kernel BUG at drivers/dma-buf/dma-buf.c: dma_buf_release: "
            "BUG_ON(dmabuf->vmapping_counter)",
            Severity.FATAL,
            vmapping_counter=buf.vmapping_counter,
        )
    assert buf.ops.release is not None
    buf.ops.release(buf)
    if buf.own_resv:
        dma_resv_fini(buf.resv)
    if buf.attachments:
        buf.warn(
            "dma-buf.release-while-attached",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_release: "
            "WARN_ON(!list_empty(&dmabuf->attachments))",
            attached=[a.dev_name for a in buf.attachments],
        )
    buf.released = True
    dma_buf_list(buf.core).released += 1


def _check_alive(buf: DmaBuf, what: str) -> bool:
    if buf.released:
        buf.warn(
            "dma-buf.use-after-release",
            f"BUG: KASAN: use-after-free in {what} (dma_buf {buf.label()} already released)",
            Severity.ERROR,
        )
        return False
    return True


# ---------------------------------------------------------------------------------------
# attach / detach / pin / map
# ---------------------------------------------------------------------------------------
def dma_buf_attachment_is_dynamic(attach: DmaBufAttachment) -> bool:
    """``dma_buf_attachment_is_dynamic``: the importer gave ``importer_ops``."""
    return attach.importer_ops is not None


def dma_buf_is_dynamic(dmabuf: DmaBuf) -> bool:
    """``dma_buf_is_dynamic``: the exporter implements ``pin``."""
    return dmabuf.ops.pin is not None


def _map_dma_buf(attach: DmaBufAttachment, direction: int) -> SgTable | int:
    """``__map_dma_buf``: exporter map, then static importers wait for KERNEL fences."""
    buf = attach.dmabuf
    assert buf.ops.map_dma_buf is not None and buf.ops.unmap_dma_buf is not None
    sgt = buf.ops.map_dma_buf(attach, direction)
    if sgt is None or IS_ERR(sgt):
        return sgt
    assert isinstance(sgt, SgTable)
    if not dma_buf_attachment_is_dynamic(attach):
        ret = dma_resv_wait_timeout(buf.resv, DmaResvUsage.KERNEL, True, MAX_SCHEDULE_TIMEOUT)
        if ret < 0:
            buf.ops.unmap_dma_buf(attach, sgt, direction)
            return ret
    return sgt


def _unmap_dma_buf(attach: DmaBufAttachment, sgt: SgTable, direction: int) -> None:
    assert attach.dmabuf.ops.unmap_dma_buf is not None
    attach.dmabuf.ops.unmap_dma_buf(attach, sgt, direction)


def dma_buf_dynamic_attach(
    dmabuf: DmaBuf | None,
    dev: Any,
    importer_ops: DmaBufAttachOps | None = None,
    importer_priv: Any = None,
) -> DmaBufAttachment | int:
    """``dma_buf_dynamic_attach``: a new attachment or ``-errno`` (exporter refusal)."""
    if dmabuf is None or dev is None:
        get_default_core().warn(
            "dma-buf.attach-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_dynamic_attach: WARN_ON(!dmabuf || !dev)",
        )
        return -errno.EINVAL
    if importer_ops is not None and importer_ops.move_notify is None:
        dmabuf.warn(
            "dma-buf.attach-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_dynamic_attach: "
            "WARN_ON(importer_ops && !importer_ops->move_notify)",
        )
        return -errno.EINVAL
    if not _check_alive(dmabuf, "dma_buf_dynamic_attach"):
        return -errno.EINVAL
    attach = DmaBufAttachment(dmabuf, dev, importer_ops, importer_priv)
    if importer_ops is not None:
        attach.peer2peer = importer_ops.allow_peer2peer
    if dmabuf.ops.attach is not None:
        ret = dmabuf.ops.attach(dmabuf, attach)
        if ret:
            dmabuf.event("attach-refused", f"{attach.dev_name}: {ret}")
            return ret
    dmabuf.attachments.insert(0, attach)  # list_add under the resv lock
    dmabuf.event("dma_buf_attach", attach.dev_name)
    if dma_buf_attachment_is_dynamic(attach) != dma_buf_is_dynamic(dmabuf):
        # 6.1: cache a bidirectional mapping (pinning a dynamic exporter first)
        ret = 0
        if dma_buf_is_dynamic(dmabuf):
            assert dmabuf.ops.pin is not None
            ret = dmabuf.ops.pin(attach)
            if not ret:
                attach.pins += 1
        if not ret:
            sgt = _map_dma_buf(attach, DMA_BIDIRECTIONAL)
            if sgt is None:
                sgt = -errno.ENOMEM
            if IS_ERR(sgt):
                ret = sgt  # type: ignore[assignment]
                if dma_buf_is_dynamic(dmabuf):
                    assert dmabuf.ops.unpin is not None
                    dmabuf.ops.unpin(attach)
                    attach.pins -= 1
            else:
                attach.sgt = sgt  # type: ignore[assignment]
                attach.dir = DMA_BIDIRECTIONAL
        if ret:
            dma_buf_detach(dmabuf, attach)
            return ret
    return attach


def dma_buf_attach(dmabuf: DmaBuf | None, dev: Any) -> DmaBufAttachment | int:
    """``dma_buf_attach``: a static importer's attachment."""
    return dma_buf_dynamic_attach(dmabuf, dev, None, None)


def dma_buf_detach(dmabuf: DmaBuf | None, attach: DmaBufAttachment | None) -> None:
    """``dma_buf_detach``: drop the cached mapping, unlink, ``ops->detach``.

    Mappings still handed out (not the cached one) are the importer's bug: finding
    ``dma-buf.detach-while-mapped``.  Detaching twice or from a released buffer:
    ``dma-buf.use-after-release``.
    """
    if dmabuf is None or attach is None:
        get_default_core().warn(
            "dma-buf.detach-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_detach: WARN_ON(!dmabuf || !attach)",
        )
        return
    if attach.detached or attach.dmabuf is not dmabuf:
        dmabuf.warn(
            "dma-buf.use-after-release",
            f"BUG: KASAN: use-after-free in dma_buf_detach (attachment {attach.dev_name} "
            "already detached or of another buffer)",
            Severity.ERROR,
        )
        return
    if dmabuf.released:
        _check_alive(dmabuf, "dma_buf_detach")
    if attach.mappings:
        dmabuf.warn(
            "dma-buf.detach-while-mapped",
            f"dma_buf_detach: {attach.dev_name} detaches with {len(attach.mappings)} "
            "mapping(s) not unmapped (dma_buf_unmap_attachment missing)",
            Severity.ERROR,
            dev=attach.dev_name,
        )
    if attach.sgt is not None:
        dyn = dma_buf_is_dynamic(dmabuf)
        if dyn:
            dma_resv_lock(dmabuf.resv)
        _unmap_dma_buf(attach, attach.sgt, attach.dir)
        if dyn:
            assert dmabuf.ops.unpin is not None
            dmabuf.ops.unpin(attach)
            attach.pins -= 1
            dma_resv_unlock(dmabuf.resv)
        attach.sgt = None
    if attach in dmabuf.attachments:
        dmabuf.attachments.remove(attach)
    if dmabuf.ops.detach is not None:
        dmabuf.ops.detach(dmabuf, attach)
    attach.detached = True
    dmabuf.event("dma_buf_detach", attach.dev_name)


def dma_buf_pin(attach: DmaBufAttachment) -> int:
    """``dma_buf_pin``: dynamic importers only (WARN otherwise), resv lock held."""
    buf = attach.dmabuf
    if not dma_buf_attachment_is_dynamic(attach):
        buf.warn(
            "dma-buf.pin-static-importer",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_pin: "
            "WARN_ON(!dma_buf_attachment_is_dynamic(attach))",
        )
    dma_resv_assert_held(buf.resv)
    ret = 0
    if buf.ops.pin is not None:
        ret = buf.ops.pin(attach)
    if ret == 0:
        attach.pins += 1
    return ret


def dma_buf_unpin(attach: DmaBufAttachment) -> None:
    """``dma_buf_unpin``."""
    buf = attach.dmabuf
    if not dma_buf_attachment_is_dynamic(attach):
        buf.warn(
            "dma-buf.pin-static-importer",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_unpin: "
            "WARN_ON(!dma_buf_attachment_is_dynamic(attach))",
        )
    dma_resv_assert_held(buf.resv)
    if buf.ops.unpin is not None:
        buf.ops.unpin(attach)
    attach.pins -= 1


def dma_buf_map_attachment(attach: DmaBufAttachment | None, direction: int) -> SgTable | int:
    """``dma_buf_map_attachment``: the importer's sg table, or ``-errno``.

    The cached mapping (``attach.sgt``) is returned again (``-EBUSY`` for another
    direction unless it is bidirectional).  Mapping through a detached attachment or
    a released buffer is a use-after-free: finding ``dma-buf.map-without-attach``,
    ``-EINVAL``.
    """
    if attach is None:
        get_default_core().warn(
            "dma-buf.map-without-attach",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_map_attachment: "
            "WARN_ON(!attach || !attach->dmabuf)",
        )
        return -errno.EINVAL
    buf = attach.dmabuf
    if attach.detached or buf.released or attach not in buf.attachments:
        buf.warn(
            "dma-buf.map-without-attach",
            f"BUG: KASAN: use-after-free in dma_buf_map_attachment ({attach.dev_name} is not "
            f"attached to {buf.label()})",
            Severity.ERROR,
            dev=attach.dev_name,
        )
        return -errno.EINVAL
    if dma_buf_attachment_is_dynamic(attach):
        dma_resv_assert_held(buf.resv)
    if attach.sgt is not None:
        if attach.dir != direction and attach.dir != DMA_BIDIRECTIONAL:
            return -errno.EBUSY
        return attach.sgt
    pinned = False
    if dma_buf_is_dynamic(buf):
        dma_resv_assert_held(buf.resv)
        assert buf.ops.pin is not None
        r = buf.ops.pin(attach)  # !CONFIG_DMABUF_MOVE_NOTIFY (the 6.1 default)
        if r:
            return r
        attach.pins += 1
        pinned = True
    sgt = _map_dma_buf(attach, direction)
    if sgt is None:
        sgt = -errno.ENOMEM
    if IS_ERR(sgt):
        if pinned:
            assert buf.ops.unpin is not None
            buf.ops.unpin(attach)
            attach.pins -= 1
        return sgt
    assert isinstance(sgt, SgTable)
    if buf.ops.cache_sgt_mapping:
        attach.sgt = sgt
        attach.dir = direction
    else:
        attach.mappings.append((sgt, direction))
    buf.event("dma_buf_map_attachment", f"{attach.dev_name} dir={direction}")
    return sgt


def dma_buf_unmap_attachment(
    attach: DmaBufAttachment | None, sg_table: SgTable | None, direction: int
) -> None:
    """``dma_buf_unmap_attachment``: the cached table is left alone (no-op)."""
    if attach is None or sg_table is None:
        get_default_core().warn(
            "dma-buf.unmap-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_unmap_attachment: "
            "WARN_ON(!attach || !attach->dmabuf || !sg_table)",
        )
        return
    buf = attach.dmabuf
    if dma_buf_attachment_is_dynamic(attach):
        dma_resv_assert_held(buf.resv)
    if attach.sgt is sg_table:
        return
    entry = next((m for m in attach.mappings if m[0] is sg_table), None)
    if entry is None:
        buf.warn(
            "dma-buf.unmap-unknown",
            f"dma_buf_unmap_attachment: {attach.dev_name} unmaps an sg table it does not hold",
            Severity.ERROR,
        )
        return
    attach.mappings.remove(entry)
    _unmap_dma_buf(attach, sg_table, direction)
    if dma_buf_is_dynamic(buf):
        assert buf.ops.unpin is not None
        buf.ops.unpin(attach)
        attach.pins -= 1
    buf.event("dma_buf_unmap_attachment", f"{attach.dev_name} dir={direction}")


def dma_buf_map_attachment_unlocked(attach: DmaBufAttachment, direction: int) -> SgTable | int:
    """``dma_buf_map_attachment_unlocked`` (6.2 name): takes the resv lock around the map."""
    buf = attach.dmabuf
    dma_resv_lock(buf.resv)
    try:
        return dma_buf_map_attachment(attach, direction)
    finally:
        dma_resv_unlock(buf.resv)


def dma_buf_unmap_attachment_unlocked(
    attach: DmaBufAttachment, sg_table: SgTable, direction: int
) -> None:
    """``dma_buf_unmap_attachment_unlocked``."""
    buf = attach.dmabuf
    dma_resv_lock(buf.resv)
    try:
        dma_buf_unmap_attachment(attach, sg_table, direction)
    finally:
        dma_resv_unlock(buf.resv)


def dma_buf_move_notify(dmabuf: DmaBuf) -> None:
    """``dma_buf_move_notify``: every dynamic attachment's ``move_notify`` (lock held)."""
    dma_resv_assert_held(dmabuf.resv)
    dmabuf.event("dma_buf_move_notify")
    for attach in list(dmabuf.attachments):
        if attach.importer_ops is not None and attach.importer_ops.move_notify is not None:
            attach.importer_ops.move_notify(attach)


# ---------------------------------------------------------------------------------------
# CPU access, mmap, vmap
# ---------------------------------------------------------------------------------------
def _is_write(direction: int) -> bool:
    return direction in (DMA_BIDIRECTIONAL, DMA_TO_DEVICE)


def dma_buf_begin_cpu_access(dmabuf: DmaBuf | None, direction: int) -> int:
    """``dma_buf_begin_cpu_access``: exporter hook, then wait for implicit fences."""
    if dmabuf is None:
        get_default_core().warn(
            "dma-buf.cpu-access-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_begin_cpu_access: WARN_ON(!dmabuf)",
        )
        return -errno.EINVAL
    if not _check_alive(dmabuf, "dma_buf_begin_cpu_access"):
        return -errno.EINVAL
    ret = 0
    if dmabuf.ops.begin_cpu_access is not None:
        ret = dmabuf.ops.begin_cpu_access(dmabuf, direction)
    if ret == 0:
        r = dma_resv_wait_timeout(
            dmabuf.resv, dma_resv_usage_rw(_is_write(direction)), True, MAX_SCHEDULE_TIMEOUT
        )
        ret = r if r < 0 else 0
    if ret == 0:
        dmabuf.cpu_access += 1
        dmabuf.event("begin_cpu_access", f"dir={direction}")
    return ret


def dma_buf_end_cpu_access(dmabuf: DmaBuf | None, direction: int) -> int:
    """``dma_buf_end_cpu_access``: only the exporter hook.

    An ``end`` without an open ``begin`` is reported (``dma-buf.unbalanced-cpu-access``);
    the kernel does not check it.
    """
    if dmabuf is None:
        get_default_core().warn(
            "dma-buf.cpu-access-invalid",
            "WARNING: drivers/dma-buf/dma-buf.c: dma_buf_end_cpu_access: WARN_ON(!dmabuf)",
        )
        return -errno.EINVAL
    if not _check_alive(dmabuf, "dma_buf_end_cpu_access"):
        return -errno.EINVAL
    if dmabuf.cpu_access <= 0:
        dmabuf.warn(
            "dma-buf.unbalanced-cpu-access",
            f"dma_buf_end_cpu_access on {dmabuf.label()} without dma_buf_begin_cpu_access "
            "(DMA_BUF_SYNC_END without SYNC_START)",
            direction=int(direction),
        )
    else:
        dmabuf.cpu_access -= 1
    ret = 0
    if dmabuf.ops.end_cpu_access is not None:
        ret = dmabuf.ops.end_cpu_access(dmabuf, direction)
    dmabuf.event("end_cpu_access", f"dir={direction} ret={ret}")
    return ret


def dma_buf_mmap(dmabuf: DmaBuf | None, vma: Vma | None, pgoff: int) -> int:
    """``dma_buf_mmap`` (a kernel importer forwarding an mmap): 0 or ``-errno``.

    The vma is re-targeted to the dma-buf's file (``vma_set_file`` takes a reference on
    it and drops the one on the old file, if any).
    """
    if dmabuf is None or vma is None:
        return -errno.EINVAL
    if dmabuf.ops.mmap is None:
        return -errno.EINVAL
    if pgoff + vma.pages < pgoff:
        return -errno.EOVERFLOW
    if pgoff + vma.pages > dmabuf.size >> PAGE_SHIFT:
        return -errno.EINVAL
    old = vma.file
    vma.file = dmabuf.file.get_file()
    if old is not None:
        old.fput()
    vma.vm_pgoff = pgoff
    return dmabuf.ops.mmap(dmabuf, vma)


def dma_buf_vmap(dmabuf: DmaBuf | None) -> tuple[int, int]:
    """``dma_buf_vmap``: ``(0, vaddr)`` or ``(-errno, 0)``; counted (``vmapping_counter``)."""
    if dmabuf is None:
        return -errno.EINVAL, 0
    if dmabuf.ops.vmap is None:
        return -errno.EINVAL, 0
    if dmabuf.vmapping_counter:
        dmabuf.vmapping_counter += 1
        return 0, dmabuf.vmap_ptr
    r = dmabuf.ops.vmap(dmabuf)
    if r < 0:
        dmabuf.warn(
            "dma-buf.vmap-failed",
            f"WARNING: drivers/dma-buf/dma-buf.c: dma_buf_vmap: WARN_ON_ONCE(ret) ({r})",
        )
        return r, 0
    dmabuf.vmap_ptr = r
    dmabuf.vmapping_counter = 1
    dmabuf.event("dma_buf_vmap", hex(r))
    return 0, r


def dma_buf_vunmap(dmabuf: DmaBuf | None, vaddr: int) -> None:
    """``dma_buf_vunmap``: the exporter's ``vunmap`` when the count reaches 0."""
    if dmabuf is None:
        return
    if not dmabuf.vmap_ptr or dmabuf.vmapping_counter == 0 or vaddr != dmabuf.vmap_ptr:
        dmabuf.warn(
            "dma-buf.vunmap-unbalanced",
            "kernel BUG at drivers/dma-buf/dma-buf.c: dma_buf_vunmap: "
            "BUG_ON(vmapping_counter == 0 || !iosys_map_is_equal(&dmabuf->vmap_ptr, map))",
            Severity.FATAL,
        )
        return
    dmabuf.vmapping_counter -= 1
    if dmabuf.vmapping_counter == 0:
        if dmabuf.ops.vunmap is not None:
            dmabuf.ops.vunmap(dmabuf, vaddr)
        dmabuf.vmap_ptr = 0
        dmabuf.event("dma_buf_vunmap")


# ---------------------------------------------------------------------------------------
# poll
# ---------------------------------------------------------------------------------------
def _poll_cb(fence: DmaFence | None, cb: DmaFenceCb) -> None:
    """``dma_buf_poll_cb``: wake, clear ``active``, drop the fence and file references."""
    buf: DmaBuf = cb.data
    dcb = buf.cb_in if cb is buf.cb_in.cb else buf.cb_out
    buf.poll_wakeups += 1
    dcb.active = 0
    if fence is not None:
        dma_fence_put(fence)
    buf.file.fput()


def _poll_add_cb(resv: DmaResv, write: bool, dcb: _PollCb) -> bool:
    for fence, _u in list(dma_resv_for_each_fence(resv, dma_resv_usage_rw(write))):
        dma_fence_get(fence)
        if dma_fence_add_callback(fence, dcb.cb, _poll_cb) == 0:
            return True
        dma_fence_put(fence)
    return False


def _dma_buf_poll(buf: DmaBuf, events: int) -> int:
    """``dma_buf_poll``."""
    events &= EPOLLIN | EPOLLOUT
    if not events:
        return 0
    dma_resv_lock(buf.resv)
    try:
        for bit, dcb, write in ((EPOLLOUT, buf.cb_out, True), (EPOLLIN, buf.cb_in, False)):
            if not events & bit:
                continue
            if dcb.active:
                events &= ~bit
                continue
            dcb.active = bit
            buf.file.get_file()  # paired with the fput in the callback
            if not _poll_add_cb(buf.resv, write, dcb):
                _poll_cb(None, dcb.cb)
            else:
                events &= ~bit
    finally:
        dma_resv_unlock(buf.resv)
    return events


# ---------------------------------------------------------------------------------------
# ioctls
# ---------------------------------------------------------------------------------------
@dataclass
class DmaBufSync:
    """``struct dma_buf_sync``."""

    flags: int = 0


@dataclass
class DmaBufExportSyncFile:
    """``struct dma_buf_export_sync_file``: ``fd`` is out (an fd, or the SyncFile)."""

    flags: int = 0
    fd: Any = -1


@dataclass
class DmaBufImportSyncFile:
    """``struct dma_buf_import_sync_file``: ``fd`` an fd number or a SyncFile."""

    flags: int = 0
    fd: Any = -1


def _sync_direction(flags: int) -> int:
    rw = flags & DMA_BUF_SYNC_RW
    if rw == DMA_BUF_SYNC_READ:
        return DMA_FROM_DEVICE
    if rw == DMA_BUF_SYNC_WRITE:
        return DMA_TO_DEVICE
    if rw == DMA_BUF_SYNC_RW:
        return DMA_BIDIRECTIONAL
    return -1


def _set_name(buf: DmaBuf, name: str | bytes | None) -> int:
    """``dma_buf_set_name``: ``strndup_user(buf, DMA_BUF_NAME_LEN)``."""
    if name is None:
        return -errno.EFAULT
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
    else:
        name = name.split("\0", 1)[0]
    if len(name.encode()) + 1 > DMA_BUF_NAME_LEN:
        return -errno.EINVAL
    if dma_buf_list(buf.core).set_name_ebusy_if_attached and buf.attachments:
        return -errno.EBUSY
    buf.name = name
    buf.event("DMA_BUF_SET_NAME", name)
    return 0


def _export_sync_file(buf: DmaBuf, arg: DmaBufExportSyncFile, files: FdContext | None) -> int:
    """``dma_buf_export_sync_file`` (6.0+)."""
    if arg.flags & ~DMA_BUF_SYNC_RW or not arg.flags & DMA_BUF_SYNC_RW:
        return -errno.EINVAL
    usage = dma_resv_usage_rw(bool(arg.flags & DMA_BUF_SYNC_WRITE))
    ret, fence = dma_resv_get_singleton(buf.resv, usage)
    if ret:
        return ret
    if fence is None:
        fence = dma_fence_get_stub(buf.core)
    sync_file = sync_file_create(fence)
    dma_fence_put(fence)
    if files is not None:
        arg.fd = files.install(SyncFileFile(sync_file, buf.core), O_CLOEXEC)
    else:
        arg.fd = sync_file
    return 0


def _import_sync_file(buf: DmaBuf, arg: DmaBufImportSyncFile, files: FdContext | None) -> int:
    """``dma_buf_import_sync_file`` (6.0+): each unwrapped fence into the resv."""
    if arg.flags & ~DMA_BUF_SYNC_RW or not arg.flags & DMA_BUF_SYNC_RW:
        return -errno.EINVAL
    target: Any = arg.fd
    held: File | None = None
    if isinstance(target, int) and files is not None:
        held = files.fget(target)
        target = held.sync_file if isinstance(held, SyncFileFile) else None
    elif isinstance(target, SyncFileFile):
        target = target.sync_file
    fence = sync_file_get_fence(target)
    if held is not None:
        held.fput()
    if fence is None:
        return -errno.EINVAL
    usage = DmaResvUsage.WRITE if arg.flags & DMA_BUF_SYNC_WRITE else DmaResvUsage.READ
    leaves = list(dma_fence_unwrap_for_each(fence))
    dma_resv_lock(buf.resv)
    ret = dma_resv_reserve_fences(buf.resv, max(1, len(leaves)))
    if not ret:
        for f in leaves:
            dma_resv_add_fence(buf.resv, f, usage)
    dma_resv_unlock(buf.resv)
    dma_fence_put(fence)
    buf.event("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", f"{len(leaves)} fence(s) as {usage}")
    return ret


def _dma_buf_ioctl(buf: DmaBuf, cmd: int, arg: Any, files: FdContext | None) -> int:
    """``dma_buf_ioctl``: 0 / ``-errno``."""
    if cmd == DMA_BUF_IOCTL_SYNC:
        flags = arg.flags if isinstance(arg, DmaBufSync) else arg
        if not isinstance(flags, int):
            return -errno.EFAULT
        if flags & ~DMA_BUF_SYNC_VALID_FLAGS_MASK:
            return -errno.EINVAL
        direction = _sync_direction(flags)
        if direction < 0:
            return -errno.EINVAL
        if flags & DMA_BUF_SYNC_END:
            return dma_buf_end_cpu_access(buf, direction)
        return dma_buf_begin_cpu_access(buf, direction)
    if cmd in (DMA_BUF_SET_NAME_A, DMA_BUF_SET_NAME_B):
        return _set_name(buf, arg)
    if cmd == DMA_BUF_IOCTL_EXPORT_SYNC_FILE:
        if not isinstance(arg, DmaBufExportSyncFile):
            return -errno.EFAULT
        return _export_sync_file(buf, arg, files)
    if cmd == DMA_BUF_IOCTL_IMPORT_SYNC_FILE:
        if not isinstance(arg, DmaBufImportSyncFile):
            return -errno.EFAULT
        return _import_sync_file(buf, arg, files)
    return -errno.ENOTTY


# ---------------------------------------------------------------------------------------
# debugfs bufinfo, fdinfo
# ---------------------------------------------------------------------------------------
def _fences_of(buf: DmaBuf) -> list[BufFence]:
    """``dma_resv_describe`` as records (usage <= READ, signalled ones included)."""
    resv = buf.resv
    took = False
    if not resv.locked:
        dma_resv_lock(resv)
        took = True
    try:
        out = []
        for f, u in dma_resv_for_each_fence(resv, DmaResvUsage.READ):
            out.append(
                BufFence(str(u), f.driver_name(), f.timeline_name(), f.seqno, f.is_signaled())
            )
        return out
    finally:
        if took:
            dma_resv_unlock(resv)


def dma_buf_infos(core: DmaBufCore | None = None) -> list[DmaBufInfo]:
    """The live buffers as :class:`~socmem.trace.bufinfo.DmaBufInfo` records, newest first."""
    out = []
    for buf in dma_buf_list(core).buffers:
        out.append(
            DmaBufInfo(
                size=buf.size,
                flags=buf.file.f_flags,
                mode=buf.file.f_mode,
                count=buf.file.f_count,
                exp_name=buf.exp_name,
                ino=buf.ino,
                name=buf.name,
                fences=_fences_of(buf),
                attached=[a.dev_name for a in buf.attachments],
            )
        )
    return out


def dma_buf_debug_show(core: DmaBufCore | None = None) -> str:
    """``/sys/kernel/debug/dma_buf/bufinfo`` (``dma_buf_debug_show``), byte exact."""
    return render_bufinfo(dma_buf_infos(core))


def dma_buf_show_fdinfo(file: File, *, cloexec: bool = False, fd: int | None = None) -> str:
    """``/proc/<pid>/fdinfo/<fd>`` of any modelled file (fs/proc/fd.c + show_fdinfo)."""
    extra = file.show_fdinfo()
    info = FdInfo(
        fd=fd,
        pos=file.f_pos,
        flags=file.f_flags | (O_CLOEXEC if cloexec else 0),
        mnt_id=file.mnt_id,
        ino=file.ino,
        size=extra.get("size"),
        count=extra.get("count"),
        exp_name=extra.get("exp_name"),
        name=extra.get("name"),
    )
    return render_fdinfo(info)


def live_buffers(core: DmaBufCore | None = None) -> Iterable[DmaBuf]:
    """The buffers on ``db_list`` (newest first)."""
    return list(dma_buf_list(core).buffers)
