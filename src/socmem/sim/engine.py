"""The discrete-event core of the timing model: integer-nanosecond time, a heap of
callbacks, and SimPy-style generator processes.

Rules (each stated once, here):

* **Time** is ``Engine.now_ns``, an ``int`` of nanoseconds; it never goes backwards.
* **Scheduling.** :meth:`Engine.schedule` queues ``callback(*args)`` at an absolute
  time (never in the past).  Callbacks due at the same nanosecond run in the order they
  were scheduled (a sequence number breaks ties), so a run is deterministic.
* **Cancelling** is lazy: :meth:`EventHandle.cancel` forgets the callback and the heap
  entry is dropped when it surfaces (the heap is compacted when more than half of it is
  dead, so cancel-heavy users do not grow it).
* **Running.** :meth:`Engine.run` processes every callback due at or before
  ``until_ns`` (inclusive, like ``ModelClock.advance_to`` of the functional model), then
  leaves ``now_ns`` at ``until_ns``.  Without ``until_ns`` it runs until the queue is
  empty.
* **Events.** An :class:`Event` is one-shot.  ``succeed(value)`` / ``fail(exc)``
  *trigger* it and queue its processing at ``now``; *processing* runs its callbacks
  (``callback(event)``) in the order they were added, then ``callbacks`` becomes
  ``None``.  A failed event that nobody waited for raises its exception out of
  :meth:`Engine.run`, so errors never vanish.  :class:`Timeout` is an event triggered at
  creation and processed ``delay_ns`` later.  A fluid transfer
  (:class:`socmem.sim.fluid.Flow`) is an event processed when its last byte has moved.
* **Processes.** A :class:`Process` drives a generator.  The generator yields events;
  the process resumes when the yielded event is processed, receiving its value (or its
  exception, thrown in).  Yielding an already processed event resumes at once.  A
  process is itself an event, processed when the generator returns (value = the return
  value) or raises (failed).
* **Conditions.** :class:`AllOf` is processed once all of its events have been
  processed, :class:`AnyOf` once one has; the value is a dict ``{event: value}`` of the
  events processed so far, in the order given.  A failed member fails the condition.

Engine choice: our own heap loop, not SimPy, measured with ``benchmarks/bench_fluid.py``
(Python 3.11, the project's shared 2-core machine, medians of 5).  The loop is a bare
``heapq`` of ``(at_ns, seq, handle)`` tuples (comparisons stay in C): 0.8 µs per
scheduled callback, 1.1 µs per ``Timeout`` yielded by a process.  On the default-scenario
workload (fluid model + generator processes + metrics) it runs 170× real time for 4
camera streams and 47× for 16, with a constant ~13-14 µs per flow: cost is linear in
flows (×3.6 wall for ×3.4 flows).  SimPy 4.1.2 on the same workload shape measured
41× / 5.8× (perf-anchors §10, same machine; not re-measured here): a 4× gap at
4 streams, 8× at 16.  SimPy would also bring float time (we need exact integer-ns
ordering shared with the functional model's ``ModelClock``) and a dependency for what
is ~200 lines here.  The process API mirrors SimPy's (``process``, ``timeout``,
``event``, ``all_of``, ``any_of``) so device models read the same.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Generator, Iterable
from typing import Any

__all__ = [
    "NSEC_PER_SEC",
    "AllOf",
    "AnyOf",
    "Clock",
    "Condition",
    "Engine",
    "Event",
    "EventHandle",
    "Process",
    "ProcessGenerator",
    "Timeout",
]

NSEC_PER_SEC = 1_000_000_000

_PENDING: Any = object()  # value of an event that has not been triggered yet


class EventHandle:
    """A queued callback; :meth:`cancel` it before it runs to drop it."""

    __slots__ = ("args", "at_ns", "callback", "engine")

    def __init__(
        self, engine: Engine, at_ns: int, callback: Callable[..., object], args: tuple
    ) -> None:
        self.engine = engine
        self.at_ns = at_ns
        self.callback: Callable[..., object] | None = callback
        self.args = args

    @property
    def pending(self) -> bool:
        """True until the callback has run or been cancelled."""
        return self.callback is not None

    def cancel(self) -> bool:
        """Forget the callback; ``True`` if it was still pending."""
        if self.callback is None:
            return False
        self.callback = None
        self.args = ()
        self.engine._dead += 1
        return True


class Engine:
    """The event loop: a clock in integer ns and a heap of pending callbacks."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns: int = int(now_ns)
        self._heap: list[tuple[int, int, EventHandle]] = []
        self._seq = itertools.count()
        self._dead = 0  # cancelled handles still in the heap
        self.events_processed = 0  # callbacks run so far (benchmarks, reports)

    # -- scheduling ------------------------------------------------------------------
    def schedule(self, at_ns: int, callback: Callable[..., object], *args: Any) -> EventHandle:
        """Run ``callback(*args)`` at absolute time ``at_ns`` (>= now)."""
        if at_ns < self.now_ns:
            raise ValueError(f"cannot schedule at {at_ns} ns, now is {self.now_ns} ns")
        handle = EventHandle(self, at_ns, callback, args)
        heapq.heappush(self._heap, (at_ns, next(self._seq), handle))
        if self._dead > 64 and self._dead * 2 > len(self._heap):
            self._compact()
        return handle

    def schedule_in(
        self, delay_ns: int, callback: Callable[..., object], *args: Any
    ) -> EventHandle:
        """Run ``callback(*args)`` ``delay_ns`` from now."""
        return self.schedule(self.now_ns + delay_ns, callback, *args)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2].callback is not None]
        heapq.heapify(self._heap)
        self._dead = 0

    def peek(self) -> int | None:
        """Time of the next pending callback, or ``None`` if there is none."""
        heap = self._heap
        while heap and heap[0][2].callback is None:
            heapq.heappop(heap)
            self._dead -= 1
        return heap[0][0] if heap else None

    @property
    def pending(self) -> int:
        """Number of callbacks still queued (cancelled ones excluded)."""
        return len(self._heap) - self._dead

    # -- running ---------------------------------------------------------------------
    def run(self, until_ns: int | None = None) -> None:
        """Process callbacks due at or before ``until_ns`` (all if ``None``).

        Afterwards ``now_ns == until_ns`` when ``until_ns`` is given.
        """
        if until_ns is not None and until_ns < self.now_ns:
            raise ValueError(f"cannot run until {until_ns} ns, now is {self.now_ns} ns")
        heap = self._heap
        pop = heapq.heappop
        limit = until_ns if until_ns is not None else (1 << 63)
        n = 0
        try:
            while heap:
                entry = heap[0]
                if entry[0] > limit:
                    break
                pop(heap)
                handle = entry[2]
                cb = handle.callback
                if cb is None:
                    self._dead -= 1
                    continue
                handle.callback = None
                self.now_ns = entry[0]
                n += 1
                cb(*handle.args)
                heap = self._heap  # _compact may have replaced the list
        finally:
            self.events_processed += n
        if until_ns is not None:
            self.now_ns = until_ns

    def step(self) -> bool:
        """Process the next pending callback; ``False`` if there was none."""
        at = self.peek()
        if at is None:
            return False
        _, _, handle = heapq.heappop(self._heap)
        cb, args = handle.callback, handle.args
        handle.callback = None
        self.now_ns = at
        self.events_processed += 1
        assert cb is not None
        cb(*args)
        return True

    # -- SimPy-style factories -------------------------------------------------------
    def event(self) -> Event:
        """A new untriggered :class:`Event`."""
        return Event(self)

    def timeout(self, delay_ns: int, value: Any = None) -> Timeout:
        """An event processed ``delay_ns`` from now with ``value``."""
        return Timeout(self, delay_ns, value)

    def process(self, generator: ProcessGenerator) -> Process:
        """Start a :class:`Process` driving ``generator`` (first step at ``now``)."""
        return Process(self, generator)

    def all_of(self, events: Iterable[Event]) -> AllOf:
        """An event processed when all ``events`` have been processed."""
        return AllOf(self, events)

    def any_of(self, events: Iterable[Event]) -> AnyOf:
        """An event processed when one of ``events`` has been processed."""
        return AnyOf(self, events)

    def clock(self) -> Clock:
        """A :class:`Clock` view of this engine for the functional model."""
        return Clock(self)


