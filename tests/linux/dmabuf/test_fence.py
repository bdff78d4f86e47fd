"""dma-fence conformance: drivers/dma-buf/st-dma-fence.c re-created, plus every return value."""

from __future__ import annotations

import errno

import pytest

from socmem.check.finding import Severity
from socmem.linux.clock import MAX_SCHEDULE_TIMEOUT, ModelClock
from socmem.linux.dmabuf.fence import (
    DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
    DMA_FENCE_FLAG_TIMESTAMP_BIT,
    ERESTARTSYS,
    DmaBufCore,
    DmaFence,
    DmaFenceCb,
    DmaFenceOps,
    FenceWaitHang,
    __dma_fence_is_later,
    dma_fence_add_callback,
    dma_fence_allocate_private_stub,
    dma_fence_check_and_signal,
    dma_fence_context_alloc,
    dma_fence_describe,
    dma_fence_get,
    dma_fence_get_status,
    dma_fence_get_stub,
    dma_fence_is_later,
    dma_fence_is_later_or_same,
    dma_fence_is_signaled,
    dma_fence_later,
    dma_fence_put,
    dma_fence_remove_callback,
    dma_fence_set_error,
    dma_fence_signal,
    dma_fence_timestamp,
    dma_fence_wait,
    dma_fence_wait_any_timeout,
    dma_fence_wait_timeout,
)

MOCK_OPS = DmaFenceOps(get_driver_name=lambda f: "mock", get_timeline_name=lambda f: "mock")


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def mock_fence(core: DmaBufCore, context: int = 0, seqno: int = 0) -> DmaFence:
    return DmaFence(MOCK_OPS, context, seqno, core=core)


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[DmaFence, DmaFenceCb]] = []

    def __call__(self, f: DmaFence, cb: DmaFenceCb) -> None:
        self.calls.append((f, cb))


# --- st-dma-fence.c ---------------------------------------------------------------------


def test_sanitycheck(core: DmaBufCore) -> None:
    # st-dma-fence.c: sanitycheck
    f = mock_fence(core)
    f.enable_sw_signaling()
    assert dma_fence_signal(f) == 0
    dma_fence_put(f)
    assert f.freed and f.refcount == 0
    assert len(core.findings) == 0


def test_signaling(core: DmaBufCore) -> None:
    # st-dma-fence.c: signaling (v6.12 return values; recent check_and_signal too)
    f = mock_fence(core)
    f.enable_sw_signaling()
    assert not dma_fence_is_signaled(f)
    assert dma_fence_signal(f) == 0
    assert dma_fence_is_signaled(f)
    assert dma_fence_signal(f) == -errno.EINVAL
    assert dma_fence_signal(None) == -errno.EINVAL
    g = mock_fence(core)
    assert dma_fence_check_and_signal(g) is False
    assert dma_fence_check_and_signal(g) is True


def test_add_callback(core: DmaBufCore) -> None:
    # st-dma-fence.c: add_callback
    f = mock_fence(core)
    seen = Seen()
    cb = DmaFenceCb()
    assert dma_fence_add_callback(f, cb, seen) == 0
    assert seen.calls == []
    dma_fence_signal(f)
    assert seen.calls == [(f, cb)]


def test_late_add_callback(core: DmaBufCore) -> None:
    # st-dma-fence.c: late_add_callback
    f = mock_fence(core)
    f.enable_sw_signaling()
    dma_fence_signal(f)
    seen = Seen()
    cb = DmaFenceCb()
    assert dma_fence_add_callback(f, cb, seen) == -errno.ENOENT
    dma_fence_signal(f)
    assert seen.calls == []
    assert dma_fence_remove_callback(f, cb) is False


def test_rm_callback(core: DmaBufCore) -> None:
    # st-dma-fence.c: rm_callback
    f = mock_fence(core)
    seen = Seen()
    cb = DmaFenceCb()
    assert dma_fence_add_callback(f, cb, seen) == 0
    assert dma_fence_remove_callback(f, cb) is True
    dma_fence_signal(f)
    assert seen.calls == []


def test_late_rm_callback(core: DmaBufCore) -> None:
    # st-dma-fence.c: late_rm_callback
    f = mock_fence(core)
    seen = Seen()
    cb = DmaFenceCb()
    assert dma_fence_add_callback(f, cb, seen) == 0
    dma_fence_signal(f)
    assert len(seen.calls) == 1
    assert dma_fence_remove_callback(f, cb) is False


def test_status(core: DmaBufCore) -> None:
    # st-dma-fence.c: status
    f = mock_fence(core)
    f.enable_sw_signaling()
    assert dma_fence_get_status(f) == 0
    dma_fence_signal(f)
    assert dma_fence_get_status(f) == 1


