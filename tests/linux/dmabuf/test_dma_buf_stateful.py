"""Stateful model check (hypothesis) of dma-bufs across 3 processes on a booted kernel.

Random alloc (system / CMA heap) / send fd / dup / mmap / munmap / close / attach /
map / unmap / detach / exit.  Invariants: file counts never negative and equal to the
references the model holds; no buffer released while referenced; bufinfo totals equal
the live buffers; once every process exited and every attachment is gone, all buffers
are released and the page allocator and CMA are back to their initial free counts.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from socmem.linux.dma.types import DMA_BIDIRECTIONAL
from socmem.linux.dmabuf.dma_buf import (
    IS_ERR,
    O_CLOEXEC,
    O_RDWR,
    DmaBuf,
    dma_buf_attach,
    dma_buf_debug_show,
    dma_buf_detach,
    dma_buf_get,
    dma_buf_list,
    dma_buf_map_attachment,
    dma_buf_put,
    dma_buf_unmap_attachment,
)
from socmem.linux.dmabuf.heaps import (
    DMA_HEAP_IOCTL_ALLOC,
    DmaHeapAllocationData,
    dma_heaps_for_kernel,
)
from socmem.linux.kernel import Kernel
from socmem.linux.process import UserSpace
from socmem.soc.loader import load_soc
from socmem.trace.bufinfo import parse_bufinfo

SOC = load_soc("reference-mobile")
DEVICES = ["isp", "display", "venc"]


class DmaBufMachine(RuleBasedStateMachine):
    @initialize()
    def boot(self) -> None:
        self.k = Kernel.boot(SOC)
        self.heaps = dma_heaps_for_kernel(self.k)
        self.us = UserSpace(self.k.core)
        self.us.add_devnodes(self.heaps.devnodes())
        self.procs = [self.us.spawn(f"p{i}") for i in range(3)]
        self.free0 = self.k.mem.buddy.nr_free_pages
        self.cma0 = self.k.mem.default_cma.used()
        self.bufs: list[DmaBuf] = []
        # importer state: (buf, attachment, held ref, mapped sgt or None)
        self.imports: list[list[Any]] = []
        self.imported: set[int] = set()  # an importer's reference may outlive the process

    def _live_procs(self) -> list[Any]:
        return [p for p in self.procs if not p.exited]

    @rule(
        i=st.integers(0, 2),
        pages=st.integers(1, 300),
        heap=st.sampled_from(["system", "linux,cma"]),
    )
    def alloc(self, i: int, pages: int, heap: str) -> None:
        p = self.procs[i]
        if p.exited:
            return
        hfd = p.open(f"/dev/dma_heap/{heap}")
        d = DmaHeapAllocationData(len=pages * 4096, fd_flags=O_RDWR | O_CLOEXEC)
        p.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, d)
        p.close(hfd)
        self.bufs.append(p.file(d.fd).dmabuf)

    @rule(i=st.integers(0, 2), j=st.integers(0, 2), n=st.integers(0, 50))
    def send_fd(self, i: int, j: int, n: int) -> None:
        src, dst = self.procs[i], self.procs[j]
        if src.exited or dst.exited or not src.fds:
            return
        fd = sorted(src.fds)[n % len(src.fds)]
        src.send_fd(fd, dst)

    @rule(i=st.integers(0, 2), n=st.integers(0, 50))
    def dup(self, i: int, n: int) -> None:
        p = self.procs[i]
        if p.exited or not p.fds:
            return
        p.dup(sorted(p.fds)[n % len(p.fds)])

    @rule(i=st.integers(0, 2), n=st.integers(0, 50))
    def close(self, i: int, n: int) -> None:
        p = self.procs[i]
        if p.exited or not p.fds:
            return
        p.close(sorted(p.fds)[n % len(p.fds)])

    @rule(i=st.integers(0, 2), n=st.integers(0, 50))
    def mmap(self, i: int, n: int) -> None:
        p = self.procs[i]
        if p.exited or not p.fds:
            return
        fd = sorted(p.fds)[n % len(p.fds)]
        p.mmap(fd, 4096)

    @rule(i=st.integers(0, 2), n=st.integers(0, 50))
    def munmap(self, i: int, n: int) -> None:
        p = self.procs[i]
        if p.exited or not p.mappings:
            return
        p.munmap(p.mappings[n % len(p.mappings)])

    @rule(i=st.integers(0, 2), n=st.integers(0, 50), dev=st.sampled_from(DEVICES), m=st.booleans())
    def attach(self, i: int, n: int, dev: str, m: bool) -> None:
        p = self.procs[i]
        if p.exited or not p.fds:
            return
        buf = p.dma_buf_get(sorted(p.fds)[n % len(p.fds)])
        a = dma_buf_attach(buf, self.k.device(dev))
        assert not IS_ERR(a)
        sgt = None
        if m:
            sgt = dma_buf_map_attachment(a, DMA_BIDIRECTIONAL)
            assert not IS_ERR(sgt)
        self.imports.append([buf, a, sgt])
        self.imported.add(buf.ino)

    @precondition(lambda self: self.imports)
    @rule(n=st.integers(0, 50))
    def detach(self, n: int) -> None:
        buf, a, sgt = self.imports.pop(n % len(self.imports))
        if sgt is not None:
            dma_buf_unmap_attachment(a, sgt, DMA_BIDIRECTIONAL)
        dma_buf_detach(buf, a)
        dma_buf_put(buf)

    @rule(i=st.integers(0, 2))
    def exit_and_respawn(self, i: int) -> None:
        p = self.procs[i]
        p.exit()
        self.procs[i] = self.us.spawn(f"p{i}")

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def refcounts_match_references(self) -> None:
        if not hasattr(self, "k"):
            return
        expected: dict[int, int] = {}
        for p in self._live_procs():
            for e in p.fds.values():
                expected[id(e.file)] = expected.get(id(e.file), 0) + 1
            for m in p.mappings:
                expected[id(m.file)] = expected.get(id(m.file), 0) + 1
        for buf, _a, _s in self.imports:
            expected[id(buf.file)] = expected.get(id(buf.file), 0) + 1
        for b in self.bufs:
            assert b.file.f_count >= 0
            n = expected.get(id(b.file), 0)
            assert b.file.f_count == n
            assert b.released == (n == 0)  # never released while referenced

    @invariant()
    def bufinfo_totals(self) -> None:
        if not hasattr(self, "k"):
            return
        live = [b for b in self.bufs if not b.released]
        info = parse_bufinfo(dma_buf_debug_show(self.k.core))
        assert info.total_objects == len(live) == len(dma_buf_list(self.k.core))
        assert info.total_bytes == sum(b.size for b in live)
        assert not info.warnings

    def teardown(self) -> None:
        if not hasattr(self, "k"):
            return
        for buf, a, sgt in self.imports:
            if sgt is not None:
                dma_buf_unmap_attachment(a, sgt, DMA_BIDIRECTIONAL)
            dma_buf_detach(buf, a)
            dma_buf_put(buf)
        for p in self.procs:
            p.exit()
        assert all(b.released for b in self.bufs)
        assert len(dma_buf_list(self.k.core)) == 0
        assert self.k.mem.buddy.nr_free_pages == self.free0
        assert self.k.mem.default_cma.used() == self.cma0
        bad = [
            f
            for f in self.k.findings
            if f.kind.startswith(("dma-buf", "file.", "process."))
            and not (f.kind == "process.exit-leak" and f.data["ino"] in self.imported)
        ]
        assert not bad, bad


DmaBufMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestDmaBufStateful = DmaBufMachine.TestCase


def test_dma_buf_get_takes_reference() -> None:
    k = Kernel.boot(SOC)
    us = UserSpace(k.core)
    us.add_devnodes(dma_heaps_for_kernel(k).devnodes())
    p = us.spawn("p")
    hfd = p.open("/dev/dma_heap/system")
    d = DmaHeapAllocationData(len=4096, fd_flags=O_RDWR)
    p.ioctl(hfd, DMA_HEAP_IOCTL_ALLOC, d)
    b = dma_buf_get(p.file(d.fd))
    assert isinstance(b, DmaBuf) and b.file_count == 2
