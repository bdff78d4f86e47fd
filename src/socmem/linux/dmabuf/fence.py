"""dma-fence: ``drivers/dma-buf/dma-fence.c`` and ``include/linux/dma-fence.h``.

Semantics are those of Linux **v6.12** (the baseline of
``/work/shared/reference/kernel-dmabuf-semantics.md`` §0.1); v6.1 behaves the same for
everything modelled here.  Notable version facts:

* ``dma_fence_signal*`` return ``0`` the first time and ``-EINVAL`` when the fence was
  already signalled (v6.1 … v6.12).  Recent mainline (2026) made them ``void`` and added
  ``dma_fence_check_and_signal()`` (``True`` = *was already* signalled); that is provided
  too, as :func:`dma_fence_check_and_signal`.
* 64-bit seqno comparison is selected by ``ops.use_64bit_seqno`` (v6.12; the chain ops
  set it).  Recent kernels use ``DMA_FENCE_FLAG_SEQNO64_BIT`` instead; the model accepts
  either: :data:`DMA_FENCE_FLAG_SEQNO64_BIT` is a model flag bit above the v6.12 ones.
* ``dma_fence_context_alloc`` starts at 1; context 0 belongs to the global stub.

The model is single-threaded and synchronous: callbacks run inside the signalling call,
irq_work used by containers runs immediately.  Kernel WARNs become
:class:`~socmem.check.finding.Finding` records in the :class:`DmaBufCore`'s log (kinds
``dma-fence.*``); execution continues as it would after a WARN.

**Waiting in model time.** Timeouts are model nanoseconds (see :mod:`socmem.linux.clock`).
``dma_fence_wait_timeout`` on a pending fence with ``timeout > 0`` *sleeps*: it lets the
core's :class:`~socmem.linux.clock.ModelClock` run its timers (other agents: hardware,
timers set by tests) until the fence signals or the deadline passes, and returns the
remaining time (``>= 1``) or ``0``.  A wait that could only end by a signal that nothing
in model time will ever deliver (``MAX_SCHEDULE_TIMEOUT`` with no timer left) is the
kernel's hung task: a ``dma-fence.wait-forever`` finding is recorded and
:class:`FenceWaitHang` is raised.  A wait issued from inside a clock callback cannot let
time pass (the model is single-threaded): it returns ``0`` for a finite timeout.  The
simulator will wait with callbacks, not with these calls.  ``-ERESTARTSYS`` is returned
when ``intr`` is true and :attr:`DmaBufCore.signal_pending` is set.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from socmem.check.finding import Finding, FindingLog, HistoryEvent, Severity
from socmem.linux.clock import MAX_SCHEDULE_TIMEOUT, ModelClock, ns_to_s

__all__ = [
    "DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT",
    "DMA_FENCE_FLAG_SEQNO64_BIT",
    "DMA_FENCE_FLAG_SIGNALED_BIT",
    "DMA_FENCE_FLAG_TIMESTAMP_BIT",
    "DMA_FENCE_FLAG_USER_BITS",
    "ERESTARTSYS",
    "MAX_ERRNO",
    "MAX_SCHEDULE_TIMEOUT",
    "DmaBufCore",
    "DmaFence",
    "DmaFenceCb",
    "DmaFenceOps",
    "FenceWaitHang",
    "__dma_fence_is_later",
    "dma_fence_add_callback",
    "dma_fence_allocate_private_stub",
    "dma_fence_check_and_signal",
    "dma_fence_context_alloc",
    "dma_fence_describe",
    "dma_fence_enable_sw_signaling",
    "dma_fence_get",
    "dma_fence_get_status",
    "dma_fence_get_stub",
    "dma_fence_init",
    "dma_fence_is_container",
    "dma_fence_is_later",
    "dma_fence_is_later_or_same",
    "dma_fence_is_signaled",
    "dma_fence_later",
    "dma_fence_put",
    "dma_fence_remove_callback",
    "dma_fence_seqno_is_later",
    "dma_fence_set_deadline",
    "dma_fence_set_error",
    "dma_fence_signal",
    "dma_fence_signal_timestamp",
    "dma_fence_timestamp",
    "dma_fence_wait",
    "dma_fence_wait_any_timeout",
    "dma_fence_wait_timeout",
    "get_default_core",
    "set_default_core",
]

# include/linux/dma-fence.h, enum dma_fence_flag_bits (v6.12 order)
DMA_FENCE_FLAG_SIGNALED_BIT = 0
DMA_FENCE_FLAG_TIMESTAMP_BIT = 1
DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT = 2
DMA_FENCE_FLAG_USER_BITS = 3
# Recent kernels' per-fence 64-bit seqno flag; a high bit here so USER_BITS keeps its v6.12
# number (sw_sync uses DMA_FENCE_FLAG_USER_BITS for "has deadline").
DMA_FENCE_FLAG_SEQNO64_BIT = 31

MAX_ERRNO = 4095  # include/linux/err.h
ERESTARTSYS = 512  # include/linux/errno.h (kernel-internal)

_U32 = 0xFFFFFFFF


class FenceWaitHang(RuntimeError):
    """A wait that can never finish in model time (the kernel's hung task)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class DmaBufCore:
    """Shared state of the modelled dma-buf subsystem: one clock, one finding log.

    Holds what the kernel keeps in globals: the fence context counter
    (``dma_fence_context_counter``, starting at 1) and the stub fence
    (``dma_fence_stub``).  Later code (dma-buf, heaps, devices) shares one instance so
    every object sees the same model time and reports to the same
    :class:`~socmem.check.finding.FindingLog`.
    """

    def __init__(self, clock: ModelClock | None = None, findings: FindingLog | None = None):
        self.clock = clock if clock is not None else ModelClock()
        self.findings = findings if findings is not None else FindingLog()
        self.next_context = 1
        self.signal_pending = False  # a pending signal for -ERESTARTSYS in intr waits
        self._stub: DmaFence | None = None

    @property
    def now(self) -> int:
        """Current model time (ns)."""
        return self.clock.now

    def warn(
        self,
        kind: str,
        message: str,
        *,
        subject: DmaFence | str | None = None,
        severity: Severity = Severity.WARNING,
        **data: Any,
    ) -> Finding:
        """Record what a kernel ``WARN``/``BUG`` would print, as a finding."""
        history: list[HistoryEvent] = []
        name = ""
        if isinstance(subject, DmaFence):
            history = list(subject.history)
            name = subject.name()
        elif subject is not None:
            name = subject
        return self.findings.add(
            Finding(
                kind=kind,
                severity=severity,
                message=message,
                subject=name,
                time=ns_to_s(self.clock.now),
                history=history,
                data=dict(data),
            )
        )


_default_core: DmaBufCore | None = None


def get_default_core() -> DmaBufCore:
    """The process-wide :class:`DmaBufCore` used when none is passed."""
    global _default_core
    if _default_core is None:
        _default_core = DmaBufCore()
    return _default_core


def set_default_core(core: DmaBufCore | None) -> None:
    """Replace (or with ``None`` reset) the process-wide default core."""
    global _default_core
    _default_core = core


@dataclass(frozen=True)
class DmaFenceOps:
    """``struct dma_fence_ops``: the implementation hooks of a fence.

    ``get_driver_name`` and ``get_timeline_name`` are mandatory (``dma_fence_init``
    BUGs without them); the others are optional (``None`` = the kernel's NULL op).
    Hooks take the fence first, as in C.
    """

    get_driver_name: Callable[[DmaFence], str]
    get_timeline_name: Callable[[DmaFence], str]
    use_64bit_seqno: bool = False
    enable_signaling: Callable[[DmaFence], bool] | None = None
    signaled: Callable[[DmaFence], bool] | None = None
    wait: Callable[[DmaFence, bool, int], int] | None = None
    release: Callable[[DmaFence], None] | None = None
    fence_value_str: Callable[[DmaFence], str] | None = None
    timeline_value_str: Callable[[DmaFence], str] | None = None
    set_deadline: Callable[[DmaFence, int], None] | None = None


CallbackFunc = Callable[["DmaFence", "DmaFenceCb"], None]


@dataclass(eq=False)
class DmaFenceCb:
    """``struct dma_fence_cb``: a callback node; on at most one fence at a time."""

    func: CallbackFunc | None = None
    linked: bool = False  # list_empty(&cb->node) == not linked
    data: Any = None  # free for the user (container_of stand-in)


class DmaFence:
    """``struct dma_fence`` (``dma_fence_init``): refcount 1, flags 0, error 0.

    Subclasses (chain, array, sw_sync point) are the ``container_of`` of the kernel.
    """

    def __init__(
        self,
        ops: DmaFenceOps,
        context: int,
        seqno: int,
        *,
        core: DmaBufCore | None = None,
        seqno64: bool = False,
    ) -> None:
        if ops is None or ops.get_driver_name is None or ops.get_timeline_name is None:
            raise ValueError("dma_fence_init: BUG_ON(!ops || !ops->get_*_name)")
        self.core = core if core is not None else get_default_core()
        self.ops = ops
        self.context = int(context)
        self.seqno = int(seqno)
        self.flags = 1 << DMA_FENCE_FLAG_SEQNO64_BIT if seqno64 else 0
        self.error = 0
        self.refcount = 1
        self.timestamp: int | None = None  # ns, valid once TIMESTAMP is set
        self.freed = False
        self.deadline: int | None = None
        self._cb_list: list[DmaFenceCb] = []
        self.history: list[HistoryEvent] = [
            HistoryEvent(ns_to_s(self.core.now), "dma_fence_init", f"{context}:{seqno}")
        ]

    # -- flags / names --------------------------------------------------------------
    def test_bit(self, bit: int) -> bool:
        """``test_bit(bit, &fence->flags)``."""
        return bool(self.flags >> bit & 1)

    def _set_bit(self, bit: int) -> bool:
        was = self.test_bit(bit)
        self.flags |= 1 << bit
        return was

    @property
    def signaled_flag(self) -> bool:
        """``DMA_FENCE_FLAG_SIGNALED_BIT`` (``dma_fence_test_signaled_flag``)."""
        return self.test_bit(DMA_FENCE_FLAG_SIGNALED_BIT)

    def driver_name(self) -> str:
        """``dma_fence_driver_name`` (v6.12: the op's string, also once signalled)."""
        return self.ops.get_driver_name(self)

    def timeline_name(self) -> str:
        """``dma_fence_timeline_name``."""
        return self.ops.get_timeline_name(self)

    def name(self) -> str:
        """``driver:timeline:context:seqno`` (the WARN format), for findings."""
        return f"{self.driver_name()}:{self.timeline_name()}:{self.context:x}:{self.seqno:x}"

    def _event(self, what: str, detail: str = "") -> None:
        self.history.append(HistoryEvent(ns_to_s(self.core.now), what, detail))

    def pending_callbacks(self) -> int:
        """How many callbacks are queued (``list_count_nodes(&fence->cb_list)``)."""
        return len(self._cb_list)

    # -- methods are the kernel functions on this fence ------------------------------
    def signal(self) -> int:
        """``dma_fence_signal``: see :func:`dma_fence_signal`."""
        return dma_fence_signal(self)

    def is_signaled(self) -> bool:
        """``dma_fence_is_signaled``."""
        return dma_fence_is_signaled(self)

    def get_status(self) -> int:
        """``dma_fence_get_status``."""
        return dma_fence_get_status(self)

    def set_error(self, err: int) -> None:
        """``dma_fence_set_error``."""
        dma_fence_set_error(self, err)

    def add_callback(self, cb: DmaFenceCb, func: CallbackFunc | None) -> int:
        """``dma_fence_add_callback``."""
        return dma_fence_add_callback(self, cb, func)

    def remove_callback(self, cb: DmaFenceCb) -> bool:
        """``dma_fence_remove_callback``."""
        return dma_fence_remove_callback(self, cb)

    def enable_sw_signaling(self) -> None:
        """``dma_fence_enable_sw_signaling``."""
        dma_fence_enable_sw_signaling(self)

    def wait_timeout(self, intr: bool, timeout: int) -> int:
        """``dma_fence_wait_timeout``."""
        return dma_fence_wait_timeout(self, intr, timeout)

    def wait(self, intr: bool = True) -> int:
        """``dma_fence_wait``."""
        return dma_fence_wait(self, intr)

    def get(self) -> DmaFence:
        """``dma_fence_get``."""
        return dma_fence_get(self)  # type: ignore[return-value]

    def put(self) -> None:
        """``dma_fence_put``."""
        dma_fence_put(self)

    def __repr__(self) -> str:
        state = "signaled" if self.signaled_flag else "pending"
        return (
            f"<{type(self).__name__} {self.context}:{self.seqno} {state}"
            f" err={self.error} ref={self.refcount}>"
        )


def dma_fence_init(
    ops: DmaFenceOps, context: int, seqno: int, *, core: DmaBufCore | None = None
) -> DmaFence:
    """``dma_fence_init`` (dma-fence.c): a new fence (allocation and init in one)."""
    return DmaFence(ops, context, seqno, core=core)


def dma_fence_context_alloc(num: int, core: DmaBufCore | None = None) -> int:
    """``dma_fence_context_alloc``: first of ``num`` fresh consecutive contexts.

    ``num == 0`` is a WARN (finding ``dma-fence.context-alloc-zero``), as in the kernel.
    """
    core = core if core is not None else get_default_core()
    if num == 0:
        core.warn(
            "dma-fence.context-alloc-zero",
            "WARNING: drivers/dma-buf/dma-fence.c: dma_fence_context_alloc: WARN_ON(!num)",
        )
    first = core.next_context
    core.next_context += num
    return first


# -- refcounting --------------------------------------------------------------------
def dma_fence_get(fence: DmaFence | None) -> DmaFence | None:
    """``dma_fence_get``: take a reference (``None`` passes through)."""
    if fence is None:
        return None
    if fence.refcount <= 0:
        fence.core.warn(
            "dma-fence.get-after-free",
            "refcount_t: addition on 0; use-after-free.",
            subject=fence,
            severity=Severity.ERROR,
        )
        return fence
    fence.refcount += 1
    return fence


def dma_fence_put(fence: DmaFence | None) -> None:
    """``dma_fence_put``: drop a reference; the last one releases the fence."""
    if fence is None:
        return
    if fence.refcount <= 0:
        fence.core.warn(
            "dma-fence.refcount-underflow",
            "refcount_t: underflow; use-after-free.",
            subject=fence,
            severity=Severity.ERROR,
        )
        return
    fence.refcount -= 1
    if fence.refcount == 0:
        _dma_fence_release(fence)


def _dma_fence_release(fence: DmaFence) -> None:
    """``dma_fence_release``: WARN on pending callbacks, then ``ops->release``/free."""
    fence._event("dma_fence_release")
    if fence._cb_list and not fence.signaled_flag:
        fence.core.warn(
            "dma-fence.released-unsignaled",
            f"Fence {fence.driver_name()}:{fence.timeline_name()}:"
            f"{fence.context:x}:{fence.seqno:x} released with pending signals!",
            subject=fence,
        )
        dma_fence_set_error(fence, -errno.EDEADLK)
        dma_fence_signal(fence)
    if fence.ops.release is not None:
        fence.ops.release(fence)
    fence.freed = True


# -- signalling ---------------------------------------------------------------------
def dma_fence_signal_timestamp(fence: DmaFence | None, timestamp: int) -> int:
    """``dma_fence_signal_timestamp``: signal with the given timestamp (ns).

    Returns 0, or ``-EINVAL`` if ``fence`` is ``None`` or already signalled.  Callbacks
    run once each, in the order they were added, with the fence, before this returns.
    """
    if fence is None:
        return -errno.EINVAL
    if fence._set_bit(DMA_FENCE_FLAG_SIGNALED_BIT):
        return -errno.EINVAL
    cb_list, fence._cb_list = fence._cb_list, []
    fence.timestamp = int(timestamp)
    fence._set_bit(DMA_FENCE_FLAG_TIMESTAMP_BIT)
    fence._event("dma_fence_signaled", f"error={fence.error}")
    for cb in cb_list:
        if not cb.linked:  # removed while an earlier callback ran
            continue
        cb.linked = False
        assert cb.func is not None
        cb.func(fence, cb)
    return 0


def dma_fence_signal(fence: DmaFence | None) -> int:
    """``dma_fence_signal`` (v6.12): 0 the first time, ``-EINVAL`` afterwards."""
    if fence is None:
        return -errno.EINVAL
    return dma_fence_signal_timestamp(fence, fence.core.now)


def dma_fence_check_and_signal(fence: DmaFence) -> bool:
    """``dma_fence_check_and_signal`` (recent mainline): ``True`` if *already* signalled."""
    return dma_fence_signal(fence) != 0


def dma_fence_is_signaled(fence: DmaFence) -> bool:
    """``dma_fence_is_signaled``: the flag, else ``ops->signaled`` (signalling on true)."""
    if fence.signaled_flag:
        return True
    if fence.ops.signaled is not None and fence.ops.signaled(fence):
        dma_fence_signal(fence)
        return True
    return False


def dma_fence_get_status(fence: DmaFence) -> int:
    """``dma_fence_get_status``: 0 pending, 1 signalled, ``error`` (<0) if it failed."""
    if dma_fence_is_signaled(fence):
        return fence.error or 1
    return 0


def dma_fence_set_error(fence: DmaFence, err: int) -> None:
    """``dma_fence_set_error``: only before signalling, ``-MAX_ERRNO <= err < 0``.

    Violations are WARNs (findings ``dma-fence.set-error-after-signal`` and
    ``dma-fence.set-error-invalid``); like the kernel, the value is stored anyway.
    """
    if fence.signaled_flag:
        fence.core.warn(
            "dma-fence.set-error-after-signal",
            "WARNING: include/linux/dma-fence.h: dma_fence_set_error: "
            "WARN_ON(test_bit(DMA_FENCE_FLAG_SIGNALED_BIT, &fence->flags))",
            subject=fence,
            error=err,
        )
    if err >= 0 or err < -MAX_ERRNO:
        fence.core.warn(
            "dma-fence.set-error-invalid",
            "WARNING: include/linux/dma-fence.h: dma_fence_set_error: "
            "WARN_ON(error >= 0 || error < -MAX_ERRNO)",
            subject=fence,
            error=err,
        )
    fence.error = err
    fence._event("dma_fence_set_error", str(err))


def _enable_signaling(fence: DmaFence) -> bool:
    """``__dma_fence_enable_signaling``: ``False`` if the fence is (now) signalled."""
    was_set = fence._set_bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)
    if fence.signaled_flag:
        return False
    if not was_set and fence.ops.enable_signaling is not None:
        fence._event("dma_fence_enable_signal")
        if not fence.ops.enable_signaling(fence):
            dma_fence_signal(fence)
            return False
    return True


