"""dma-resv conformance: drivers/dma-buf/st-dma-resv.c re-created, plus units."""

from __future__ import annotations

import errno

import pytest

from socmem.check.finding import Severity
from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceOps,
    dma_fence_context_alloc,
    dma_fence_put,
    dma_fence_signal,
)
from socmem.linux.dmabuf.fence_array import dma_fence_array_create, to_dma_fence_array
from socmem.linux.dmabuf.resv import (
    DmaResv,
    DmaResvUsage,
    ResvContractError,
    WwAcquireCtx,
    dma_resv_add_fence,
    dma_resv_copy_fences,
    dma_resv_describe,
    dma_resv_fini,
    dma_resv_for_each_fence,
    dma_resv_get_fences,
    dma_resv_get_singleton,
    dma_resv_init,
    dma_resv_iter_begin,
    dma_resv_iter_end,
    dma_resv_iter_first_unlocked,
    dma_resv_iter_is_restarted,
    dma_resv_iter_next_unlocked,
    dma_resv_iter_usage,
    dma_resv_lock,
    dma_resv_replace_fences,
    dma_resv_reserve_fences,
    dma_resv_test_signaled,
    dma_resv_trylock,
    dma_resv_unlock,
    dma_resv_usage_rw,
    dma_resv_wait_timeout,
)

MOCK_OPS = DmaFenceOps(get_driver_name=lambda f: "mock", get_timeline_name=lambda f: "mock")
USAGES = list(DmaResvUsage)


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def alloc_fence(core: DmaBufCore, context: int = 0, seqno: int = 0) -> DmaFence:
    f = DmaFence(MOCK_OPS, context, seqno, core=core)
    f.enable_sw_signaling()
    return f


def locked_with(core: DmaBufCore, f: DmaFence, usage: DmaResvUsage) -> DmaResv:
    resv = dma_resv_init(core)
    assert dma_resv_lock(resv, None) == 0
    assert dma_resv_reserve_fences(resv, 1) == 0
    dma_resv_add_fence(resv, f, usage)
    return resv


# --- st-dma-resv.c -------------------------------------------------------------------------


def test_sanitycheck(core: DmaBufCore) -> None:
    # st-dma-resv.c: sanitycheck
    f = alloc_fence(core)
    f.enable_sw_signaling()
    dma_fence_signal(f)
    dma_fence_put(f)
    resv = dma_resv_init(core)
    assert dma_resv_lock(resv, None) == 0
    dma_resv_unlock(resv)
    dma_resv_fini(resv)
    assert len(core.findings) == 0


@pytest.mark.parametrize("usage", USAGES, ids=str)
def test_signaling(core: DmaBufCore, usage: DmaResvUsage) -> None:
    # st-dma-resv.c: test_signaling (x4 usages)
    f = alloc_fence(core)
    resv = locked_with(core, f, usage)
    assert not dma_resv_test_signaled(resv, usage)
    dma_fence_signal(f)
    assert dma_resv_test_signaled(resv, usage)
    dma_resv_unlock(resv)
    dma_resv_fini(resv)
    dma_fence_put(f)
    assert f.freed and len(core.findings) == 0


@pytest.mark.parametrize("usage", USAGES, ids=str)
def test_for_each(core: DmaBufCore, usage: DmaResvUsage) -> None:
    # st-dma-resv.c: test_for_each (locked iterator)
    f = alloc_fence(core)
    resv = locked_with(core, f, usage)
    seen = list(dma_resv_for_each_fence(resv, usage))
    assert seen == [(f, usage)]
    dma_resv_unlock(resv)


@pytest.mark.parametrize("usage", USAGES, ids=str)
def test_for_each_unlocked(core: DmaBufCore, usage: DmaResvUsage) -> None:
    # st-dma-resv.c: test_for_each_unlocked (a corrupted cursor forces one restart)
    f = alloc_fence(core)
    resv = locked_with(core, f, usage)
    dma_resv_unlock(resv)
    cursor = dma_resv_iter_begin(resv, usage)
    visits = 0
    fence = dma_resv_iter_first_unlocked(cursor)
    while fence is not None:
        visits += 1
        assert visits <= 2
        assert dma_resv_iter_is_restarted(cursor)
        assert fence is f and dma_resv_iter_usage(cursor) == usage
        if visits == 1:
            cursor.fences = None  # the selftest's "cursor.fences = (void*)~0"
        fence = dma_resv_iter_next_unlocked(cursor)
    dma_resv_iter_end(cursor)
    assert visits == 2
    assert f.refcount == 2  # no reference leaked by the iterator


