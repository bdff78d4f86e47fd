"""The CPU cache model: line states, data tokens, arm64 maintenance by VA, the checks."""

from __future__ import annotations

import pytest

from socmem.check.finding import FindingLog
from socmem.hw.cache import (
    BOOT_TOKEN,
    CacheCostModel,
    CpuCacheModel,
    IntervalMap,
    LineState,
)

BASE = 0x8000_0000
L = 64


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def model(**kw: object) -> tuple[CpuCacheModel, FindingLog, Clock]:
    log, clock = FindingLog(), Clock()
    return CpuCacheModel(L, findings=log, clock=clock, **kw), log, clock  # type: ignore[arg-type]


# -- interval map ----------------------------------------------------------------------------
def test_interval_map_assign_merge_and_split() -> None:
    m: IntervalMap[str] = IntervalMap()
    m.assign(100, 200, "a")
    m.assign(200, 300, "a")  # merges with its neighbour
    assert list(m.present(0, 1000)) == [(100, 300, "a")]
    m.assign(150, 160, "b")
    assert list(m.present(0, 1000)) == [(100, 150, "a"), (150, 160, "b"), (160, 300, "a")]
    m.assign(150, 160, "a")
    assert list(m.present(0, 1000)) == [(100, 300, "a")]
    assert m.get(99) is None and m.get(100) == "a" and m.get(299) == "a" and m.get(300) is None
    assert m.covered(0, 1000) == 200 and m.covered(250, 260) == 10
    m.assign(0, 1 << 64, None)
    assert len(m) == 0 and m.boundaries == 1


def test_cannot_use_a_line_that_is_not_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        CpuCacheModel(48)


# -- stale CPU read --------------------------------------------------------------------------
def test_cpu_read_of_a_line_cached_before_a_device_write_is_stale() -> None:
    c, log, clock = model(speculative=False)
    c.cpu_read(BASE, 4096)
    assert c.state_at(BASE) is LineState.CLEAN
    clock.now = 12_500_000
    c.device_write(BASE, 4096, coherent=False, who="cam0")
    assert c.cpu_read(BASE, 4096) == 4096
    (f,) = log.of_kind("coherency.stale-cpu-read")
    assert f.message == (
        "socmem-coherency: cpu read of 0x80000000+4096 returns stale data (4096 bytes at "
        "0x80000000): device cam0 wrote it at 12.500 ms, no dma_sync_*_for_cpu / "
        "begin_cpu_access since"
    )
    assert [h.what for h in f.history] == ["cpu read", "device write", "cpu read"]
    assert f.data["device"] == "cam0"


def test_speculative_fills_make_an_untouched_buffer_stale_too() -> None:
    """arm64 may allocate lines of the cacheable linear map at any time."""
    c, log, _ = model(speculative=False)
    c.device_write(BASE, 4096, coherent=False, who="cam0")
    assert c.cpu_read(BASE, 4096) == 0  # nothing was cached: a miss reads DRAM
    c2, log2, _ = model()
    c2.device_write(BASE, 4096, coherent=False, who="cam0")
    assert c2.cpu_read(BASE, 4096) == 4096
    assert len(log2.of_kind("coherency.stale-cpu-read")) == 1 and not log


def test_invalidate_makes_the_device_write_visible() -> None:
    c, log, _ = model()
    c.cpu_read(BASE, 4096)
    tok = c.device_write(BASE, 4096, coherent=False, who="cam0")
    c.invalidate(BASE, 4096, "cam0")
    assert c.cpu_read(BASE, 4096) == 0
    assert c.cached_token(BASE) == tok and not log