def dma_fence_enable_sw_signaling(fence: DmaFence) -> None:
    """``dma_fence_enable_sw_signaling``: call ``ops->enable_signaling`` once."""
    _enable_signaling(fence)


def dma_fence_add_callback(
    fence: DmaFence | None, cb: DmaFenceCb, func: CallbackFunc | None
) -> int:
    """``dma_fence_add_callback``: 0 queued, ``-ENOENT`` already signalled, ``-EINVAL`` NULL.

    On ``-ENOENT`` the callback is not called and ``cb`` is left unlinked, so a later
    :func:`dma_fence_remove_callback` returns ``False``.
    """
    if fence is None or func is None:
        core = fence.core if fence is not None else get_default_core()
        core.warn(
            "dma-fence.add-callback-invalid",
            "WARNING: drivers/dma-buf/dma-fence.c: dma_fence_add_callback: "
            "WARN_ON(!fence || !func)",
        )
        return -errno.EINVAL
    cb.linked = False
    if fence.signaled_flag:
        return -errno.ENOENT
    if _enable_signaling(fence):
        cb.func = func
        cb.linked = True
        fence._cb_list.append(cb)
        return 0
    return -errno.ENOENT


def dma_fence_remove_callback(fence: DmaFence, cb: DmaFenceCb) -> bool:
    """``dma_fence_remove_callback``: ``True`` if ``cb`` was pending (it will never run)."""
    if not cb.linked:
        return False
    cb.linked = False
    if cb in fence._cb_list:
        fence._cb_list.remove(cb)
    return True


