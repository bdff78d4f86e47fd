"""udmabuf: ``drivers/dma-buf/udmabuf.c``, ``include/uapi/linux/udmabuf.h`` (Linux 6.1),
and the memfd it wraps (``mm/memfd.c``, shmem).

:class:`Memfd` is a sealable shmem file: ``size`` (``ftruncate``), ``seals``
(``F_ADD_SEALS``; ``MFD_ALLOW_SEALING`` or not), and page-cache pages allocated on first
touch.  Deviation, to keep cost per segment: shmem allocates order-0 pages; the model
takes naturally aligned multi-page blocks from the buddy allocator (movable, as
``GFP_HIGHUSER_MOVABLE``) for each run of pages first touched together.  The pages live
until the file is released *and* no udmabuf pins them (the model refcounts the whole
page cache, where the kernel refcounts each page).

:class:`UdmabufDevice` is ``/dev/udmabuf``.  ``UDMABUF_CREATE`` / ``UDMABUF_CREATE_LIST``
check, in udmabuf.c's order (the first failure wins):

1. LIST only: ``count > list_limit`` (module parameter, default 1024) → ``EINVAL``;
2. per item: offset or size not page aligned → ``EINVAL``; the running page count above
   ``size_limit_mb`` (default 64 MiB) → ``EINVAL``;
3. no pages at all → ``EINVAL``;
4. per item: the fd is not open, or not a memfd (shmem/hugetlbfs) → ``EBADFD``; seals
   without ``F_SEAL_SHRINK`` or with ``F_SEAL_WRITE`` → ``EINVAL`` (6.1; rejecting
   ``F_SEAL_FUTURE_WRITE`` too arrived in 6.13: :attr:`UdmabufDevice.deny_future_write`);
5. pages past the end of the file (``shmem_read_mapping_page`` beyond ``i_size``) →
   ``EINVAL``;
6. export (``exp_name`` ``udmabuf``, ``O_RDWR``); ``UDMABUF_FLAGS_CLOEXEC`` gives the fd
   ``O_CLOEXEC``; other flag bits are ignored.

The buffer's ops: ``map_dma_buf`` builds an sg table from the page array
(``sg_alloc_table_from_pages``, contiguous pages merge) and ``dma_map_sgtable``-s it for
the importer; ``mmap`` needs ``VM_SHARED`` (``EINVAL``); ``vmap`` is ``vm_map_ram``;
``begin_cpu_access`` maps a table for the misc device on first use, then syncs for the
CPU; ``end_cpu_access`` without that table is ``-EINVAL`` (the only exporter that checks
SYNC_END before SYNC_START); release unmaps it and unpins the pages.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

from socmem.errors import KernelError
from socmem.linux.dma import mapping as dma_mapping
from socmem.linux.dma.scatterlist import ScatterlistEntry, SgTable
from socmem.linux.dma.types import DMA_BIDIRECTIONAL
from socmem.linux.dmabuf.dma_buf import (
    IS_ERR,
    O_CLOEXEC,
    O_RDWR,
    VM_SHARED,
    DmaBuf,
    DmaBufAttachment,
    DmaBufExportInfo,
    DmaBufOps,
    FdContext,
    File,
    Vma,
    dma_buf_export,
)
from socmem.linux.dmabuf.fence import DmaBufCore, get_default_core
from socmem.linux.mm import PhysMem
from socmem.linux.mm.buddy import MAX_ORDER, MIGRATE_MOVABLE, ZONE_NORMAL

__all__ = [
    "F_SEAL_FUTURE_WRITE",
    "F_SEAL_GROW",
    "F_SEAL_SEAL",
    "F_SEAL_SHRINK",
    "F_SEAL_WRITE",
    "MFD_ALLOW_SEALING",
    "UDMABUF_CREATE",
    "UDMABUF_CREATE_LIST",
    "UDMABUF_FLAGS_CLOEXEC",
    "Memfd",
    "UdmabufCreate",
    "UdmabufCreateItem",
    "UdmabufCreateList",
    "UdmabufDevice",
    "UdmabufFile",
    "memfd_create",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# include/uapi/linux/fcntl.h, memfd.h
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010
MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002

# include/uapi/linux/udmabuf.h
UDMABUF_FLAGS_CLOEXEC = 0x01
_IOC_WRITE = 1


def _iow(typ: str, nr: int, size: int) -> int:
    return _IOC_WRITE << 30 | size << 16 | ord(typ) << 8 | nr


UDMABUF_CREATE = _iow("u", 0x42, 24)
UDMABUF_CREATE_LIST = _iow("u", 0x43, 8)


class Memfd(File):
    """A memfd (``memfd_create``): shmem file with seals and lazily allocated pages."""

    def __init__(
        self,
        name: str,
        mem: PhysMem,
        size: int = 0,
        allow_sealing: bool = True,
        core: DmaBufCore | None = None,
    ) -> None:
        super().__init__(f_flags=O_RDWR, core=core)
        self.name = name
        self.mem = mem
        self.size = size
        # memfd_create: without MFD_ALLOW_SEALING the file is born with F_SEAL_SEAL
        self.seals = 0 if allow_sealing else F_SEAL_SEAL
        self.extents: list[tuple[int, int, int, int]] = []  # (pgoff, npages, pfn, order)
        self.pins = 0  # udmabufs holding the pages
        self.file_open = True

    # -- fcntl / ftruncate --------------------------------------------------------------
    def add_seals(self, seals: int) -> int:
        """``F_ADD_SEALS``: ``-EPERM`` once ``F_SEAL_SEAL`` is set."""
        if self.seals & F_SEAL_SEAL:
            return -errno.EPERM
        self.seals |= seals
        return 0

    def get_seals(self) -> int:
        """``F_GET_SEALS``."""
        return self.seals

    def ftruncate(self, size: int) -> int:
        """``ftruncate``: ``-EPERM`` when a seal forbids the change."""
        if size < self.size and self.seals & F_SEAL_SHRINK:
            return -errno.EPERM
        if size > self.size and self.seals & F_SEAL_GROW:
            return -errno.EPERM
        if size < self.size:
            self._truncate_pages(size)
        self.size = size
        return 0

    def _truncate_pages(self, size: int) -> None:
        keep = []
        limit = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
        for ext in self.extents:
            if ext[0] + ext[1] <= limit or self.pins:
                keep.append(ext)
            else:
                self.mem.free_pages(ext[2], ext[3])
        self.extents = keep

    # -- pages -----------------------------------------------------------------------
    @property
    def nr_pages(self) -> int:
        """Pages allocated in the page cache."""
        return sum(e[1] for e in self.extents)

    def touch(self, pgoff: int, npages: int) -> int:
        """Fault in pages ``[pgoff, pgoff + npages)``: 0, ``-EINVAL`` past EOF, ``-ENOMEM``."""
        if (pgoff + npages) << PAGE_SHIFT > self.size:
            return -errno.EINVAL
        end = pgoff + npages
        cur = pgoff
        for start, n, _pfn, _o in sorted(self.extents):
            if start + n <= cur:
                continue
            if start >= end:
                break
            if start > cur:
                r = self._fill(cur, start)
                if r:
                    return r
            cur = max(cur, start + n)
        if cur < end:
            return self._fill(cur, end)
        return 0

    def _fill(self, start: int, end: int) -> int:
        while start < end:
            order = min(MAX_ORDER - 1, (end - start).bit_length() - 1)
            while order and start & ((1 << order) - 1):
                order -= 1
            while True:
                pfn = self.mem.alloc_pages(order, MIGRATE_MOVABLE, ZONE_NORMAL, owner="shmem")
                if pfn is not None or order == 0:
                    break
                order -= 1
            if pfn is None:
                return -errno.ENOMEM
            self.extents.append((start, 1 << order, pfn, order))
            start += 1 << order
        return 0

    def pfn_runs(self, pgoff: int, npages: int) -> list[tuple[int, int]]:
        """``(pfn, pages)`` runs backing ``[pgoff, pgoff + npages)`` (pages must exist)."""
        out: list[tuple[int, int]] = []
        end = pgoff + npages
        for start, n, pfn, _o in sorted(self.extents):
            lo, hi = max(start, pgoff), min(start + n, end)
            if lo >= hi:
                continue
            p = pfn + lo - start
            if out and out[-1][0] + out[-1][1] == p:
                out[-1] = (out[-1][0], out[-1][1] + hi - lo)
            else:
                out.append((p, hi - lo))
        return out

    def pfn_at(self, pgoff: int) -> int | None:
        """The pfn of page ``pgoff`` or None if never touched."""
        for start, n, pfn, _o in self.extents:
            if start <= pgoff < start + n:
                return pfn + pgoff - start
        return None

    def _maybe_free(self) -> None:
        if not self.file_open and self.pins == 0:
            for _s, _n, pfn, order in self.extents:
                self.mem.free_pages(pfn, order)
            self.extents = []

    # -- file ops -----------------------------------------------------------------------
    def release(self) -> None:
        """``shmem`` file release: pages go with the inode unless pinned."""
        self.file_open = False
        self._maybe_free()

    def d_path(self) -> str:
        return f"/memfd:{self.name} (deleted)"

    def mmap(self, vma: Vma) -> int:
        """``shmem_mmap``: pages fault in on access (``Memfd.touch``)."""
        vma.vm_private_data = self
        return 0

    def llseek(self, offset: int, whence: int) -> int:
        return offset


def memfd_create(name: str, flags: int, mem: PhysMem, core: DmaBufCore | None = None) -> Memfd:
    """``memfd_create(name, flags)``: an empty memfd (seals only with MFD_ALLOW_SEALING)."""
    return Memfd(name, mem, 0, allow_sealing=bool(flags & MFD_ALLOW_SEALING), core=core)


@dataclass
class UdmabufCreate:
    """``struct udmabuf_create``: ``memfd`` an fd (or a :class:`Memfd`/file object)."""

    memfd: Any = 0
    flags: int = 0
    offset: int = 0
    size: int = 0


@dataclass
class UdmabufCreateItem:
    """``struct udmabuf_create_item``."""

    memfd: Any = 0
    pad: int = 0
    offset: int = 0
    size: int = 0


@dataclass
class UdmabufCreateList:
    """``struct udmabuf_create_list``: ``count`` is what user space claims."""

    flags: int = 0
    count: int | None = None
    list: list[UdmabufCreateItem] = field(default_factory=list)


@dataclass(eq=False)
class _Udmabuf:
    """``struct udmabuf``: the page runs, the memfds pinned, the CPU-sync table."""

    device: UdmabufDevice
    pagecount: int
    runs: list[tuple[int, int]]  # (pfn, pages) in buffer order
    memfds: list[Memfd]
    sg: SgTable | None = None
    vmap_cnt: int = 0
    vaddr: int = 0

    def sg_table(self) -> SgTable:
        """``get_sg_table``'s ``sg_alloc_table_from_pages``: contiguous pages merge."""
        sgl: list[ScatterlistEntry] = []
        for pfn, n in self.runs:
            if sgl and sgl[-1].page is not None:
                last = sgl[-1]
                if last.page + (last.length >> PAGE_SHIFT) == pfn:  # type: ignore[operator]
                    last.length += n << PAGE_SHIFT
                    continue
            sgl.append(ScatterlistEntry(pfn, 0, n << PAGE_SHIFT))
        sgl[-1].end = True
        return SgTable(sgl, len(sgl), len(sgl))

    def pfn_at(self, pgoff: int) -> int:
        """The pfn of the buffer's page ``pgoff``."""
        for pfn, n in self.runs:
            if pgoff < n:
                return pfn + pgoff
            pgoff -= n
        raise IndexError(pgoff)