# -- device read of uncleaned CPU data -------------------------------------------------------
def test_non_coherent_device_reads_dirty_cpu_data_it_cannot_see() -> None:
    c, log, _ = model()
    c.cpu_write(BASE, 1000)
    assert c.state_at(BASE + 999) is LineState.DIRTY and c.memory_token(BASE) is BOOT_TOKEN
    assert c.device_read(BASE, 4096, coherent=False, who="venc") == 1000
    (f,) = log.of_kind("coherency.device-read-uncleaned")
    assert f.message.startswith("socmem-coherency: venc: DMA read of 0x80000000+4096 returns")
    c.clean(BASE, 4096, "venc")
    assert c.device_read(BASE, 4096, coherent=False, who="venc") == 0
    assert len(log) == 1


def test_coherent_master_snoops_dirty_lines_and_invalidates_on_write() -> None:
    c, log, _ = model()
    c.cpu_write(BASE, 4096)
    assert c.device_read(BASE, 4096, coherent=True, who="npu") == 0
    c.cpu_read(BASE, 4096)
    tok = c.device_write(BASE, 4096, coherent=True, who="npu")
    assert c.state_at(BASE) is LineState.INVALID
    assert c.cpu_read(BASE, 4096) == 0 and c.cached_token(BASE) == tok
    assert c.evict_all() == 0  # the CPU's dirty data was superseded, not kept
    assert not log and c.total.lines == 0


def test_coherent_write_of_a_partial_line_merges_the_cpu_dirty_rest() -> None:
    c, log, _ = model()
    c.cpu_write(BASE, 32)
    cpu_tok = c.cached_token(BASE)
    dev_tok = c.device_write(BASE + 32, 32, coherent=True, who="npu")
    assert c.memory_token(BASE) == cpu_tok and c.memory_token(BASE + 32) == dev_tok
    assert c.state_at(BASE) is LineState.INVALID and not log


# -- lost device write -----------------------------------------------------------------------
def test_dirty_line_evicted_over_device_data_loses_the_device_write() -> None:
    c, log, clock = model()
    c.cpu_write(BASE, 128)
    clock.now = 1_000_000
    c.device_write(BASE, 4096, coherent=False, who="cam0")
    assert not log
    assert c.evict(BASE, 4096) == 2
    (f,) = log.of_kind("coherency.lost-device-write")
    assert f.data["lost_bytes"] == 128
    assert f.message == (
        "socmem-coherency: dirty cpu cache lines written back over 0x80000000+128 "
        "(eviction): device cam0's write at 1.000 ms is lost (the cpu's copy dates from "
        "0.000 ms)"
    )
    assert c.memory_token(BASE).by_cpu and not c.memory_token(BASE + 128).by_cpu


def test_capacity_evicts_oldest_fills_first_and_writes_back_dirty_lines() -> None:
    c, log, _ = model(capacity=8192, speculative=False)
    c.cpu_write(BASE, 4096)
    c.device_write(BASE, 4096, coherent=False, who="cam0")
    c.cpu_read(BASE + 0x10000, 4096)
    assert not log and c.resident_bytes == 8192
    c.cpu_read(BASE + 0x20000, 4096)  # the first fill goes
    assert c.resident_bytes == 8192 and c.state_at(BASE) is LineState.INVALID
    assert len(log.of_kind("coherency.lost-device-write")) == 1


def test_a_cpu_write_after_the_device_write_is_not_a_lost_device_write() -> None:
    c, log, _ = model(speculative=False)
    c.device_write(BASE, 64, coherent=False, who="cam0")
    c.invalidate(BASE, 64)
    c.cpu_write(BASE, 64)  # overwrites the whole line: program order wins
    c.evict_all()
    assert not log


# -- mappings --------------------------------------------------------------------------------
@pytest.mark.parametrize("mapping", ["uncached", "writecombine", "dmacoherent"])
def test_uncached_and_write_combined_access_bypass_the_cache(mapping: str) -> None:
    c, log, _ = model()
    c.device_write(BASE, 4096, coherent=False, who="cam0")
    assert c.cpu_read(BASE, 4096, mapping) == 0
    tok = c.cpu_write(BASE, 4096, mapping)
    assert c.memory_token(BASE) == tok  # the WC buffer is drained at once
    assert c.device_read(BASE, 4096, coherent=False, who="venc") == 0
    assert not log and c.total.calls == 0