# -- waiting ------------------------------------------------------------------------
def _default_wait(fence: DmaFence, intr: bool, timeout: int) -> int:
    """``dma_fence_default_wait`` in model time (see the module docstring)."""
    ret = timeout if timeout else 1
    if fence.signaled_flag:
        return ret
    core = fence.core
    if intr and core.signal_pending:
        return -ERESTARTSYS
    if not _enable_signaling(fence):
        return ret
    if timeout == 0:
        return 0
    clock = core.clock
    if clock.running:  # cannot let time pass from inside a clock callback
        return 0
    start = clock.now
    forever = timeout >= MAX_SCHEDULE_TIMEOUT
    deadline = None if forever else start + timeout
    done = clock.run_until(deadline, lambda: fence.signaled_flag or core.signal_pending)
    if fence.signaled_flag:
        if forever:
            return MAX_SCHEDULE_TIMEOUT
        assert deadline is not None
        return max(1, deadline - clock.now)
    if intr and core.signal_pending:
        return -ERESTARTSYS
    if forever and not done:
        finding = core.warn(
            "dma-fence.wait-forever",
            f"INFO: task blocked forever in dma_fence_default_wait on fence {fence.name()}"
            " (nothing in model time will signal it)",
            subject=fence,
            severity=Severity.ERROR,
        )
        raise FenceWaitHang(finding)
    return 0


