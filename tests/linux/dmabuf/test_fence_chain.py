"""dma-fence-chain conformance: drivers/dma-buf/st-dma-fence-chain.c re-created."""

from __future__ import annotations

import errno
import random
from collections.abc import Callable

import pytest

from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceOps,
    dma_fence_get,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_signal,
)
from socmem.linux.dmabuf.fence_chain import (
    DmaFenceChain,
    dma_fence_chain_contained,
    dma_fence_chain_find_seqno,
    dma_fence_chain_for_each,
    dma_fence_chain_init,
    dma_fence_chain_walk,
    to_dma_fence_chain,
)

MOCK_OPS = DmaFenceOps(get_driver_name=lambda f: "mock", get_timeline_name=lambda f: "mock")
CHAIN_SZ = 4 << 10


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def mock_fence(core: DmaBufCore) -> DmaFence:
    return DmaFence(MOCK_OPS, 0, 0, core=core)


class FenceChains:
    """fence_chains_init(): fences[i], chains[i] = chain(chains[i-1], fences[i], fn(i))."""

    def __init__(
        self,
        core: DmaBufCore,
        count: int,
        seqno_fn: Callable[[int], int],
        enable_each: bool = True,
    ) -> None:
        self.fences: list[DmaFence] = []
        self.chains: list[DmaFenceChain] = []
        for i in range(count):
            f = mock_fence(core)
            self.fences.append(f)
            prev = dma_fence_get(self.chains[i - 1]) if i else None
            self.chains.append(dma_fence_chain_init(prev, dma_fence_get(f), seqno_fn(i)))  # type: ignore[arg-type]
            if enable_each:  # the KUnit version enables signalling on every node
                self.chains[i].enable_sw_signaling()
        self.tail = self.chains[-1]

    def fini(self) -> None:
        for f in self.fences:
            dma_fence_signal(f)
            dma_fence_put(f)
        for c in self.chains:
            dma_fence_put(c)


def seqno_inc(i: int) -> int:
    return i + 1


def seqno_inc2(i: int) -> int:
    return 2 * i + 2


def test_sanitycheck(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: sanitycheck
    f = mock_fence(core)
    chain = dma_fence_chain_init(None, f, 1)
    chain.enable_sw_signaling()
    dma_fence_signal(f)
    assert dma_fence_is_signaled(chain)
    dma_fence_put(chain)
    assert chain.freed and f.freed
    assert len(core.findings) == 0


def test_find_seqno(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: find_seqno
    fc = FenceChains(core, 64, seqno_inc)
    fence = dma_fence_get(fc.tail)
    err, fence = dma_fence_chain_find_seqno(fence, 0)
    dma_fence_put(fence)
    assert err == 0 and fence is fc.tail
    for i in range(64):
        err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.tail), i + 1)
        assert err == 0 and fence is fc.chains[i]
        err, fence = dma_fence_chain_find_seqno(fence, i + 1)
        assert err == 0 and fence is fc.chains[i]
        dma_fence_put(fence)
        err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.chains[i]), i + 2)
        dma_fence_put(fence)
        assert err == -errno.EINVAL
        err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.chains[i]), i)
        dma_fence_put(fence)
        assert err == 0
        if i > 0:
            assert fence is fc.chains[i - 1]
    fc.fini()
    assert not core.findings.of_kind("dma-fence.refcount-underflow")


def test_find_seqno_not_a_chain(core: DmaBufCore) -> None:
    f = mock_fence(core)
    assert dma_fence_chain_find_seqno(f, 1) == (-errno.EINVAL, f)


def test_find_signaled(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: find_signaled
    fc = FenceChains(core, 2, seqno_inc)
    dma_fence_signal(fc.fences[0])
    err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.tail), 1)
    assert err == 0
    assert fence is None  # everything up to seqno 1 signalled and collected
    fc.fini()


def test_find_out_of_order(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: find_out_of_order
    fc = FenceChains(core, 3, seqno_inc)
    dma_fence_signal(fc.fences[1])
    err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.tail), 2)
    dma_fence_put(fence)
    assert err == 0 and fence is fc.chains[0]
    fc.fini()


def test_find_gap(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: find_gap
    fc = FenceChains(core, 64, seqno_inc2)
    for i in range(64):
        err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.tail), 2 * i + 1)
        assert err == 0 and fence is fc.chains[i]
        err, fence = dma_fence_chain_find_seqno(fence, 2 * i + 2)
        dma_fence_put(fence)
        assert err == 0 and fence is fc.chains[i]
    fc.fini()