def test_error(core: DmaBufCore) -> None:
    # st-dma-fence.c: error
    f = mock_fence(core)
    f.enable_sw_signaling()
    dma_fence_set_error(f, -errno.EIO)
    assert dma_fence_get_status(f) == 0
    dma_fence_signal(f)
    assert dma_fence_get_status(f) == -errno.EIO
    assert len(core.findings) == 0


def test_wait(core: DmaBufCore) -> None:
    # st-dma-fence.c: wait (timeout 0 polls: 0 pending, 1 signalled)
    f = mock_fence(core)
    f.enable_sw_signaling()
    assert dma_fence_wait_timeout(f, False, 0) == 0
    dma_fence_signal(f)
    assert dma_fence_wait_timeout(f, False, 0) == 1


def test_wait_timeout(core: DmaBufCore) -> None:
    # st-dma-fence.c: wait_timeout (a timer signals the fence one "jiffy" later)
    f = mock_fence(core)
    f.enable_sw_signaling()
    assert dma_fence_wait_timeout(f, False, 1) == 0
    assert core.now == 1  # the wait let its timeout pass
    core.clock.schedule_in(1, lambda: dma_fence_signal(f))
    ret = dma_fence_wait_timeout(f, False, 1000)
    assert ret == 999  # remaining model time
    assert core.now == 2
    assert dma_fence_timestamp(f) == 2


def test_stub(core: DmaBufCore) -> None:
    # st-dma-fence.c: stub (64 times, always signalled, the same global object)
    stubs = [dma_fence_get_stub(core) for _ in range(64)]
    assert all(dma_fence_is_signaled(s) for s in stubs)
    assert all(s is stubs[0] for s in stubs)
    assert stubs[0].context == 0 and stubs[0].seqno == 0
    assert stubs[0].driver_name() == "stub" == stubs[0].timeline_name()
    for s in stubs:
        dma_fence_put(s)
    assert not stubs[0].freed


@pytest.mark.parametrize("before", [False, True])
def test_race_signal_callback(core: DmaBufCore, before: bool) -> None:
    # st-dma-fence.c: race_signal_callback — the model is single-threaded, so both
    # interleavings of "signal own fence" and "add callback on the other" are run
    # deterministically: the callback is never lost (run, or add reports -ENOENT).
    fences = [mock_fence(core), mock_fence(core)]
    seen = [False, False]
    for t in range(2):
        f1, f2 = fences[t], fences[1 - t]
        if before:
            dma_fence_signal(f1)

        def mark(_f: DmaFence, _cb: DmaFenceCb, t: int = t) -> None:
            seen[t] = True

        if dma_fence_add_callback(f2, DmaFenceCb(), mark):
            seen[t] = True  # a "miss": already signalled
        if not before:
            dma_fence_signal(f1)
    assert seen == [True, True]


# --- unit tests of every return value ----------------------------------------------------


def test_new_fence_state(core: DmaBufCore) -> None:
    f = mock_fence(core, 5, 7)
    assert (f.context, f.seqno, f.error, f.refcount, f.flags) == (5, 7, 0, 1, 0)
    assert dma_fence_get_status(f) == 0


def test_context_alloc(core: DmaBufCore) -> None:
    a = dma_fence_context_alloc(1, core)
    b = dma_fence_context_alloc(3, core)
    c = dma_fence_context_alloc(1, core)
    assert a == 1  # v6.12 starts at 1; 0 is the stub's
    assert (b, c) == (a + 1, a + 4)
    dma_fence_context_alloc(0, core)
    assert core.findings.of_kind("dma-fence.context-alloc-zero")


def test_callbacks_order_once(core: DmaBufCore) -> None:
    f = mock_fence(core)
    order: list[int] = []
    cbs = [DmaFenceCb() for _ in range(5)]
    for i, cb in enumerate(cbs):
        assert dma_fence_add_callback(f, cb, lambda _f, _cb, i=i: order.append(i)) == 0
    assert f.pending_callbacks() == 5
    dma_fence_signal(f)
    dma_fence_signal(f)
    assert order == [0, 1, 2, 3, 4]
    assert f.test_bit(DMA_FENCE_FLAG_TIMESTAMP_BIT)
    assert f.pending_callbacks() == 0


def test_remove_callback_from_callback(core: DmaBufCore) -> None:
    f = mock_fence(core)
    seen = Seen()
    cb2 = DmaFenceCb()
    cb1 = DmaFenceCb()
    assert dma_fence_add_callback(f, cb1, lambda *_: dma_fence_remove_callback(f, cb2)) == 0
    assert dma_fence_add_callback(f, cb2, seen) == 0
    dma_fence_signal(f)
    assert seen.calls == []