def dma_fence_wait_timeout(fence: DmaFence, intr: bool, timeout: int) -> int:
    """``dma_fence_wait_timeout``: remaining time (>0), 0 on timeout, ``-ERESTARTSYS``.

    ``timeout`` is model ns (the kernel's jiffies).  Already signalled: returns
    ``timeout``, or 1 when ``timeout == 0``.  Negative timeout: WARN and ``-EINVAL``.
    """
    if timeout < 0:
        fence.core.warn(
            "dma-fence.wait-negative-timeout",
            "WARNING: drivers/dma-buf/dma-fence.c: dma_fence_wait_timeout: WARN_ON(timeout < 0)",
            subject=fence,
        )
        return -errno.EINVAL
    _enable_signaling(fence)
    fence._event("dma_fence_wait_start")
    if fence.ops.wait is not None:
        ret = fence.ops.wait(fence, intr, timeout)
    else:
        ret = _default_wait(fence, intr, timeout)
    fence._event("dma_fence_wait_end", str(ret))
    return ret


def dma_fence_wait(fence: DmaFence, intr: bool = True) -> int:
    """``dma_fence_wait``: 0 once signalled, or ``-ERESTARTSYS``."""
    ret = dma_fence_wait_timeout(fence, intr, MAX_SCHEDULE_TIMEOUT)
    return ret if ret < 0 else 0


