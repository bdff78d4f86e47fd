"""dma-resv: ``drivers/dma-buf/dma-resv.c``, ``include/linux/dma-resv.h`` (v6.12).

A reservation object holds ``(fence, usage)`` entries, ``usage`` one of
:class:`DmaResvUsage` (``KERNEL < WRITE < READ < BOOKKEEP``); a query for usage *U*
sees every entry with usage ``<= U``.

Locking is a ww_mutex stand-in (:func:`dma_resv_lock` / :func:`dma_resv_unlock`).
Modifications require the lock (``dma_resv_assert_held``: a lockdep WARN, finding
``dma-resv.not-held``).  Slots must be reserved with :func:`dma_resv_reserve_fences`
before :func:`dma_resv_add_fence`; the model runs with ``CONFIG_DEBUG_MUTEXES``
behaviour, where unlocking drops the spare slots (``dma_resv_reset_max_fences``), so a
reservation is only valid for the current lock hold.  Adding without a free slot is the
kernel's ``BUG_ON``: a FATAL finding ``dma-resv.add-fence-no-slot`` and
:class:`ResvContractError`.

Timeouts are model nanoseconds (see :mod:`socmem.linux.dmabuf.fence`).
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Iterator
from dataclasses import dataclass

from socmem.check.finding import Finding, Severity
from socmem.linux.dmabuf.fence import (
    DmaBufCore,
    DmaFence,
    dma_fence_context_alloc,
    dma_fence_describe,
    dma_fence_get,
    dma_fence_is_container,
    dma_fence_is_later_or_same,
    dma_fence_is_signaled,
    dma_fence_put,
    dma_fence_set_deadline,
    dma_fence_wait_timeout,
    get_default_core,
)
from socmem.linux.dmabuf.fence_array import dma_fence_array_create

__all__ = [
    "DMA_RESV_USAGE_BOOKKEEP",
    "DMA_RESV_USAGE_KERNEL",
    "DMA_RESV_USAGE_READ",
    "DMA_RESV_USAGE_WRITE",
    "DmaResv",
    "DmaResvIter",
    "DmaResvUsage",
    "ResvContractError",
    "WwAcquireCtx",
    "dma_resv_add_fence",
    "dma_resv_assert_held",
    "dma_resv_copy_fences",
    "dma_resv_describe",
    "dma_resv_fini",
    "dma_resv_for_each_fence",
    "dma_resv_for_each_fence_unlocked",
    "dma_resv_get_fences",
    "dma_resv_get_singleton",
    "dma_resv_init",
    "dma_resv_iter_begin",
    "dma_resv_iter_end",
    "dma_resv_iter_first",
    "dma_resv_iter_first_unlocked",
    "dma_resv_iter_is_restarted",
    "dma_resv_iter_next",
    "dma_resv_iter_next_unlocked",
    "dma_resv_iter_usage",
    "dma_resv_lock",
    "dma_resv_replace_fences",
    "dma_resv_reserve_fences",
    "dma_resv_set_deadline",
    "dma_resv_test_signaled",
    "dma_resv_trylock",
    "dma_resv_unlock",
    "dma_resv_usage_rw",
    "dma_resv_wait_timeout",
]


class DmaResvUsage(enum.IntEnum):
    """``enum dma_resv_usage``: how a fence is used; lower is stronger."""

    KERNEL = 0
    WRITE = 1
    READ = 2
    BOOKKEEP = 3

    def __str__(self) -> str:
        return self.name.lower()  # dma_resv_describe's usage words


DMA_RESV_USAGE_KERNEL = DmaResvUsage.KERNEL
DMA_RESV_USAGE_WRITE = DmaResvUsage.WRITE
DMA_RESV_USAGE_READ = DmaResvUsage.READ
DMA_RESV_USAGE_BOOKKEEP = DmaResvUsage.BOOKKEEP


def dma_resv_usage_rw(write: bool) -> DmaResvUsage:
    """``dma_resv_usage_rw``: a new write waits for READ (all), a new read for WRITE."""
    return DmaResvUsage.READ if write else DmaResvUsage.WRITE


class ResvContractError(RuntimeError):
    """A dma-resv rule the kernel enforces with ``BUG_ON`` (carries the finding)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class WwAcquireCtx:
    """``struct ww_acquire_ctx`` (only its identity matters in the model)."""


