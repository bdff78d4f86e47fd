"""dma-fence-array: ``drivers/dma-buf/dma-fence-array.c`` (v6.12).

An array fence signals when all of its member fences have signalled (or when any has,
with ``signal_on_any``).  The array takes over the references of its members.  Its
error is the first non-zero error a member reports (``PENDING_ERROR`` placeholder while
unsignalled, cleared to 0 on signal when no member failed).

Deviations: the kernel signals the array from irq_work; the model signals it inside the
last member's callback.  The ``signaled`` op follows v6.12: while signalling is not
enabled it polls the members; it also records the first member error on that path (the
newest mainline does; v6.12 forgets it there and reports success).
"""

from __future__ import annotations

from collections.abc import Sequence

from socmem.linux.dmabuf.fence import (
    DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT,
    DmaBufCore,
    DmaFence,
    DmaFenceCb,
    DmaFenceOps,
    dma_fence_add_callback,
    dma_fence_get,
    dma_fence_is_container,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_set_deadline,
    dma_fence_signal,
)

__all__ = [
    "PENDING_ERROR",
    "DmaFenceArray",
    "dma_fence_array_create",
    "dma_fence_array_first",
    "dma_fence_array_next",
    "dma_fence_array_ops",
    "dma_fence_is_array",
    "dma_fence_match_context",
    "to_dma_fence_array",
]

PENDING_ERROR = 1


def _set_pending_error(array: DmaFenceArray, error: int) -> None:
    """``dma_fence_array_set_pending_error``: keep the first member error."""
    if error and array.error == PENDING_ERROR:
        array.error = error


def _clear_pending_error(array: DmaFenceArray) -> None:
    """``dma_fence_array_clear_pending_error``."""
    if array.error == PENDING_ERROR:
        array.error = 0


def _array_cb_func(f: DmaFence, cb: DmaFenceCb) -> None:
    """``dma_fence_array_cb_func`` (+ the irq_work, run at once)."""
    array: DmaFenceArray = cb.data
    _set_pending_error(array, f.error)
    array.num_pending -= 1
    if array.num_pending == 0:
        _clear_pending_error(array)
        dma_fence_signal(array)
    dma_fence_put(array)


def _array_enable_signaling(fence: DmaFence) -> bool:
    array = to_dma_fence_array(fence)
    assert array is not None
    for member, cb in zip(array.fences, array.callbacks, strict=True):
        dma_fence_get(array)  # held until the member's callback ran
        if dma_fence_add_callback(member, cb, _array_cb_func):
            _set_pending_error(array, member.error)
            dma_fence_put(array)
            array.num_pending -= 1
            if array.num_pending == 0:
                _clear_pending_error(array)
                return False
    return True


def _array_signaled(fence: DmaFence) -> bool:
    array = to_dma_fence_array(fence)
    assert array is not None
    num_pending = array.num_pending
    if array.test_bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT):
        if num_pending <= 0:
            _clear_pending_error(array)
            return True
        return False
    for member in array.fences:
        if dma_fence_is_signaled(member):
            _set_pending_error(array, member.error)
            num_pending -= 1
            if num_pending == 0:
                _clear_pending_error(array)
                return True
    return False


def _array_release(fence: DmaFence) -> None:
    array = to_dma_fence_array(fence)
    assert array is not None
    for member in array.fences:
        dma_fence_put(member)


def _array_set_deadline(fence: DmaFence, deadline: int) -> None:
    array = to_dma_fence_array(fence)
    assert array is not None
    for member in array.fences:
        dma_fence_set_deadline(member, deadline)


dma_fence_array_ops = DmaFenceOps(
    get_driver_name=lambda f: "dma_fence_array",
    get_timeline_name=lambda f: "unbound",
    enable_signaling=_array_enable_signaling,
    signaled=_array_signaled,
    release=_array_release,
    set_deadline=_array_set_deadline,
)


class DmaFenceArray(DmaFence):
    """``struct dma_fence_array``: ``fences``, ``num_fences``, ``num_pending``."""

    is_container = True

    def __init__(
        self,
        fences: Sequence[DmaFence],
        context: int,
        seqno: int,
        signal_on_any: bool,
        core: DmaBufCore,
    ) -> None:
        super().__init__(dma_fence_array_ops, context, seqno, core=core)
        self.fences: list[DmaFence] = list(fences)
        self.num_fences = len(self.fences)
        self.num_pending = 1 if signal_on_any else self.num_fences
        self.signal_on_any = signal_on_any
        self.callbacks = [DmaFenceCb(data=self) for _ in self.fences]
        self.error = PENDING_ERROR


def dma_fence_array_create(
    fences: Sequence[DmaFence],
    context: int,
    seqno: int,
    signal_on_any: bool = False,
    *,
    core: DmaBufCore | None = None,
) -> DmaFenceArray:
    """``dma_fence_array_create``: an array fence owning the references in ``fences``.

    WARNs (findings ``dma-fence-array.empty``, ``dma-fence-array.nested-container``)
    when ``fences`` is empty or holds a container, as ``dma_fence_array_init`` does.
    """
    if core is None:
        core = fences[0].core if fences else None
    from socmem.linux.dmabuf.fence import get_default_core

    core = core if core is not None else get_default_core()
    if not fences:
        core.warn(
            "dma-fence-array.empty",
            "WARNING: drivers/dma-buf/dma-fence-array.c: dma_fence_array_init: "
            "WARN_ON(!num_fences || !fences)",
        )
    for f in fences:
        if dma_fence_is_container(f):
            core.warn(
                "dma-fence-array.nested-container",
                "WARNING: drivers/dma-buf/dma-fence-array.c: dma_fence_array_init: "
                "WARN_ON(dma_fence_is_container(fences[num_fences]))",
                subject=f,
            )
    return DmaFenceArray(fences, context, seqno, signal_on_any, core)


def to_dma_fence_array(fence: DmaFence | None) -> DmaFenceArray | None:
    """``to_dma_fence_array``: the array, or ``None`` if ``fence`` is not one."""
    if fence is None or fence.ops is not dma_fence_array_ops:
        return None
    assert isinstance(fence, DmaFenceArray)
    return fence


def dma_fence_is_array(fence: DmaFence) -> bool:
    """``dma_fence_is_array``."""
    return fence.ops is dma_fence_array_ops


def dma_fence_array_first(head: DmaFence | None) -> DmaFence | None:
    """``dma_fence_array_first``: first member, ``head`` itself if not an array."""
    if head is None:
        return None
    array = to_dma_fence_array(head)
    if array is None:
        return head
    return array.fences[0] if array.num_fences else None


def dma_fence_array_next(head: DmaFence | None, index: int) -> DmaFence | None:
    """``dma_fence_array_next``: member ``index`` or ``None`` (also for non-arrays)."""
    array = to_dma_fence_array(head)
    if array is None or index >= array.num_fences:
        return None
    return array.fences[index]


def dma_fence_match_context(fence: DmaFence, context: int) -> bool:
    """``dma_fence_match_context``: every member (or the fence) is on ``context``."""
    array = to_dma_fence_array(fence)
    if array is None:
        return fence.context == context
    return all(f.context == context for f in array.fences)
