"""A minimal model clock: the time base of the functional model.

Time is an ``int`` of **nanoseconds** of model time (``ModelClock.now``), the unit of
``ktime_t`` and of ``CLOCK_MONOTONIC`` timestamps the kernel hands to user space
(``sync_fence_info.timestamp_ns``).  Integers keep event ordering exact; convert with
:func:`ns_to_s` for :class:`socmem.check.finding.HistoryEvent`, whose ``time`` is seconds.

Kernel timeouts are in jiffies; the model has no tick, so every "jiffies" argument of the
modelled kernel functions (``dma_fence_wait_timeout``, ``dma_resv_wait_timeout``) is a
number of model nanoseconds instead.  :data:`MAX_SCHEDULE_TIMEOUT` keeps its kernel value
(``LONG_MAX``) and means "forever".

The clock only knows *timers*: callbacks scheduled at an absolute time.  Whoever drives
the model (a test, later the simulator in ``socmem.sim``) advances the clock with
:meth:`ModelClock.advance` / :meth:`ModelClock.advance_to`; due timers run in time order
(ties in scheduling order) with ``now`` set to their expiry.  A sleeping kernel wait
(``dma_fence_default_wait``) uses :meth:`ModelClock.run_until`: it lets time pass, timer
by timer, until its condition holds or its deadline is reached.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["MAX_SCHEDULE_TIMEOUT", "NSEC_PER_SEC", "ModelClock", "Timer", "ns_to_s"]

NSEC_PER_SEC = 1_000_000_000
MAX_SCHEDULE_TIMEOUT = (1 << 63) - 1  # include/linux/sched.h: LONG_MAX


def ns_to_s(ns: int) -> float:
    """Model nanoseconds as float seconds (the unit of ``HistoryEvent.time``)."""
    return ns / NSEC_PER_SEC


@dataclass(order=True, slots=True)
class Timer:
    """One scheduled callback (an ``hrtimer`` of the model).  Ordered by ``(at, seq)``."""

    at: int
    seq: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class ModelClock:
    """Model time in integer nanoseconds, with timers.

    ``now`` never goes backwards.  Timers scheduled for the past are refused
    (``ValueError``): schedule at ``now`` to run at the next advance.
    """

    def __init__(self, now: int = 0) -> None:
        self._now = int(now)
        self._heap: list[Timer] = []
        self._seq = itertools.count()
        self.running = False  # true while timer callbacks execute (no re-entrant advance)

    @property
    def now(self) -> int:
        """Current model time, nanoseconds."""
        return self._now

    def schedule_at(self, at: int, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` when model time reaches ``at`` (ns)."""
        if at < self._now:
            raise ValueError(f"timer at {at} ns is in the past (now {self._now} ns)")
        timer = Timer(int(at), next(self._seq), callback)
        heapq.heappush(self._heap, timer)
        return timer

    def schedule_in(self, delay: int, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` ``delay`` ns from now."""
        return self.schedule_at(self._now + int(delay), callback)

    @staticmethod
    def cancel(timer: Timer) -> bool:
        """Cancel ``timer``; ``True`` if it had not run or been cancelled yet."""
        was = not timer.cancelled
        timer.cancelled = True
        return was

    def next_deadline(self) -> int | None:
        """Expiry of the earliest live timer, or ``None``."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].at if self._heap else None

    def _run_one(self) -> None:
        timer = heapq.heappop(self._heap)
        timer.cancelled = True
        self._now = max(self._now, timer.at)
        self.running = True
        try:
            timer.callback()
        finally:
            self.running = False

    def run_until(self, deadline: int | None, until: Callable[[], bool]) -> bool:
        """Let time pass until ``until()`` holds or ``deadline`` (ns, ``None`` = never).

        Timers due up to ``deadline`` run one by one; after each, ``until()`` is tested.
        If it never holds, ``now`` ends at ``deadline`` (unchanged when ``deadline`` is
        ``None`` and the timers ran out).  Returns ``until()``.
        """
        if until():
            return True
        while True:
            nxt = self.next_deadline()
            if nxt is None or (deadline is not None and nxt > deadline):
                break
            self._run_one()
            if until():
                return True
        if deadline is not None:
            self._now = max(self._now, deadline)
        return until()

    def advance_to(self, t: int) -> None:
        """Move time to ``t`` ns, running every timer due on the way."""
        if t < self._now:
            raise ValueError(f"cannot go back in time to {t} ns (now {self._now} ns)")
        self.run_until(t, lambda: False)

    def advance(self, delta: int) -> None:
        """Move time forward by ``delta`` ns, running due timers."""
        self.advance_to(self._now + int(delta))
