"""Stateful model check of fences, sync_files and sw_sync timelines (hypothesis).

Random create / inc / add_callback / remove_callback / merge / chain / close on several
sw_sync timelines.  Invariants: a callback runs exactly once iff its fence signalled (and
was not removed first); a fence signals at most once; a merged sync_file's FILE_INFO
status is the aggregate of its leaves; timeline points signal in seqno order; refcounts
never go negative; no WARN findings.
"""

from __future__ import annotations

import errno

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from socmem.linux.dmabuf.fence import DmaBufCore, DmaFence, DmaFenceCb, dma_fence_get
from socmem.linux.dmabuf.fence_chain import dma_fence_chain_init
from socmem.linux.dmabuf.sw_sync import SwSyncTimeline, sw_sync_timeline_create
from socmem.linux.dmabuf.sync_file import SyncFile, SyncFileInfo, sync_file_create


class FenceMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.core = DmaBufCore()
        self.timelines: list[SwSyncTimeline] = [
            sw_sync_timeline_create(f"tl{i}", self.core) for i in range(3)
        ]
        self.files: list[SyncFile] = []
        self.fences: list[DmaFence] = []  # every fence ever seen, by identity
        self.signal_count: dict[int, int] = {}
        self.callbacks: list[tuple[DmaFence, DmaFenceCb, list[int]]] = []
        self.removed: set[int] = set()
        self.order: dict[int, list[int]] = {tl.context: [] for tl in self.timelines}

    def _track(self, f: DmaFence) -> None:
        if any(f is g for g in self.fences):
            return
        self.fences.append(f)
        dma_fence_get(f)  # the tracker waits on it, so it holds a reference
        key = id(f)
        self.signal_count[key] = 1 if f.signaled_flag else 0

        def count(fence: DmaFence, _cb: DmaFenceCb) -> None:
            self.signal_count[id(fence)] += 1
            if fence.context in self.order:
                self.order[fence.context].append(fence.seqno)

        if not f.signaled_flag and f.add_callback(DmaFenceCb(), count) == -errno.ENOENT:
            # enable_signaling found it complete (e.g. a chain of signalled fences)
            assert f.signaled_flag
            self.signal_count[key] = 1

    @rule(t=st.integers(0, 2), value=st.integers(0, 20))
    def create(self, t: int, value: int) -> None:
        tl = self.timelines[t]
        if tl.closed:
            return
        sf = tl.create_fence(value)
        self._track(sf.fence)
        self.files.append(sf)

    @rule(t=st.integers(0, 2), n=st.integers(0, 6))
    def inc(self, t: int, n: int) -> None:
        tl = self.timelines[t]
        if not tl.closed:
            assert tl.inc(n) == 0

    @rule(t=st.integers(0, 2))
    def close_timeline(self, t: int) -> None:
        tl = self.timelines[t]
        if not tl.closed:
            tl.close()

    @rule(i=st.integers(0, 100))
    def add_callback(self, i: int) -> None:
        if not self.files:
            return
        f = self.files[i % len(self.files)].fence
        runs: list[int] = []
        cb = DmaFenceCb()
        ret = f.add_callback(cb, lambda fence, c: runs.append(1))
        if ret == -errno.ENOENT:
            assert f.signaled_flag and runs == []
        else:
            assert ret == 0
            self.callbacks.append((f, cb, runs))

    @rule(i=st.integers(0, 100))
    def remove_callback(self, i: int) -> None:
        if not self.callbacks:
            return
        f, cb, _runs = self.callbacks[i % len(self.callbacks)]
        was_pending = cb.linked
        assert f.remove_callback(cb) == was_pending
        if was_pending:
            self.removed.add(id(cb))

    @rule(i=st.integers(0, 100), j=st.integers(0, 100))
    def merge(self, i: int, j: int) -> None:
        if not self.files:
            return
        a = self.files[i % len(self.files)]
        b = self.files[j % len(self.files)]
        if a.closed or b.closed:
            return
        m = a.merge("m", b)
        self._track(m.fence)
        self.files.append(m)

    @rule(i=st.integers(0, 100), j=st.integers(0, 100), seqno=st.integers(1, 10))
    def chain(self, i: int, j: int, seqno: int) -> None:
        live = [f for f in self.files if not f.closed]
        if not live:
            return
        prev = live[i % len(live)].fence
        fence = live[j % len(live)].fence
        from socmem.linux.dmabuf.fence_chain import to_dma_fence_chain

        if to_dma_fence_chain(fence) is not None:
            return  # chains may not contain chains
        node = dma_fence_chain_init(dma_fence_get(prev), dma_fence_get(fence), seqno)  # type: ignore[arg-type]
        sf = sync_file_create(node)
        node.put()
        self._track(node)
        self.files.append(sf)

    @rule(i=st.integers(0, 100))
    def close_file(self, i: int) -> None:
        if self.files:
            sf = self.files[i % len(self.files)]
            if not sf.closed:
                sf.close()

    @invariant()
    def callbacks_exactly_once_iff_signalled(self) -> None:
        for f, cb, runs in self.callbacks:
            if id(cb) in self.removed:
                assert runs == []
            else:
                assert len(runs) == (1 if f.signaled_flag else 0)

    @invariant()
    def signal_at_most_once(self) -> None:
        for f in self.fences:
            n = self.signal_count[id(f)]
            assert n == (1 if f.signaled_flag else 0)

    @invariant()
    def merged_status_is_aggregate(self) -> None:
        for sf in self.files:
            if sf.closed:
                continue
            infos = sf.fence_infos()
            status = 1
            for fi in infos:
                status = status if status <= 0 else fi.status
            n = len(infos)
            got = sf.ioctl_file_info(SyncFileInfo(num_fences=n, sync_fence_info=[])).status
            assert got == status

    @invariant()
    def points_signal_in_order(self) -> None:
        for seqnos in self.order.values():
            assert seqnos == sorted(seqnos)

    @invariant()
    def refcounts_never_negative(self) -> None:
        assert all(f.refcount >= 0 for f in self.fences)
        assert not self.core.findings.of_kind("dma-fence")
        assert not self.core.findings.of_kind("dma-fence-array")


FenceMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestFenceMachine = FenceMachine.TestCase