class Clock:
    """Read-only time for the functional model: ``now_ns()`` and ``now_s()`` callables."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def now_ns(self) -> int:
        """Current simulated time, integer nanoseconds."""
        return self._engine.now_ns

    def now_s(self) -> float:
        """Current simulated time, float seconds."""
        return self._engine.now_ns / NSEC_PER_SEC

    @property
    def now(self) -> int:
        """Current simulated time in ns (the ``ModelClock.now`` spelling)."""
        return self._engine.now_ns


class Event:
    """A one-shot event: pending → triggered (``succeed``/``fail``) → processed."""

    __slots__ = ("callbacks", "defused", "engine", "ok", "value")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.callbacks: list[Callable[[Event], object]] | None = []
        self.value: Any = _PENDING
        self.ok = True
        self.defused = False  # a waiter took responsibility for the failure

    @property
    def triggered(self) -> bool:
        """True once ``succeed`` or ``fail`` has been called."""
        return self.value is not _PENDING

    @property
    def processed(self) -> bool:
        """True once the callbacks have run."""
        return self.callbacks is None

    def succeed(self, value: Any = None) -> Event:
        """Trigger with ``value``; callbacks run when the engine processes it (at now)."""
        if self.value is not _PENDING:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.value = value
        self.engine.schedule(self.engine.now_ns, self._process)
        return self

    def fail(self, exc: BaseException) -> Event:
        """Trigger as failed with ``exc`` (thrown into waiting processes)."""
        if self.value is not _PENDING:
            raise RuntimeError(f"{self!r} has already been triggered")
        self.ok = False
        self.value = exc
        self.engine.schedule(self.engine.now_ns, self._process)
        return self

    def _process(self) -> None:
        callbacks = self.callbacks
        self.callbacks = None
        if callbacks:
            for cb in callbacks:
                cb(self)
        if not self.ok and not self.defused:
            raise self.value

    def __await__(self) -> Generator[Event, Any, Any]:  # pragma: no cover - convenience
        return (yield self)


class Timeout(Event):
    """An event processed ``delay_ns`` after its creation, with ``value``."""

    __slots__ = ("delay_ns",)

    def __init__(self, engine: Engine, delay_ns: int, value: Any = None) -> None:
        if delay_ns < 0:
            raise ValueError(f"negative delay {delay_ns} ns")
        self.engine = engine
        self.callbacks = []
        self.value = value
        self.ok = True
        self.defused = False
        self.delay_ns = delay_ns
        engine.schedule(engine.now_ns + delay_ns, self._process)


ProcessGenerator = Generator[Event, Any, Any]


class Process(Event):
    """A generator driven by the events it yields; processed when it returns."""

    __slots__ = ("generator", "target")

    def __init__(self, engine: Engine, generator: ProcessGenerator) -> None:
        super().__init__(engine)
        self.generator = generator
        self.target: Event | None = None  # the event the process waits for
        engine.schedule(engine.now_ns, self._resume, None)

    @property
    def is_alive(self) -> bool:
        """True until the generator has returned or raised."""
        return self.value is _PENDING

    def _resume(self, event: Event | None) -> None:
        gen = self.generator
        while True:
            try:
                if event is None:
                    target = gen.send(None)
                elif event.ok:
                    target = gen.send(event.value)
                else:
                    event.defused = True
                    target = gen.throw(event.value)
            except StopIteration as stop:
                self.target = None
                self.succeed(stop.value)
                return
            except BaseException as exc:
                self.target = None
                self.fail(exc)
                return
            if not isinstance(target, Event):
                event = Event(self.engine)
                event.ok = False
                event.value = TypeError(f"process yielded {target!r}, not an Event")
                continue
            callbacks = target.callbacks
            if callbacks is None:  # already processed: resume at once
                event = target
                continue
            callbacks.append(self._resume)
            self.target = target
            return


class Condition(Event):
    """Base of :class:`AllOf` / :class:`AnyOf`: waits on a fixed list of events."""

    __slots__ = ("_count", "_events", "_need")

    def __init__(self, engine: Engine, events: Iterable[Event], need_all: bool) -> None:
        super().__init__(engine)
        self._events = list(events)
        self._need = len(self._events) if need_all else min(1, len(self._events))
        self._count = 0
        if self._need == 0:
            self.succeed({})
            return
        for ev in self._events:
            if ev.callbacks is None:
                self._check(ev)
            else:
                ev.callbacks.append(self._check)

    def _check(self, event: Event) -> None:
        if self.value is not _PENDING:
            return
        if not event.ok:
            event.defused = True
            self.fail(event.value)
            return
        self._count += 1
        if self._count >= self._need:
            self.succeed({ev: ev.value for ev in self._events if ev.callbacks is None and ev.ok})


class AllOf(Condition):
    """Processed once every one of ``events`` has been processed."""

    __slots__ = ()

    def __init__(self, engine: Engine, events: Iterable[Event]) -> None:
        super().__init__(engine, events, need_all=True)


class AnyOf(Condition):
    """Processed once any one of ``events`` has been processed."""

    __slots__ = ()

    def __init__(self, engine: Engine, events: Iterable[Event]) -> None:
        super().__init__(engine, events, need_all=False)
