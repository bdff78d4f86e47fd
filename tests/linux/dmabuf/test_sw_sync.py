"""sw_sync conformance: tools/testing/selftests/sync re-created, plus every errno."""

from __future__ import annotations

import errno
import random

import pytest

from socmem.errors import KernelError
from socmem.linux.dmabuf.fence import DmaBufCore
from socmem.linux.dmabuf.sw_sync import (
    SW_SYNC_GET_DEADLINE,
    SW_SYNC_IOC_CREATE_FENCE,
    SW_SYNC_IOC_INC,
    SwSyncCreateFenceData,
    SwSyncGetDeadline,
    SwSyncTimeline,
    sw_sync_ioctl,
    sw_sync_timeline_create,
)
from socmem.linux.dmabuf.sync_file import SyncFile

FENCE_STATUS_ERROR, FENCE_STATUS_ACTIVE, FENCE_STATUS_SIGNALED = -1, 0, 1


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def sync_wait(sf: SyncFile, timeout_ms: int) -> int:
    """sync.c sync_wait(): poll() for POLLIN; 1 ready / 0 timed out (model time)."""
    if sf.poll():
        return 1
    if timeout_ms == 0:
        return 0
    clock = sf.fence.core.clock
    limit = None if timeout_ms < 0 else clock.now + timeout_ms * 1_000_000
    return 1 if clock.run_until(limit, lambda: bool(sf.poll())) else 0


def sync_fence_size(sf: SyncFile) -> int:
    return len(sf.fence_infos())


# --- tools/testing/selftests/sync ----------------------------------------------------------


def test_alloc_timeline(core: DmaBufCore) -> None:
    # sync_alloc.c: test_alloc_timeline
    tl = sw_sync_timeline_create("t", core)
    assert isinstance(tl, SwSyncTimeline)
    tl.close()


def test_alloc_fence(core: DmaBufCore) -> None:
    # sync_alloc.c: test_alloc_fence
    tl = sw_sync_timeline_create("t", core)
    data = sw_sync_ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, SwSyncCreateFenceData(value=1, name="f"))
    assert isinstance(data, SwSyncCreateFenceData) and isinstance(data.fence, SyncFile)


def test_alloc_fence_negative(core: DmaBufCore) -> None:
    # sync_alloc.c: test_alloc_fence_negative (fence on fd -1)
    with pytest.raises(KernelError) as ei:
        sw_sync_ioctl(None, SW_SYNC_IOC_CREATE_FENCE, SwSyncCreateFenceData(value=1))
    assert ei.value.errno == errno.EBADF


def test_fence_one_timeline_wait(core: DmaBufCore) -> None:
    # sync_fence.c: test_fence_one_timeline_wait
    tl = sw_sync_timeline_create("t", core)
    f = tl.create_fence(5)
    assert sync_wait(f, 0) == 0
    assert tl.inc(1) == 0
    assert sync_wait(f, 0) == 0
    assert tl.inc(4) == 0
    assert sync_wait(f, 0) > 0
    assert tl.inc(10) == 0
    assert sync_wait(f, 0) > 0


def test_fence_one_timeline_merge(core: DmaBufCore) -> None:
    # sync_fence.c: test_fence_one_timeline_merge (checking a, b, c, d as intended)
    tl = sw_sync_timeline_create("t", core)
    a, b, c = tl.create_fence(1), tl.create_fence(2), tl.create_fence(3)
    d = b.merge("ab", a)
    d = c.merge("cd", d)
    for sf in (a, b, c, d):
        assert sync_fence_size(sf) == 1
        assert sf.count_with_status(FENCE_STATUS_ACTIVE) == 1
    tl.inc(1)
    assert a.count_with_status(FENCE_STATUS_SIGNALED) == 1
    assert d.count_with_status(FENCE_STATUS_ACTIVE) == 1
    tl.inc(1)
    assert b.count_with_status(FENCE_STATUS_SIGNALED) == 1
    assert d.count_with_status(FENCE_STATUS_ACTIVE) == 1
    tl.inc(1)
    assert c.count_with_status(FENCE_STATUS_SIGNALED) == 1
    assert d.count_with_status(FENCE_STATUS_ACTIVE) == 0
    assert d.count_with_status(FENCE_STATUS_SIGNALED) == 1