def test_find_race(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: find_race — threads replaced by a seeded random interleaving
    rng = random.Random(1)
    n = 512
    fc = FenceChains(core, n, seqno_inc)
    for _ in range(2000):
        seqno = rng.randint(1, n)
        err, fence = dma_fence_chain_find_seqno(dma_fence_get(fc.tail), seqno)
        assert err == 0
        if fence is not None and fence.seqno == seqno:
            err, fence = dma_fence_chain_find_seqno(fence, seqno)
            assert err == 0
        dma_fence_put(fence)
        dma_fence_signal(fc.fences[rng.randint(0, n - 2)])
    fc.fini()
    assert not core.findings.of_kind("dma-fence")


def test_signal_forward(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: signal_forward
    fc = FenceChains(core, 64, seqno_inc)
    for i in range(64):
        dma_fence_signal(fc.fences[i])
        assert dma_fence_is_signaled(fc.chains[i])
        if i + 1 < 64:
            assert not dma_fence_is_signaled(fc.chains[i + 1])
    fc.fini()


def test_signal_backward(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: signal_backward
    fc = FenceChains(core, 64, seqno_inc)
    for i in range(63, 0, -1):
        dma_fence_signal(fc.fences[i])
        assert not dma_fence_is_signaled(fc.chains[i])
    dma_fence_signal(fc.fences[0])
    assert all(dma_fence_is_signaled(c) for c in fc.chains)
    fc.fini()


def _wait_test(core: DmaBufCore, order: list[int]) -> None:
    # Legacy (pre-KUnit) set-up without per-node enable_signaling: with it, signalling
    # 4096 nodes backwards re-arms O(n^2) callbacks (as in the kernel) and takes ~20 s here.
    fc = FenceChains(core, CHAIN_SZ, seqno_inc, enable_each=False)
    # the waiter thread: an uninterruptible wait on the tail, here driven by timers
    for t, i in enumerate(order):
        core.clock.schedule_at(t + 1, lambda i=i: dma_fence_signal(fc.fences[i]))
    assert fc.tail.wait(False) == 0
    assert fc.tail.signaled_flag
    assert all(dma_fence_is_signaled(c) for c in fc.chains)
    fc.fini()
    assert not core.findings.of_kind("dma-fence")


def test_wait_forward(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: wait_forward
    _wait_test(core, list(range(CHAIN_SZ)))


def test_wait_backward(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: wait_backward
    _wait_test(core, list(range(CHAIN_SZ - 1, -1, -1)))


def test_wait_random(core: DmaBufCore) -> None:
    # st-dma-fence-chain.c: wait_random (Fisher-Yates shuffle)
    order = list(range(CHAIN_SZ))
    random.Random(4).shuffle(order)
    _wait_test(core, order)


# --- unit tests --------------------------------------------------------------------------


def test_init_context_and_seqno_rules(core: DmaBufCore) -> None:
    c1 = dma_fence_chain_init(None, mock_fence(core), 5)
    c2 = dma_fence_chain_init(c1, mock_fence(core), 7)
    assert c2.context == c1.context and c2.prev_seqno == 5
    c3 = dma_fence_chain_init(c2, mock_fence(core), 3)  # not later: new context, seqno kept
    assert c3.context != c2.context and c3.seqno == 7 and c3.prev_seqno == 0
    plain = mock_fence(core)
    c4 = dma_fence_chain_init(plain, mock_fence(core), 2)
    assert c4.seqno == 2 and c4.prev_seqno == 0 and c4.prev is plain
    # 64-bit seqnos: no 32-bit wrap for chains
    c5 = dma_fence_chain_init(None, mock_fence(core), 0xFFFFFFFF)
    c6 = dma_fence_chain_init(c5, mock_fence(core), 0x1_0000_0000)
    assert c6.context == c5.context


def test_names_and_helpers(core: DmaBufCore) -> None:
    f = mock_fence(core)
    c = dma_fence_chain_init(None, f, 1)
    assert c.driver_name() == "dma_fence_chain" and c.timeline_name() == "unbound"
    assert to_dma_fence_chain(c) is c and to_dma_fence_chain(f) is None
    assert dma_fence_chain_contained(c) is f and dma_fence_chain_contained(f) is f


def test_walk_collects_signalled(core: DmaBufCore) -> None:
    fc = FenceChains(core, 4, seqno_inc)
    dma_fence_signal(fc.fences[1])
    dma_fence_signal(fc.fences[2])
    prev = dma_fence_chain_walk(dma_fence_get(fc.tail))
    assert prev is fc.chains[0]
    assert fc.tail.prev is fc.chains[0]  # nodes 1 and 2 unlinked
    dma_fence_put(prev)
    nodes = list(dma_fence_chain_for_each(fc.tail))
    assert nodes == [fc.tail, fc.chains[0]]
    fc.fini()


def test_chain_error_is_not_propagated(core: DmaBufCore) -> None:
    f = mock_fence(core)
    c = dma_fence_chain_init(None, dma_fence_get(f), 1)  # type: ignore[arg-type]
    c.enable_sw_signaling()
    f.set_error(-errno.EIO)
    dma_fence_signal(f)
    assert c.get_status() == 1  # chains carry no error of their own


def test_release_long_chain_no_recursion(core: DmaBufCore) -> None:
    fc = FenceChains(core, 3000, seqno_inc)
    for c in fc.chains[:-1]:
        dma_fence_put(c)  # only the tail's references remain
    for f in fc.fences:
        dma_fence_signal(f)
    dma_fence_put(fc.tail)
    assert fc.tail.freed and fc.chains[0].freed
