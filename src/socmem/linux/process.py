"""User-space processes: fd tables, mmaps, fd passing, and per-process dma-buf
accounting as Android's ``dmabuf_dump`` shows it.

* :class:`Process` — ``struct task_struct`` reduced to ``files`` (``fs/file.c``: the
  lowest free fd from ``alloc_fd``, ``dup``/``dup2``/``close`` with ``EBADF``,
  ``O_CLOEXEC`` per fd) and ``mm`` (``mmap``/``munmap`` of files; a mapping holds its own
  file reference, as a vma does, so a buffer outlives ``close(fd)`` while mapped).
* ``send_fd`` is SCM_RIGHTS: the receiver gets a new fd on the *same* open file (one more
  ``f_count``), the lowest free one, without ``O_CLOEXEC`` unless asked
  (``MSG_CMSG_CLOEXEC``).
* ``exit`` is ``do_exit``: ``exit_mm`` drops every mapping, then ``exit_files`` closes
  every fd (in fd order).  Whatever a process still held at exit is returned and
  recorded in :attr:`Process.exit_report`; it is *not* a finding by itself (exit is how
  most programs free buffers).  A finding ``process.exit-leak`` is recorded only for
  buffers that stay **alive because of nothing**: after the exit, a buffer the process
  held is still live but no process (fd or mapping) references it — the remaining
  references are kernel ones (an importer's ``dma_buf_get`` never put, a stuck poll),
  which is what a user would call a leak.
* :class:`UserSpace` — the processes of a system, ``/dev`` nodes (heaps, ``/dev/udmabuf``),
  pids, and :meth:`UserSpace.dmabuf_dump`: per process the buffers referenced by fd
  and/or mapping, size (Rss), Pss (size / number of processes referencing it), inode,
  exporter and name; rendered in ``dmabuf_dump``'s raw per-process layout
  (libdmabufinfo ``RawOutput``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from socmem.check.finding import Severity
from socmem.errors import KernelError
from socmem.linux.dmabuf.dma_buf import (
    O_CLOEXEC,
    PAGE_SHIFT,
    PAGE_SIZE,
    VM_MAYSHARE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    DmaBuf,
    DmaBufFile,
    File,
    SyncFileFile,
    Vma,
    dma_buf_get,
    dma_buf_list,
    dma_buf_show_fdinfo,
)
from socmem.linux.dmabuf.fence import DmaBufCore, get_default_core
from socmem.linux.dmabuf.sync_file import SyncFile

__all__ = [
    "MAP_PRIVATE",
    "MAP_SHARED",
    "PROT_READ",
    "PROT_WRITE",
    "DmabufDump",
    "DmabufDumpEntry",
    "FdEntry",
    "Mapping",
    "Process",
    "UserSpace",
]

PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
TASK_UNMAPPED_BASE = 0x7F00_0000_0000
RLIMIT_NOFILE = 1024


@dataclass(eq=False)
class FdEntry:
    """One slot of the fd table: the file and the close-on-exec bit."""

    file: File
    cloexec: bool = False


@dataclass(eq=False)
class Mapping:
    """A vma over a file (``mmap``): it holds one file reference until ``munmap``."""

    process: Process
    addr: int
    length: int
    prot: int
    flags: int
    vma: Vma
    file: File
    unmapped: bool = False

    @property
    def dmabuf(self) -> DmaBuf | None:
        """The dma-buf mapped, if it is one."""
        return self.file.dmabuf if isinstance(self.file, DmaBufFile) else None

    def __repr__(self) -> str:
        return f"<Mapping {self.addr:#x}+{self.length:#x} {self.file.d_path()}>"


class Process:
    """A user-space process: pid, name, fd table and file mappings."""

    def __init__(
        self,
        pid: int,
        name: str,
        *,
        userspace: UserSpace | None = None,
        core: DmaBufCore | None = None,
    ) -> None:
        self.pid = pid
        self.name = name
        self.userspace = userspace
        self.core = (
            core if core is not None else (userspace.core if userspace else get_default_core())
        )
        self.fds: dict[int, FdEntry] = {}
        self.mappings: list[Mapping] = []
        self.exited = False
        self.exit_report: dict[str, Any] = {}
        self._next_addr = TASK_UNMAPPED_BASE

    # -- fd table (FdContext) --------------------------------------------------------
    def _check_alive(self) -> None:
        if self.exited:
            raise KernelError(errno.ESRCH, f"process {self.pid} has exited")

    def alloc_fd(self, start: int = 0) -> int:
        """``alloc_fd``: the lowest free fd ``>= start``, or ``-EMFILE``."""
        fd = start
        while fd in self.fds:
            fd += 1
        return fd if fd < RLIMIT_NOFILE else -errno.EMFILE

    def install(self, file: File, flags: int = 0) -> int:
        """``get_unused_fd_flags(flags)`` + ``fd_install``: takes the caller's reference."""
        self._check_alive()
        fd = self.alloc_fd()
        if fd < 0:
            file.fput()
            return fd
        self.fds[fd] = FdEntry(file, bool(flags & O_CLOEXEC))
        return fd

    def fget(self, fd: int) -> File | None:
        """``fget(fd)``: a new reference to the fd's file, or None."""
        e = self.fds.get(fd) if isinstance(fd, int) else None
        if e is None:
            return None
        return e.file.get_file()

    def file(self, fd: int) -> File:
        """The file behind ``fd`` (no reference taken); ``EBADF`` if none."""
        e = self.fds.get(fd)
        if e is None:
            raise KernelError(errno.EBADF, f"fd {fd}: Bad file descriptor")
        return e.file

    # -- syscalls ----------------------------------------------------------------------
    def open(self, path: str, flags: int = 0o2) -> int:
        """``open(path, flags)`` on a ``/dev`` node the user space knows; ``ENOENT``."""
        self._check_alive()
        opener = self.userspace.devnodes().get(path) if self.userspace else None
        if opener is None:
            raise KernelError(errno.ENOENT, f"{path}: No such file or directory")
        fd = self.install(opener(flags & ~O_CLOEXEC), flags)
        if fd < 0:
            raise KernelError(-fd, "open: too many open files")
        return fd

    def open_file(self, file: File, flags: int = 0) -> int:
        """Install an already-open file (``anon_inode_getfd`` style); returns the fd."""
        fd = self.install(file, flags)
        if fd < 0:
            raise KernelError(-fd, "too many open files")
        return fd

    def close(self, fd: int) -> int:
        """``close(fd)``: 0, or ``EBADF``."""
        e = self.fds.pop(fd, None) if not self.exited else None
        if e is None:
            raise KernelError(errno.EBADF, f"close({fd}): Bad file descriptor")
        e.file.fput()
        return 0

    def dup(self, fd: int) -> int:
        """``dup(fd)``: the lowest free fd on the same file (no ``O_CLOEXEC``)."""
        self._check_alive()
        f = self.file(fd)
        new = self.alloc_fd()
        if new < 0:
            raise KernelError(-new, "dup: too many open files")
        self.fds[new] = FdEntry(f.get_file(), False)
        return new

    def dup2(self, oldfd: int, newfd: int) -> int:
        """``dup2``: ``newfd`` closed first (silently); same fd is a no-op; ``EBADF``."""
        self._check_alive()
        f = self.file(oldfd)
        if newfd < 0 or newfd >= RLIMIT_NOFILE:
            raise KernelError(errno.EBADF, f"dup2: bad fd {newfd}")
        if oldfd == newfd:
            return newfd
        old = self.fds.get(newfd)
        self.fds[newfd] = FdEntry(f.get_file(), False)
        if old is not None:
            old.file.fput()
        return newfd

    def set_cloexec(self, fd: int, on: bool = True) -> None:
        """``fcntl(fd, F_SETFD, FD_CLOEXEC)``."""
        self._check_alive()
        self.file(fd)
        self.fds[fd].cloexec = on

    def send_fd(self, fd: int, other: Process, cloexec: bool = False) -> int:
        """SCM_RIGHTS: ``other`` gets a new fd on the same open file; returns that fd."""
        self._check_alive()
        f = self.file(fd)
        ret = other.install(f.get_file(), O_CLOEXEC if cloexec else 0)
        if ret < 0:
            raise KernelError(-ret, "SCM_RIGHTS: receiver has no free fd")
        return ret

    def ioctl(self, fd: int, cmd: int, arg: Any = None) -> int:
        """``ioctl(fd, cmd, arg)``: the file's ``unlocked_ioctl`` (errors raise)."""
        self._check_alive()
        f = self.file(fd)
        return f.ioctl(cmd, arg, self)

    def lseek(self, fd: int, offset: int, whence: int) -> int:
        """``lseek``: the file's ``llseek`` (errors raise)."""
        r = self.file(fd).llseek(offset, whence)
        if r < 0:
            raise KernelError(-r, "lseek")
        return r

    def poll(self, fd: int, events: int) -> int:
        """``poll`` once (timeout 0): the ready events."""
        return self.file(fd).poll(events)

    def mmap(
        self,
        fd: int,
        length: int,
        prot: int = PROT_READ | PROT_WRITE,
        flags: int = MAP_SHARED,
        offset: int = 0,
    ) -> Mapping:
        """``mmap(NULL, length, prot, flags, fd, offset)`` → :class:`Mapping`.

        ``EINVAL`` for a zero length or unaligned offset; the file's mmap errno otherwise.
        """
        self._check_alive()
        f = self.file(fd)
        if length <= 0 or offset % PAGE_SIZE:
            raise KernelError(errno.EINVAL, "mmap: bad length or offset")
        size = (length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        vm_flags = (VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
        if flags & MAP_SHARED:
            vm_flags |= VM_SHARED | VM_MAYSHARE
        addr = self._next_addr
        vma = Vma(addr, addr + size, offset >> PAGE_SHIFT, vm_flags, f.get_file())
        ret = f.mmap(vma)
        if ret < 0:
            vma.file.fput()  # type: ignore[union-attr]
            raise KernelError(-ret, f"mmap of {f.d_path()}")
        self._next_addr += size + PAGE_SIZE
        assert vma.file is not None
        m = Mapping(self, addr, size, prot, flags, vma, vma.file)
        self.mappings.append(m)
        return m

    def munmap(self, mapping: Mapping) -> int:
        """``munmap``: drop the vma and its file reference; ``EINVAL`` if not mapped here."""
        if mapping.unmapped or mapping not in self.mappings:
            raise KernelError(errno.EINVAL, "munmap: not a mapping of this process")
        self.mappings.remove(mapping)
        mapping.unmapped = True
        mapping.file.fput()
        return 0

    def dma_buf_get(self, fd: int) -> DmaBuf:
        """``dma_buf_get(fd)`` from this process (a driver's import): a new reference."""
        e = self.fds.get(fd)
        buf = dma_buf_get(e.file if e is not None else None)
        if isinstance(buf, int):
            raise KernelError(-buf, f"dma_buf_get({fd})")
        return buf

    # -- /proc -------------------------------------------------------------------------
    def fd_link(self, fd: int) -> str:
        """``readlink /proc/<pid>/fd/<fd>``."""
        return self.file(fd).d_path()

    def fdinfo(self, fd: int) -> str:
        """``/proc/<pid>/fdinfo/<fd>``."""
        e = self.fds.get(fd)
        if e is None:
            raise KernelError(errno.ENOENT, f"/proc/{self.pid}/fdinfo/{fd}")
        return dma_buf_show_fdinfo(e.file, cloexec=e.cloexec, fd=fd)

    def dmabuf_refs(self) -> tuple[dict[int, int], dict[int, int]]:
        """``({ino: fd refs}, {ino: map refs})`` of the dma-bufs this process holds."""
        fdrefs: dict[int, int] = {}
        maprefs: dict[int, int] = {}
        for e in self.fds.values():
            if isinstance(e.file, DmaBufFile):
                fdrefs[e.file.ino] = fdrefs.get(e.file.ino, 0) + 1
        for m in self.mappings:
            if isinstance(m.file, DmaBufFile):
                maprefs[m.file.ino] = maprefs.get(m.file.ino, 0) + 1
        return fdrefs, maprefs

    def held_dmabufs(self) -> list[DmaBuf]:
        """Distinct dma-bufs referenced by an fd or a mapping of this process."""
        seen: dict[int, DmaBuf] = {}
        for e in self.fds.values():
            if isinstance(e.file, DmaBufFile):
                seen.setdefault(id(e.file.dmabuf), e.file.dmabuf)
        for m in self.mappings:
            if m.dmabuf is not None:
                seen.setdefault(id(m.dmabuf), m.dmabuf)
        return list(seen.values())

    # -- exit --------------------------------------------------------------------------
    def exit(self) -> dict[str, Any]:
        """``do_exit``: ``exit_mm`` (all mappings) then ``exit_files`` (all fds).

        Returns (and keeps in :attr:`exit_report`) what was still held; records
        ``process.exit-leak`` for held buffers that stay alive with no process
        referencing them.
        """
        if self.exited:
            return self.exit_report
        held = self.held_dmabufs()
        report = {
            "fds": {fd: e.file.d_path() for fd, e in sorted(self.fds.items())},
            "mappings": [(m.addr, m.length, m.file.d_path()) for m in self.mappings],
            "dmabufs": [b.ino for b in held],
        }
        for m in list(self.mappings):
            self.munmap(m)
        for fd in sorted(self.fds):
            e = self.fds.pop(fd)
            e.file.fput()
        self.exited = True
        self.exit_report = report
        others = self.userspace.processes.values() if self.userspace else []
        for b in held:
            if b.released:
                continue
            if any(b in p.held_dmabufs() for p in others if not p.exited):
                continue
            f = b.warn(
                "process.exit-leak",
                f"{b.label()} stays alive after {self.name}:{self.pid} exited with no process "
                f"referencing it (file count {b.file_count}: kernel references never put)",
                Severity.WARNING,
                pid=self.pid,
                ino=b.ino,
                count=b.file_count,
            )
            f.data["process"] = self.name
        return report

    def __repr__(self) -> str:
        state = " exited" if self.exited else ""
        return (
            f"<Process {self.name}:{self.pid} fds={len(self.fds)} maps={len(self.mappings)}{state}>"
        )


# ---------------------------------------------------------------------------------------
# dmabuf_dump
# ---------------------------------------------------------------------------------------
@dataclass
class DmabufDumpEntry:
    """One buffer as libdmabufinfo's ``DmaBuffer`` sees it."""

    ino: int
    size: int
    name: str
    exporter: str
    fdrefs: dict[int, int] = field(default_factory=dict)  # pid -> fd references
    maprefs: dict[int, int] = field(default_factory=dict)  # pid -> mappings

    @property
    def pids(self) -> set[int]:
        """Processes referencing the buffer (by fd or mapping)."""
        return set(self.fdrefs) | set(self.maprefs)

    @property
    def pss(self) -> int:
        """``DmaBuffer::Pss``: size split evenly between the referencing processes."""
        n = len(self.pids)
        return self.size // n if n else 0


@dataclass
class DmabufDump:
    """What ``dmabuf_dump`` computes: buffers, processes, totals (bytes)."""

    entries: list[DmabufDumpEntry]
    processes: dict[int, str]
    total_size: int  # every live dma-buf (the per-buffer stats' total)

    def rss(self, pid: int) -> int:
        """Sum of the sizes of the buffers ``pid`` references."""
        return sum(e.size for e in self.entries if pid in e.pids)

    def pss(self, pid: int) -> int:
        """Sum of the Pss of the buffers ``pid`` references."""
        return sum(e.pss for e in self.entries if pid in e.pids)

    def fd_only(self, pid: int) -> list[DmabufDumpEntry]:
        """Buffers ``pid`` holds by fd."""
        return [e for e in self.entries if pid in e.fdrefs]

    def map_only(self, pid: int) -> list[DmabufDumpEntry]:
        """Buffers ``pid`` holds only through a mapping (fd closed)."""
        return [e for e in self.entries if pid in e.maprefs and pid not in e.fdrefs]

    @property
    def userspace_size(self) -> int:
        """Bytes of buffers some process references."""
        return sum(e.size for e in self.entries)

    @property
    def kernel_rss(self) -> int:
        """Bytes of live buffers no process references."""
        return max(0, self.total_size - self.userspace_size)

    def render(self) -> str:
        """``dmabuf_dump`` (no arguments) in the raw per-process layout."""
        out: list[str] = []
        if not self.entries:
            return "dmabuf info not found ¯\\_(ツ)_/¯\n"
        total_rss = total_pss = 0
        for pid in sorted(self.processes):
            mine = sorted((e for e in self.entries if pid in e.pids), key=lambda e: e.ino)
            if not mine:
                continue
            out.append(f"{self.processes[pid]:>16}:{pid:<5}\n")
            out.append(
                f"{'Name':>22} {'Rss':>16} {'Pss':>16} {'nr_procs':>16} {'Inode':>16} "
                f"{'Exporter':>22}\n"
            )
            rss = pss = 0
            for e in mine:
                name = e.name or "<unknown>"
                exp = e.exporter or "<unknown>"
                out.append(
                    f"{name:>22} {e.size // 1024:>13} kB {e.pss // 1024:>13} kB "
                    f"{len(e.pids):>16} {e.ino:>16}  {exp:>22}\n"
                )
                rss += e.size
                pss += e.pss
            out.append(
                f"{'PROCESS TOTAL':>22} {rss // 1024:>13} kB {pss // 1024:>13} kB {'':>16}\n"
            )
            out.append("----------------------\n")
            total_rss += rss
            total_pss += pss
        out.append(
            f"dmabuf total: {(self.userspace_size + self.kernel_rss) // 1024} kB kernel_rss: "
            f"{self.kernel_rss // 1024} kB userspace_rss: {total_rss // 1024} kB "
            f"userspace_pss: {total_pss // 1024} kB\n "
        )
        return "".join(out)


class UserSpace:
    """The processes of one system, its ``/dev`` nodes, and ``dmabuf_dump``."""

    def __init__(self, core: DmaBufCore | None = None) -> None:
        self.core = core if core is not None else get_default_core()
        self.processes: dict[int, Process] = {}
        self.next_pid = 100
        self._devnodes: dict[str, Callable[[int], File]] = {}

    def add_devnodes(self, nodes: dict[str, Callable[[int], File]]) -> None:
        """Make ``/dev`` nodes openable (``DmaHeapRegistry.devnodes()``, udmabuf)."""
        self._devnodes.update(nodes)

    def devnodes(self) -> dict[str, Callable[[int], File]]:
        """Path → opener."""
        return self._devnodes

    def spawn(self, name: str, pid: int | None = None) -> Process:
        """A new process (pids count up from 100 unless given)."""
        if pid is None:
            pid = self.next_pid
            self.next_pid += 1
        if pid in self.processes and not self.processes[pid].exited:
            raise KernelError(errno.EEXIST, f"pid {pid} in use")
        p = Process(pid, name, userspace=self, core=self.core)
        self.processes[pid] = p
        return p

    def live(self) -> list[Process]:
        """Processes that have not exited."""
        return [p for p in self.processes.values() if not p.exited]

    def dmabuf_dump(self) -> DmabufDump:
        """Per-process dma-buf accounting of the live processes (``dmabuf_dump``)."""
        entries: dict[int, DmabufDumpEntry] = {}
        procs: dict[int, str] = {}
        for p in self.live():
            fdrefs, maprefs = p.dmabuf_refs()
            for b in p.held_dmabufs():
                e = entries.setdefault(
                    b.ino, DmabufDumpEntry(b.ino, b.size, b.name or "", b.exp_name)
                )
                if b.ino in fdrefs:
                    e.fdrefs[p.pid] = fdrefs[b.ino]
                if b.ino in maprefs:
                    e.maprefs[p.pid] = maprefs[b.ino]
                procs[p.pid] = p.name
        total = dma_buf_list(self.core).total_bytes
        return DmabufDump(sorted(entries.values(), key=lambda e: e.ino), procs, total)


def sync_file_install(process: Process, sync_file: SyncFile, cloexec: bool = True) -> int:
    """Give ``process`` an fd on ``sync_file`` (``anon_inode:sync_file``)."""
    return process.open_file(SyncFileFile(sync_file), O_CLOEXEC if cloexec else 0)