def test_fence_merge_same_fence(core: DmaBufCore) -> None:
    # sync_merge.c: test_fence_merge_same_fence
    tl = sw_sync_timeline_create("t", core)
    f = tl.create_fence(5)
    merged = f.merge("self", f)
    assert merged.count_with_status(FENCE_STATUS_SIGNALED) == 0
    tl.inc(5)
    assert merged.count_with_status(FENCE_STATUS_SIGNALED) == 1


def test_fence_multi_timeline_wait(core: DmaBufCore) -> None:
    # sync_wait.c: test_fence_multi_timeline_wait
    ta, tb, tc = (sw_sync_timeline_create(n, core) for n in "ABC")
    fa, fb, fc = ta.create_fence(5), tb.create_fence(5), tc.create_fence(5)
    merged = fc.merge("m", fb.merge("m", fa))
    assert merged.count_with_status(FENCE_STATUS_ACTIVE) == 3
    assert sync_wait(merged, 0) == 0
    ta.inc(5)
    assert merged.count_with_status(FENCE_STATUS_ACTIVE) == 2
    assert merged.count_with_status(FENCE_STATUS_SIGNALED) == 1
    tb.inc(5)
    assert merged.count_with_status(FENCE_STATUS_ACTIVE) == 1
    assert merged.count_with_status(FENCE_STATUS_SIGNALED) == 2
    tc.inc(5)
    assert merged.count_with_status(FENCE_STATUS_ACTIVE) == 0
    assert merged.count_with_status(FENCE_STATUS_SIGNALED) == 3
    assert sync_wait(merged, 100) > 0


def test_stress_two_threads_shared_timeline(core: DmaBufCore) -> None:
    # sync_stress_parallelism.c: two "threads" alternate purely through the timeline.
    # Threads become a round-robin scheduler; 2^12 iterations instead of 2^16 (speed).
    tl = sw_sync_timeline_create("t", core)
    iterations = 1 << 12
    counter = 0
    for i in range(iterations):
        for t in range(2):
            f = tl.create_fence(2 * i + t)
            assert sync_wait(f, -1) > 0
            assert counter == 2 * i + t
            counter += 1
            tl.inc(1)
            f.close()
    assert counter == 2 * iterations


def test_consumer_stress_multi_producer_single_consumer(core: DmaBufCore) -> None:
    # sync_stress_consumer.c: 5 producers, 1 consumer; 2^8 iterations (speed).
    n_prod, iterations = 5, 1 << 8
    consumer = sw_sync_timeline_create("consumer", core)
    producers = [sw_sync_timeline_create(f"p{i}", core) for i in range(n_prod)]
    counter = 0
    for it in range(iterations):
        for pid, ptl in enumerate(producers):
            f = consumer.create_fence(it)
            busy = (iterations + pid) % 8 == 0
            if busy:
                assert f.count_with_status(FENCE_STATUS_ERROR) == 0
                assert f.count_with_status(FENCE_STATUS_SIGNALED) == 1
            else:
                assert sync_wait(f, -1) > 0
            counter += 1
            ptl.inc(1)
            f.close()
        merged = producers[0].create_fence(it + 1)
        for ptl in producers[1:]:
            merged = merged.merge("m", ptl.create_fence(it + 1))
        assert sync_wait(merged, -1) > 0
        assert counter == n_prod * (it + 1)
        consumer.inc(1)


def test_merge_stress_random_merge(core: DmaBufCore) -> None:
    # sync_stress_merge.c: 32 timelines, random merges; 32*64 merges instead of 32*1024
    rng = random.Random(7)
    timelines = [sw_sync_timeline_create(f"t{i}", core) for i in range(32)]
    fence_map = {0: 0}
    merged = timelines[0].create_fence(0)
    for _ in range(32 * 64):
        ti = rng.randrange(32)
        sync_point = rng.randrange(1, 1 << 31)
        fence_map[ti] = max(fence_map.get(ti, 0), sync_point)
        new = timelines[ti].create_fence(sync_point)
        merged2 = new.merge("merge", merged)
        new.close()
        merged.close()
        merged = merged2
    assert sync_fence_size(merged) == len(fence_map)
    for ti, point in fence_map.items():
        assert sync_wait(merged, 0) == 0
        timelines[ti].inc(point)
    assert sync_wait(merged, 0) > 0


# --- unit tests ----------------------------------------------------------------------------