def dma_fence_wait_any_timeout(
    fences: Sequence[DmaFence], intr: bool, timeout: int
) -> tuple[int, int | None]:
    """``dma_fence_wait_any_timeout``: ``(ret, idx)`` of the first signalled fence.

    Empty list or negative timeout → ``-EINVAL``; ``timeout == 0`` → 1 or 0 at once.
    """
    if not fences or timeout < 0:
        return -errno.EINVAL, None
    if timeout == 0:
        for i, f in enumerate(fences):
            if dma_fence_is_signaled(f):
                return 1, i
        return 0, None
    core = fences[0].core

    def first() -> int | None:
        for i, f in enumerate(fences):
            if f.signaled_flag:
                return i
        return None

    for i, f in enumerate(fences):
        _enable_signaling(f)
        if f.signaled_flag:
            return timeout, i
    if intr and core.signal_pending:
        return -ERESTARTSYS, None
    clock = core.clock
    if clock.running:
        return 0, None
    forever = timeout >= MAX_SCHEDULE_TIMEOUT
    deadline = None if forever else clock.now + timeout
    clock.run_until(deadline, lambda: first() is not None or core.signal_pending)
    idx = first()
    if idx is not None:
        return (timeout if forever else max(1, deadline - clock.now)), idx  # type: ignore[operator]
    if intr and core.signal_pending:
        return -ERESTARTSYS, None
    if forever:
        finding = core.warn(
            "dma-fence.wait-forever",
            "INFO: task blocked forever in dma_fence_wait_any_timeout",
            severity=Severity.ERROR,
        )
        raise FenceWaitHang(finding)
    return 0, None