@pytest.mark.parametrize("usage", USAGES, ids=str)
def test_get_fences(core: DmaBufCore, usage: DmaResvUsage) -> None:
    # st-dma-resv.c: test_get_fences
    f = alloc_fence(core)
    resv = locked_with(core, f, usage)
    dma_resv_unlock(resv)
    ret, fences = dma_resv_get_fences(resv, usage)
    assert ret == 0 and fences == [f]
    assert f.refcount == 3  # ours, the resv's, the array's
    for x in fences:
        dma_fence_put(x)


# --- unit tests ----------------------------------------------------------------------------


def test_usage_order_and_rw() -> None:
    assert DmaResvUsage.KERNEL < DmaResvUsage.WRITE < DmaResvUsage.READ < DmaResvUsage.BOOKKEEP
    assert dma_resv_usage_rw(True) == DmaResvUsage.READ
    assert dma_resv_usage_rw(False) == DmaResvUsage.WRITE


def test_query_returns_usage_le(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 4)
    fs = {}
    for u in USAGES:
        fs[u] = alloc_fence(core, dma_fence_context_alloc(1, core), 1)
        dma_resv_add_fence(resv, fs[u], u)
    for u in USAGES:
        got = [f for f, _ in dma_resv_for_each_fence(resv, u)]
        assert got == [fs[v] for v in USAGES if v <= u]
    dma_resv_unlock(resv)