def test_add_callback_null_func(core: DmaBufCore) -> None:
    f = mock_fence(core)
    assert dma_fence_add_callback(f, DmaFenceCb(), None) == -errno.EINVAL
    assert core.findings.of_kind("dma-fence.add-callback-invalid")


def test_enable_signaling_op_reports_passed(core: DmaBufCore) -> None:
    ops = DmaFenceOps(
        get_driver_name=lambda f: "d",
        get_timeline_name=lambda f: "t",
        enable_signaling=lambda f: False,
    )
    f = DmaFence(ops, 1, 1, core=core)
    assert dma_fence_add_callback(f, DmaFenceCb(), Seen()) == -errno.ENOENT
    assert f.signaled_flag and f.test_bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)


def test_signaled_op_signals_on_query(core: DmaBufCore) -> None:
    done = [False]
    ops = DmaFenceOps(
        get_driver_name=lambda f: "d", get_timeline_name=lambda f: "t", signaled=lambda f: done[0]
    )
    f = DmaFence(ops, 1, 1, core=core)
    assert not dma_fence_is_signaled(f)
    done[0] = True
    assert dma_fence_is_signaled(f) and f.signaled_flag


def test_set_error_after_signal_warns(core: DmaBufCore) -> None:
    f = mock_fence(core)
    dma_fence_signal(f)
    dma_fence_set_error(f, -errno.EIO)
    (w,) = core.findings.of_kind("dma-fence.set-error-after-signal")
    assert w.severity == Severity.WARNING
    assert f.error == -errno.EIO  # stored anyway, like the kernel


@pytest.mark.parametrize("err", [0, 1, -4096])
def test_set_error_invalid(core: DmaBufCore, err: int) -> None:
    f = mock_fence(core)
    dma_fence_set_error(f, err)
    assert core.findings.of_kind("dma-fence.set-error-invalid")


def test_set_error_bounds_ok(core: DmaBufCore) -> None:
    f = mock_fence(core)
    dma_fence_set_error(f, -4095)
    assert len(core.findings) == 0


def test_release_with_pending_callbacks(core: DmaBufCore) -> None:
    f = mock_fence(core, 0x10, 0x20)
    seen = Seen()
    dma_fence_add_callback(f, DmaFenceCb(), seen)
    dma_fence_put(f)
    (w,) = core.findings.of_kind("dma-fence.released-unsignaled")
    assert w.message == "Fence mock:mock:10:20 released with pending signals!"
    assert f.error == -errno.EDEADLK
    assert len(seen.calls) == 1  # signalled so waiters don't hang
    assert w.history[0].what == "dma_fence_init"


def test_release_unsignaled_without_callbacks_is_fine(core: DmaBufCore) -> None:
    f = mock_fence(core)
    dma_fence_put(f)
    assert len(core.findings) == 0


def test_refcount_underflow_and_get_after_free(core: DmaBufCore) -> None:
    f = mock_fence(core)
    assert dma_fence_get(f) is f and f.refcount == 2
    dma_fence_put(f)
    dma_fence_put(f)
    dma_fence_put(f)
    assert f.refcount == 0
    assert core.findings.of_kind("dma-fence.refcount-underflow")
    dma_fence_get(f)
    assert core.findings.of_kind("dma-fence.get-after-free")
    assert dma_fence_get(None) is None
    dma_fence_put(None)


def test_release_op_called(core: DmaBufCore) -> None:
    released: list[DmaFence] = []
    ops = DmaFenceOps(
        get_driver_name=lambda f: "d", get_timeline_name=lambda f: "t", release=released.append
    )
    f = DmaFence(ops, 1, 1, core=core)
    dma_fence_put(f)
    assert released == [f]


def test_is_later_32bit_wrap(core: DmaBufCore) -> None:
    assert __dma_fence_is_later(1, 0xFFFFFFF0)
    assert not __dma_fence_is_later(0xFFFFFFF0, 1)
    assert not __dma_fence_is_later(5, 5)
    assert __dma_fence_is_later(0x1_0000_0002, 1)  # only low 32 bits
    ops64 = DmaFenceOps(lambda f: "d", lambda f: "t", use_64bit_seqno=True)
    assert not __dma_fence_is_later(1, 0xFFFFFFF0, ops64)
    assert __dma_fence_is_later(0x1_0000_0000, 0xFFFFFFFF, ops64)
    a, b = mock_fence(core, 3, 1), mock_fence(core, 3, 0xFFFFFFF0)
    assert dma_fence_is_later(a, b) and not dma_fence_is_later(b, a)
    assert dma_fence_is_later_or_same(a, a) and not dma_fence_is_later(a, a)
    assert dma_fence_later(a, b) is a
    dma_fence_signal(a)
    assert dma_fence_later(a, b) is None