def test_names_and_value_strings(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("my_timeline", core)
    sf = tl.create_fence(3)
    f = sf.fence
    assert f.driver_name() == "sw_sync" and f.timeline_name() == "my_timeline"
    assert f.context == tl.context
    assert f.ops.fence_value_str is not None and f.ops.fence_value_str(f) == "3"
    tl.inc(0xFFFFFFFF)
    assert f.ops.timeline_value_str is not None and f.ops.timeline_value_str(f) == "-1"


def test_point_at_reached_value_born_signalled(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    assert tl.create_fence(0).poll()
    tl.inc(3)
    assert tl.create_fence(2).poll()
    assert not tl.create_fence(4).poll()


def test_same_value_shares_fence(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    a, b = tl.create_fence(7), tl.create_fence(7)
    assert a.fence is b.fence and a.fence.refcount == 2
    a.close()
    b.close()
    assert a.fence.freed and not tl.pt_list
    c = tl.create_fence(7)
    assert c.fence is not a.fence


def test_inc_signals_in_order(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    order: list[int] = []
    files = [tl.create_fence(v) for v in (5, 2, 9, 3)]
    from socmem.linux.dmabuf.fence import DmaFenceCb

    for sf in files:
        sf.fence.add_callback(DmaFenceCb(), lambda f, cb: order.append(f.seqno))
    assert [p.seqno for p in tl.pt_list] == [2, 3, 5, 9]
    tl.inc(6)
    assert order == [2, 3, 5]
    tl.inc(100)
    assert order == [2, 3, 5, 9]


def test_inc_32bit_wrap_and_large_increment(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    tl.inc(0xFFFFFFF0)  # applied as INT_MAX steps
    assert tl.value == 0xFFFFFFF0
    f = tl.create_fence(0x1)  # later than 0xFFFFFFF0 with wrap-around
    assert not f.poll()
    tl.inc(0x11)
    assert tl.value == 1 and f.poll()


def test_close_signals_pending_with_enoent(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    done = tl.create_fence(0)
    pending = tl.create_fence(4)
    tl.close()
    assert pending.fence.get_status() == -errno.ENOENT
    assert done.fence.get_status() == 1
    with pytest.raises(KernelError) as ei:
        tl.inc(1)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(KernelError):
        sw_sync_ioctl(tl, SW_SYNC_IOC_INC, 1)


def test_timeline_kref(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    sf = tl.create_fence(3)
    assert tl.kref == 2
    tl.close()
    assert tl.kref == 1
    sf.close()
    assert tl.kref == 0


def test_ioctl_dispatch(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    assert SW_SYNC_IOC_CREATE_FENCE == 0xC0285700 and SW_SYNC_IOC_INC == 0x40045701
    assert sw_sync_ioctl(tl, SW_SYNC_IOC_INC, 2) == 0 and tl.value == 2
    with pytest.raises(KernelError) as ei:
        sw_sync_ioctl(tl, 0xDEAD, None)
    assert ei.value.errno == errno.ENOTTY


def test_get_deadline(core: DmaBufCore) -> None:
    tl = sw_sync_timeline_create("t", core)
    sf = tl.create_fence(3)
    with pytest.raises(KernelError) as ei:
        tl.ioctl(SW_SYNC_GET_DEADLINE, SwSyncGetDeadline(fence_fd=sf))
    assert ei.value.errno == errno.ENOENT
    from socmem.linux.dmabuf.fence import dma_fence_set_deadline

    dma_fence_set_deadline(sf.fence, 900)
    dma_fence_set_deadline(sf.fence, 1000)  # later: ignored
    dma_fence_set_deadline(sf.fence, 800)
    out = tl.ioctl_get_deadline(SwSyncGetDeadline(fence_fd=sf))
    assert out.deadline_ns == 800
    for bad in (SwSyncGetDeadline(deadline_ns=1, fence_fd=sf), SwSyncGetDeadline(pad=1)):
        with pytest.raises(KernelError) as ei:
            tl.ioctl_get_deadline(bad)
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(KernelError) as ei:
        tl.ioctl_get_deadline(SwSyncGetDeadline(fence_fd=object()))
    assert ei.value.errno == errno.EINVAL
    t2 = sw_sync_timeline_create("u", core)
    other = sf.merge("m", t2.create_fence(1))
    with pytest.raises(KernelError) as ei:
        tl.ioctl_get_deadline(SwSyncGetDeadline(fence_fd=other))
    assert ei.value.errno == errno.EINVAL
    assert sf.fence.refcount == 2  # sf + the merged array; get_deadline leaked none