_PTR = 8  # sizeof(pointer) on arm64
_LIST_HDR = 24  # struct dma_resv_list: rcu_head (16) + num_fences + max_fences (2 x u32)


def _kmalloc_size(n: int) -> int:
    """The kmalloc bucket ``ksize()`` reports for an ``n``-byte request (SLUB, arm64)."""
    for b in (8, 16, 32, 64, 96, 128, 192):
        if n <= b:
            return b
    size = 256
    while size < n:
        size *= 2
    return size


@dataclass(eq=False)
class _Entry:
    fence: DmaFence
    usage: DmaResvUsage


class DmaResv:
    """``struct dma_resv``: lock, and the fence list with ``num_fences``/``max_fences``."""

    def __init__(self, core: DmaBufCore | None = None, name: str = "") -> None:
        self.core = core if core is not None else get_default_core()
        self.name = name
        self.entries: list[_Entry] = []
        self.max_fences = 0  # 0 = no list allocated yet
        self.list_gen = 0  # identity of the current dma_resv_list (changes on realloc)
        self.locked = False
        self.lock_ctx: WwAcquireCtx | None = None

    @property
    def num_fences(self) -> int:
        """``fobj->num_fences``."""
        return len(self.entries)

    def __repr__(self) -> str:
        return f"<DmaResv {self.name!r} {self.num_fences}/{self.max_fences} locked={self.locked}>"


def dma_resv_init(core: DmaBufCore | None = None) -> DmaResv:
    """``dma_resv_init``: an empty, unlocked reservation object."""
    return DmaResv(core)


def dma_resv_fini(obj: DmaResv) -> None:
    """``dma_resv_fini``: drop every fence reference."""
    for e in obj.entries:
        dma_fence_put(e.fence)
    obj.entries = []
    obj.max_fences = 0


# -- locking ------------------------------------------------------------------------
def dma_resv_lock(obj: DmaResv, ctx: WwAcquireCtx | None = None) -> int:
    """``dma_resv_lock``: 0; ``-EALREADY`` if ``ctx`` holds it; ``-EDEADLK`` to back off.

    Locking an object already held with no ctx (or by the same plain holder) would
    deadlock the kernel: finding ``dma-resv.recursive-lock`` and
    :class:`ResvContractError`.
    """
    if obj.locked:
        if ctx is not None and obj.lock_ctx is ctx:
            return -errno.EALREADY
        if ctx is not None and obj.lock_ctx is not None:
            return -errno.EDEADLK
        finding = obj.core.warn(
            "dma-resv.recursive-lock",
            "WARNING: possible recursive locking detected (reservation_ww_class_mutex)",
            subject=obj.name or "dma_resv",
            severity=Severity.FATAL,
        )
        raise ResvContractError(finding)
    obj.locked = True
    obj.lock_ctx = ctx
    return 0


def dma_resv_trylock(obj: DmaResv) -> bool:
    """``dma_resv_trylock``."""
    if obj.locked:
        return False
    obj.locked = True
    obj.lock_ctx = None
    return True


def dma_resv_unlock(obj: DmaResv) -> None:
    """``dma_resv_unlock``: also ``dma_resv_reset_max_fences`` (debug kernels)."""
    if not obj.locked:
        obj.core.warn(
            "dma-resv.unlock-not-held",
            "WARNING: bad unlock balance detected! (reservation_ww_class_mutex)",
            subject=obj.name or "dma_resv",
        )
        return
    if obj.max_fences:
        obj.max_fences = obj.num_fences
    obj.locked = False
    obj.lock_ctx = None