# -- partial lines (dcache_inval_poc) --------------------------------------------------------
def test_invalidate_cleans_partial_edge_lines_and_discards_whole_dirty_lines() -> None:
    c, log, _ = model(speculative=False)
    c.cpu_write(BASE, 256)  # lines 0..3 dirty
    cost = c.invalidate(BASE + 16, 128)  # [16, 144): lines 0, 1, 2; edges 0 and 2
    assert (cost.clean_invalidate_lines, cost.invalidate_lines) == (2, 1)
    assert cost.written_back_lines == 2 and cost.discarded_dirty_lines == 1
    assert c.memory_token(BASE).by_cpu and c.memory_token(BASE + 64) is BOOT_TOKEN
    assert c.state_at(BASE + 192) is LineState.DIRTY  # line 3 untouched
    assert not log


@pytest.mark.parametrize("neighbour_dirty", [True, False])
def test_buffer_sharing_a_line_with_a_cpu_dirty_neighbour(neighbour_dirty: bool) -> None:
    """A FROM_DEVICE buffer at +32: the kernel's invalidate cleans+invalidates line 0 and
    writes the CPU's neighbour back over the device's first 32 bytes (arm64)."""
    c, log, _ = model()
    c.cpu_read(BASE, 64)
    if neighbour_dirty:
        c.cpu_write(BASE, 32)  # the neighbour, [0, 32)
    dev = c.device_write(BASE + 32, 256, coherent=False, who="cam0")
    c.invalidate(BASE + 32, 256, "cam0")
    assert c.cpu_read(BASE + 32, 256) == 0
    lost = log.of_kind("coherency.lost-device-write")
    if neighbour_dirty:
        assert len(lost) == 1 and lost[0].data["lost_bytes"] == 32
        assert "dc civac of a partial line" in lost[0].message
        assert c.memory_token(BASE + 32) != dev and c.memory_token(BASE + 64) == dev
        assert c.memory_token(BASE).by_cpu  # the neighbour's data survives
    else:
        assert not log and c.memory_token(BASE + 32) == dev


# -- cost ------------------------------------------------------------------------------------
def test_cost_counts_every_line_the_loop_visits() -> None:
    c, _, _ = model()
    assert c.clean(BASE, 4096, "cam0").clean_lines == 64
    assert c.clean(BASE + 1, 64, "cam0").clean_lines == 2
    assert c.clean_invalidate(BASE + 60, 8, "isp").clean_invalidate_lines == 2
    assert c.invalidate(BASE, 12 << 20, "isp").invalidate_lines == (12 << 20) // 64
    assert c.cost["cam0"].lines == 66 and c.cost["cam0"].calls == 2
    assert c.cost["cam0"].bytes == 4096 + 64
    assert c.total.lines == 66 + 2 + (12 << 20) // 64
    assert c.estimated_ns("cam0") == pytest.approx(66 * 0.6e6 / 194_400)
    # perf-anchors 4.10: a 12.4 MB frame costs 0.2-1.0 ms per core; 4.2: ~1/3 batched
    frame_lines = 12_441_600 // 64
    assert 0.2e6 <= CacheCostModel().ns(frame_lines) <= 1.0e6
    assert CacheCostModel(batched=True).ns(frame_lines) == pytest.approx(
        0.35 * CacheCostModel().ns(frame_lines)
    )


def test_cost_grows_with_intervals_not_bytes() -> None:
    c, log, clock = model()
    frame = 12 << 20
    for i in range(100):
        clock.now += 33_000_000
        c.clean(BASE, frame, "cam0")
        c.device_write(BASE, frame, coherent=False, who="cam0")
        c.invalidate(BASE, frame, "cam0")
        c.cpu_read(BASE + i * 4096, 4096)
        c.cpu_write(BASE + 8192, 100)
    assert not log
    assert c.intervals() < 16
    assert c.total.lines == 100 * 2 * frame // 64
