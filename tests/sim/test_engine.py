"""Rules of the discrete-event core (socmem.sim.engine)."""

from __future__ import annotations

import pytest

from socmem.sim.engine import NSEC_PER_SEC, AllOf, AnyOf, Engine, Event


def test_callbacks_run_in_time_order_then_insertion_order() -> None:
    e = Engine()
    log: list[tuple[int, str]] = []
    for name, at in [("c", 20), ("a", 10), ("b", 10), ("d", 10)]:
        e.schedule(at, lambda n=name: log.append((e.now_ns, n)))
    e.run()
    assert log == [(10, "a"), (10, "b"), (10, "d"), (20, "c")]


def test_schedule_args_and_past_refused() -> None:
    e = Engine(now_ns=5)
    got = []
    e.schedule(7, got.append, 42)
    e.run()
    assert got == [42] and e.now_ns == 7
    with pytest.raises(ValueError):
        e.schedule(6, got.append, 1)


def test_cancel_is_lazy_and_reports_pending() -> None:
    e = Engine()
    got = []
    h = e.schedule(10, got.append, 1)
    e.schedule(10, got.append, 2)
    assert h.pending and e.pending == 2
    assert h.cancel() is True
    assert h.cancel() is False and not h.pending
    assert e.pending == 1
    e.run()
    assert got == [2]


def test_cancel_heavy_use_compacts_heap() -> None:
    e = Engine()
    for i in range(1000):
        e.schedule(i + 1, lambda: None).cancel()
    assert len(e._heap) < 200
    e.run()
    assert e.events_processed == 0


def test_run_until_is_inclusive_and_sets_now() -> None:
    e = Engine()
    got = []
    for t in (5, 10, 11):
        e.schedule(t, got.append, t)
    e.run(until_ns=10)
    assert got == [5, 10] and e.now_ns == 10
    e.run(until_ns=100)
    assert got == [5, 10, 11] and e.now_ns == 100
    with pytest.raises(ValueError):
        e.run(until_ns=50)


def test_step_and_peek() -> None:
    e = Engine()
    e.schedule(3, lambda: None).cancel()
    e.schedule(4, lambda: None)
    assert e.peek() == 4
    assert e.step() is True and e.now_ns == 4
    assert e.step() is False


def test_clock_adapter() -> None:
    e = Engine()
    clock = e.clock()
    e.run(until_ns=1_500_000_000)
    assert clock.now_ns() == 1_500_000_000
    assert clock.now_s() == 1.5
    assert clock.now == 1_500_000_000
    assert NSEC_PER_SEC == 10**9


def test_process_timeouts_and_return_value() -> None:
    e = Engine()
    log = []

    def proc(name: str, delay: int):
        for _ in range(3):
            yield e.timeout(delay)
            log.append((e.now_ns, name))
        return name.upper()

    p = e.process(proc("a", 10))
    q = e.process(proc("b", 15))
    e.run()
    # at 30 both are due: b's timeout was scheduled first (at 15), so b runs first
    assert log == [(10, "a"), (15, "b"), (20, "a"), (30, "b"), (30, "a"), (45, "b")]
    assert p.value == "A" and q.value == "B" and not p.is_alive


def test_event_succeed_wakes_waiters_with_value_and_callbacks() -> None:
    e = Engine()
    ev = e.event()
    got = []
    ev.callbacks.append(lambda x: got.append(("cb", x.value, e.now_ns)))

    def waiter():
        v = yield ev
        got.append(("proc", v, e.now_ns))

    def signaller():
        yield e.timeout(7)
        ev.succeed("hello")

    e.process(waiter())
    e.process(signaller())
    e.run()
    assert got == [("cb", "hello", 7), ("proc", "hello", 7)]
    assert ev.triggered and ev.processed
    with pytest.raises(RuntimeError):
        ev.succeed()


def test_yielding_processed_event_resumes_at_once_and_process_waits_process() -> None:
    e = Engine()
    ev = e.event().succeed(3)
    out = []

    def child():
        yield e.timeout(5)
        return 9

    def parent():
        yield e.timeout(1)
        out.append((yield ev))  # already processed by now
        out.append((yield e.process(child())))
        out.append(e.now_ns)

    e.process(parent())
    e.run()
    assert out == [3, 9, 6]


def test_failure_is_thrown_into_waiter_or_raised_from_run() -> None:
    e = Engine()
    ev = e.event()
    caught = []

    def waiter():
        try:
            yield ev
        except KeyError as exc:
            caught.append(exc)

    e.process(waiter())
    e.run()
    ev.fail(KeyError("x"))
    e.run()
    assert len(caught) == 1

    lone = e.event()
    lone.fail(ValueError("nobody waits"))
    with pytest.raises(ValueError):
        e.run()


def test_process_crash_propagates_and_bad_yield_is_typeerror() -> None:
    e = Engine()

    def bad():
        yield 5

    e.process(bad())
    with pytest.raises(TypeError):
        e.run()


def test_all_of_and_any_of() -> None:
    e = Engine()
    out = {}

    def proc():
        a, b = e.timeout(10, "a"), e.timeout(20, "b")
        v = yield AnyOf(e, [a, b])
        out["any"] = (e.now_ns, list(v.values()))
        v = yield AllOf(e, [a, b])
        out["all"] = (e.now_ns, list(v.values()))
        v = yield e.all_of([])
        out["empty"] = (e.now_ns, v)

    e.process(proc())
    e.run()
    assert out == {"any": (10, ["a"]), "all": (20, ["a", "b"]), "empty": (20, {})}


def test_condition_fails_with_member() -> None:
    e = Engine()
    bad = e.event()
    seen = []

    def proc():
        try:
            yield e.any_of([e.timeout(5), bad])
        except RuntimeError as exc:
            seen.append((e.now_ns, str(exc)))

    e.process(proc())
    e.schedule(2, lambda: bad.fail(RuntimeError("boom")))
    e.run()
    assert seen == [(2, "boom")]


def test_event_is_event_instance() -> None:
    e = Engine()
    assert isinstance(e.timeout(1), Event)