def dma_resv_assert_held(obj: DmaResv) -> bool:
    """``dma_resv_assert_held``: lockdep WARN (finding) when the lock is not held."""
    if not obj.locked:
        obj.core.warn(
            "dma-resv.not-held",
            "WARNING: lockdep_assert_held(&obj->lock.base) failed: dma_resv not locked",
            subject=obj.name or "dma_resv",
        )
        return False
    return True


# -- modification -------------------------------------------------------------------
def dma_resv_reserve_fences(obj: DmaResv, num_fences: int) -> int:
    """``dma_resv_reserve_fences``: make room for ``num_fences`` more adds; 0 / -EINVAL.

    Growing reallocates the list (capacity ``max(used + n, 2 * max)``, or
    ``max(4, roundup_pow_of_two(n))`` for the first, rounded up to the kmalloc bucket)
    and drops signalled fences on the way.
    """
    dma_resv_assert_held(obj)
    if num_fences == 0:
        obj.core.warn(
            "dma-resv.reserve-zero",
            "WARNING: drivers/dma-buf/dma-resv.c: dma_resv_reserve_fences: WARN_ON(!num_fences)",
            subject=obj.name or "dma_resv",
        )
        return -errno.EINVAL
    if obj.max_fences:
        if obj.num_fences + num_fences <= obj.max_fences:
            return 0
        new_max = max(obj.num_fences + num_fences, obj.max_fences * 2)
    else:
        new_max = max(4, 1 << (num_fences - 1).bit_length())
    new_max = (_kmalloc_size(_LIST_HDR + new_max * _PTR) - _LIST_HDR) // _PTR
    kept: list[_Entry] = []
    dropped: list[DmaFence] = []
    for e in obj.entries:
        if dma_fence_is_signaled(e.fence):
            dropped.append(e.fence)
        else:
            kept.append(e)
    obj.entries = kept
    obj.max_fences = new_max
    obj.list_gen += 1
    for f in dropped:
        dma_fence_put(f)
    return 0


def dma_resv_add_fence(obj: DmaResv, fence: DmaFence, usage: DmaResvUsage) -> None:
    """``dma_resv_add_fence``: add (taking a reference) or replace in place.

    An entry is replaced when it is from the same context, its usage is not stronger
    (``old_usage >= usage``) and ``fence`` is later or the same; or when the old fence
    has signalled.  Otherwise a reserved slot is used; none left is a ``BUG_ON``.
    """
    dma_fence_get(fence)
    dma_resv_assert_held(obj)
    if dma_fence_is_container(fence):
        obj.core.warn(
            "dma-resv.add-container",
            "WARNING: drivers/dma-buf/dma-resv.c: dma_resv_add_fence: "
            "WARN_ON(dma_fence_is_container(fence))",
            subject=fence,
        )
    usage = DmaResvUsage(usage)
    for e in obj.entries:
        old = e.fence
        if (
            old.context == fence.context
            and e.usage >= usage
            and dma_fence_is_later_or_same(fence, old)
        ) or dma_fence_is_signaled(old):
            e.fence, e.usage = fence, usage
            dma_fence_put(old)
            return
    if obj.num_fences >= obj.max_fences:
        dma_fence_put(fence)
        finding = obj.core.warn(
            "dma-resv.add-fence-no-slot",
            "kernel BUG at drivers/dma-buf/dma-resv.c: dma_resv_add_fence: "
            "BUG_ON(fobj->num_fences >= fobj->max_fences)",
            subject=fence,
            severity=Severity.FATAL,
            resv=obj.name,
        )
        raise ResvContractError(finding)
    obj.entries.append(_Entry(fence, usage))


def dma_resv_replace_fences(
    obj: DmaResv, context: int, replacement: DmaFence, usage: DmaResvUsage
) -> None:
    """``dma_resv_replace_fences``: every entry of ``context`` becomes ``replacement``."""
    dma_resv_assert_held(obj)
    for e in obj.entries:
        if e.fence.context != context:
            continue
        old = e.fence
        e.fence, e.usage = dma_fence_get(replacement), DmaResvUsage(usage)  # type: ignore[assignment]
        dma_fence_put(old)