def _ub(dmabuf: DmaBuf) -> _Udmabuf:
    ub: _Udmabuf = dmabuf.priv
    return ub


def _ub_map(attach: DmaBufAttachment, direction: int) -> SgTable | int:
    sgt = _ub(attach.dmabuf).sg_table()
    ret = dma_mapping.dma_map_sgtable(attach.dev, sgt, direction, 0)
    if ret < 0:
        return ret
    return sgt


def _ub_unmap(attach: DmaBufAttachment, sgt: SgTable, direction: int) -> None:
    dma_mapping.dma_unmap_sgtable(attach.dev, sgt, direction, 0)


def _ub_release(dmabuf: DmaBuf) -> None:
    ub = _ub(dmabuf)
    if ub.sg is not None:
        dma_mapping.dma_unmap_sgtable(ub.device.dev, ub.sg, DMA_BIDIRECTIONAL, 0)
        ub.sg = None
    for m in ub.memfds:
        m.pins -= 1
        m._maybe_free()
    ub.memfds = []
    if dmabuf in ub.device.live:
        ub.device.live.remove(dmabuf)


def _ub_mmap(dmabuf: DmaBuf, vma: Vma) -> int:
    if not vma.vm_flags & VM_SHARED:
        return -errno.EINVAL
    vma.vm_private_data = _ub(dmabuf)
    return 0


