"""dma-fence-array and unwrap conformance: st-dma-fence-unwrap.c re-created, plus units."""

from __future__ import annotations

import errno

import pytest

from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    DmaFenceCb,
    DmaFenceOps,
    dma_fence_add_callback,
    dma_fence_context_alloc,
    dma_fence_get,
    dma_fence_get_status,
    dma_fence_get_stub,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_signal,
    dma_fence_timestamp,
)
from socmem.linux.dmabuf.fence_array import (
    dma_fence_array_create,
    dma_fence_array_first,
    dma_fence_array_next,
    dma_fence_match_context,
    to_dma_fence_array,
)
from socmem.linux.dmabuf.fence_chain import dma_fence_chain_init
from socmem.linux.dmabuf.fence_unwrap import (
    dma_fence_dedup_array,
    dma_fence_unwrap_for_each,
    dma_fence_unwrap_merge,
)

MOCK_OPS = DmaFenceOps(get_driver_name=lambda f: "mock", get_timeline_name=lambda f: "mock")


@pytest.fixture
def core() -> DmaBufCore:
    return DmaBufCore()


def __mock_fence(core: DmaBufCore, context: int, seqno: int) -> DmaFence:
    f = DmaFence(MOCK_OPS, context, seqno, core=core)
    f.enable_sw_signaling()
    return f


def mock_fence(core: DmaBufCore) -> DmaFence:
    return __mock_fence(core, dma_fence_context_alloc(1, core), 1)


def mock_array(core: DmaBufCore, *fences: DmaFence) -> DmaFence:
    return dma_fence_array_create(list(fences), dma_fence_context_alloc(1, core), 1, False)


def mock_chain(prev: DmaFence | None, fence: DmaFence) -> DmaFence:
    return dma_fence_chain_init(prev, fence, 1)


def leaves(f: DmaFence) -> list[DmaFence]:
    return list(dma_fence_unwrap_for_each(f))


# --- st-dma-fence-unwrap.c ---------------------------------------------------------------


