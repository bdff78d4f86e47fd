"""Perfetto (Chrome JSON) export of real captures."""

from __future__ import annotations

import io
import itertools
import json
from collections import Counter

import pytest

from fixture_paths import QEMU_REPLAY, need
from socmem.errors import InputError
from socmem.trace.perfetto import PID_FAULTS, PID_FENCE, PID_IOMMU, export_perfetto, write_perfetto


@pytest.fixture(scope="module")
def events() -> list[dict]:
    buf = io.StringIO()
    write_perfetto([need(QEMU_REPLAY / "trace.txt")], buf, dmesg=need(QEMU_REPLAY / "dmesg.txt"))
    doc = json.loads(buf.getvalue())
    assert doc["displayTimeUnit"] == "ns"
    return doc["traceEvents"]


def test_every_event_is_well_formed(events: list[dict]) -> None:
    for ev in events:
        assert {"ph", "ts", "pid", "tid"} <= ev.keys(), ev
        assert ev["ts"] >= 0
        if ev["ph"] == "X":
            assert ev["dur"] >= 0
        if ev["ph"] == "C":
            assert all(v >= 0 for v in ev["args"].values())


def test_counts(events: list[dict]) -> None:
    iommu = Counter(
        ev["name"].split()[0] for ev in events if ev["ph"] == "i" and ev["pid"] == PID_IOMMU
    )
    assert iommu == {"map": 2257, "unmap": 1465}
    fences = [ev for ev in events if ev["ph"] == "X" and ev["pid"] == PID_FENCE]
    assert sum(1 for ev in fences if ev["name"].startswith("seqno")) == 8
    assert sum(1 for ev in fences if ev["name"].startswith("wait")) == 8
    faults = [ev for ev in events if ev["pid"] == PID_FAULTS and ev["ph"] == "i"]
    assert len(faults) == 1 and faults[0]["args"]["verdict"] == "never mapped"
    names = {ev["args"]["name"] for ev in events if ev["ph"] == "M" and ev["name"] == "thread_name"}
    assert {"0000:00:01.0", "virtio_gpu/controlq#1", "phases"} <= names
    counters = {ev["name"] for ev in events if ev["ph"] == "C"}
    assert "mapped bytes 0000:00:01.0" in counters


def test_slices_on_one_thread_do_not_overlap(events: list[dict]) -> None:
    by_tid: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for ev in events:
        if ev["ph"] == "X":
            by_tid.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], ev["ts"] + ev["dur"]))
    for spans in by_tid.values():
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            assert s2 >= e1 - 1e-6


def test_atomic_and_force(tmp_path) -> None:
    out = tmp_path / "t.json"
    export_perfetto([need(QEMU_REPLAY / "trace.txt")], out)
    first = out.read_text()
    json.loads(first)
    with pytest.raises(InputError):
        export_perfetto([need(QEMU_REPLAY / "trace.txt")], out)
    with pytest.raises(InputError):  # a bad input leaves the existing file alone
        export_perfetto([["not a trace\n"]], out, force=True)
    assert out.read_text() == first
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]