def _ub_vmap(dmabuf: DmaBuf) -> int:
    ub = _ub(dmabuf)
    ub.vaddr = ub.device.vmap_alloc(dmabuf.size)
    return ub.vaddr


def _ub_vunmap(dmabuf: DmaBuf, vaddr: int) -> None:
    _ub(dmabuf).vaddr = 0


def _ub_begin_cpu_access(dmabuf: DmaBuf, direction: int) -> int:
    ub = _ub(dmabuf)
    dev = ub.device.dev
    if ub.sg is None:
        sgt = ub.sg_table()
        ret = dma_mapping.dma_map_sgtable(dev, sgt, direction, 0)
        if ret < 0:
            return ret
        ub.sg = sgt
    else:
        dma_mapping.dma_sync_sgtable_for_cpu(dev, ub.sg, direction)
    return 0


def _ub_end_cpu_access(dmabuf: DmaBuf, direction: int) -> int:
    ub = _ub(dmabuf)
    if ub.sg is None:
        return -errno.EINVAL
    dma_mapping.dma_sync_sgtable_for_device(ub.device.dev, ub.sg, direction)
    return 0


UDMABUF_OPS = DmaBufOps(
    map_dma_buf=_ub_map,
    unmap_dma_buf=_ub_unmap,
    release=_ub_release,
    mmap=_ub_mmap,
    vmap=_ub_vmap,
    vunmap=_ub_vunmap,
    begin_cpu_access=_ub_begin_cpu_access,
    end_cpu_access=_ub_end_cpu_access,
)