def test_add_without_reservation_is_bug(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    f = alloc_fence(core)
    with pytest.raises(ResvContractError) as ei:
        dma_resv_add_fence(resv, f, DmaResvUsage.WRITE)
    assert ei.value.finding.severity == Severity.FATAL
    assert core.findings.of_kind("dma-resv.add-fence-no-slot")
    assert f.refcount == 1


def test_reservation_dies_with_unlock(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    assert dma_resv_reserve_fences(resv, 2) == 0
    dma_resv_add_fence(resv, alloc_fence(core, 1, 1), DmaResvUsage.READ)
    dma_resv_unlock(resv)
    dma_resv_lock(resv)
    with pytest.raises(ResvContractError):
        dma_resv_add_fence(resv, alloc_fence(core, 2, 1), DmaResvUsage.READ)


def test_reserve_n_then_n_adds(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    assert dma_resv_reserve_fences(resv, 3) == 0
    assert resv.max_fences >= 3
    for i in range(3):
        dma_resv_add_fence(resv, alloc_fence(core, 10 + i, 1), DmaResvUsage.READ)
    assert dma_resv_reserve_fences(resv, 0) == -errno.EINVAL
    assert core.findings.of_kind("dma-resv.reserve-zero")


def test_add_not_held_warns(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 1)
    resv.locked = False  # simulate a missing lock with a reservation left over
    dma_resv_add_fence(resv, alloc_fence(core), DmaResvUsage.READ)
    assert core.findings.of_kind("dma-resv.not-held")


def test_add_container_warns(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 1)
    a = dma_fence_array_create([alloc_fence(core, 7, 1)], 99, 1, False)
    dma_resv_add_fence(resv, a, DmaResvUsage.READ)
    assert core.findings.of_kind("dma-resv.add-container")


def test_same_context_replacement_rules(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 4)
    ctx = dma_fence_context_alloc(1, core)
    w1 = alloc_fence(core, ctx, 1)
    dma_resv_add_fence(resv, w1, DmaResvUsage.WRITE)
    r2 = alloc_fence(core, ctx, 2)
    dma_resv_add_fence(resv, r2, DmaResvUsage.READ)  # weaker: kept alongside
    assert resv.num_fences == 2
    w3 = alloc_fence(core, ctx, 3)
    dma_resv_add_fence(resv, w3, DmaResvUsage.WRITE)  # replaces w1 in place
    assert [e.fence for e in resv.entries] == [w3, r2]
    assert w1.refcount == 1
    dma_resv_add_fence(resv, w3, DmaResvUsage.KERNEL)  # same fence, stronger: promoted
    assert (resv.entries[0].fence, resv.entries[0].usage) == (w3, DmaResvUsage.KERNEL)
    old = alloc_fence(core, ctx, 1)
    dma_resv_reserve_fences(resv, 1)
    dma_resv_add_fence(resv, old, DmaResvUsage.KERNEL)  # earlier seqno: appended
    assert resv.num_fences == 3
    dma_fence_signal(r2)
    other = alloc_fence(core, dma_fence_context_alloc(1, core), 1)
    dma_resv_add_fence(resv, other, DmaResvUsage.BOOKKEEP)  # recycles r2's slot
    assert resv.entries[1].fence is other and resv.num_fences == 3


def test_reserve_compacts_signalled(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 1)
    cap = resv.max_fences
    fs = [alloc_fence(core, dma_fence_context_alloc(1, core), 1) for _ in range(cap)]
    for f in fs:
        dma_resv_add_fence(resv, f, DmaResvUsage.READ)
    dma_fence_signal(fs[0])
    assert dma_resv_reserve_fences(resv, 1) == 0  # reallocates, drops fs[0]
    assert fs[0] not in [e.fence for e in resv.entries]
    assert resv.max_fences > cap


def test_replace_fences(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 3)
    a1, a2 = alloc_fence(core, 5, 1), alloc_fence(core, 5, 0)
    b = alloc_fence(core, 6, 1)
    dma_resv_add_fence(resv, a1, DmaResvUsage.WRITE)
    dma_resv_add_fence(resv, a2, DmaResvUsage.READ)
    dma_resv_add_fence(resv, b, DmaResvUsage.READ)
    r = alloc_fence(core, 9, 1)
    dma_resv_replace_fences(resv, 5, r, DmaResvUsage.BOOKKEEP)
    assert [(e.fence, e.usage) for e in resv.entries] == [
        (r, DmaResvUsage.BOOKKEEP),
        (r, DmaResvUsage.BOOKKEEP),
        (b, DmaResvUsage.READ),
    ]
    assert r.refcount == 3


def test_get_singleton(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    assert dma_resv_get_singleton(resv, DmaResvUsage.BOOKKEEP) == (0, None)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 2)
    f1 = alloc_fence(core, 1, 1)
    dma_resv_add_fence(resv, f1, DmaResvUsage.WRITE)
    assert dma_resv_get_singleton(resv, DmaResvUsage.WRITE) == (0, f1)
    f2 = alloc_fence(core, 2, 1)
    dma_resv_add_fence(resv, f2, DmaResvUsage.READ)
    ret, s = dma_resv_get_singleton(resv, DmaResvUsage.READ)
    a = to_dma_fence_array(s)
    assert ret == 0 and a is not None and a.fences == [f1, f2]
    dma_fence_signal(f1)
    assert dma_resv_get_singleton(resv, DmaResvUsage.READ) == (0, f2)


def test_wait_timeout(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    assert dma_resv_wait_timeout(resv, DmaResvUsage.READ, False, 0) == 1
    assert dma_resv_wait_timeout(resv, DmaResvUsage.READ, False, 50) == 50
    f = alloc_fence(core, 1, 1)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 1)
    dma_resv_add_fence(resv, f, DmaResvUsage.WRITE)
    dma_resv_unlock(resv)
    assert dma_resv_wait_timeout(resv, DmaResvUsage.KERNEL, False, 10) == 10
    assert dma_resv_wait_timeout(resv, DmaResvUsage.WRITE, False, 0) == 0
    assert dma_resv_wait_timeout(resv, DmaResvUsage.WRITE, False, 10) == 0
    core.clock.schedule_in(4, lambda: dma_fence_signal(f))
    assert dma_resv_wait_timeout(resv, DmaResvUsage.READ, False, 10) == 6


def test_copy_fences(core: DmaBufCore) -> None:
    src, dst = dma_resv_init(core), dma_resv_init(core)
    dma_resv_lock(src)
    dma_resv_reserve_fences(src, 2)
    f1, f2 = alloc_fence(core, 1, 1), alloc_fence(core, 2, 1)
    dma_resv_add_fence(src, f1, DmaResvUsage.WRITE)
    dma_resv_add_fence(src, f2, DmaResvUsage.BOOKKEEP)
    dma_fence_signal(f1)
    dma_resv_lock(dst)
    dma_resv_reserve_fences(dst, 1)
    old = alloc_fence(core, 3, 1)
    dma_resv_add_fence(dst, old, DmaResvUsage.READ)
    assert dma_resv_copy_fences(dst, src) == 0
    assert [(e.fence, e.usage) for e in dst.entries] == [(f2, DmaResvUsage.BOOKKEEP)]
    assert old.refcount == 1


def test_locking(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    ctx, ctx2 = WwAcquireCtx(), WwAcquireCtx()
    assert dma_resv_lock(resv, ctx) == 0
    assert dma_resv_lock(resv, ctx) == -errno.EALREADY
    assert dma_resv_lock(resv, ctx2) == -errno.EDEADLK
    assert not dma_resv_trylock(resv)
    with pytest.raises(ResvContractError):
        dma_resv_lock(resv, None)
    dma_resv_unlock(resv)
    assert dma_resv_trylock(resv)
    dma_resv_unlock(resv)
    dma_resv_unlock(resv)
    assert core.findings.of_kind("dma-resv.unlock-not-held")


def test_describe(core: DmaBufCore) -> None:
    resv = dma_resv_init(core)
    dma_resv_lock(resv)
    dma_resv_reserve_fences(resv, 2)
    dma_resv_add_fence(resv, alloc_fence(core, 1, 4), DmaResvUsage.WRITE)
    dma_resv_add_fence(resv, alloc_fence(core, 2, 5), DmaResvUsage.BOOKKEEP)
    assert dma_resv_describe(resv) == "\twrite fence:mock mock seq 4 unsignalled\n"
