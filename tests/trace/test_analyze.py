"""Trace analyses: facts of the real QEMU captures, and one synthetic trace per anomaly."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.trace.analyze import (
    UNKNOWN_DOMAIN,
    TraceReport,
    analyze,
    inventory_dmabufs,
    page_split,
    pci_stream_id,
)
from socmem.trace.bufinfo import parse_bufinfo, read_bufinfo, read_fdinfo

DOM = 0xFFFF000012340098


def _line(ts: float, event: str, body: str, task: str = "app", pid: int = 100, cpu: int = 0) -> str:
    return f"{task:>16}-{pid:<7} [{cpu:03d}] d.... {ts:12.6f}: {event}: {body}\n"


def _setup(ts: float, dev: str = "0000:00:01.0") -> str:
    return _line(
        ts,
        "iommu_setup_dma_ops",
        f'(iommu_setup_dma_ops+0x0/0x4f0) dev="{dev}" grp=0 dom={DOM:#x} dom_type=0x3 asid=1',
    )


def _map(ts: float, iova: int, size: int, paddr: int = 0x80000000) -> str:
    return _line(
        ts,
        "__iommu_map",
        f"(__iommu_map+0x0/0x2ac) dom={DOM:#x} iova={iova:#x} paddr={paddr:#x} size={size} "
        "prot=0x7 gfp=0xa20",
    ) + _line(
        ts + 1e-6,
        "map",
        f"IOMMU: iova=0x{iova:016x} - 0x{iova + size:016x} paddr=0x{paddr:016x} size={size}",
    )


def _unmap(ts: float, iova: int, size: int, unmapped: int | None = None) -> str:
    u = size if unmapped is None else unmapped
    return _line(
        ts, "__iommu_unmap", f"(__iommu_unmap+0x0/0x230) dom={DOM:#x} iova={iova:#x} size={size}"
    ) + _line(
        ts + 1e-6,
        "unmap",
        f"IOMMU: iova=0x{iova:016x} - 0x{iova + size:016x} size={size} unmapped_size={u}",
    )


def _fence(ts: float, op: str, seqno: int, ctx: int = 7) -> str:
    return _line(ts, f"dma_fence_{op}", f"driver=drv timeline=ring context={ctx} seqno={seqno}")


def _run(text: str) -> TraceReport:
    return analyze([text.splitlines(keepends=True)])


# -- real captures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay() -> TraceReport:
    return analyze(
        [need(QEMU_REPLAY / "trace.txt")],
        dmesg=need(QEMU_REPLAY / "dmesg.txt"),
        bufinfo=read_bufinfo(need(QEMU / "dma_buf-bufinfo-live.txt")),
        fdinfo=read_fdinfo(need(QEMU / "dma_buf-fdinfo-live.txt")),
    )


@pytest.fixture(scope="module")
def first() -> TraceReport:
    return analyze([need(QEMU / "trace.txt")], dmesg=need(QEMU / "dmesg.txt"))


def _counts_file(path: object) -> dict[str, int]:
    out = {}
    for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s+(\d+)\s+(\S+)$", line)
        if m and m.group(2) not in out:
            out[m.group(2)] = int(m.group(1))
    return out


def test_replay_maps_and_unmaps_per_device(replay: TraceReport) -> None:
    d = replay.domains
    # trace-event-counts.txt "by device": __iommu_map / __iommu_unmap per device
    expect = {
        "0000:00:01.0": (1012, 1007),
        "0000:00:02.0": (9, 4),
        "0000:00:03.0": (312, 55),
        "0000:00:04.0": (757, 373),
        "0000:00:05.0": (167, 26),
    }
    assert {k: (v["maps"], v["unmaps"]) for k, v in d.items()} == expect
    assert UNKNOWN_DOMAIN not in d
    counts = _counts_file(QEMU_REPLAY / "trace-event-counts.txt")
    assert sum(v["maps"] for v in d.values()) == counts["map"] == 2257
    assert sum(v["unmaps"] for v in d.values()) == counts["unmap"] == 1465


def test_replay_w1_per_device(replay: TraceReport) -> None:
    w1 = {
        c["domain"]: (c["maps"], c["unmaps"]) for c in replay.churn if c["phase"].startswith("W1")
    }
    # W1 is the dd on 0000:00:01.0; fbcon's cursor blink keeps 0000:00:04.0 busy
    assert w1 == {"0000:00:01.0": (1003, 1003), "0000:00:04.0": (12, 12)}
    assert sum(m for m, _ in w1.values()) == 1015  # trace-event-counts.txt: W1 map=1015
    # cross-check against the raw text: __iommu_map lines of 0000:00:01.0's dom in W1
    text = (QEMU_REPLAY / "trace.txt").read_text()
    w1_text = text[
        text.index("tracing_mark_write: W1 dd") : text.index("tracing_mark_write: W1 end")
    ]
    assert w1_text.count("__iommu_map+0x0/0x2ac) dom=0xffff3c2e882b9698 ") == 1003


def test_replay_alive_at_end(replay: TraceReport) -> None:
    alive = {k: (v["alive_at_end"], v["alive_bytes_at_end"]) for k, v in replay.domains.items()}
    assert alive == {
        "0000:00:01.0": (5, 20480),
        "0000:00:02.0": (5, 20480),
        "0000:00:03.0": (257, 1298432),  # the virtio-net RX ring
        "0000:00:04.0": (176, 4108288),
        "0000:00:05.0": (5, 4108288),  # the W3 import into card1, never unmapped
    }
    assert sum(b for _, b in alive.values()) == 9555968
    # every MSI doorbell page stays mapped at 0xfffff000
    for label in ("0000:00:01.0", "0000:00:02.0"):
        assert any(m["iova"] == "0xfffff000" for m in replay.domains[label]["alive"])


def test_replay_strict_invalidation(replay: TraceReport) -> None:
    assert replay.mode == "strict"
    assert replay.invalidations["commands"] == 2997  # = QEMU's consumed opcodes
    assert replay.invalidations["events"]["arm_smmu_iotlb_sync"] == 1465
    d = replay.domains["0000:00:01.0"]
    assert d["iotlb_syncs"] == d["unmaps"] == 1007
    assert d["invalidations_per_unmap"] == 1.0


def test_replay_no_trace_anomalies(replay: TraceReport) -> None:
    kinds = Counter(f.kind for f in replay.findings)
    assert kinds == {"smmu.fault": 1}
    for d in replay.domains.values():
        assert d["unmatched_unmaps"] == 0 and d["overlapping_maps"] == 0


@pytest.mark.parametrize("which", ["replay", "first"])
def test_edu_fault_never_mapped(which: str, request: pytest.FixtureRequest) -> None:
    rep: TraceReport = request.getfixturevalue(which)
    assert len(rep.faults) == 1
    f = rep.faults[0]
    assert (f.stream_id, f.device, f.event, f.iova_page) == (
        0x30,
        "0000:00:06.0",
        "F_TRANSLATION",
        0x1234000,
    )
    assert f.count == 10 and f.iovas[0] == 0x1234000 and f.iovas[-1] == 0x1234024
    assert f.write is False  # the DMA read from IOVA 0x1234000 (edu_fault.log)
    assert f.verdict == "never mapped"
    (finding,) = rep.findings_of("smmu.fault")
    assert finding.message.splitlines()[0].endswith(
        "arm-smmu-v3 9050000.smmuv3: event 0x10 received:"
    )
    assert "0x0000003000000010" in finding.message
    assert "never mapped" in finding.data["explanation"]
    assert len(finding.history) == 8  # the fault records (no mapping history: never mapped)


def test_replay_fences(replay: TraceReport) -> None:
    tls = {t["timeline"]: t for t in replay.timelines}
    c = tls["controlq"]
    counts = _counts_file(QEMU_REPLAY / "trace-event-counts.txt")
    assert c["emitted"] == counts["dma_fence_emit"] == 8
    assert c["signaled"] == 8 and tls["stub"]["signaled"] == 1  # 9 dma_fence_signaled
    assert c["waits"] == counts["dma_fence_wait_start"] == 8
    lats = replay.fence_latencies["virtio_gpu/controlq#1"]
    assert len(lats) == 8 and all(x >= 0 for x in lats)
    assert 0 <= c["latency"]["p50_s"] <= c["latency"]["p99_s"] <= c["latency"]["max_s"]
    assert c["wait"]["count"] == 8 and c["wait"]["max_s"] >= 0
    assert c["never_signalled"] == 0 and c["out_of_order"] == 0


@pytest.mark.parametrize("where", [QEMU_REPLAY, QEMU])
def test_cma_allocations(where: object, request: pytest.FixtureRequest) -> None:
    rep = request.getfixturevalue("replay" if where is QEMU_REPLAY else "first")
    counts = _counts_file(where / "trace-event-counts.txt")  # type: ignore[operator]
    (area,) = rep.cma
    assert area["name"] == "reserved"
    assert area["allocs"] == counts["cma_alloc_finish"] == 6
    assert area["failures"] == 0
    assert area["pages_allocated"] == 3 * 64 + 2 * 256 + 4  # atomic pools, cmdq, evtq, strtab
    assert all(x >= 0 for x in [area["latency"]["p50_s"], area["latency"]["max_s"]])


def test_bufinfo_inventory(replay: TraceReport) -> None:
    inv = replay.dmabuf
    assert inv is not None
    assert (inv.objects, inv.bytes) == (5, 8486912)
    assert (inv.total_objects_line, inv.total_bytes_line) == (5, 8486912)
    assert inv.totals_ok
    assert inv.by_exporter == {"virtio_gpu": {"objects": 5, "bytes": 8486912}}
    names = {b["name"]: b["fds"] for b in inv.buffers}
    assert names == {
        "scanout-A": [4],
        "scanout-B": [5],
        "texture-256": [6],
        "cursor-A": [7],
        "cursor-B": [8],
    }
    assert inv.fds == 5 and inv.exports_traced == 5


def test_bufinfo_leaks() -> None:
    live = read_bufinfo(need(QEMU / "dma_buf-bufinfo-live.txt"))
    after = read_bufinfo(need(QEMU / "dma_buf-bufinfo-after-release.txt"))
    inv, findings = inventory_dmabufs(live, None, after)
    assert inv.leaked == [] and findings == []
    inv, findings = inventory_dmabufs(live, None, live)
    assert len(inv.leaked) == 5 and Counter(f.kind for f in findings) == {"dmabuf.leak": 5}


def test_bufinfo_bad_totals() -> None:
    text = (
        (QEMU / "dma_buf-bufinfo-live.txt")
        .read_text()
        .replace("Total 5 objects, 8486912 bytes", "Total 6 objects, 8486912 bytes")
    )
    inv, findings = inventory_dmabufs(parse_bufinfo(text))
    assert not inv.totals_ok
    assert [f.kind for f in findings] == ["dmabuf.bufinfo-totals"]


def test_first_capture_unknown_domain(first: TraceReport) -> None:
    # no __iommu_map kprobe: map events carry no domain
    assert list(first.domains) == [UNKNOWN_DOMAIN]
    d = first.domains[UNKNOWN_DOMAIN]
    assert (d["maps"], d["unmaps"]) == (2201, 1596)
    assert first.mode == "strict"  # one arm_smmu_atc_inv_domain per unmap
    assert not [f for f in first.findings if f.kind.startswith("trace.")]


def test_analyze_streams_fast(replay: TraceReport) -> None:
    import time

    t = time.perf_counter()
    analyze([QEMU_REPLAY / "trace.txt"])
    assert time.perf_counter() - t < 2.0


# -- helpers ------------------------------------------------------------------------------


def test_pci_stream_id() -> None:
    assert pci_stream_id("0000:00:06.0") == 0x30
    assert pci_stream_id("0000:01:00.1") == 0x101
    assert pci_stream_id("9050000.smmuv3") is None


def test_page_split() -> None:
    assert page_split(0x200000, 0x40200000, 2 << 20) == {2 << 20: 1}
    assert page_split(0x1000, 0x1000, 3 * 4096) == {4096: 3}
    # 4K head up to the 2M boundary, then a block, then a 4K tail
    assert page_split(0x1FF000, 0x401FF000, 4096 + (2 << 20) + 4096) == {4096: 2, 2 << 20: 1}
    assert page_split(0x1FF000, 0x401FE000, 4 << 20) == {4096: 1024}  # never co-aligned


# -- synthetic anomalies ------------------------------------------------------------------


def test_clean_synthetic_trace_has_no_findings() -> None:
    rep = _run(_setup(1.0) + _map(1.1, 0x1000, 8192) + _unmap(1.2, 0x1000, 8192))
    assert rep.findings == []
    d = rep.domains["0000:00:01.0"]
    assert (d["maps"], d["unmaps"], d["alive_at_end"], d["peak_live_bytes"]) == (1, 1, 0, 8192)
    assert d["lifetime"]["count"] == 1


def test_double_unmap() -> None:
    rep = _run(
        _setup(1.0)
        + _map(1.1, 0x1000, 4096)
        + _unmap(1.2, 0x1000, 4096)
        + _unmap(1.3, 0x1000, 4096, unmapped=0)
    )
    (f,) = rep.findings
    assert f.kind == "trace.double-unmap"
    assert "0000:00:01.0" in f.subject and "0x1000" in f.subject
    assert [h.what for h in f.history] == ["iommu_map", "iommu_unmap", "iommu_unmap"]


def test_unmap_never_mapped() -> None:
    rep = _run(_setup(1.0) + _map(1.1, 0x1000, 4096) + _unmap(1.2, 0x9000, 4096, unmapped=0))
    (f,) = rep.findings
    assert f.kind == "trace.unmap-unmapped"
    assert f.data["iova"] == 0x9000
    assert rep.domains["0000:00:01.0"]["alive_at_end"] == 1


def test_partial_unmap_is_counted_not_reported() -> None:
    rep = _run(_setup(1.0) + _map(1.1, 0x10000, 4 * 4096) + _unmap(1.2, 0x11000, 4096))
    assert rep.findings == []
    d = rep.domains["0000:00:01.0"]
    assert d["partial_unmaps"] == 1
    assert (d["alive_at_end"], d["alive_bytes_at_end"]) == (2, 3 * 4096)


def test_fence_never_signalled() -> None:
    rep = _run(
        _fence(1.0, "emit", 1)
        + _fence(1.1, "signaled", 1)
        + _fence(1.2, "emit", 2)
        + _line(1.5, "tracing_mark_write", "end")
    )
    (f,) = rep.findings
    assert f.kind == "trace.fence-never-signalled"
    assert f.subject == "drv/ring#7 seqno 2"
    (tl,) = rep.timelines
    assert (tl["emitted"], tl["signaled"], tl["never_signalled"]) == (2, 1, 1)
    assert tl["latency"]["max_s"] == pytest.approx(0.1)


def test_fence_out_of_order() -> None:
    rep = _run(
        _fence(1.0, "emit", 1)
        + _fence(1.1, "emit", 2)
        + _fence(1.2, "signaled", 2)
        + _fence(1.3, "signaled", 1)
    )
    (f,) = rep.findings
    assert f.kind == "trace.fence-out-of-order"
    assert f.data["pending_older"] == [1]
    assert rep.timelines[0]["out_of_order"] == 1


def test_fence_waits() -> None:
    rep = _run(
        _fence(1.0, "emit", 1)
        + _fence(1.1, "wait_start", 1)
        + _fence(1.3, "signaled", 1)
        + _fence(1.4, "wait_end", 1)
    )
    assert rep.findings == []
    assert rep.timelines[0]["wait"]["max_s"] == pytest.approx(0.3)


def test_cma_failure() -> None:
    rep = _run(
        _line(1.0, "cma_alloc_start", "name=reserved count=64 align=6")
        + _line(
            1.1,
            "cma_alloc_busy_retry",
            "name=reserved pfn=0xb9a00 page=00000000aa count=64 align=6",
        )
        + _line(
            1.2,
            "cma_alloc_finish",
            "name=reserved pfn=0x0 page=0000000000000000 count=64 align=6 errorno=-12",
        )
    )
    (f,) = rep.findings
    assert f.kind == "cma.alloc-failed"
    (a,) = rep.cma
    assert (a["allocs"], a["failures"], a["busy_retries"], a["pages_allocated"]) == (1, 1, 1, 0)
    assert a["latency"]["max_s"] == pytest.approx(0.2)


def test_cma_failure_dmesg_merged() -> None:
    trace = _line(1.0, "cma_alloc_start", "name=reserved count=64 align=6") + _line(
        1.2, "cma_alloc_finish", "name=reserved pfn=0x0 page=0000000000000000 count=64 align=6"
    )
    dmesg = [
        "[    1.200000] cma: cma_alloc: reserved: alloc failed, req-size: 64 pages, ret: -12\n"
    ]
    rep = analyze([trace.splitlines(keepends=True)], dmesg=dmesg)
    (f,) = rep.findings
    assert f.kind == "cma.alloc-failed" and "ret: -12" in f.message
    assert rep.cma[0]["dmesg_failures"] == 1


def test_io_page_fault_event_after_unmap() -> None:
    rep = _run(
        _setup(1.0)
        + _map(1.1, 0x5000, 4096)
        + _unmap(1.2, 0x5000, 4096)
        + _line(
            1.25,
            "io_page_fault",
            "IOMMU:arm-smmu-v3 0000:00:01.0 iova=0x0000000000005010 flags=0x0001",
        )
    )
    (f,) = rep.findings
    assert f.kind == "smmu.fault"
    (fx,) = rep.faults
    assert fx.verdict == "unmapped" and fx.device == "0000:00:01.0" and fx.write
    assert "49.999 ms before the fault" in fx.explanation
    assert [h.what for h in f.history][:2] == ["iommu_map", "iommu_unmap"]


def test_empty_trace_is_an_input_error() -> None:
    from socmem.errors import InputError

    with pytest.raises(InputError):
        _run("")
    with pytest.raises(InputError):
        _run("hello\nworld\n")
