"""dma-fence-chain: ``drivers/dma-buf/dma-fence-chain.c`` (v6.12).

A chain node wraps one fence (``fence``) and points at the previous node or fence
(``prev``): a timeline (drm_syncobj).  A node signals only once its own fence and every
earlier fence have signalled.  Seqnos are 64-bit (``use_64bit_seqno``).

References follow the kernel: :func:`dma_fence_chain_init` takes over the caller's
references to ``prev`` and ``fence``; :func:`dma_fence_chain_walk` consumes the
reference to its argument and returns a new one; :func:`dma_fence_chain_find_seqno`
consumes the reference to the start node and returns a reference to the result.

Deviation: the kernel re-arms / signals from irq_work; the model does it inside the
callback.  Allocation and init are one call (:func:`dma_fence_chain_init` returns the node).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceCb,
    DmaFenceOps,
    __dma_fence_is_later,
    dma_fence_add_callback,
    dma_fence_context_alloc,
    dma_fence_get,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_signal,
)

__all__ = [
    "DmaFenceChain",
    "dma_fence_chain_contained",
    "dma_fence_chain_find_seqno",
    "dma_fence_chain_for_each",
    "dma_fence_chain_init",
    "dma_fence_chain_ops",
    "dma_fence_chain_walk",
    "dma_fence_is_chain",
    "to_dma_fence_chain",
]


def _get_prev(chain: DmaFenceChain) -> DmaFence | None:
    """``dma_fence_chain_get_prev``: a new reference to ``chain.prev``."""
    return dma_fence_get(chain.prev)


def dma_fence_chain_walk(fence: DmaFence) -> DmaFence | None:
    """``dma_fence_chain_walk``: the previous node, garbage-collecting signalled ones.

    Unlinks every earlier node whose contained fence has signalled (and a plain ``prev``
    fence that has signalled), consumes the reference to ``fence`` and returns a new
    reference to the first still-pending previous node (or ``None``).
    """
    chain = to_dma_fence_chain(fence)
    if chain is None:
        dma_fence_put(fence)
        return None
    while True:
        prev = _get_prev(chain)
        if prev is None:
            break
        prev_chain = to_dma_fence_chain(prev)
        if prev_chain is not None:
            if not dma_fence_is_signaled(prev_chain.fence):
                break
            replacement = _get_prev(prev_chain)
        else:
            if not dma_fence_is_signaled(prev):
                break
            replacement = None
        if chain.prev is prev:  # the cmpxchg succeeds in a single-threaded model
            chain.prev = replacement
            dma_fence_put(prev)  # the link's reference
        else:
            dma_fence_put(replacement)
        dma_fence_put(prev)  # ours
    dma_fence_put(fence)
    return prev


def dma_fence_chain_for_each(head: DmaFence) -> Iterator[DmaFence]:
    """``dma_fence_chain_for_each``: walk from ``head`` backwards (with GC).

    The iterator holds a reference to the node it yields; stopping early drops it.
    """
    it = dma_fence_get(head)
    try:
        while it is not None:
            yield it
            it = dma_fence_chain_walk(it)
    finally:
        if it is not None:
            dma_fence_put(it)


def dma_fence_chain_find_seqno(fence: DmaFence | None, seqno: int) -> tuple[int, DmaFence | None]:
    """``dma_fence_chain_find_seqno(&fence, seqno)`` → ``(ret, fence)``.

    ``seqno == 0``: no-op, ``(0, fence)``.  ``fence`` not a chain node or its seqno below
    ``seqno``: ``(-EINVAL, fence)``.  Otherwise the node that will signal ``seqno`` —
    the oldest pending node whose ``prev_seqno < seqno`` — or ``None`` if everything up
    to ``seqno`` has signalled already; the reference to ``fence`` moves to the result.
    """
    if not seqno:
        return 0, fence
    chain = to_dma_fence_chain(fence)
    if chain is None or chain.seqno < seqno:
        return -errno.EINVAL, fence
    it = dma_fence_get(chain)
    while it is not None:
        it_chain = to_dma_fence_chain(it)
        if it.context != chain.context or (it_chain is not None and it_chain.prev_seqno < seqno):
            break
        it = dma_fence_chain_walk(it)
    dma_fence_put(chain)
    return 0, it


def _chain_cb(f: DmaFence, cb: DmaFenceCb) -> None:
    """``dma_fence_chain_cb`` + ``dma_fence_chain_irq_work`` (run at once)."""
    head: DmaFenceChain = cb.data
    dma_fence_put(f)
    if not _chain_enable_signaling(head):
        dma_fence_signal(head)
    dma_fence_put(head)


def _chain_enable_signaling(fence: DmaFence) -> bool:
    head = to_dma_fence_chain(fence)
    assert head is not None
    dma_fence_get(head)
    it = dma_fence_get(head)
    while it is not None:
        it_chain = to_dma_fence_chain(it)
        f = it_chain.fence if it_chain is not None else it
        dma_fence_get(f)
        if dma_fence_add_callback(f, head.cb, _chain_cb) == 0:
            dma_fence_put(it)
            return True
        dma_fence_put(f)
        it = dma_fence_chain_walk(it)
    dma_fence_put(head)
    return False


def _chain_signaled(fence: DmaFence) -> bool:
    it = dma_fence_get(fence)
    while it is not None:
        it_chain = to_dma_fence_chain(it)
        f = it_chain.fence if it_chain is not None else it
        if not dma_fence_is_signaled(f):
            dma_fence_put(it)
            return False
        it = dma_fence_chain_walk(it)
    return True


def _chain_release(fence: DmaFence) -> None:
    """``dma_fence_chain_release``: unlink iteratively (no deep recursion), then put."""
    chain = to_dma_fence_chain(fence)
    assert chain is not None
    while (prev := chain.prev) is not None:
        if prev.refcount > 1:
            break
        prev_chain = to_dma_fence_chain(prev)
        if prev_chain is None:
            break
        chain.prev = prev_chain.prev
        prev_chain.prev = None
        dma_fence_put(prev)
    dma_fence_put(chain.prev)
    chain.prev = None
    dma_fence_put(chain.fence)


def _chain_set_deadline(fence: DmaFence, deadline: int) -> None:
    from socmem.linux.dmabuf.fence import dma_fence_set_deadline

    for it in dma_fence_chain_for_each(fence):
        contained = dma_fence_chain_contained(it)
        if contained is not None:
            dma_fence_set_deadline(contained, deadline)


dma_fence_chain_ops = DmaFenceOps(
    get_driver_name=lambda f: "dma_fence_chain",
    get_timeline_name=lambda f: "unbound",
    use_64bit_seqno=True,
    enable_signaling=_chain_enable_signaling,
    signaled=_chain_signaled,
    release=_chain_release,
    set_deadline=_chain_set_deadline,
)


def _chain_is_later(f1: int, f2: int) -> bool:
    """``__dma_fence_is_later`` with the chain's 64-bit rule (outside the class: no mangling)."""
    return __dma_fence_is_later(f1, f2, dma_fence_chain_ops)