# -- ordering -----------------------------------------------------------------------
def __dma_fence_is_later(f1: int, f2: int, ops: DmaFenceOps | None = None) -> bool:
    """``__dma_fence_is_later(f1, f2, ops)``: seqno ``f1`` later than ``f2``?

    64-bit (``ops.use_64bit_seqno``): plain ``f1 > f2``; otherwise only the low 32 bits,
    with wrap-around: ``(s32)(lower_32_bits(f1) - lower_32_bits(f2)) > 0``.
    """
    if ops is not None and ops.use_64bit_seqno:
        return f1 > f2
    return dma_fence_seqno_is_later(f1, f2)


def dma_fence_seqno_is_later(f1: int, f2: int) -> bool:
    """The 32-bit wrap-around comparison of ``__dma_fence_is_later`` (usable in classes)."""
    d = (f1 - f2) & _U32
    return 0 < d < 0x80000000


def _is_later_seqno(f1: DmaFence, f2: DmaFence) -> bool:
    if f1.ops.use_64bit_seqno or f1.test_bit(DMA_FENCE_FLAG_SEQNO64_BIT):
        return f1.seqno > f2.seqno
    return dma_fence_seqno_is_later(f1.seqno, f2.seqno)


def dma_fence_is_later(f1: DmaFence, f2: DmaFence) -> bool:
    """``dma_fence_is_later``: same context only (WARN and ``False`` otherwise)."""
    if f1.context != f2.context:
        f1.core.warn(
            "dma-fence.is-later-context-mismatch",
            "WARNING: include/linux/dma-fence.h: dma_fence_is_later: "
            "WARN_ON(f1->context != f2->context)",
            subject=f1,
            other=f2.name(),
        )
        return False
    return _is_later_seqno(f1, f2)


