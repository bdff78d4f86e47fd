"""dma-fence-unwrap: ``drivers/dma-buf/dma-fence-unwrap.c``, ``include/linux/dma-fence-unwrap.h``.

Iteration over the leaf fences of a container (chains walked newest to oldest, arrays
member by member) and ``dma_fence_unwrap_merge``: the union of several fences, keeping
only the newest unsignalled fence per context, sorted by context (v6.12 semantics; the
iterator yields signalled fences too, the merge drops them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cmp_to_key

from socmem.linux.dmabuf.fence import (
    DmaFence,
    dma_fence_allocate_private_stub,
    dma_fence_context_alloc,
    dma_fence_get,
    dma_fence_is_later,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_timestamp,
    get_default_core,
)
from socmem.linux.dmabuf.fence_array import (
    dma_fence_array_create,
    dma_fence_array_first,
    dma_fence_array_next,
)
from socmem.linux.dmabuf.fence_chain import dma_fence_chain_contained, dma_fence_chain_walk

__all__ = [
    "DmaFenceUnwrap",
    "dma_fence_dedup_array",
    "dma_fence_unwrap_first",
    "dma_fence_unwrap_for_each",
    "dma_fence_unwrap_merge",
    "dma_fence_unwrap_next",
]


class DmaFenceUnwrap:
    """``struct dma_fence_unwrap``: the cursor (holds a reference to ``chain``)."""

    def __init__(self) -> None:
        self.chain: DmaFence | None = None
        self.array: DmaFence | None = None
        self.index = 0


def _unwrap_array(cursor: DmaFenceUnwrap) -> DmaFence | None:
    cursor.array = dma_fence_chain_contained(cursor.chain)
    cursor.index = 0
    return dma_fence_array_first(cursor.array)


def dma_fence_unwrap_first(head: DmaFence, cursor: DmaFenceUnwrap) -> DmaFence | None:
    """``dma_fence_unwrap_first``: first leaf fence of ``head``."""
    cursor.chain = dma_fence_get(head)
    return _unwrap_array(cursor)


def dma_fence_unwrap_next(cursor: DmaFenceUnwrap) -> DmaFence | None:
    """``dma_fence_unwrap_next``: next leaf (next array member, else next chain node)."""
    cursor.index += 1
    tmp = dma_fence_array_next(cursor.array, cursor.index)
    if tmp is not None:
        return tmp
    assert cursor.chain is not None
    cursor.chain = dma_fence_chain_walk(cursor.chain)
    return _unwrap_array(cursor)


def dma_fence_unwrap_for_each(head: DmaFence) -> Iterator[DmaFence]:
    """``dma_fence_unwrap_for_each``: yield every leaf fence of ``head`` (no references)."""
    cursor = DmaFenceUnwrap()
    try:
        fence = dma_fence_unwrap_first(head, cursor)
        while fence is not None:
            yield fence
            fence = dma_fence_unwrap_next(cursor)
    finally:
        if cursor.chain is not None:
            dma_fence_put(cursor.chain)
            cursor.chain = None


def _fence_cmp(a: DmaFence, b: DmaFence) -> int:
    """``fence_cmp``: context ascending; within a context the later fence first."""
    if a.context < b.context:
        return -1
    if a.context > b.context:
        return 1
    if a is b:
        return 0
    if dma_fence_is_later(a, b):
        return -1
    if dma_fence_is_later(b, a):
        return 1
    return 0


def dma_fence_dedup_array(fences: list[DmaFence]) -> int:
    """``dma_fence_dedup_array``: sort, keep the newest per context; returns the count.

    ``fences`` holds references; the dropped duplicates are put.
    """
    if len(fences) <= 1:
        return len(fences)
    fences.sort(key=cmp_to_key(_fence_cmp))
    kept: list[DmaFence] = []
    for f in fences:
        if kept and kept[-1].context == f.context:
            dma_fence_put(f)
        else:
            kept.append(f)
    fences[:] = kept
    return len(kept)


def dma_fence_unwrap_merge(*fences: DmaFence) -> DmaFence | None:
    """``dma_fence_unwrap_merge(...)``: one fence standing for all of ``fences``.

    Unwraps every input, drops signalled leaves (remembering the newest timestamp), and
    returns: a new private signalled stub with that timestamp when nothing is left; the
    single survivor (new reference) when one is left; otherwise a new
    ``dma_fence_array`` (fresh context, seqno 1, signal on all) of the newest fence per
    context, sorted by context.
    """
    return _merge(fences)


def _merge(fences: Sequence[DmaFence]) -> DmaFence | None:
    core = fences[0].core if fences else get_default_core()
    timestamp = 0
    array: list[DmaFence] = []
    for head in fences:
        for tmp in dma_fence_unwrap_for_each(head):
            if not dma_fence_is_signaled(tmp):
                array.append(dma_fence_get(tmp))  # type: ignore[arg-type]
            else:
                timestamp = max(timestamp, dma_fence_timestamp(tmp))
    count = len(array)
    if count > 1:
        count = dma_fence_dedup_array(array)
        if count > 1:
            return dma_fence_array_create(array, dma_fence_context_alloc(1, core), 1, False)
    if count == 0:
        return dma_fence_allocate_private_stub(timestamp, core)
    return array[0]