class DmaFenceChain(DmaFence):
    """``struct dma_fence_chain``: ``prev``, ``prev_seqno``, ``fence``, ``cb``."""

    is_container = True

    def __init__(self, prev: DmaFence | None, fence: DmaFence, seqno: int) -> None:
        core = fence.core
        prev_chain = to_dma_fence_chain(prev)
        prev_seqno = 0
        if prev_chain is not None and _chain_is_later(seqno, prev_chain.seqno):
            context = prev_chain.context
            prev_seqno = prev_chain.seqno
        else:
            context = dma_fence_context_alloc(1, core)
            if prev_chain is not None:
                seqno = max(prev_chain.seqno, seqno)
        super().__init__(dma_fence_chain_ops, context, seqno, core=core)
        self.prev: DmaFence | None = prev
        self.prev_seqno = prev_seqno
        self.fence = fence
        self.cb = DmaFenceCb(data=self)


def dma_fence_chain_init(prev: DmaFence | None, fence: DmaFence, seqno: int) -> DmaFenceChain:
    """``dma_fence_chain_alloc`` + ``dma_fence_chain_init``: a new chain node.

    Reuses ``prev``'s context when ``prev`` is a chain node and ``seqno`` is later;
    otherwise a fresh context, with the seqno raised to ``max(prev.seqno, seqno)``.
    """
    return DmaFenceChain(prev, fence, seqno)


def to_dma_fence_chain(fence: DmaFence | None) -> DmaFenceChain | None:
    """``to_dma_fence_chain``: the node, or ``None`` if ``fence`` is not one."""
    if fence is None or fence.ops is not dma_fence_chain_ops:
        return None
    assert isinstance(fence, DmaFenceChain)
    return fence


def dma_fence_is_chain(fence: DmaFence) -> bool:
    """``dma_fence_is_chain``."""
    return fence.ops is dma_fence_chain_ops


def dma_fence_chain_contained(fence: DmaFence | None) -> DmaFence | None:
    """``dma_fence_chain_contained``: the wrapped fence of a node, else ``fence``."""
    chain = to_dma_fence_chain(fence)
    return chain.fence if chain is not None else fence