def dma_resv_copy_fences(dst: DmaResv, src: DmaResv) -> int:
    """``dma_resv_copy_fences``: dst's list becomes src's unsignalled fences; 0."""
    dma_resv_assert_held(dst)
    new = [
        _Entry(dma_fence_get(f), u)  # type: ignore[arg-type]
        for f, u in dma_resv_for_each_fence_unlocked(src, DmaResvUsage.BOOKKEEP)
    ]
    old = dst.entries
    dst.entries = new
    dst.max_fences = len(new) if new else 0
    dst.list_gen += 1
    for e in old:
        dma_fence_put(e.fence)
    return 0


# -- iteration ----------------------------------------------------------------------
class DmaResvIter:
    """``struct dma_resv_iter``: the cursor of locked and unlocked iteration."""

    def __init__(self, obj: DmaResv, usage: DmaResvUsage) -> None:
        self.obj = obj
        self.usage = DmaResvUsage(usage)
        self.fence: DmaFence | None = None  # unlocked: holds a reference
        self.fence_usage: DmaResvUsage = DmaResvUsage.KERNEL
        self.index = 0
        self.fences: int | None = None  # the list seen (list_gen); None = corrupted/none
        self.num_fences = 0
        self.is_restarted = False


def dma_resv_iter_begin(obj: DmaResv, usage: DmaResvUsage) -> DmaResvIter:
    """``dma_resv_iter_begin``."""
    return DmaResvIter(obj, usage)


def dma_resv_iter_end(cursor: DmaResvIter) -> None:
    """``dma_resv_iter_end``: drop the unlocked iterator's reference."""
    dma_fence_put(cursor.fence)
    cursor.fence = None


def _restart(cursor: DmaResvIter) -> None:
    cursor.index = 0
    cursor.is_restarted = True
    cursor.fences = cursor.obj.list_gen
    cursor.num_fences = cursor.obj.num_fences


def _walk_unlocked(cursor: DmaResvIter) -> None:
    """``dma_resv_iter_walk_unlocked``: next unsignalled entry of usage <= cursor.usage."""
    dma_fence_put(cursor.fence)
    cursor.fence = None
    entries = cursor.obj.entries
    while cursor.index < min(cursor.num_fences, len(entries)):
        e = entries[cursor.index]
        cursor.index += 1
        if e.usage > cursor.usage or dma_fence_is_signaled(e.fence):
            continue
        cursor.fence = dma_fence_get(e.fence)
        cursor.fence_usage = e.usage
        return


def dma_resv_iter_first_unlocked(cursor: DmaResvIter) -> DmaFence | None:
    """``dma_resv_iter_first_unlocked``: first unsignalled fence (new reference)."""
    while True:
        _restart(cursor)
        _walk_unlocked(cursor)
        if cursor.fences == cursor.obj.list_gen:
            return cursor.fence


def dma_resv_iter_next_unlocked(cursor: DmaResvIter) -> DmaFence | None:
    """``dma_resv_iter_next_unlocked``: next fence; restarts if the list was replaced."""
    cursor.is_restarted = False
    restart = cursor.fences != cursor.obj.list_gen
    while True:
        if restart:
            _restart(cursor)
        _walk_unlocked(cursor)
        restart = True
        if cursor.fences == cursor.obj.list_gen:
            return cursor.fence


def dma_resv_iter_first(cursor: DmaResvIter) -> DmaFence | None:
    """``dma_resv_iter_first`` (lock held): signalled fences included, no references."""
    dma_resv_assert_held(cursor.obj)
    cursor.index = 0
    cursor.is_restarted = True
    return dma_resv_iter_next(cursor)


def dma_resv_iter_next(cursor: DmaResvIter) -> DmaFence | None:
    """``dma_resv_iter_next`` (lock held)."""
    if cursor.index:
        cursor.is_restarted = False
    entries = cursor.obj.entries
    while cursor.index < len(entries):
        e = entries[cursor.index]
        cursor.index += 1
        if e.usage <= cursor.usage:
            cursor.fence_usage = e.usage
            return e.fence
    return None