def dma_fence_is_later_or_same(f1: DmaFence, f2: DmaFence) -> bool:
    """``dma_fence_is_later_or_same``: ``f1 is f2`` or :func:`dma_fence_is_later`."""
    return f1 is f2 or dma_fence_is_later(f1, f2)


def dma_fence_later(f1: DmaFence, f2: DmaFence) -> DmaFence | None:
    """``dma_fence_later``: the later fence, or ``None`` if that one already signalled."""
    if f1.context != f2.context:
        f1.core.warn(
            "dma-fence.is-later-context-mismatch",
            "WARNING: include/linux/dma-fence.h: dma_fence_later: "
            "WARN_ON(f1->context != f2->context)",
            subject=f1,
            other=f2.name(),
        )
        return None
    later = f1 if _is_later_seqno(f1, f2) else f2
    return None if dma_fence_is_signaled(later) else later


# -- misc ---------------------------------------------------------------------------
def dma_fence_timestamp(fence: DmaFence) -> int:
    """``dma_fence_timestamp``: signal time (ns); WARN and "now" if not signalled."""
    if not fence.signaled_flag or fence.timestamp is None:
        fence.core.warn(
            "dma-fence.timestamp-unsignaled",
            "WARNING: include/linux/dma-fence.h: dma_fence_timestamp: "
            "WARN_ON(!test_bit(DMA_FENCE_FLAG_SIGNALED_BIT, &fence->flags))",
            subject=fence,
        )
        return fence.core.now
    return fence.timestamp


def dma_fence_set_deadline(fence: DmaFence, deadline: int) -> None:
    """``dma_fence_set_deadline``: forward the hint if the op exists and not signalled."""
    if fence.ops.set_deadline is not None and not dma_fence_is_signaled(fence):
        fence.ops.set_deadline(fence, deadline)


def dma_fence_describe(fence: DmaFence) -> str:
    """``dma_fence_describe`` (v6.12 format): ``"<drv> <tl> seq <n> [un]signalled\\n"``."""
    state = "" if dma_fence_is_signaled(fence) else "un"
    return f"{fence.driver_name()} {fence.timeline_name()} seq {fence.seqno} {state}signalled\n"


def dma_fence_is_container(fence: DmaFence) -> bool:
    """``dma_fence_is_container``: a ``dma_fence_array`` or a ``dma_fence_chain``."""
    return getattr(fence, "is_container", False)


def _stub_name(_fence: DmaFence) -> str:
    return "stub"


STUB_OPS = DmaFenceOps(get_driver_name=_stub_name, get_timeline_name=_stub_name)


def dma_fence_get_stub(core: DmaBufCore | None = None) -> DmaFence:
    """``dma_fence_get_stub``: a reference to the global signalled stub (context 0)."""
    core = core if core is not None else get_default_core()
    if core._stub is None:
        stub = DmaFence(STUB_OPS, 0, 0, core=core)
        stub._set_bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)
        dma_fence_signal(stub)
        core._stub = stub  # the core keeps the initial reference forever
    dma_fence_get(core._stub)
    return core._stub


def dma_fence_allocate_private_stub(timestamp: int, core: DmaBufCore | None = None) -> DmaFence:
    """``dma_fence_allocate_private_stub``: a new fence, signalled at ``timestamp``."""
    core = core if core is not None else get_default_core()
    fence = DmaFence(STUB_OPS, dma_fence_context_alloc(1, core), 0, core=core)
    fence._set_bit(DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT)
    dma_fence_signal_timestamp(fence, timestamp)
    return fence
