"""DMA-BUF heaps: ``drivers/dma-buf/dma-heap.c``, ``heaps/system_heap.c``,
``heaps/cma_heap.c``, ``include/uapi/linux/dma-heap.h`` (Linux 6.1), plus the carveout and
protected heaps vendor kernels add over ``/reserved-memory``.

**Framework** (:class:`DmaHeapRegistry`, one per booted kernel): ``dma_heap_add``
refuses an empty name or missing ``allocate`` (``-EINVAL``), a duplicate name
(``-EINVAL``) and more than ``NUM_HEAP_MINORS`` (128) heaps (``-EBUSY``, xa_alloc's
error).  ``DMA_HEAP_IOCTL_ALLOC`` (:func:`dma_heap_ioctl`) checks in dma-heap.c's order:
``nr >= 1`` → ``EINVAL``; then ``fd != 0`` → ``EINVAL``; ``fd_flags`` outside
``O_CLOEXEC | O_ACCMODE`` → ``EINVAL``; any ``heap_flags`` bit → ``EINVAL``; ``len`` is
``PAGE_ALIGN``-ed up and 0 → ``EINVAL``; then the heap allocates (``ENOMEM``) and the
buffer gets an fd with ``fd_flags``.  Shorter or longer user structs are zero-extended /
truncated (``DmaHeapAllocationData.size``), which is why the selftest's compat variants
succeed.

**System heap** (``system``): greedy chunks of orders ``{8, 4, 0}`` (1 MiB, 64 KiB,
4 KiB): the largest order that fits in what remains and is not above the previous
chunk's order, falling back to smaller orders when the buddy allocator has no block
(orders 8 and 4 use ``HIGH_ORDER_GFP``: no reclaim, no retry, no warning — the buddy
model has no reclaim anyway, so the difference is only documented).  Pages are
``GFP_HIGHUSER | __GFP_ZERO`` (unmovable, ``ZONE_NORMAL`` on arm64): zeroed, counted in
:attr:`DmaHeap.bytes_zeroed`.  One sg entry per chunk (no merging); every attachment
gets its own copy (``dup_sg_table``); ``map_dma_buf`` is ``dma_map_sgtable(attach->dev,
table, dir, 0)`` through the DMA API (IOMMU, swiotlb and cache maintenance apply) and
marks the attachment mapped; ``begin/end_cpu_access`` call
``dma_sync_sgtable_for_cpu/device`` on every *mapped* attachment with the caller's
direction; ``mmap`` needs no ``MAP_SHARED``; vmap is counted; release frees each chunk.

**CMA heap** (named after the default CMA area, ``cma_get_name``; ``linux,cma`` or
``reserved`` on 6.1 — ``default_cma_region`` only from 6.17): one ``cma_alloc(pagecount,
min(get_order(size), CONFIG_CMA_ALIGNMENT=8))``, zeroed (``memset``; page by page with
``clear_highpage`` on highmem, which arm64 does not have), an sg table built by
``sg_alloc_table_from_pages`` (one entry per 4 GiB - 4 KiB of contiguous memory);
``mmap`` requires ``VM_SHARED | VM_MAYSHARE`` (``-EINVAL``); map errors become
``-ENOMEM``; release WARNs if still vmapped and ``cma_release``-s.

**Carveout heaps** (vendor kernels; named after the reserved region): one contiguous
``gen_pool_alloc`` from a mapped ``carveout`` region's pool, zeroed by the CPU; otherwise
like the CMA heap.

**Protected heaps** (``protected,<region>``, the naming of mainline's TEE protected
heaps): carveout allocation from a ``secure`` region (``secure-video`` style).  No CPU may
touch the memory: ``mmap``, ``vmap`` and ``begin/end_cpu_access`` return ``-EPERM``, as
vendor secure heaps (MediaTek ``mtk_sec_heap``, Qualcomm secure carveouts) do — mainline
6.17's TEE heaps simply have no such ops, which the core turns into ``-EINVAL`` for mmap
and vmap.  Only devices marked ``secure`` may attach (others get ``-EPERM`` and a finding
``dma-heap.protected-access``); the zeroing is the secure world's and is not counted.

Cost: per buffer, one record per chunk; nothing per page or byte.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from socmem.check.finding import Severity
from socmem.errors import KernelError
from socmem.linux.dma import mapping as dma_mapping
from socmem.linux.dma.scatterlist import ScatterlistEntry, SgTable, sg_alloc_table
from socmem.linux.dmabuf.dma_buf import (
    IS_ERR,
    O_ACCMODE,
    O_CLOEXEC,
    VM_MAYSHARE,
    VM_SHARED,
    DmaBuf,
    DmaBufAttachment,
    DmaBufExportInfo,
    DmaBufOps,
    FdContext,
    File,
    Vma,
    dma_buf_export,
    dma_buf_put,
)
from socmem.linux.dmabuf.fence import DmaBufCore, get_default_core
from socmem.linux.mm import PhysMem
from socmem.linux.mm.buddy import MIGRATE_UNMOVABLE, ZONE_NORMAL
from socmem.linux.mm.cma import Cma
from socmem.linux.mm.genpool import GenPool

__all__ = [
    "CONFIG_CMA_ALIGNMENT",
    "DMA_HEAP_IOCTL_ALLOC",
    "DMA_HEAP_VALID_FD_FLAGS",
    "DMA_HEAP_VALID_HEAP_FLAGS",
    "NUM_HEAP_MINORS",
    "SYSTEM_HEAP_ORDERS",
    "DmaHeap",
    "DmaHeapAllocationData",
    "DmaHeapFile",
    "DmaHeapOps",
    "DmaHeapRegistry",
    "HeapBuffer",
    "dma_heap_buffer_alloc",
    "dma_heap_init",
    "dma_heap_ioctl",
    "dma_heaps_for_kernel",
    "get_order",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
NUM_HEAP_MINORS = 128
CONFIG_CMA_ALIGNMENT = 8
SYSTEM_HEAP_ORDERS = (8, 4, 0)
DMA_HEAP_VALID_FD_FLAGS = O_CLOEXEC | O_ACCMODE
DMA_HEAP_VALID_HEAP_FLAGS = 0
UINT_MAX = (1 << 32) - 1
VMALLOC_START = 0xFFFF_8000_0800_0000  # arm64 48-bit VA vmalloc area (model addresses)

_IOC_WRITE, _IOC_READ = 1, 2
_IOC_NRMASK, _IOC_SIZESHIFT, _IOC_SIZEMASK, _IOC_DIRSHIFT = 0xFF, 16, 0x3FFF, 30


def _ioc(direction: int, typ: str, nr: int, size: int) -> int:
    return direction << 30 | size << 16 | ord(typ) << 8 | nr


#: ``_IOWR('H', 0x0, struct dma_heap_allocation_data)`` (24 bytes)
DMA_HEAP_IOCTL_ALLOC = _ioc(_IOC_READ | _IOC_WRITE, "H", 0, 24)


def PAGE_ALIGN(x: int) -> int:
    """``PAGE_ALIGN`` on an unsigned long (wraps to 0 near ``ULONG_MAX``)."""
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) & ((1 << 64) - 1)


def get_order(size: int) -> int:
    """``get_order()``: smallest order with ``PAGE_SIZE << order >= size``."""
    if size <= PAGE_SIZE:
        return 0
    return ((size - 1) >> PAGE_SHIFT).bit_length()


@dataclass
class DmaHeapAllocationData:
    """``struct dma_heap_allocation_data``; ``size`` is the user's declared struct size
    (the ioctl number's size field): 16 (old), 24 (current) or more."""

    len: int = 0
    fd: int = 0
    fd_flags: int = 0
    heap_flags: int = 0
    size: int = 24


@dataclass(frozen=True)
class DmaHeapOps:
    """``struct dma_heap_ops``: ``allocate(heap, len, fd_flags, heap_flags)``."""

    allocate: Callable[[DmaHeap, int, int, int], DmaBuf | int] | None


@dataclass(eq=False)
class DmaHeap:
    """``struct dma_heap`` plus the model's counters."""

    name: str
    ops: DmaHeapOps
    priv: Any
    minor: int
    registry: DmaHeapRegistry
    kind: str = "other"
    region: str | None = None
    secure: bool = False
    allocated: int = 0
    failed: int = 0
    bytes_zeroed: int = 0
    live: list[DmaBuf] = field(default_factory=list)

    @property
    def devnode(self) -> str:
        """``/dev/dma_heap/<name>`` (``dma_heap_devnode``)."""
        return f"/dev/dma_heap/{self.name}"

    @property
    def live_bytes(self) -> int:
        """Bytes of this heap's buffers still alive."""
        return sum(b.size for b in self.live)

    def __repr__(self) -> str:
        return f"<DmaHeap {self.name} ({self.kind}) live={len(self.live)}>"


class DmaHeapRegistry:
    """The heap list and minors of dma-heap.c (one per kernel)."""

    def __init__(self, core: DmaBufCore | None = None, mem: PhysMem | None = None) -> None:
        self.core = core if core is not None else get_default_core()
        self.mem = mem
        self.heaps: list[DmaHeap] = []  # list_add: head first
        self._next_vaddr = VMALLOC_START

    def dma_heap_add(
        self, name: str, ops: DmaHeapOps | None, priv: Any = None, **attrs: Any
    ) -> DmaHeap | int:
        """``dma_heap_add``: the heap or ``-EINVAL`` / ``-EBUSY``."""
        if not name:
            return -errno.EINVAL  # "dma_heap: Cannot add heap without a name"
        if ops is None or ops.allocate is None:
            return -errno.EINVAL  # "dma_heap: Cannot add heap with invalid ops struct"
        used = {h.minor for h in self.heaps}
        minor = next((m for m in range(NUM_HEAP_MINORS) if m not in used), None)
        if minor is None:
            return -errno.EBUSY
        if any(h.name == name for h in self.heaps):
            return -errno.EINVAL  # "dma_heap: Already registered heap named %s"
        heap = DmaHeap(name, ops, priv, minor, self, **attrs)
        self.heaps.insert(0, heap)
        return heap

    def find(self, name: str) -> DmaHeap | None:
        """The heap called ``name``."""
        return next((h for h in self.heaps if h.name == name), None)

    def __getitem__(self, name: str) -> DmaHeap:
        heap = self.find(name)
        if heap is None:
            raise KeyError(name)
        return heap

    def names(self) -> list[str]:
        """Heap names as ``ls /dev/dma_heap`` shows them (sorted)."""
        return sorted(h.name for h in self.heaps)

    def open(self, name: str) -> DmaHeapFile:
        """``open("/dev/dma_heap/<name>", O_RDWR)``; unknown → ``ENOENT``."""
        heap = self.find(name)
        if heap is None:
            raise KernelError(errno.ENOENT, f"/dev/dma_heap/{name}: No such file or directory")
        return DmaHeapFile(heap)

    def devnodes(self) -> dict[str, Callable[[int], File]]:
        """``{"/dev/dma_heap/<name>": opener}`` for a process's open()."""

        def opener(heap: DmaHeap) -> Callable[[int], File]:
            return lambda flags: DmaHeapFile(heap, flags)

        return {h.devnode: opener(h) for h in self.heaps}

    def vmap_alloc(self, size: int) -> int:
        """A model vmalloc address for ``size`` bytes (with a guard page)."""
        addr = self._next_vaddr
        self._next_vaddr += PAGE_ALIGN(size) + PAGE_SIZE
        return addr


class DmaHeapFile(File):
    """An open ``/dev/dma_heap/<name>`` (``dma_heap_fops``; nonseekable)."""

    def __init__(self, heap: DmaHeap, flags: int = 2) -> None:
        super().__init__(f_flags=flags, core=heap.registry.core)
        self.heap = heap

    def d_path(self) -> str:
        return self.heap.devnode

    def ioctl(self, cmd: int, arg: Any, files: FdContext | None = None) -> int:
        """``dma_heap_ioctl``."""
        return dma_heap_ioctl(self, cmd, arg, files)


def dma_heap_buffer_alloc(
    heap: DmaHeap, length: int, fd_flags: int, heap_flags: int
) -> DmaBuf | int:
    """``dma_heap_buffer_alloc`` without the fd: ``PAGE_ALIGN(len)``, 0 → ``-EINVAL``."""
    length = PAGE_ALIGN(length)
    if not length:
        return -errno.EINVAL
    assert heap.ops.allocate is not None
    buf = heap.ops.allocate(heap, length, fd_flags, heap_flags)
    if IS_ERR(buf):
        heap.failed += 1
    else:
        heap.allocated += 1
    return buf


def dma_heap_ioctl(
    file: DmaHeapFile | File | None, cmd: int, data: DmaHeapAllocationData, files: FdContext | None
) -> int:
    """``dma_heap_ioctl`` + ``dma_heap_ioctl_allocate``: 0 with ``data.fd`` set.

    Errors raise :class:`KernelError`.  Without ``files`` the new buffer is returned in
    ``data.fd`` as the :class:`DmaBuf` itself (its file reference belongs to the caller).
    """
    if not isinstance(file, DmaHeapFile):
        raise KernelError(errno.ENOTTY, "ioctl: not a dma-heap")
    nr = cmd & _IOC_NRMASK
    if nr >= 1:
        raise KernelError(errno.EINVAL, f"dma_heap_ioctl: nr {nr} >= 1")
    if (cmd >> 8) & 0xFF != ord("H"):
        raise KernelError(errno.ENOTTY, "dma_heap_ioctl: bad type")
    usize = (cmd >> _IOC_SIZESHIFT) & _IOC_SIZEMASK
    udir = cmd >> _IOC_DIRSHIFT
    in_size = usize if udir & _IOC_WRITE else 0
    # copy_from_user(in_size), zero the rest of the 24-byte kernel struct
    k = DmaHeapAllocationData()
    if in_size >= 8:
        k.len = data.len
    if in_size >= 12:
        k.fd = data.fd
    if in_size >= 16:
        k.fd_flags = data.fd_flags
    if in_size >= 24:
        k.heap_flags = data.heap_flags
    if k.fd:
        raise KernelError(errno.EINVAL, "DMA_HEAP_IOCTL_ALLOC: fd must be 0 on input")
    if k.fd_flags & ~DMA_HEAP_VALID_FD_FLAGS:
        raise KernelError(errno.EINVAL, f"DMA_HEAP_IOCTL_ALLOC: bad fd_flags {k.fd_flags:#o}")
    if k.heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS:
        raise KernelError(errno.EINVAL, f"DMA_HEAP_IOCTL_ALLOC: bad heap_flags {k.heap_flags:#x}")
    buf = dma_heap_buffer_alloc(file.heap, k.len, k.fd_flags, k.heap_flags)
    if IS_ERR(buf):
        raise KernelError(-buf, f"DMA_HEAP_IOCTL_ALLOC from {file.heap.name}: {k.len} bytes")  # type: ignore[operator]
    assert isinstance(buf, DmaBuf)
    if files is not None:
        fd = files.install(buf.file, k.fd_flags)
        if fd < 0:
            dma_buf_put(buf)
            raise KernelError(-fd, "DMA_HEAP_IOCTL_ALLOC: no fd")
        k.fd = fd
        data.fd = fd
    else:
        data.fd = buf  # type: ignore[assignment]
    return 0


# ---------------------------------------------------------------------------------------
# heap buffers
# ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class _HeapAttachment:
    """``struct dma_heap_attachment``: the device, its own sg table, ``mapped``."""

    dev: Any
    table: SgTable
    mapped: bool = False


@dataclass(eq=False)
class HeapBuffer:
    """A heap's ``struct *_heap_buffer``: chunks, attachments, vmap count.

    ``chunks`` are ``(pfn, order)`` for the system heap, ``(pfn, npages)`` with
    ``order = -1`` meaning "contiguous run" for the contiguous heaps.
    """

    heap: DmaHeap
    len: int
    chunks: list[tuple[int, int]]
    contiguous: bool
    attachments: list[_HeapAttachment] = field(default_factory=list)
    vmap_cnt: int = 0
    vaddr: int = 0
    base: int = 0  # physical base for contiguous buffers

    @property
    def npages(self) -> int:
        """Pages of the buffer."""
        return self.len >> PAGE_SHIFT

    def pfn_runs(self) -> list[tuple[int, int]]:
        """``(first pfn, pages)`` of every chunk in buffer order."""
        if self.contiguous:
            return [(self.base >> PAGE_SHIFT, self.npages)]
        return [(pfn, 1 << order) for pfn, order in self.chunks]

    def pfn_at(self, pgoff: int) -> int:
        """The pfn backing page ``pgoff`` of the buffer."""
        for pfn, n in self.pfn_runs():
            if pgoff < n:
                return pfn + pgoff
            pgoff -= n
        raise IndexError(pgoff)

    def sg_table(self) -> SgTable:
        """The sg table an attachment gets (``dup_sg_table`` / from pages)."""
        if self.contiguous:
            return _contig_sgt(self.base >> PAGE_SHIFT, self.npages)
        sgt = sg_alloc_table(len(self.chunks))
        for sg, (pfn, order) in zip(sgt.sgl, self.chunks, strict=True):
            sg.page, sg.offset, sg.length = pfn, 0, PAGE_SIZE << order
        return sgt


def _contig_sgt(pfn: int, npages: int) -> SgTable:
    """``sg_alloc_table_from_pages`` over physically contiguous pages: entries of at most
    ``ALIGN_DOWN(UINT_MAX, PAGE_SIZE)`` bytes."""
    max_pages = (UINT_MAX & ~(PAGE_SIZE - 1)) >> PAGE_SHIFT
    sgl = []
    done = 0
    while done < npages:
        n = min(max_pages, npages - done)
        sgl.append(ScatterlistEntry(pfn + done, 0, n << PAGE_SHIFT))
        done += n
    sgl[-1].end = True
    return SgTable(sgl, len(sgl), len(sgl))


def _buf(dmabuf: DmaBuf) -> HeapBuffer:
    buffer: HeapBuffer = dmabuf.priv
    return buffer


def _protected_refusal(dmabuf: DmaBuf, what: str, dev: Any = None) -> int:
    heap = _buf(dmabuf).heap
    who = f"device {getattr(dev, 'name', dev)}" if dev is not None else "the CPU"
    dmabuf.warn(
        "dma-heap.protected-access",
        f"{heap.name}: {what} refused: {who} may not access protected memory",
        Severity.ERROR,
        heap=heap.name,
    )
    return -errno.EPERM


def _heap_attach(dmabuf: DmaBuf, attach: DmaBufAttachment) -> int:
    buffer = _buf(dmabuf)
    if buffer.heap.secure and not getattr(attach.dev, "secure", False):
        return _protected_refusal(dmabuf, "attach", attach.dev)
    a = _HeapAttachment(attach.dev, buffer.sg_table())
    attach.priv = a
    buffer.attachments.insert(0, a)
    return 0


def _heap_detach(dmabuf: DmaBuf, attach: DmaBufAttachment) -> None:
    buffer = _buf(dmabuf)
    a: _HeapAttachment = attach.priv
    if a in buffer.attachments:
        buffer.attachments.remove(a)


def _heap_map(attach: DmaBufAttachment, direction: int) -> SgTable | int:
    a: _HeapAttachment = attach.priv
    buffer = _buf(attach.dmabuf)
    if buffer.heap.secure and not getattr(attach.dev, "secure", False):
        return _protected_refusal(attach.dmabuf, "map", attach.dev)
    ret = dma_mapping.dma_map_sgtable(attach.dev, a.table, direction, 0)
    if ret:
        # system_heap returns ERR_PTR(ret); cma_heap (and ours) return -ENOMEM
        return ret if buffer.heap.kind == "system" else -errno.ENOMEM
    a.mapped = True
    return a.table


def _heap_unmap(attach: DmaBufAttachment, table: SgTable, direction: int) -> None:
    a: _HeapAttachment = attach.priv
    a.mapped = False
    dma_mapping.dma_unmap_sgtable(attach.dev, table, direction, 0)


def _heap_begin_cpu_access(dmabuf: DmaBuf, direction: int) -> int:
    buffer = _buf(dmabuf)
    if buffer.heap.secure:
        return _protected_refusal(dmabuf, "begin_cpu_access")
    # invalidate_kernel_vmap_range: a no-op on arm64 (PIPT caches)
    for a in buffer.attachments:
        if a.mapped:
            dma_mapping.dma_sync_sgtable_for_cpu(a.dev, a.table, direction)
    return 0


def _heap_end_cpu_access(dmabuf: DmaBuf, direction: int) -> int:
    buffer = _buf(dmabuf)
    if buffer.heap.secure:
        return _protected_refusal(dmabuf, "end_cpu_access")
    for a in buffer.attachments:
        if a.mapped:
            dma_mapping.dma_sync_sgtable_for_device(a.dev, a.table, direction)
    return 0


def _heap_mmap(dmabuf: DmaBuf, vma: Vma) -> int:
    buffer = _buf(dmabuf)
    if buffer.heap.secure:
        return _protected_refusal(dmabuf, "mmap")
    if buffer.heap.kind != "system" and not vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        return -errno.EINVAL  # cma_heap_mmap: shared mappings only
    vma.vm_private_data = buffer
    return 0


def _heap_vmap(dmabuf: DmaBuf) -> int:
    buffer = _buf(dmabuf)
    if buffer.heap.secure:
        return _protected_refusal(dmabuf, "vmap")
    if buffer.vmap_cnt:
        buffer.vmap_cnt += 1
        return buffer.vaddr
    buffer.vaddr = buffer.heap.registry.vmap_alloc(buffer.len)
    buffer.vmap_cnt = 1
    return buffer.vaddr


def _heap_vunmap(dmabuf: DmaBuf, vaddr: int) -> None:
    buffer = _buf(dmabuf)
    buffer.vmap_cnt -= 1
    if buffer.vmap_cnt == 0:
        buffer.vaddr = 0


def _heap_release(dmabuf: DmaBuf) -> None:
    buffer = _buf(dmabuf)
    heap = buffer.heap
    if buffer.vmap_cnt > 0 and heap.kind != "system":
        dmabuf.warn(
            "dma-heap.release-while-vmapped",
            f"WARNING: {heap.kind}_heap_dma_buf_release: buffer still mapped in the kernel",
        )
        buffer.vmap_cnt = 0
    _free_backing(buffer)
    if dmabuf in heap.live:
        heap.live.remove(dmabuf)


def _free_backing(buffer: HeapBuffer) -> None:
    heap = buffer.heap
    if heap.kind == "system":
        mem = heap.registry.mem
        assert mem is not None
        for pfn, order in buffer.chunks:
            mem.free_pages(pfn, order)
    elif heap.kind == "cma":
        cma: Cma = heap.priv
        cma.cma_release(buffer.base >> PAGE_SHIFT, buffer.npages)
    else:
        pool: GenPool = heap.priv
        pool.gen_pool_free(buffer.base, buffer.len)
    buffer.chunks = []


HEAP_BUF_OPS = DmaBufOps(
    map_dma_buf=_heap_map,
    unmap_dma_buf=_heap_unmap,
    release=_heap_release,
    attach=_heap_attach,
    detach=_heap_detach,
    begin_cpu_access=_heap_begin_cpu_access,
    end_cpu_access=_heap_end_cpu_access,
    mmap=_heap_mmap,
    vmap=_heap_vmap,
    vunmap=_heap_vunmap,
)


def _export(heap: DmaHeap, buffer: HeapBuffer, fd_flags: int) -> DmaBuf | int:
    exp = DmaBufExportInfo(
        exp_name=heap.name,
        ops=HEAP_BUF_OPS,
        size=buffer.len,
        flags=fd_flags,
        priv=buffer,
        owner=f"{heap.kind}_heap",
    )
    dmabuf = dma_buf_export(exp, heap.registry.core)
    if IS_ERR(dmabuf):
        _free_backing(buffer)
        return dmabuf
    assert isinstance(dmabuf, DmaBuf)
    heap.live.append(dmabuf)
    return dmabuf


# -- system heap --------------------------------------------------------------------------
def _alloc_largest_available(mem: PhysMem, size: int, max_order: int) -> tuple[int, int] | None:
    """``alloc_largest_available``: ``(pfn, order)`` or None."""
    for order in SYSTEM_HEAP_ORDERS:
        if size < PAGE_SIZE << order or max_order < order:
            continue
        pfn = mem.alloc_pages(order, MIGRATE_UNMOVABLE, ZONE_NORMAL, owner="system-heap")
        if pfn is not None:
            return pfn, order
    return None


def _system_heap_allocate(
    heap: DmaHeap, length: int, fd_flags: int, heap_flags: int
) -> DmaBuf | int:
    """``system_heap_allocate``."""
    mem = heap.registry.mem
    assert mem is not None
    remaining = length
    max_order = SYSTEM_HEAP_ORDERS[0]
    chunks: list[tuple[int, int]] = []
    while remaining > 0:
        got = _alloc_largest_available(mem, remaining, max_order)
        if got is None:
            for pfn, order in chunks:
                mem.free_pages(pfn, order)
            return -errno.ENOMEM
        chunks.append(got)
        remaining -= PAGE_SIZE << got[1]
        max_order = got[1]
    heap.bytes_zeroed += length  # __GFP_ZERO
    buffer = HeapBuffer(heap, length, chunks, contiguous=False)
    return _export(heap, buffer, fd_flags)


# -- CMA heap -----------------------------------------------------------------------------
def _cma_heap_allocate(heap: DmaHeap, length: int, fd_flags: int, heap_flags: int) -> DmaBuf | int:
    """``cma_heap_allocate``."""
    cma: Cma = heap.priv
    size = PAGE_ALIGN(length)
    pagecount = size >> PAGE_SHIFT
    align = min(get_order(size), CONFIG_CMA_ALIGNMENT)
    pfn = cma.cma_alloc(pagecount, align, False)
    if pfn is None:
        return -errno.ENOMEM
    heap.bytes_zeroed += size  # memset(page_address(cma_pages), 0, size)
    buffer = HeapBuffer(heap, size, [(pfn, -1)], contiguous=True, base=pfn << PAGE_SHIFT)
    return _export(heap, buffer, fd_flags)


# -- carveout and protected heaps ---------------------------------------------------------
def _carveout_heap_allocate(
    heap: DmaHeap, length: int, fd_flags: int, heap_flags: int
) -> DmaBuf | int:
    """A vendor carveout heap: ``gen_pool_alloc`` from the region's pool."""
    pool: GenPool = heap.priv
    addr = pool.gen_pool_alloc(length)
    if not addr:
        return -errno.ENOMEM
    if not heap.secure:
        heap.bytes_zeroed += length  # memset through the kernel mapping
    buffer = HeapBuffer(heap, length, [(addr >> PAGE_SHIFT, -1)], contiguous=True, base=addr)
    return _export(heap, buffer, fd_flags)


SYSTEM_HEAP_OPS = DmaHeapOps(_system_heap_allocate)
CMA_HEAP_OPS = DmaHeapOps(_cma_heap_allocate)
CARVEOUT_HEAP_OPS = DmaHeapOps(_carveout_heap_allocate)


def dma_heap_init(
    core: DmaBufCore | None,
    mem: PhysMem,
    *,
    secure_regions: Iterable[str] = (),
    carveouts: bool = True,
) -> DmaHeapRegistry:
    """Register the heaps a kernel on ``mem`` has: ``system``; the default CMA area's heap
    (``add_default_cma_heap``); a carveout heap per mapped ``carveout`` region; a
    ``protected,<name>`` heap per ``secure`` region that has a pool."""
    reg = DmaHeapRegistry(core, mem)
    reg.dma_heap_add("system", SYSTEM_HEAP_OPS, None, kind="system")
    if mem.default_cma is not None:
        reg.dma_heap_add(mem.default_cma.name, CMA_HEAP_OPS, mem.default_cma, kind="cma")
    secure = set(secure_regions)
    kinds = {r.name: r.kind for r in mem.regions}
    for name, pool in mem.pools.items():
        if name in secure:
            reg.dma_heap_add(
                f"protected,{name}",
                CARVEOUT_HEAP_OPS,
                pool,
                kind="protected",
                region=name,
                secure=True,
            )
        elif carveouts and kinds.get(name) == "carveout":
            reg.dma_heap_add(name, CARVEOUT_HEAP_OPS, pool, kind="carveout", region=name)
    return reg


def dma_heaps_for_kernel(kernel: Any, **kw: Any) -> DmaHeapRegistry:
    """:func:`dma_heap_init` for a booted :class:`socmem.linux.kernel.Kernel` (its SoC says
    which reserved regions are ``secure``)."""
    secure = [r.name for r in kernel.soc.reserved_memory if getattr(r, "secure", False)]
    return dma_heap_init(kernel.core, kernel.mem, secure_regions=secure, **kw)