def dma_resv_iter_is_restarted(cursor: DmaResvIter) -> bool:
    """``dma_resv_iter_is_restarted``."""
    return cursor.is_restarted


def dma_resv_iter_usage(cursor: DmaResvIter) -> DmaResvUsage:
    """``dma_resv_iter_usage``: the usage of the current entry."""
    return cursor.fence_usage


def dma_resv_for_each_fence(
    obj: DmaResv, usage: DmaResvUsage
) -> Iterator[tuple[DmaFence, DmaResvUsage]]:
    """``dma_resv_for_each_fence`` (lock held): ``(fence, usage)``, signalled ones too."""
    cursor = dma_resv_iter_begin(obj, usage)
    fence = dma_resv_iter_first(cursor)
    while fence is not None:
        yield fence, cursor.fence_usage
        fence = dma_resv_iter_next(cursor)


def dma_resv_for_each_fence_unlocked(
    obj: DmaResv, usage: DmaResvUsage
) -> Iterator[tuple[DmaFence, DmaResvUsage]]:
    """``dma_resv_for_each_fence_unlocked``: unsignalled ``(fence, usage)``.

    The cursor holds a reference to the yielded fence until the next step.
    """
    cursor = dma_resv_iter_begin(obj, usage)
    try:
        fence = dma_resv_iter_first_unlocked(cursor)
        while fence is not None:
            yield fence, cursor.fence_usage
            fence = dma_resv_iter_next_unlocked(cursor)
    finally:
        dma_resv_iter_end(cursor)


# -- queries ------------------------------------------------------------------------
def dma_resv_get_fences(obj: DmaResv, usage: DmaResvUsage) -> tuple[int, list[DmaFence]]:
    """``dma_resv_get_fences`` → ``(0, fences)``; the caller owns the references."""
    out: list[DmaFence] = []
    for f, _u in dma_resv_for_each_fence_unlocked(obj, usage):
        out.append(dma_fence_get(f))  # type: ignore[arg-type]
    return 0, out


def dma_resv_get_singleton(obj: DmaResv, usage: DmaResvUsage) -> tuple[int, DmaFence | None]:
    """``dma_resv_get_singleton`` → ``(0, None | the fence | a new array)``."""
    ret, fences = dma_resv_get_fences(obj, usage)
    if not fences:
        return ret, None
    if len(fences) == 1:
        return 0, fences[0]
    array = dma_fence_array_create(fences, dma_fence_context_alloc(1, obj.core), 1, False)
    return 0, array


def dma_resv_test_signaled(obj: DmaResv, usage: DmaResvUsage) -> bool:
    """``dma_resv_test_signaled``: no unsignalled fence of usage <= ``usage``."""
    return all(False for _ in dma_resv_for_each_fence_unlocked(obj, usage))


def dma_resv_wait_timeout(obj: DmaResv, usage: DmaResvUsage, intr: bool, timeout: int) -> int:
    """``dma_resv_wait_timeout``: wait each fence in turn; >0 / 0 / ``-ERESTARTSYS``.

    ``timeout == 0`` becomes 1 per fence (the kernel's quirk); with nothing to wait for
    returns ``timeout`` (or 1).
    """
    ret = timeout if timeout else 1
    for f, _u in dma_resv_for_each_fence_unlocked(obj, usage):
        ret = dma_fence_wait_timeout(f, intr, ret)
        if ret <= 0:
            return ret
    return ret


def dma_resv_set_deadline(obj: DmaResv, usage: DmaResvUsage, deadline: int) -> None:
    """``dma_resv_set_deadline``: forward the hint to every fence of usage <= ``usage``."""
    for f, _u in dma_resv_for_each_fence_unlocked(obj, usage):
        dma_fence_set_deadline(f, deadline)


def dma_resv_describe(obj: DmaResv) -> str:
    """``dma_resv_describe``: ``"\\t<usage> fence:<describe>"`` per fence up to READ."""
    out = []
    for f, u in dma_resv_for_each_fence(obj, DmaResvUsage.READ):
        out.append(f"\t{u} fence:{dma_fence_describe(f)}")
    return "".join(out)