def test_sanitycheck(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: sanitycheck
    f = mock_fence(core)
    array = mock_array(core, dma_fence_get(f))  # type: ignore[arg-type]
    chain = mock_chain(None, array)
    dma_fence_signal(f)
    dma_fence_put(chain)
    dma_fence_put(f)
    assert f.freed and array.freed
    assert len(core.findings) == 0


def test_unwrap_array(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_array
    f1, f2 = mock_fence(core), mock_fence(core)
    array = mock_array(core, f1, f2)
    assert leaves(array) == [f1, f2]


def test_unwrap_chain(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_chain
    f1, f2 = mock_fence(core), mock_fence(core)
    chain = mock_chain(f1, f2)
    assert sorted(leaves(chain), key=id) == sorted([f1, f2], key=id)
    assert leaves(chain) == [f2, f1]  # newest node first


def test_unwrap_chain_array(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_chain_array
    f1, f2 = mock_fence(core), mock_fence(core)
    chain = mock_chain(None, mock_array(core, f1, f2))
    assert leaves(chain) == [f1, f2]


def test_unwrap_merge(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge
    f1, f2 = mock_fence(core), mock_fence(core)
    f3 = dma_fence_unwrap_merge(f1, f2)
    assert f3 is not None and leaves(f3) == [f1, f2]


def test_unwrap_merge_duplicate(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge_duplicate
    f1 = mock_fence(core)
    f2 = dma_fence_unwrap_merge(f1, f1)
    assert f2 is f1 and leaves(f2) == [f1]
    assert f1.refcount == 2


def test_unwrap_merge_seqno(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge_seqno
    ctx0 = dma_fence_context_alloc(1, core)
    ctx1 = dma_fence_context_alloc(1, core)
    f1 = __mock_fence(core, ctx1, 1)
    f2 = __mock_fence(core, ctx1, 2)
    f3 = __mock_fence(core, ctx0, 1)
    f4 = dma_fence_unwrap_merge(f1, f2, f3)
    assert f4 is not None and leaves(f4) == [f3, f2]


def test_unwrap_merge_order(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge_order
    f1, f2 = mock_fence(core), mock_fence(core)
    a1 = mock_array(core, dma_fence_get(f1), dma_fence_get(f2))  # type: ignore[arg-type]
    c1 = mock_chain(None, dma_fence_get(f1))  # type: ignore[arg-type]
    c2 = mock_chain(c1, dma_fence_get(f2))  # type: ignore[arg-type]
    f3 = dma_fence_unwrap_merge(a1, c2)
    assert f3 is not None and leaves(f3) == [f1, f2]


def test_unwrap_merge_complex(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge_complex
    f1, f2 = mock_fence(core), mock_fence(core)
    f3 = dma_fence_unwrap_merge(f1, f2)
    assert f3 is not None
    f4 = mock_array(core, dma_fence_get(f2), dma_fence_get(f1))  # type: ignore[arg-type]
    stub = dma_fence_get_stub(core)
    f5 = dma_fence_unwrap_merge(f3, f4, stub)
    assert f5 is not None and leaves(f5) == [f1, f2]


def test_unwrap_merge_complex_seqno(core: DmaBufCore) -> None:
    # st-dma-fence-unwrap.c: unwrap_merge_complex_seqno
    ctx0 = dma_fence_context_alloc(1, core)
    ctx1 = dma_fence_context_alloc(1, core)
    f1 = __mock_fence(core, ctx0, 2)
    f2 = __mock_fence(core, ctx1, 1)
    f3 = __mock_fence(core, ctx0, 1)
    f4 = __mock_fence(core, ctx1, 2)
    f5 = mock_array(core, f1, f2)
    f6 = mock_array(core, f3, f4)
    f7 = dma_fence_unwrap_merge(f5, f6)
    assert f7 is not None and leaves(f7) == [f1, f4]


# --- unit tests: arrays ------------------------------------------------------------------


def test_array_signals_on_all(core: DmaBufCore) -> None:
    fs = [mock_fence(core) for _ in range(3)]
    a = mock_array(core, *fs)
    seen: list[DmaFence] = []
    assert dma_fence_add_callback(a, DmaFenceCb(), lambda f, cb: seen.append(f)) == 0
    dma_fence_signal(fs[2])
    dma_fence_signal(fs[0])
    assert not a.signaled_flag
    dma_fence_signal(fs[1])
    assert a.signaled_flag and seen == [a]
    assert dma_fence_get_status(a) == 1 and a.error == 0
    assert a.driver_name() == "dma_fence_array" and a.timeline_name() == "unbound"


def test_array_signal_on_any(core: DmaBufCore) -> None:
    fs = [mock_fence(core) for _ in range(3)]
    a = dma_fence_array_create(fs, dma_fence_context_alloc(1, core), 1, True)
    a.enable_sw_signaling()
    dma_fence_signal(fs[1])
    assert a.signaled_flag


def test_array_first_error_propagates(core: DmaBufCore) -> None:
    fs = [mock_fence(core) for _ in range(3)]
    a = mock_array(core, *fs)
    a.enable_sw_signaling()
    fs[1].set_error(-errno.EIO)
    dma_fence_signal(fs[1])
    fs[0].set_error(-errno.ENOMEM)
    dma_fence_signal(fs[0])
    assert dma_fence_get_status(a) == 0  # still pending: error not visible
    dma_fence_signal(fs[2])
    assert dma_fence_get_status(a) == -errno.EIO


def test_array_polled_without_enable(core: DmaBufCore) -> None:
    fs = [mock_fence(core) for _ in range(2)]
    a = mock_array(core, *fs)
    dma_fence_signal(fs[0])
    assert not dma_fence_is_signaled(a)
    fs[1].set_error(-errno.EIO)
    dma_fence_signal(fs[1])
    assert dma_fence_is_signaled(a)
    assert dma_fence_get_status(a) == -errno.EIO


def test_array_of_signalled_fences_signals_on_enable(core: DmaBufCore) -> None:
    fs = [mock_fence(core) for _ in range(2)]
    for f in fs:
        dma_fence_signal(f)
    a = mock_array(core, *fs)
    assert dma_fence_add_callback(a, DmaFenceCb(), lambda f, cb: None) == -errno.ENOENT
    assert a.signaled_flag and a.error == 0


def test_array_release_puts_members(core: DmaBufCore) -> None:
    f1, f2 = mock_fence(core), mock_fence(core)
    a = mock_array(core, dma_fence_get(f1), dma_fence_get(f2))  # type: ignore[arg-type]
    a.enable_sw_signaling()
    dma_fence_signal(f1)
    dma_fence_signal(f2)
    dma_fence_put(a)
    assert a.freed and f1.refcount == 1 and f2.refcount == 1


def test_array_warnings(core: DmaBufCore) -> None:
    dma_fence_array_create([], 5, 1, False, core=core)
    assert core.findings.of_kind("dma-fence-array.empty")
    inner = mock_array(core, mock_fence(core))
    mock_array(core, inner)
    assert core.findings.of_kind("dma-fence-array.nested-container")


def test_array_first_next_match_context(core: DmaBufCore) -> None:
    ctx = dma_fence_context_alloc(1, core)
    f1, f2 = __mock_fence(core, ctx, 1), __mock_fence(core, ctx, 2)
    a = mock_array(core, f1, f2)
    assert dma_fence_array_first(a) is f1
    assert dma_fence_array_next(a, 1) is f2 and dma_fence_array_next(a, 2) is None
    assert dma_fence_array_first(f1) is f1 and dma_fence_array_next(f1, 1) is None
    assert dma_fence_array_first(None) is None
    assert to_dma_fence_array(a) is a and to_dma_fence_array(f1) is None
    assert dma_fence_match_context(a, ctx) and dma_fence_match_context(f1, ctx)
    g = mock_fence(core)
    assert not dma_fence_match_context(mock_array(core, f1, g), ctx)


# --- unit tests: merge -------------------------------------------------------------------


def test_merge_all_signalled_gives_stub_with_latest_timestamp(core: DmaBufCore) -> None:
    f1, f2 = mock_fence(core), mock_fence(core)
    core.clock.advance(10)
    dma_fence_signal(f1)
    core.clock.advance(10)
    dma_fence_signal(f2)
    m = dma_fence_unwrap_merge(f1, f2)
    assert m is not None and m not in (f1, f2)
    assert m.signaled_flag and dma_fence_timestamp(m) == 20


def test_merge_single_survivor_is_itself(core: DmaBufCore) -> None:
    f1, f2 = mock_fence(core), mock_fence(core)
    dma_fence_signal(f1)
    assert dma_fence_unwrap_merge(f1, f2) is f2


def test_merge_is_array_with_fresh_context(core: DmaBufCore) -> None:
    f1, f2 = mock_fence(core), mock_fence(core)
    m = dma_fence_unwrap_merge(f2, f1)
    a = to_dma_fence_array(m)
    assert a is not None and a.fences == [f1, f2] and a.seqno == 1
    assert a.context not in (f1.context, f2.context)
    assert not a.signal_on_any


def test_dedup_array(core: DmaBufCore) -> None:
    ctx = dma_fence_context_alloc(1, core)
    fs = [__mock_fence(core, ctx, s) for s in (1, 3, 2)]
    g = mock_fence(core)
    arr = [*fs, g]
    assert dma_fence_dedup_array(arr) == 2
    assert arr == [fs[1], g]
    assert fs[0].freed and fs[2].freed  # the dropped references were put
