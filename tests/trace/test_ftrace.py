"""FtraceReader and event decoding against the real QEMU captures and broken inputs."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest

from fixture_paths import FIXTURES
from socmem.errors import InputError
from socmem.trace.events import (
    CmaAllocStart,
    CmaRange,
    DmaEvent,
    FenceEvent,
    IommuGroupEvent,
    IommuMap,
    IommuUnmap,
    IoPageFault,
    KprobeEvent,
    RawEvent,
    SwiotlbBounced,
    decode,
    decode_body,
)
from socmem.trace.ftrace import BadLine, FtraceReader, TraceEvent, parse_line, read_trace

FIX = FIXTURES / "real-kernel"
CAP = FIX / "qemu-virt-smmuv3"
REPLAY = FIX / "qemu-virt-smmuv3-replay"
pytestmark = pytest.mark.skipif(not FIX.exists(), reason="fixtures not present")


def _counts_file(path: Path) -> tuple[Counter[str], dict[str, Counter[str]]]:
    """Totals and per-phase counts as written in trace-event-counts.txt (both layouts)."""
    text = path.read_text()
    totals: Counter[str] = Counter()
    phases: dict[str, Counter[str]] = {}
    section = ""
    current = None
    for line in text.splitlines():
        if line.startswith("#"):
            h = line.lstrip("#").strip()
            if line.startswith("# ") and not line.startswith("## "):
                section = "" if "QEMU" in h else section
            if h.startswith("by event name") or (line.startswith("# ftrace")):
                section = "totals"
            elif h.startswith("by workload phase"):
                section = "phases"
            elif h.startswith(("by device", "identity", "QEMU")):
                section = "other"
            elif section == "phases" and line.startswith(("## ", "### ")):
                name = h.split(":")[0].split(" (")[0]
                current = phases.setdefault(name, Counter())
                rest = h.split(":", 1)[1] if ":" in h else ""
                for k, v in re.findall(r"(\w+)=(\d+)", rest):
                    current[k] += int(v)
            continue
        m = re.match(r"^\s+(\d+)\s+(\w+)$", line)
        if m and section == "totals":
            totals[m.group(2)] = int(m.group(1))
        elif section == "phases" and current is not None and "=" in line:
            for k, v in re.findall(r"(\w+)=(\d+)", line):
                current[k] += int(v)
    return totals, phases


@pytest.fixture(scope="module")
def cap() -> FtraceReader:
    return read_trace(CAP / "trace.txt")


@pytest.fixture(scope="module")
def replay() -> FtraceReader:
    return read_trace(REPLAY / "trace.txt")


def test_header_metadata(replay: FtraceReader) -> None:
    md = replay.metadata
    assert md.tracer == "nop"
    assert (md.entries_in_buffer, md.entries_written, md.nr_cpus) == (23505, 23505, 2)
    assert md.format == "tracefs"
    assert replay.stats.header_lines == 12


@pytest.mark.parametrize("which", ["cap", "replay"])
def test_counts_by_event_equal_trace_event_counts(
    which: str, request: pytest.FixtureRequest
) -> None:
    r: FtraceReader = request.getfixturevalue(which)
    base = CAP if which == "cap" else REPLAY
    totals, _ = _counts_file(base / "trace-event-counts.txt")
    assert len(totals) >= 25  # the file was really read
    got = Counter(r.stats.events_by_name)
    markers = got.pop("tracing_mark_write")
    assert got == totals
    assert r.stats.bad_lines == 0 and r.stats.unknown_events == Counter()
    assert r.stats.events == r.metadata.entries_in_buffer
    assert r.stats.warnings == []
    if which == "replay":
        assert sum(got.values()) == 23495 and markers == 10
    else:
        assert sum(got.values()) == 12445 and markers == 8


def test_replay_events_by_cpu() -> None:
    by_cpu: Counter[int] = Counter(
        ev.cpu for ev in FtraceReader(REPLAY / "trace.txt") if ev.name != "tracing_mark_write"
    )
    assert by_cpu == {0: 20020, 1: 3475}


@pytest.mark.parametrize("which", ["cap", "replay"])
def test_counts_by_phase(which: str, request: pytest.FixtureRequest) -> None:
    r: FtraceReader = request.getfixturevalue(which)
    base = CAP if which == "cap" else REPLAY
    _, phases = _counts_file(base / "trace-event-counts.txt")
    got = r.phase_counts()
    # the counts file calls the pre-marker phase "boot+modules" (first capture) or "boot"
    expected = {("boot" if k.startswith("boot") else k): v for k, v in phases.items()}
    assert got == expected
    names = [p.name for p in r.phases]
    if which == "replay":
        assert names == [
            "boot",
            "M0 insmod",
            "W1 dd /dev/vda",
            "W2 net",
            "W3 dmabuf",
            "W4 smmu fault",
        ]
        assert [p.events for p in r.phases] == [18, 1662, 13353, 3975, 3947, 540]
    else:
        assert names == ["boot", "W1 dd /dev/vda", "W2 net", "W3 dmabuf", "W4 smmu fault"]


def test_event_prefix_fields() -> None:
    ev = next(iter(FtraceReader(REPLAY / "trace.txt")))
    assert (ev.task, ev.pid, ev.cpu, ev.flags) == ("init", 1, 0, ".....")
    assert ev.ts_ns == 410_861_000 and ev.timestamp == pytest.approx(0.410861)
    assert ev.name == "cma_alloc_start" and ev.line_no == 13
    assert ev.body == "name=reserved count=64 align=6"
    assert ev.system == "cma"


def test_decode_real_events() -> None:
    seen: dict[str, object] = {}
    for ev in FtraceReader(REPLAY / "trace.txt"):
        if ev.name not in seen:
            seen[ev.name] = decode(ev)
    m = seen["map"]
    assert m == IommuMap(iova=0xFFFFF000, paddr=0x8020000, size=4096, iova_end=0x100000000)
    u = seen["unmap"]
    assert isinstance(u, IommuUnmap) and u.size == u.unmapped_size == 4096 and not u.partial
    assert seen["add_device_to_group"] == IommuGroupEvent("add", 0, "0000:00:01.0")
    f = seen["dma_fence_init"]
    assert f == FenceEvent("dma_fence_init", "virtio_gpu", "controlq", 1, 0)
    assert seen["cma_alloc_start"] == CmaAllocStart("reserved", 64, 6)
    fin = seen["cma_alloc_finish"]
    assert isinstance(fin, CmaRange) and fin.pfn == 0xB9A00 and fin.count == 64
    assert fin.errorno is None and not fin.failed
    kp = seen["dma_alloc_contiguous"]
    assert isinstance(kp, KprobeEvent) and not kp.is_return
    assert kp.func == "dma_alloc_contiguous"
    assert kp.args == {"dev": "9050000.smmuv3", "size": 1048576, "gfp": 0xCC0}
    ret = seen["iommu_dma_map_page_ret"]
    assert isinstance(ret, KprobeEvent) and ret.is_return
    assert (ret.caller, ret.caller_offset, ret.func) == (
        "dma_map_page_attrs",
        0x1F0,
        "iommu_dma_map_page",
    )
    assert ret["dma_addr"] == 0xFFFF9110
    exp = seen["dma_buf_export"]
    assert isinstance(exp, KprobeEvent) and exp.args == {"exp_name": "virtio_gpu", "size": 4096000}
    assert not any(isinstance(d, RawEvent) for d in seen.values())


def test_dma_buf_exports_in_w3(replay: FtraceReader) -> None:
    sizes = []
    r = FtraceReader(REPLAY / "trace.txt")
    for ev in r:
        if ev.name == "dma_buf_export":
            assert r.phase.name == "W3 dmabuf"
            sizes.append(decode(ev).args["size"])  # type: ignore[union-attr]
    assert sorted(sizes) == [16384, 16384, 262144, 4096000, 4096000]


# -- upstream formats not in the captures (reference §1 examples) -------------------------


def test_decode_dma_variants() -> None:
    d = decode_body(
        "dma_map_phys",
        "0000:01:00.0 dir=TO_DEVICE dma_addr=ffff3000 size=1514 phys_addr=8a2c4042 attrs=",
    )
    assert isinstance(d, DmaEvent) and d.op == "map" and d.dma_addr == 0xFFFF3000
    assert d.size == 1514 and d.phys_addr == 0x8A2C4042 and d.attrs == ()
    d = decode_body(
        "dma_alloc",
        "fe300000.dma dir=BIDIRECTIONAL dma_addr=fffc0000 size=8192 "
        "virt_addr=00000000a11c7e5b flags=GFP_KERNEL attrs=WRITE_COMBINE|NO_KERNEL_MAPPING",
    )
    assert isinstance(d, DmaEvent) and d.op == "alloc" and d.flags == "GFP_KERNEL"
    assert d.attrs_value == (1 << 2) | (1 << 4)
    d = decode_body(
        "dma_map_sg",
        "0000:02:00.0 dir=FROM_DEVICE nents=2/2 ents=1/1 "
        "dma_addrs={0xfffd0000} sizes={0x2000} phys_addrs={0x884a30000,0x884a31000} attrs=",
    )
    assert isinstance(d, DmaEvent) and (d.nents, d.ents) == (2, 1)
    assert d.sizes == (0x2000,) and d.phys_addrs == (0x884A30000, 0x884A31000)
    d = decode_body(
        "dma_map_sg",
        "0000:02:00.0 dir=FROM_DEVICE dma_addrs={0xfffd0000} "
        "sizes={0x2000} phys_addrs={0x884a30000,0x884a31000} attrs=",
    )
    assert isinstance(d, DmaEvent) and d.nents is None and d.dma_addrs == (0xFFFD0000,)
    d = decode_body(
        "dma_unmap_page", "0000:01:00.0 dir=TO_DEVICE dma_addr=ffff3042 size=1514 attrs="
    )
    assert isinstance(d, DmaEvent) and d.op == "unmap"
    d = decode_body(
        "dma_sync_sg_for_cpu", "dev dir=FROM_DEVICE dma_addrs={0x1000,0x3000} sizes={0x800,0x800}"
    )
    assert isinstance(d, DmaEvent) and d.op == "sync_for_cpu" and d.sg and d.sizes == (0x800, 0x800)
    d = decode_body("dma_map_sg_err", "dev dir=TO_DEVICE dma_addrs={0x884a30000} err=-12 attrs=")
    assert isinstance(d, DmaEvent) and d.err == -12 and d.phys_addrs == (0x884A30000,)


def test_decode_other_upstream_formats() -> None:
    old = decode_body("map", "IOMMU: iova=0x00000000fffff000 paddr=0x0000000884a31000 size=4096")
    assert old == IommuMap(0xFFFFF000, 0x884A31000, 4096, None)
    f = decode_body(
        "io_page_fault", "IOMMU:mtk-iommu 14018000.larb iova=0x0000000012345000 flags=0x0001"
    )
    assert isinstance(f, IoPageFault) and f.write and f.iova == 0x12345000
    s = decode_body(
        "cma_alloc_start",
        "name=reserved request_count=256 available_count=8096 total_count=8192 align=8",
    )
    assert s == CmaAllocStart("reserved", 256, 8, 8096, 8192)
    r = decode_body(
        "cma_alloc_finish",
        "name=reserved pfn=0x0 page=0000000000000000 count=256 align=8 errorno=-16",
    )
    assert isinstance(r, CmaRange) and r.failed and r.errorno == -16
    mid = decode_body(
        "cma_alloc_finish", "name=reserved pfn=a0200 page=00000000c0d1e2f3 count=256 align=8"
    )
    assert isinstance(mid, CmaRange) and mid.pfn == 0xA0200
    b = decode_body(
        "swiotlb_bounced",
        "dev_name: 0000:00:1f.2 dma_mask=ffffffff dev_addr=1024a1000 size=4096 NORMAL",
    )
    assert b == SwiotlbBounced("0000:00:1f.2", 0xFFFFFFFF, 0x1024A1000, 4096, False)
    bad = decode_body("map", "IOMMU: iova=0x0000")
    assert isinstance(bad, RawEvent) and "format" in bad.reason
    unk = decode_body("sched_switch", "prev_comm=a")
    assert isinstance(unk, RawEvent) and unk.reason == "unknown event"


def test_other_line_layouts() -> None:
    ev = parse_line(
        "          insmod-124   [001]    14.313873: cma_alloc_start:      name=reserved count=4 align=2"  # noqa: E501
    )
    assert isinstance(ev, TraceEvent) and ev.flags is None and ev.cpu == 1
    assert ev.body == "name=reserved count=4 align=2"
    ev = parse_line("  irq/45-nvme-512     (    512) [001] d..1.    37.120551: map: IOMMU: x")
    assert isinstance(ev, TraceEvent) and (ev.task, ev.pid, ev.tgid) == ("irq/45-nvme", 512, 512)
    ev = parse_line("   kworker-7 [000] d..1 1.123456789: unmap: IOMMU: x")
    assert isinstance(ev, TraceEvent) and ev.ts_ns == 1_123_456_789 and ev.flags == "d..1"


# -- broken inputs ---------------------------------------------------------------------------

GOOD = "            init-1       [000] .....     0.410861: cma_alloc_start: name=reserved count=64 align=6\n"  # noqa: E501


def _read(text: str | bytes) -> FtraceReader:
    src = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    r = FtraceReader(src)
    r.events_seen = list(r)  # type: ignore[attr-defined]
    return r


def test_empty_file() -> None:
    r = _read("")
    assert (
        r.stats.lines == 0 and r.stats.events == 0 and r.stats.warnings == ["empty input: no lines"]
    )


def test_truncated_last_line() -> None:
    r = _read(GOOD + "            init-1       [000] .....     0.4")
    assert r.stats.events == 1 and r.stats.bad_lines == 1 and r.stats.truncated_last_line
    assert r.bad_lines[0].line_no == 2 and r.bad_lines[0].reason == "truncated event line"
    r = _read(GOOD + GOOD.rstrip("\n")[:-10])  # cut inside the body: still an event
    assert r.stats.events == 2 and r.stats.truncated_last_line
    assert isinstance(decode(r.events_seen[1]), RawEvent)  # type: ignore[attr-defined]


def test_binary_garbage() -> None:
    r = _read(GOOD.encode() + b"\xff\xfe\x00\x81garbage: \x9c: zz\n" + GOOD.encode())
    assert r.stats.events == 2 and r.stats.bad_lines == 1
    assert r.bad_lines[0].reason == "undecodable or binary data"


def test_out_of_order_and_unknown() -> None:
    lines = [
        "          a-1 [000] .....     2.000000: foo_event: x=1\n",
        "          a-1 [001] .....     1.500000: foo_event: x=2\n",
        "          a-1 [000] .....    10.000000: map: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000003000 size=4096\n",  # noqa: E501
        "          a-1 [001] .....     9.999999: map: IOMMU: iova=0x0000000000001000 - 0x0000000000002000 paddr=0x0000000000003000 size=4096\n",  # noqa: E501
        "          a-1 [001] .....   100.000000: tracing_mark_write: P1\n",
        "CPU:1 [LOST 42 EVENTS]\n",
        "          a-1 [001] .....    99.000000: foo_event: x=3\n",
    ]
    r = _read("".join(lines))
    assert r.stats.out_of_order == 3
    assert r.stats.unknown_events == Counter({"foo_event": 3})
    assert r.stats.lost_events == 42 and r.stats.lost_by_cpu == {1: 42}
    assert r.phase_counts() == {
        "boot": Counter({"foo_event": 2, "map": 2}),
        "P1": Counter({"foo_event": 1}),
    }


def test_bad_lines_are_capped_but_counted() -> None:
    r = FtraceReader(io.StringIO("junk\n" * 50 + GOOD), max_bad_kept=5)
    recs = list(r.records())
    assert r.stats.bad_lines == 50 and len(r.bad_lines) == 5
    assert sum(isinstance(x, BadLine) for x in recs) == 50


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        FtraceReader(tmp_path / "nope.txt")


def test_trace_cmd_header_and_iterable_source() -> None:
    r = FtraceReader(["cpus=2\n", "CPU 0 is empty\n", GOOD])
    assert [e.name for e in r] == ["cma_alloc_start"]
    assert r.metadata.format == "trace-cmd" and r.metadata.nr_cpus == 2