def test_is_later_context_mismatch(core: DmaBufCore) -> None:
    a, b = mock_fence(core, 1, 2), mock_fence(core, 2, 1)
    assert dma_fence_is_later(a, b) is False
    assert dma_fence_later(a, b) is None
    assert len(core.findings.of_kind("dma-fence.is-later-context-mismatch")) == 2


def test_timestamp_from_clock(core: DmaBufCore) -> None:
    f = mock_fence(core)
    dma_fence_timestamp(f)
    assert core.findings.of_kind("dma-fence.timestamp-unsignaled")
    core.clock.advance(12345)
    dma_fence_signal(f)
    assert dma_fence_timestamp(f) == 12345


def test_private_stub(core: DmaBufCore) -> None:
    s = dma_fence_allocate_private_stub(777, core)
    assert s.signaled_flag and dma_fence_timestamp(s) == 777
    assert s.context != 0 and s.seqno == 0


def test_wait_timeout_negative(core: DmaBufCore) -> None:
    f = mock_fence(core)
    assert dma_fence_wait_timeout(f, False, -1) == -errno.EINVAL
    assert core.findings.of_kind("dma-fence.wait-negative-timeout")


def test_wait_signalled_returns_timeout(core: DmaBufCore) -> None:
    f = mock_fence(core)
    dma_fence_signal(f)
    assert dma_fence_wait_timeout(f, True, 500) == 500
    assert dma_fence_wait(f) == 0


def test_wait_restartsys(core: DmaBufCore) -> None:
    f = mock_fence(core)
    core.signal_pending = True
    assert dma_fence_wait_timeout(f, True, 100) == -ERESTARTSYS
    assert dma_fence_wait(f, True) == -ERESTARTSYS
    assert dma_fence_wait_timeout(f, False, 100) == 0  # uninterruptible ignores it


def test_wait_forever_hangs(core: DmaBufCore) -> None:
    f = mock_fence(core)
    with pytest.raises(FenceWaitHang):
        dma_fence_wait(f, False)
    assert core.findings.of_kind("dma-fence.wait-forever")


def test_wait_forever_with_timer(core: DmaBufCore) -> None:
    f = mock_fence(core)
    core.clock.schedule_at(50, lambda: dma_fence_signal(f))
    assert dma_fence_wait(f, False) == 0
    assert core.now == 50
    g = mock_fence(core)
    core.clock.schedule_in(5, lambda: dma_fence_signal(g))
    assert dma_fence_wait_timeout(g, False, MAX_SCHEDULE_TIMEOUT) == MAX_SCHEDULE_TIMEOUT


def test_wait_inside_clock_callback_does_not_advance(core: DmaBufCore) -> None:
    f = mock_fence(core)
    out: list[int] = []
    core.clock.schedule_at(10, lambda: out.append(dma_fence_wait_timeout(f, False, 100)))
    core.clock.advance(20)
    assert out == [0] and core.now == 20


def test_wait_any_timeout(core: DmaBufCore) -> None:
    a, b = mock_fence(core), mock_fence(core)
    assert dma_fence_wait_any_timeout([], False, 1) == (-errno.EINVAL, None)
    assert dma_fence_wait_any_timeout([a, b], False, -1) == (-errno.EINVAL, None)
    assert dma_fence_wait_any_timeout([a, b], False, 0) == (0, None)
    core.clock.schedule_in(10, lambda: dma_fence_signal(b))
    assert dma_fence_wait_any_timeout([a, b], False, 100) == (90, 1)
    assert dma_fence_wait_any_timeout([a, b], False, 0) == (1, 1)


def test_describe(core: DmaBufCore) -> None:
    f = mock_fence(core, 1, 9)
    assert dma_fence_describe(f) == "mock mock seq 9 unsignalled\n"
    dma_fence_signal(f)
    assert dma_fence_describe(f) == "mock mock seq 9 signalled\n"


def test_model_clock() -> None:
    clock = ModelClock()
    seen: list[tuple[int, str]] = []
    clock.schedule_at(10, lambda: seen.append((clock.now, "b")))
    clock.schedule_at(5, lambda: seen.append((clock.now, "a")))
    t = clock.schedule_at(7, lambda: seen.append((clock.now, "x")))
    assert clock.cancel(t) and not clock.cancel(t)
    clock.schedule_at(10, lambda: seen.append((clock.now, "c")))
    assert clock.next_deadline() == 5
    clock.advance(10)
    assert seen == [(5, "a"), (10, "b"), (10, "c")]
    with pytest.raises(ValueError):
        clock.schedule_at(3, lambda: None)
    with pytest.raises(ValueError):
        clock.advance_to(2)