class UdmabufDevice:
    """The udmabuf driver and its misc device ``/dev/udmabuf``.

    ``dev`` is the ``struct device`` the driver maps CPU-sync tables for (the misc
    device; in the kernel it has no IOMMU and a 64-bit mask).  ``list_limit`` and
    ``size_limit_mb`` are the module parameters.
    """

    def __init__(
        self,
        dev: Any,
        core: DmaBufCore | None = None,
        *,
        list_limit: int = 1024,
        size_limit_mb: int = 64,
        deny_future_write: bool = False,
    ) -> None:
        self.dev = dev
        self.core = core if core is not None else get_default_core()
        self.list_limit = list_limit
        self.size_limit_mb = size_limit_mb
        self.deny_future_write = deny_future_write
        self.live: list[DmaBuf] = []
        self._next_vaddr = 0xFFFF_8000_4000_0000

    def vmap_alloc(self, size: int) -> int:
        """A model ``vm_map_ram`` address."""
        addr = self._next_vaddr
        self._next_vaddr += size + PAGE_SIZE
        return addr

    def open(self, flags: int = O_RDWR) -> UdmabufFile:
        """``open("/dev/udmabuf")``."""
        return UdmabufFile(self, flags)

    # -- udmabuf_create -----------------------------------------------------------------
    def create(
        self, items: list[UdmabufCreateItem], flags: int, files: FdContext | None = None
    ) -> DmaBuf | int:
        """``udmabuf_create``: the new buffer or ``-errno`` (first failing check)."""
        pglimit = (self.size_limit_mb << 20) >> PAGE_SHIFT
        pagecount = 0
        for it in items:
            if it.offset % PAGE_SIZE or it.size % PAGE_SIZE:
                return -errno.EINVAL
            pagecount += it.size >> PAGE_SHIFT
            if pagecount > pglimit:
                return -errno.EINVAL
        if not pagecount:
            return -errno.EINVAL
        runs: list[tuple[int, int]] = []
        memfds: list[Memfd] = []
        held: list[File] = []
        try:
            for it in items:
                memfd: Any = it.memfd
                if isinstance(memfd, int):
                    f = files.fget(memfd) if files is not None else None
                    if f is None:
                        return -errno.EBADFD
                    held.append(f)
                    memfd = f
                if not isinstance(memfd, Memfd) or memfd.released:
                    return -errno.EBADFD
                seals = memfd.get_seals()
                denied = F_SEAL_WRITE | (F_SEAL_FUTURE_WRITE if self.deny_future_write else 0)
                if not seals & F_SEAL_SHRINK or seals & denied:
                    return -errno.EINVAL
                pgoff, pgcnt = it.offset >> PAGE_SHIFT, it.size >> PAGE_SHIFT
                r = memfd.touch(pgoff, pgcnt)
                if r:
                    return r
                for pfn, n in memfd.pfn_runs(pgoff, pgcnt):
                    if runs and runs[-1][0] + runs[-1][1] == pfn:
                        runs[-1] = (runs[-1][0], runs[-1][1] + n)
                    else:
                        runs.append((pfn, n))
                memfds.append(memfd)
        finally:
            for f in held:
                f.fput()
        ub = _Udmabuf(self, pagecount, runs, memfds)
        for m in memfds:
            m.pins += 1
        exp = DmaBufExportInfo(
            exp_name="udmabuf",
            ops=UDMABUF_OPS,
            size=pagecount << PAGE_SHIFT,
            flags=O_RDWR,
            priv=ub,
            owner="udmabuf",
        )
        buf = dma_buf_export(exp, self.core)
        if IS_ERR(buf):
            for m in memfds:
                m.pins -= 1
            return buf
        assert isinstance(buf, DmaBuf)
        self.live.append(buf)
        return buf

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int | DmaBuf:
        """``udmabuf_ioctl``: the new fd (or, without ``files``, the :class:`DmaBuf`).

        Errors raise :class:`KernelError`.
        """
        if cmd == UDMABUF_CREATE:
            if not isinstance(arg, UdmabufCreate):
                raise KernelError(errno.EFAULT, "UDMABUF_CREATE: bad argument")
            items = [UdmabufCreateItem(arg.memfd, 0, arg.offset, arg.size)]
            flags = arg.flags
        elif cmd == UDMABUF_CREATE_LIST:
            if not isinstance(arg, UdmabufCreateList):
                raise KernelError(errno.EFAULT, "UDMABUF_CREATE_LIST: bad argument")
            count = len(arg.list) if arg.count is None else arg.count
            if count > self.list_limit:
                raise KernelError(errno.EINVAL, f"UDMABUF_CREATE_LIST: count {count} > list_limit")
            if count > len(arg.list):
                raise KernelError(errno.EFAULT, "UDMABUF_CREATE_LIST: short item array")
            items = arg.list[:count]
            flags = arg.flags
        else:
            raise KernelError(errno.ENOTTY, f"udmabuf_ioctl: unknown cmd {cmd:#x}")
        buf = self.create(items, flags, files)
        if IS_ERR(buf):
            raise KernelError(-buf, "udmabuf_create")  # type: ignore[operator]
        assert isinstance(buf, DmaBuf)
        if files is None:
            return buf
        fd_flags = O_CLOEXEC if flags & UDMABUF_FLAGS_CLOEXEC else 0
        return files.install(buf.file, fd_flags)


class UdmabufFile(File):
    """An open ``/dev/udmabuf``."""

    def __init__(self, device: UdmabufDevice, flags: int = O_RDWR) -> None:
        super().__init__(f_flags=flags, core=device.core)
        self.device = device
        self.last_created: DmaBuf | None = None

    def d_path(self) -> str:
        return "/dev/udmabuf"

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int:
        """``udmabuf_ioctl``: returns the new fd (the ioctl's return value)."""
        ret = self.device.ioctl(cmd, arg, files)
        if isinstance(ret, DmaBuf):  # no fd table: the caller owns the buffer's reference
            self.last_created = ret
            return 0
        return ret
