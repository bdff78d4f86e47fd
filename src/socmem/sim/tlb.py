"""Flow-level translation cost: a statistical IOTLB model per DMA stream.

The flow level of the fidelity ladder does not replay accesses through the SMMU; it asks,
per frame and per DMA stream, *how many IOTLB misses, how many page-table-walk reads
and how much walk latency* the stream costs, from a description of the stream
(:class:`StreamPattern`) and of the SMMU's translation caches (:class:`TlbConfig`).
:func:`estimate_misses` answers for a set of streams that share one IOTLB;
:func:`translation_cost` turns one answer into what the simulator adds (DRAM read bytes
for the DRAM flow, latency for the master); :func:`smmu_translation_cost` sums an SMMU.
The detailed level (:class:`~socmem.hw.smmu.tlb.Iotlb` behind
:meth:`~socmem.hw.smmu.v3.SmmuV3.translate`) is the reference: ``tests/sim/
test_tlb_model.py`` replays the addresses :func:`access_offsets` generates from the same
patterns through real mappings and compares miss counts.

Modelling rules (each stated once; sources in brackets)
-------------------------------------------------------

1. **Page touches.**  A stream is a sequence of bursts (``burst`` bytes, 64 B default).
   Consecutive bursts of one stream on one leaf page are one *touch*; only touches can
   miss (the page was used by the previous burst and LRU keeps it, given more entries
   than concurrent streams).  The leaf histogram (bytes mapped at 4K / 64K / 2M / 1G
   ...) splits a stream into sub-streams, one per leaf size, each covering its share of
   the bytes at its share of the stream's rate; a touch costs one IOTLB entry of that
   leaf size, whatever the size (the IOTLB holds one entry per leaf, 2M blocks
   included), so **2M blocks cut misses by 512×** against 4K pages.
2. **No prefetch, cold frame.**  Every leaf page a stream touches in a frame misses once
   (the first touch): 1 miss per 4 KiB page for a linear stream [perf-anchors 3.27;
   MMU-600 TCU prefetch, 3.25, is not modelled].  A frame starts with none of the
   stream's translations cached (buffers rotate between frames).
3. **Access patterns** (re-touches after the first, and their reuse gaps):

   * ``linear`` (raster): ``passes`` sequential sweeps of the buffer; each page is
     touched once per pass, re-touches come one pass time apart.  A single pass has no
     re-touch: it misses once per page whatever the TLB size;
   * ``tiled``: 2D tiles of ``tile_width`` bytes × ``tile_height`` lines on a surface
     of row ``pitch`` (tile rows top to bottom, tiles left to right, lines inside a
     tile); a tile touches ``k`` pages (``tile_height`` when ``pitch`` ≥ page, else
     about ``1 + ((tile_height − 1)·pitch + tile_width − burst) / page``), and the next
     tile re-touches the same ``k`` pages until it crosses a page horizontally: reuse
     gap = one tile.  A UBWC/AFBC-like 64×16 read touches 16 4K pages per tile; a
     rotated display scan (``tile_height`` = all rows) touches one page per row and
     thrashes any TLB share smaller than the height;
   * ``random``: ``accesses`` uniform, ``access_bytes``-aligned accesses over the
     buffer (independent reference model: a page of ``M`` is referenced at rate
     ``λ = touches / M`` per frame, gaps exponential).  Alone on an LRU of ``C``
     entries it hits ≈ ``C / M`` of re-references when ``M > C``.

4. **Sharing: LRU as a characteristic time** [Che, Tung, Wang, "Hierarchical Web
   caching systems: modeling, design and experimental results", IEEE JSAC 20(7), 2002;
   extended to non-Poisson reuse by Fricker, Robert, Roberts, "A versatile and accurate
   approximation for LRU cache performance", ITC 24, 2012, and Martina, Garetto,
   Leonardi, "A unified approach to the performance analysis of caching systems",
   INFOCOM 2014].  The streams of one call are concurrently active over the same window
   (a frame), each spreading its touches evenly over it.  An LRU of ``C`` entries keeps
   a page iff it was touched within the last ``T_C``, where ``T_C`` solves
   ``Σ_streams occupancy_s(T_C) = C`` and ``occupancy_s(T)`` is the expected number of
   distinct pages of stream ``s`` touched in a window of length ``T`` (for a linear
   stream ``min(N, rate·T)``: streams share the TLB in proportion to their touch rates).
   A re-touch after a deterministic gap ``g`` hits iff ``g ≤ T_C``; a random stream's
   re-references hit with probability ``1 − e^{−λ T_C}``.  If every stream's whole
   footprint fits (``Σ occupancy(∞) ≤ C``), ``T_C = ∞`` and only first touches miss.
   A stream's *TLB share* is ``occupancy_s(T_C)`` entries; its *reach* is the bytes
   those entries map.  Calls for streams that are not concurrent are separate calls.
5. **Walks.**  A miss reads one 8-byte descriptor per level walked, each a whole
   ``walk_line_bytes`` (64 B) DRAM line (no reuse of a line between walks, no
   system-cache hits: an upper bound on walk traffic).  If the upper-level (table)
   descriptors needed by all streams fit the walk cache (``Σ ⌈bytes / span(level)⌉``
   over the levels above each leaf ≤ ``walk_cache_entries``), a walk reads only the leaf
   level; otherwise it is a full walk from the start level [the walk-cache rule of
   perf-anchors 3.24/3.26].  Levels come from the granule and the IAS as
   io-pgtable-arm.c computes them (4K and 16K: 4 levels at 48 bits, 64K: 3).
6. **Latency.**  A walk costs ``walk_level_ns`` per level read (150 ns: the middle of
   100–200 ns for a last-level walk; a full 4-level walk is then 0.6 µs, inside
   0.4–0.8 µs [perf-anchors 3.28]).  Walks of one stream overlap up to the number of
   distinct pages it has in flight (``outstanding`` × ``burst`` bytes), at most
   ``parallel_walks`` (8 per MMU-500 TBU [perf-anchors 3.22]): the latency added to the
   master per frame is ``misses × walk latency / overlap``.  A hit costs
   ``hit_latency_ns`` (3 clocks [perf-anchors 3.21] at an assumed 800 MHz), pipelined:
   reported per transaction, not added to the frame.

Not modelled: per-master uTLBs (sizes kept in :class:`TlbConfig` for reports; a uTLB
miss that hits the main TLB costs no walk and no DRAM), TCU prefetch, stage 2, and
frame-to-frame warmth (rule 2).

Cost: pure arithmetic per stream and leaf size plus a 100-step bisection for ``T_C``;
never a loop over pages or bursts (:func:`access_offsets` and :func:`leaf_histogram`
are for the detailed level and for set-up, and do loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from socmem.linux.iommu.io_pgtable_arm import IoPgtableArm
    from socmem.soc.schema import Iommu

__all__ = [
    "Occupancy",
    "SmmuTranslationCost",
    "StreamEstimate",
    "StreamPattern",
    "TlbConfig",
    "access_offsets",
    "che_characteristic_time",
    "estimate_misses",
    "leaf_histogram",
    "smmu_translation_cost",
    "translation_cost",
]

Pattern = Literal["linear", "tiled", "random"]
_PATTERNS = ("linear", "tiled", "random")
SZ_4K = 4096
_GRANULE_OF_LEAF = {
    4096: 4096,
    2 << 20: 4096,
    1 << 30: 4096,
    16384: 16384,
    32 << 20: 16384,
    65536: 65536,
    512 << 20: 65536,
}
_EPS = 1e-9


# ------------------------------------------------------------------------ inputs --
@dataclass(frozen=True)
class StreamPattern:
    """One DMA stream's accesses in one frame (or any window).

    ``bytes`` is the buffer (footprint) the stream covers.  ``pattern``: ``"linear"``
    (``passes`` raster sweeps), ``"tiled"`` (tiles of ``tile_width`` bytes ×
    ``tile_height`` lines on rows of ``pitch`` bytes, ``bytes // pitch`` rows, ``width``
    bytes of each row read, default ``pitch``; ``passes`` sweeps) or ``"random"``
    (``accesses`` accesses of ``access_bytes`` bytes, aligned to their size, uniform over
    the buffer).  ``leaf_bytes``: bytes mapped at each leaf size (``{4096: ...,
    2 << 20: ...}``), from :func:`leaf_histogram` on the real mapping or assumed; only the
    proportions are used; None means all 4K pages.  ``outstanding``: bursts the master
    keeps in flight (bounds how many walks of this stream overlap).  ``master`` names
    the bus master, for reports.
    """

    name: str
    bytes: int
    pattern: Pattern = "linear"
    passes: int = 1
    tile_width: int = 64
    tile_height: int = 16
    pitch: int = 0
    width: int = 0
    accesses: int = 0
    access_bytes: int = 64
    leaf_bytes: Mapping[int, int] | None = None
    burst: int = 64
    outstanding: int = 16
    master: str = ""

    def __post_init__(self) -> None:
        if self.pattern not in _PATTERNS:
            raise ValueError(f"pattern {self.pattern!r} is not one of {', '.join(_PATTERNS)}")
        if self.bytes <= 0 or self.burst <= 0 or self.passes < 1 or self.outstanding < 1:
            raise ValueError("bytes, burst, outstanding must be > 0 and passes >= 1")
        if self.pattern == "tiled":
            if self.pitch <= 0 or self.tile_width <= 0 or self.tile_height <= 0:
                raise ValueError("a tiled stream needs pitch, tile_width, tile_height > 0")
            if self.bytes // self.pitch < self.tile_height:
                raise ValueError("a tiled stream needs at least tile_height rows")
            if self.row_bytes > self.pitch:
                raise ValueError("width exceeds pitch")
        if self.pattern == "random" and (self.accesses < 0 or self.access_bytes <= 0):
            raise ValueError("a random stream needs accesses >= 0 and access_bytes > 0")
        for size, b in self.leaves().items():
            if size not in _GRANULE_OF_LEAF or b < 0:
                raise ValueError(f"leaf size {size:#x} is not an LPAE page or block size")

    @property
    def row_bytes(self) -> int:
        """Tiled: bytes read of each row (``width`` or the whole ``pitch``)."""
        return self.width or self.pitch

    @property
    def rows(self) -> int:
        """Tiled: rows of the surface."""
        return self.bytes // self.pitch if self.pitch else 0

    @property
    def bursts(self) -> int:
        """Bursts (transactions) per frame."""
        if self.pattern == "random":
            return self.accesses * max(1, -(-self.access_bytes // self.burst))
        if self.pattern == "tiled":
            tiles = (self.row_bytes // self.tile_width) * (self.rows // self.tile_height)
            lines = tiles * self.tile_height
            return self.passes * lines * max(1, -(-self.tile_width // self.burst))
        return self.passes * -(-self.bytes // self.burst)

    def leaves(self) -> dict[int, int]:
        """The leaf histogram, scaled to :attr:`bytes` (sizes with no bytes dropped)."""
        if not self.leaf_bytes:
            return {SZ_4K: self.bytes}
        total = sum(self.leaf_bytes.values())
        if total <= 0:
            return {SZ_4K: self.bytes}
        return {s: round(self.bytes * b / total) for s, b in sorted(self.leaf_bytes.items()) if b}


@dataclass(frozen=True)
class TlbConfig:
    """An SMMU's translation caches and walk costs, for the statistical model.

    ``iotlb_entries``: the shared main TLB (TCU / MMU-500 TBU main TLB);
    ``utlb_entries``: micro-TLB per master (kept for reports, not in the miss count);
    ``walk_cache_entries``: table-descriptor cache; ``ias``: input address bits (sets
    the levels per granule; ``table_levels`` overrides them, e.g. ``{4096: 3}`` for a
    39-bit space); ``walk_level_ns``: one descriptor read [perf-anchors 3.28];
    ``hit_latency_ns`` [3.21]; ``parallel_walks`` per TBU [3.22].  Not the SoC schema's
    ``socmem.soc.schema.TlbConfig`` (sizes only): build from it with :meth:`from_iommu`.
    """

    iotlb_entries: int = 2048
    utlb_entries: int = 32
    walk_cache_entries: int = 64
    ias: int = 48
    table_levels: Mapping[int, int] = field(default_factory=dict)
    walk_level_ns: float = 150.0
    hit_latency_ns: float = 3.75
    parallel_walks: int = 8

    @classmethod
    def from_iommu(cls, iommu: Iommu, **kw: float | int) -> TlbConfig:
        """From the SoC description's IOMMU (TLB sizes, IAS); ``kw`` overrides."""
        args: dict[str, object] = {
            "iotlb_entries": iommu.tlb.iotlb_entries,
            "utlb_entries": iommu.tlb.utlb_entries,
            "walk_cache_entries": iommu.tlb.walk_cache_entries,
            "ias": iommu.ias,
        }
        args.update(kw)
        return cls(**args)  # type: ignore[arg-type]

    def levels(self, granule: int) -> int:
        """Page-table levels for ``granule`` (io-pgtable-arm.c:
        ``DIV_ROUND_UP(ias - pg_shift, pg_shift - 3)``): 4 / 4 / 3 at 48 bits."""
        if granule in self.table_levels:
            return self.table_levels[granule]
        shift = granule.bit_length() - 1
        return -(-(self.ias - shift) // (shift - 3))

    def walk_levels(self, leaf: int) -> int:
        """Descriptor reads of a full walk to a ``leaf``-sized entry (start level to the
        leaf's level): 4 for a 4K page, 3 for a 2M block at 48 bits."""
        g = _GRANULE_OF_LEAF[leaf]
        gshift = g.bit_length() - 1
        above = ((leaf.bit_length() - 1) - gshift) // (gshift - 3)
        return max(1, self.levels(g) - above)


# ------------------------------------------------------------------------ output --
@dataclass(frozen=True)
class StreamEstimate:
    """The statistical model's answer for one stream and one frame.

    ``misses`` (IOTLB misses = walks), ``walk_reads`` (descriptor reads, each one DRAM
    line), ``walk_latency_ns`` (mean per walk), ``overlap`` (walks in parallel),
    ``added_latency_ns`` (per frame, for the master), ``tlb_share`` (entries the stream
    holds at steady state), ``reach_bytes`` (what they map), ``walk_cache_hit`` (upper
    levels from the walk cache), ``t_c`` (Che's characteristic time, as a fraction of
    the frame; ``inf`` when everything fits).
    """

    name: str
    bursts: int
    touches: float
    pages: float
    misses: float
    walk_reads: float
    walk_latency_ns: float
    overlap: float
    added_latency_ns: float
    tlb_share: float
    reach_bytes: float
    walk_cache_hit: bool
    t_c: float
    hit_latency_ns: float
    master: str = ""
    misses_by_leaf: Mapping[int, float] = field(default_factory=dict)

    @property
    def miss_rate(self) -> float:
        """Misses per burst (transaction)."""
        return self.misses / self.bursts if self.bursts else 0.0

    @property
    def mean_translation_ns(self) -> float:
        """Mean translation latency per transaction: hit latency plus the miss share of
        a walk (the per-access figure; not the per-frame :attr:`added_latency_ns`)."""
        return self.hit_latency_ns + self.miss_rate * self.walk_latency_ns

    def walk_read_bytes(self, walk_line_bytes: int = 64) -> float:
        """DRAM bytes read by walks: one line per descriptor read."""
        return self.walk_reads * walk_line_bytes


@dataclass(frozen=True)
class SmmuTranslationCost:
    """Translation costs of the streams sharing one SMMU in one frame.

    ``walker_utilisation`` = walk time / (``parallel_walks`` × ``frame_ns``), when a frame
    time is given: above 1 the walker, not the streams, limits the frame.
    """

    misses: float
    walk_reads: float
    extra_dram_read_bytes: float
    walk_time_ns: float
    walker_utilisation: float | None
    per_stream: Mapping[str, tuple[float, float]]


# -------------------------------------------------------------------- internals --
@dataclass
class _Sub:
    """One stream's share at one leaf size: touches, reuse structure, occupancy."""

    stream: int
    leaf: int
    bytes: int
    pages: float  # distinct pages touched per frame
    touches: float
    det: Sequence[tuple[float, float]]  # (re-touch count, deterministic gap)
    # occupancy: linear/tiled: pages in the "hot set" k, its cycle g, new-page rate
    kind: str
    k: float = 1.0
    g: float = 1.0
    new_rate: float = 0.0
    lam: float = 0.0  # random: references per page per frame
    inflight: float = 1.0

    def occupancy(self, t: float) -> float:
        """Expected distinct pages of this sub-stream touched in the last ``t``."""
        if t <= 0:
            return 0.0
        if self.kind == "random":
            return self.pages * -math.expm1(-self.lam * min(t, 1.0))
        if t < self.g:
            return min(self.pages, self.k * t / self.g)
        return min(self.pages, self.k + self.new_rate * (t - self.g))

    def misses(self, t_c: float) -> float:
        if self.kind == "random":
            lw = self.lam
            first = -math.expm1(-lw)
            re = lw - first
            evicted = 0.0 if math.isinf(t_c) else math.exp(-self.lam * t_c)
            return self.pages * (first + re * evicted)
        m = self.pages
        for count, gap in self.det:
            if gap > t_c * (1 + _EPS):
                m += count
        return m


def _subs(i: int, s: StreamPattern) -> list[_Sub]:
    out: list[_Sub] = []
    leaves = s.leaves()
    total = sum(leaves.values()) or 1
    window = s.outstanding * s.burst
    for leaf, b in leaves.items():
        if b <= 0:
            continue
        pages = -(-b // leaf)
        frac = b / total
        if s.pattern == "linear":
            p = s.passes
            det: list[tuple[float, float]] = [(pages * (p - 1.0), 1.0 / p)] if p > 1 else []
            out.append(
                _Sub(
                    i,
                    leaf,
                    b,
                    pages,
                    pages * p,
                    det,
                    "linear",
                    k=pages,
                    g=1.0 / p,
                    inflight=max(1.0, window / leaf),
                )
            )
        elif s.pattern == "tiled":
            th, tw, pitch, p = s.tile_height, s.tile_width, s.pitch, s.passes
            if pitch >= leaf:
                k = float(th)
            else:
                k = min(float(th), 1.0 + max(0, (th - 1) * pitch + tw - s.burst) / leaf)
            tiles = (s.row_bytes // tw) * (s.rows // th) * frac
            per_pass = max(tiles * k, float(pages))
            g_tile = 1.0 / (p * tiles) if tiles else 1.0
            det = [(p * (per_pass - pages), g_tile)]
            if p > 1:
                det.append((pages * (p - 1.0), 1.0 / p))
            lines_in_flight = max(1.0, window / tw)
            inflight = max(1.0, k * min(th, lines_in_flight) / th)
            out.append(
                _Sub(
                    i,
                    leaf,
                    b,
                    pages,
                    p * per_pass,
                    det,
                    "tiled",
                    k=k,
                    g=g_tile,
                    new_rate=pages * p,
                    inflight=inflight,
                )
            )
        else:
            n = s.accesses * frac
            per_access = max(1.0, s.access_bytes / leaf)
            touches = n * per_access
            out.append(
                _Sub(
                    i,
                    leaf,
                    b,
                    pages,
                    touches,
                    [],
                    "random",
                    lam=touches / pages,
                    inflight=max(1.0, window / s.access_bytes),
                )
            )
    return out


class Occupancy(Protocol):
    """Anything with an LRU occupancy curve: distinct entries touched in the last ``t``."""

    def occupancy(self, t: float) -> float: ...


def che_characteristic_time(occupancies: Sequence[Occupancy], capacity: int) -> float:
    """Che's ``T_C``: the ``T`` (fraction of the window) with ``Σ occupancy(T) =
    capacity`` (bisection on ``[0, 2]``), or ``inf`` when every footprint fits."""
    occ = [o.occupancy for o in occupancies]
    hi = 2.0
    if sum(f(hi) for f in occ) <= capacity * (1 + _EPS):
        return math.inf
    if capacity <= 0:
        return 0.0
    lo = 0.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if sum(f(mid) for f in occ) < capacity:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _upper_entries(subs: Iterable[_Sub], tlb: TlbConfig) -> int:
    """Table descriptors the streams need (rule 5): ``⌈bytes / span⌉`` per level above
    each leaf."""
    n = 0
    for sub in subs:
        g = _GRANULE_OF_LEAF[sub.leaf]
        gshift = g.bit_length() - 1
        bpl = gshift - 3
        leaf_shift = sub.leaf.bit_length() - 1
        for lvl in range(1, tlb.walk_levels(sub.leaf)):
            span = 1 << (leaf_shift + lvl * bpl)
            n += -(-sub.bytes // span)
    return n


# -------------------------------------------------------------------------- API --
def estimate_misses(streams: Sequence[StreamPattern], tlb: TlbConfig) -> list[StreamEstimate]:
    """Per stream, IOTLB misses, walk reads and walk latency per frame, for ``streams``
    concurrently sharing one IOTLB (module rules 1–6)."""
    subs = [sub for i, s in enumerate(streams) for sub in _subs(i, s)]
    t_c = che_characteristic_time(subs, tlb.iotlb_entries)
    wc_hit = _upper_entries(subs, tlb) <= tlb.walk_cache_entries
    out: list[StreamEstimate] = []
    for i, s in enumerate(streams):
        mine = [x for x in subs if x.stream == i]
        misses = reads = share = reach = touches = pages = 0.0
        by_leaf: dict[int, float] = {}
        overlap_w = 0.0
        for x in mine:
            m = x.misses(t_c)
            levels = 1 if wc_hit else tlb.walk_levels(x.leaf)
            misses += m
            reads += m * levels
            by_leaf[x.leaf] = m
            occ = x.occupancy(t_c) if not math.isinf(t_c) else x.pages
            share += occ
            reach += occ * x.leaf
            touches += x.touches
            pages += x.pages
            overlap_w += m * min(float(tlb.parallel_walks), x.inflight)
        walk_ns = reads / misses * tlb.walk_level_ns if misses else 0.0
        overlap = overlap_w / misses if misses else 1.0
        out.append(
            StreamEstimate(
                name=s.name,
                bursts=s.bursts,
                touches=touches,
                pages=pages,
                misses=misses,
                walk_reads=reads,
                walk_latency_ns=walk_ns,
                overlap=overlap,
                added_latency_ns=misses * walk_ns / overlap if misses else 0.0,
                tlb_share=share,
                reach_bytes=reach,
                walk_cache_hit=wc_hit,
                t_c=t_c,
                hit_latency_ns=tlb.hit_latency_ns,
                master=s.master,
                misses_by_leaf=by_leaf,
            )
        )
    return out


def translation_cost(
    stream_estimate: StreamEstimate, walk_line_bytes: int = 64
) -> tuple[float, float]:
    """What the simulator adds for one stage's stream in one frame:
    ``(extra_dram_read_bytes, added_latency_ns)`` (walk reads × line size; misses × walk
    latency / overlap)."""
    return (
        stream_estimate.walk_reads * walk_line_bytes,
        stream_estimate.added_latency_ns,
    )


def smmu_translation_cost(
    estimates: Iterable[StreamEstimate],
    tlb: TlbConfig,
    walk_line_bytes: int = 64,
    frame_ns: float | None = None,
) -> SmmuTranslationCost:
    """Sum the streams of one SMMU for a frame: misses, walk reads, DRAM bytes, walker
    busy time (Σ misses × walk latency), and its utilisation against
    ``parallel_walks × frame_ns``."""
    est = list(estimates)
    misses = sum(e.misses for e in est)
    reads = sum(e.walk_reads for e in est)
    walk_time = sum(e.misses * e.walk_latency_ns for e in est)
    util = None
    if frame_ns:
        util = walk_time / (max(1, tlb.parallel_walks) * frame_ns)
    return SmmuTranslationCost(
        misses=misses,
        walk_reads=reads,
        extra_dram_read_bytes=reads * walk_line_bytes,
        walk_time_ns=walk_time,
        walker_utilisation=util,
        per_stream={e.name: translation_cost(e, walk_line_bytes) for e in est},
    )


# ----------------------------------------------------- detailed level and set-up --
def access_offsets(s: StreamPattern, seed: int = 0) -> np.ndarray:
    """The byte offsets of every burst of ``s`` in one frame, in issue order (for the
    detailed level: replay through :meth:`~socmem.hw.smmu.v3.SmmuV3.translate`).
    ``seed`` drives the random pattern."""
    b = s.burst
    if s.pattern == "linear":
        one = np.arange(0, s.bytes, b, dtype=np.int64)
        return np.tile(one, s.passes)
    if s.pattern == "tiled":
        tw, th, pitch = s.tile_width, s.tile_height, s.pitch
        bands = s.rows // th
        tiles = s.row_bytes // tw
        nb = max(1, -(-tw // b))
        off = (
            (np.arange(bands, dtype=np.int64)[:, None, None, None] * th)
            + np.arange(th, dtype=np.int64)[None, None, :, None]
        ) * pitch
        off = (
            off
            + np.arange(tiles, dtype=np.int64)[None, :, None, None] * tw
            + np.arange(nb, dtype=np.int64)[None, None, None, :] * b
        )
        return np.tile(off.ravel(), s.passes)
    rng = np.random.default_rng(seed)
    a = s.access_bytes
    starts = rng.integers(0, max(1, s.bytes // a), s.accesses, dtype=np.int64) * a
    nb = max(1, -(-a // b))
    return (starts[:, None] + np.arange(nb, dtype=np.int64)[None, :] * b).ravel()


def leaf_histogram(pgtable: IoPgtableArm, iova: int, size: int) -> dict[int, int]:
    """Bytes of ``[iova, iova + size)`` mapped at each leaf size in ``pgtable`` (one
    descriptor lookup per leaf; set-up, not the estimate).  Unmapped holes count under
    the granule."""
    hist: dict[int, int] = {}
    end = iova + size
    a = iova
    gran = pgtable.granule
    while a < end:
        level, pte = pgtable.pte_at(a)
        leaf = gran if not pte else 1 << (pgtable.pg_shift + (3 - level) * pgtable.bits_per_level)
        nxt = min(end, (a | (leaf - 1)) + 1)
        hist[leaf] = hist.get(leaf, 0) + (nxt - a)
        a = nxt
    return hist
