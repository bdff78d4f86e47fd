"""Re-execute a captured kernel history on socmem's model and diff it call for call.

The model is booted on an SoC matching the capture (:func:`boot_model`): its device
tree, plus what a device tree cannot say and the capture does — the PCI functions that
made DMA calls (stream ID = requester ID through the host bridge's ``iommu-map``), the
default CMA area (``cma: Reserved ... at ...`` in dmesg), strict or lazy invalidation
(``iommu.strict`` on the command line), the number of CPUs and the IOVA granule.

Every call is then re-executed from its *inputs* only; the model's results come from its
own state (:class:`ReplayEngine`):

* ``iommu_dma_alloc_iova(size, dma_limit)`` → dma-iommu's own policy (PCI: below 4 GiB
  first, without flushing the rcache) on the model's :class:`IovaDomain`, each nested
  ``alloc_iova_fast`` / ``alloc_iova`` compared with the kernel's (arguments, pfn,
  rcache versus tree, ``max32_alloc_size``);
* ``free_iova_fast(pfn, size, cpu)``: where the range went (rcache / tree);
* ``__iommu_map(iova, paddr, size, prot)`` (paddr is an input) → io-pgtable-arm, compared
  with ``iommu:map`` and with the page-table pages the kernel allocated for it;
* ``__iommu_unmap`` → unmapped size, tables freed, the gathered range that
  ``arm_smmu_iotlb_sync`` invalidates and the SMMU commands issued for it;
* ``cma_alloc(count, align)`` → the model's CMA bitmap, compared pfn for pfn;
* totals of SMMU commands per kind against QEMU's command log.

IOVAs the model hands out can differ from the kernel's (in a what-if, or after a
divergence); the engine keeps a translation from each kernel allocation to the model's so
that the later map, unmap and free of that buffer act on the model's range.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from socmem.errors import InputError, errno_name
from socmem.hw.smmu.v3 import CMD_NAMES
from socmem.linux.iommu.dma_iommu import IommuDmaCookie, iommu_dma_alloc_iova
from socmem.linux.iommu.io_pgtable import GFP_ATOMIC, GFP_KERNEL, IommuIotlbGather
from socmem.linux.iommu.iommu import (
    IommuDevice,
    IommuDomain,
    iommu_flush_iotlb_all,
    iommu_iotlb_sync,
    iommu_map,
    iommu_unmap_fast,
)
from socmem.linux.iommu.iova import IovaDomain
from socmem.replay.capture import Call, Capture

__all__ = [
    "KINDS",
    "Agreement",
    "Divergence",
    "Metrics",
    "ReplayConfig",
    "ReplayEngine",
    "ReplayResult",
    "boot_model",
    "parse_qemu_commands",
    "replay",
]

SZ_4K = 4096
DMA_BIT_MASK_32 = (1 << 32) - 1
_BDF_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
_QEMU_OP_RE = re.compile(r"smmuv3_cmdq_opcode\s+<---\s+(SMMU_CMD_\w+)")

#: the kinds compared, in report order, with what each compares
KINDS: dict[str, str] = {
    "alloc_iova_fast": "pfn returned (and its arguments: size, limit_pfn, flush_rcache)",
    "rcache_vs_tree": "served by the per-CPU rcache or reached the rbtree",
    "alloc_iova": "rbtree allocation: size, limit, max32_alloc_size before, pfn_lo",
    "free_iova_fast": "freed range went to the rcache or back to the rbtree",
    "reserve_iova": "reservation accepted",
    "iommu_map": "mapping iova -> paddr, size (model maps it and translates it back)",
    "pgtable_alloc": "page-table pages allocated by each __iommu_map",
    "iommu_unmap": "unmapped size",
    "pgtable_free": "page-table pages freed by each __iommu_unmap",
    "iotlb_sync": "gathered range [start, end] and page size invalidated",
    "smmu_cmds_per_call": "SMMU commands (per kind) issued by each unmap / sync",
    "dma_map_page": "dma_addr returned by iommu_dma_map_page",
    "dma_alloc_contiguous": "whether the request went to CMA",
    "cma_alloc": "CMA pfn returned",
    "domain_asid": "ASID given to each DMA domain",
}


@dataclass(frozen=True)
class ReplayConfig:
    """The model's settings for one replay.  ``None`` means: as in the capture."""

    granule: int | None = None
    strict: bool | None = None
    dma_limit: int | None = None
    cma_size: int | None = None
    rcache: bool = True
    iotlb_entries: int | None = None
    device_access: bool = True

    def describe(self) -> dict[str, Any]:
        """The settings that differ from the capture, as text."""
        out: dict[str, Any] = {}
        if self.granule is not None:
            out["granule"] = self.granule
        if self.strict is not None:
            out["invalidation"] = "strict" if self.strict else "lazy"
        if self.dma_limit is not None:
            out["dma_limit"] = hex(self.dma_limit)
        if self.cma_size is not None:
            out["cma_size"] = self.cma_size
        if not self.rcache:
            out["rcache"] = "off"
        if self.iotlb_entries is not None:
            out["iotlb_entries"] = self.iotlb_entries
        return out


@dataclass
class Agreement:
    """Matched / total for one kind, and how many could not be compared."""

    matched: int = 0
    total: int = 0
    not_compared: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        """Every compared call agreed."""
        return self.matched == self.total


@dataclass
class Divergence:
    """One call where the kernel and the model disagree, with what came before it on
    the same domain and CPU so a person can judge which side is wrong."""

    kind: str
    line: int
    cpu: int
    device: str | None
    call: str
    kernel: str
    model: str
    explanation: str
    context: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass
class Metrics:
    """What a replay costs on the model: the quantities a what-if compares."""

    pgtable_pages_peak: int = 0
    pgtable_pages_final: int = 0
    pgtable_bytes_peak: int = 0
    iova_pages_peak: int = 0
    iova_bytes_peak: int = 0
    iova_fragmentation: float = 0.0
    iova_largest_gap_bytes: int = 0
    iova_alloc_failures: int = 0
    tree_allocations: int = 0
    rcache_hits: int = 0
    map_failures: int = 0
    invalidation_commands: int = 0
    commands_total: int = 0
    cmd_counts: dict[str, int] = field(default_factory=dict)
    iotlb_hits: int = 0
    iotlb_misses: int = 0
    cma_failures: int = 0
    cma_pages_peak: int = 0
    swiotlb_bounces: int = 0
    fq_flushes: int = 0
    iova_used_series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    tlbi_series: list[tuple[float, float]] = field(default_factory=list)

    def scalars(self) -> dict[str, float]:
        """The numeric metrics (no series), in report order."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }


@dataclass
class ReplayResult:
    """The outcome of one replay: agreement per kind, divergences, SMMU command totals
    (model, kernel trace, QEMU), notes (missing probes, timing-dependent parts), metrics."""

    source: str
    config: ReplayConfig
    strict: bool
    agreement: dict[str, Agreement] = field(default_factory=dict)
    divergences: list[Divergence] = field(default_factory=list)
    commands: dict[str, dict[str, int]] = field(default_factory=dict)
    commands_note: str = ""
    notes: list[str] = field(default_factory=list)
    missing_probes: dict[str, str] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    events: int = 0
    calls: int = 0
    seconds: float = 0.0

    @property
    def all_agree(self) -> bool:
        """No divergence in any kind and SMMU command totals equal where compared."""
        return not self.divergences and all(a.ok for a in self.agreement.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        m = self.metrics
        return {
            "source": self.source,
            "config": self.config.describe(),
            "invalidation": "strict" if self.strict else "lazy",
            "events": self.events,
            "calls": self.calls,
            "seconds": round(self.seconds, 3),
            "agreement": {
                k: {
                    "matched": a.matched,
                    "total": a.total,
                    "not_compared": a.not_compared,
                    "note": a.note,
                }
                for k, a in self.agreement.items()
            },
            "smmu_commands": self.commands,
            "smmu_commands_note": self.commands_note,
            "divergences": [d.to_dict() for d in self.divergences],
            "missing_probes": self.missing_probes,
            "notes": self.notes,
            "metrics": {**m.scalars(), "cmd_counts": m.cmd_counts},
        }


def parse_qemu_commands(text: str) -> Counter[str]:
    """Command kinds QEMU's SMMUv3 consumed (``smmuv3_cmdq_opcode <--- SMMU_CMD_x``)."""
    return Counter(_QEMU_OP_RE.findall(text))


# ------------------------------------------------------------------------------- model
def _sid_of(dev: str, soc: Any, smmu_name: str) -> int | None:
    """Stream ID of PCI function ``dev`` through the host bridge's iommu-map."""
    m = _BDF_RE.match(dev)
    if m is None:
        return None
    rid = (int(m.group(2), 16) << 8) | (int(m.group(3), 16) << 3) | int(m.group(4))
    for master in soc.masters:
        for im in master.iommu_map:
            if im.iommu == smmu_name and im.rid_base <= rid < im.rid_base + im.length:
                return im.iommu_base + rid - im.rid_base
    return rid


def boot_model(cap: Capture, soc: Any, cfg: ReplayConfig) -> tuple[Any, dict[str, IommuDevice]]:
    """Boot :class:`~socmem.linux.kernel.Kernel` on ``soc`` extended with the capture's
    DMA devices and CMA area, with ``cfg`` applied.  Returns ``(kernel, devices)``."""
    from socmem.linux.kernel import Kernel
    from socmem.soc.schema import Master, Range, ReservedRegion, StreamId

    soc = soc.model_copy(deep=True)
    smmus = [i for i in soc.iommus if i.model.is_arm_smmu]
    if not smmus:
        raise InputError(
            "the SoC has no ARM SMMU to replay the capture on",
            where=soc.name,
            expected="a device tree with an arm,smmu-v3 (or arm,mmu-500) node",
        )
    smmu = smmus[0]
    granule = cfg.granule or _capture_granule(cap)
    smmu.granules = [granule]
    smmu.invalidation = "strict" if _strict(cap, cfg) else "lazy"
    if cfg.iotlb_entries is not None:
        smmu.tlb.iotlb_entries = cfg.iotlb_entries
    names = {m.name for m in soc.masters}
    for dev in cap.devices:
        if dev in names:
            continue
        sid = _sid_of(dev, soc, smmu.name)
        if sid is None:
            continue
        soc.masters.append(
            Master(
                name=dev,
                iommus=[StreamId(iommu=smmu.name, id=sid)],
                dma_mask_bits=64,
                dma_coherent=True,
            )
        )
    if (
        cap.cma_base is not None
        and cap.cma_size
        and not any(r.cma_default for r in soc.reserved_memory)
    ):
        size = cfg.cma_size if cfg.cma_size is not None else cap.cma_size
        soc.reserved_memory.append(
            ReservedRegion(
                name=cap.cma_name,
                compatible=["shared-dma-pool"],
                reg=[Range(base=cap.cma_base, size=size)],
                reusable=True,
                cma_default=True,
            )
        )
    elif cfg.cma_size is not None:
        for r in soc.reserved_memory:
            if r.cma_default and r.reg:
                r.reg = [Range(base=r.reg[0].base, size=cfg.cma_size)]
    kernel = Kernel.boot(
        soc,
        ncpus=max(cap.ncpus, 1),
        invalidation="strict" if _strict(cap, cfg) else "lazy",
        dma_debug=False,
    )
    devices: dict[str, IommuDevice] = {}
    for name, d in kernel.devices.items():
        if d.iommu is not None:
            d.iommu.is_pci = _BDF_RE.match(name) is not None
            devices[name] = d.iommu
    return kernel, devices


def _capture_granule(cap: Capture) -> int:
    for d in cap.domains.values():
        if d.granule:
            return int(d.granule)
    return SZ_4K


def _strict(cap: Capture, cfg: ReplayConfig) -> bool:
    if cfg.strict is not None:
        return cfg.strict
    return cap.strict if cap.strict is not None else True


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def _align_down(x: int, a: int) -> int:
    return x & ~(a - 1)


def _hx(v: int | None) -> str:
    return "none" if v is None else f"{v:#x}"


@dataclass
class _Alloc:
    """A kernel IOVA allocation and the model's counterpart."""

    dom: int
    kernel_iova: int
    kernel_bytes: int
    model_iova: int
    model_bytes: int
    cursor: int = 0


@dataclass
class _Dom:
    """The model objects behind one captured domain."""

    info_name: str
    domain: IommuDomain
    dev: IommuDevice
    cookie: IommuDmaCookie
    iovad: IovaDomain | None = None
    kernel_granule: int = SZ_4K
    tree_log: list[tuple[int, int, int, int]] = field(default_factory=list)
    freed_to_tree: bool = False


class ReplayEngine:
    """Replays one :class:`~socmem.replay.capture.Capture` on a freshly booted model."""

    def __init__(
        self,
        cap: Capture,
        soc: Any,
        cfg: ReplayConfig | None = None,
        *,
        context: int = 5,
        max_divergences: int = 200,
        sample_every: int = 1,
    ) -> None:
        self.cap = cap
        self.cfg = cfg or ReplayConfig()
        self.baseline = self.cfg == ReplayConfig() or self.cfg == ReplayConfig(device_access=False)
        self.kernel, self.devices = boot_model(cap, soc, self.cfg)
        self.strict = _strict(cap, self.cfg)
        self.capture_strict = cap.strict if cap.strict is not None else True
        self.fq_flushes_replayed = 0  # the kernel's flush-queue flushes, replayed (lazy capture)
        self.granule = self.cfg.granule or _capture_granule(cap)
        self.same_granule = self.granule == _capture_granule(cap)
        self.smmu = self._smmu()
        self.smmu.cmdq_log = []
        self.context = context
        self.max_divergences = max_divergences
        self.now = 0
        self.doms: dict[int, _Dom] = {}
        self.allocs: dict[tuple[int, int], _Alloc] = {}
        self.op_alloc: dict[int, _Alloc] = {}
        self.cma_pfns: dict[int, int] = {}
        self.history: dict[tuple[int, int], deque[str]] = {}
        self.diverged_doms: set[int] = set()
        self.result = ReplayResult(cap.source, self.cfg, self.strict)
        self.result.agreement = {k: Agreement() for k in KINDS}
        self.metrics = self.result.metrics
        self._sample_every = sample_every
        self._tlbi_last = -1

    def _smmu(self) -> Any:
        for drv in self.kernel.iommu_drivers.values():
            return drv.smmu
        raise InputError("no SMMU was booted: the capture names no device behind it")

    # -- bookkeeping -----------------------------------------------------------------
    def agree(self, kind: str, ok: bool, c: Call, kernel: str, model: str, why: str = "") -> None:
        """Count one comparison; record a divergence when it fails."""
        a = self.result.agreement[kind]
        a.total += 1
        if ok:
            a.matched += 1
            return
        if len(self.result.divergences) >= self.max_divergences:
            return
        dev = c.dev or (self.doms[c.dom].info_name if c.dom in self.doms else None)
        earlier = c.dom in self.diverged_doms
        explanation = why or _explain(kind, kernel, model)
        if earlier:
            explanation += (
                "; an earlier call on this domain already diverged, so this one may only"
                " follow from it"
            )
        self.diverged_doms.add(c.dom)
        ctx = list(self.history.get((c.dom, c.cpu), ()))
        self.result.divergences.append(
            Divergence(kind, c.line, c.cpu, dev, c.brief(), kernel, model, explanation, ctx)
        )

    def has_probe(self, name: str) -> bool:
        """The capture has events of probe ``name``, or defined it (no hits)."""
        cap = self.cap
        return bool(cap.event_counts.get(name)) or (
            cap.probes_defined is not None and name in cap.probes_defined
        )

    def skip(self, kind: str) -> None:
        """One call of ``kind`` that could not be compared."""
        self.result.agreement[kind].not_compared += 1

    def remember(self, c: Call, model: str = "") -> None:
        """Keep the call in its (domain, CPU) history for divergence context."""
        h = self.history.get((c.dom, c.cpu))
        if h is None:
            h = deque(maxlen=self.context)
            self.history[(c.dom, c.cpu)] = h
        h.append(c.brief() + (f"  [model: {model}]" if model else ""))

    # -- the loop --------------------------------------------------------------------
    def run(self) -> ReplayResult:
        """Replay every call; returns the :class:`ReplayResult`."""
        import time

        t0 = time.perf_counter()
        cap = self.cap
        calls = cap.calls
        self.result.missing_probes = cap.missing_probes()
        self.result.notes.extend(cap.notes[:50])
        handlers: dict[str, Callable[[Call], None]] = {
            "iommu_setup_dma_ops": self.on_setup,
            "init_iova_domain": self.on_init_iova,
            "reserve_iova": self.on_reserve,
            "iommu_dma_alloc_iova": self.on_alloc_request,
            "alloc_iova_fast": self.on_bare_alloc,
            "free_iova_fast": self.on_free,
            "__iommu_map": self.on_map,
            "__iommu_unmap": self.on_unmap,
            "cma_alloc": self.on_cma,
            "cma_release": self.on_cma_release,
            "dma_alloc_contiguous": self.on_contig,
            "fq_flush_iotlb": self.on_fq_flush,
        }
        lazy_model = not self.strict
        for c in calls:
            self.now = c.ts_ns
            if lazy_model:
                for d in self.doms.values():
                    if d.cookie.fq_timer_on:
                        d.cookie.run_timers()
            h = handlers.get(c.kind)
            if h is not None:
                h(c)
        self.finish()
        self.result.events = cap.events
        self.result.calls = len(calls)
        self.result.seconds = time.perf_counter() - t0
        return self.result

    # -- handlers --------------------------------------------------------------------
    def _dom(self, c: Call) -> _Dom | None:
        d = self.doms.get(c.dom)
        if d is not None:
            return d
        info = self.cap.domains.get(c.dom)
        if info is None or not info.devices:
            return None
        dev = self.devices.get(info.devices[0])
        if dev is None or dev.group is None or dev.group.domain is None:
            return None
        domain = dev.group.domain
        cookie = domain.iova_cookie
        if cookie is None:
            return None
        cookie.clock = lambda: self.now
        d = _Dom(info.name, domain, dev, cookie)
        if info.dma_limit is not None:
            dev.dma_mask = dev.coherent_dma_mask = (1 << 64) - 1
        self.doms[c.dom] = d
        return d

    def on_setup(self, c: Call) -> None:
        """``iommu_setup_dma_ops``: bind the device to its model domain (DMA limit, ASID)."""
        d = self._dom(c)
        if d is None:
            self.skip("domain_asid")
            return
        kasid = c.args.get("asid")
        if kasid is None:
            self.skip("domain_asid")
            return
        self.agree("domain_asid", kasid == d.domain.asid, c, str(kasid), str(d.domain.asid))

    def on_init_iova(self, c: Call) -> None:
        """``init_iova_domain``: the domain's IovaDomain at the captured granule and start pfn."""
        d = self._dom(c)
        if d is None:
            return
        kg = int(c.args.get("granule", SZ_4K))
        d.kernel_granule = kg
        g = self.granule
        start = max(1, (int(c.args.get("start_pfn", 1)) * kg) // g)
        iovad = IovaDomain(g, start, max(self.cap.ncpus, 1), self.cfg.rcache)
        inner = iovad.alloc_iova
        log = d.tree_log

        def logged(size: int, limit_pfn: int, size_aligned: bool) -> Any:
            before = iovad.max32_alloc_size
            new = inner(size, limit_pfn, size_aligned)
            log.append((size, limit_pfn, before, new.pfn_lo if new else 0))
            return new

        iovad.alloc_iova = logged  # type: ignore[method-assign]
        inner_free = iovad.free_iova

        def logged_free(pfn: int) -> None:
            d.freed_to_tree = True
            inner_free(pfn)

        iovad.free_iova = logged_free  # type: ignore[method-assign]
        d.iovad = iovad
        d.cookie.iovad = iovad
        self.remember(c)

    def on_reserve(self, c: Call) -> None:
        """``reserve_iova``: reserve the same pfn range in the model's IovaDomain and compare."""
        d = self._dom(c)
        if d is None or d.iovad is None:
            self.skip("reserve_iova")
            return
        kg = d.kernel_granule
        lo_b = int(c.args["pfn_lo"]) * kg
        hi_b = (int(c.args["pfn_hi"]) + 1) * kg - 1
        shift = self.granule.bit_length() - 1
        got = d.iovad.reserve_iova(lo_b >> shift, hi_b >> shift)
        self.agree(
            "reserve_iova", got is not None, c, "reserved", "refused" if got is None else "reserved"
        )
        self.remember(c)

    def _model_size(self, c: Call, d: _Dom) -> int:
        """Bytes the model allocates for this request (granule-aligned)."""
        size = int(c.args["size"])
        g = self.granule
        if self.same_granule:
            return _align_up(size, g)
        parent = self.cap.calls[c.parent] if c.parent is not None else None
        maps = (
            [self.cap.calls[s] for s in parent.children if self.cap.calls[s].kind == "__iommu_map"]
            if parent is not None
            else []
        )
        if not maps:
            return _align_up(size, g)
        total = 0
        for m in maps:
            pa = int(m.args["paddr"])
            total += _align_up(pa + int(m.args["size"]), g) - _align_down(pa, g)
        return total

    def on_alloc_request(self, c: Call) -> None:
        """``iommu_dma_alloc_iova``: allocate through the model's own policy (32-bit first for
        PCI) and compare every ``alloc_iova_fast`` / ``alloc_iova`` it made with the kernel's."""
        d = self._dom(c)
        kids = [
            self.cap.calls[s] for s in c.children if self.cap.calls[s].kind == "alloc_iova_fast"
        ]
        if d is None or d.iovad is None:
            for _ in kids:
                self.skip("alloc_iova_fast")
            return
        iovad = d.iovad
        size_m = self._model_size(c, d)
        limit = int(c.args.get("dma_limit", DMA_BIT_MASK_32))
        if self.cfg.dma_limit is not None:
            limit = min(limit, self.cfg.dma_limit)
        fast_calls: list[
            tuple[int, int, bool, int, str | None, list[tuple[int, int, int, int]]]
        ] = []
        inner = iovad.alloc_iova_fast

        def logged(size: int, limit_pfn: int, flush_rcache: bool, cpu: int = 0) -> int:
            d.tree_log.clear()
            pfn = inner(size, limit_pfn, flush_rcache, cpu)
            fast_calls.append(
                (size, limit_pfn, flush_rcache, pfn, iovad.last_source, list(d.tree_log))
            )
            return pfn

        iovad.alloc_iova_fast = logged  # type: ignore[method-assign]
        try:
            iova = iommu_dma_alloc_iova(d.domain, size_m, limit, d.dev, c.cpu)
        finally:
            del iovad.alloc_iova_fast
        m = self.metrics
        for fc in fast_calls:
            if fc[4] == "rcache":
                m.rcache_hits += 1
            m.tree_allocations += len(fc[5])
        if not iova:
            m.iova_alloc_failures += 1
        self._compare_allocs(c, kids, fast_calls, d)
        kernel_pfn = next((int(k.result.get("pfn", 0)) for k in kids if k.result.get("pfn")), 0)
        if iova and kernel_pfn:
            kiova = kernel_pfn * d.kernel_granule
            rec = _Alloc(c.dom, kiova, int(c.args["size"]), iova, size_m)
            self.allocs[(c.dom, kernel_pfn)] = rec
            if c.parent is not None:
                self.op_alloc[c.parent] = rec
        self._sample(c.dom, d)

    def _compare_allocs(
        self,
        c: Call,
        kids: list[Call],
        fast_calls: list[tuple[int, int, bool, int, str | None, list[tuple[int, int, int, int]]]],
        d: _Dom,
    ) -> None:
        if not self.baseline:
            for kid in kids:
                self.remember(kid)
            return
        n = max(len(kids), len(fast_calls))
        for i in range(n):
            k = kids[i] if i < len(kids) else None
            f = fast_calls[i] if i < len(fast_calls) else None
            if k is None:
                assert f is not None
                self.agree(
                    "alloc_iova_fast",
                    False,
                    c,
                    "no such call",
                    f"alloc_iova_fast(size={f[0]}, limit_pfn={f[1]:#x},"
                    f" flush={int(f[2])}) -> {f[3]:#x}",
                    "the model made an alloc_iova_fast call the kernel did not make",
                )
                continue
            if "pfn" not in k.result:
                self.skip("alloc_iova_fast")
                self.skip("rcache_vs_tree")
                self.remember(k, "result unknown")
                continue
            kp = int(k.result["pfn"])
            if f is None:
                self.agree(
                    "alloc_iova_fast",
                    False,
                    k,
                    f"pfn={kp:#x}",
                    "no such call",
                    "the kernel made an alloc_iova_fast call the model did not make",
                )
                continue
            ka = (int(k.args["size"]), int(k.args["limit_pfn"]), bool(k.args["flush_rcache"]))
            same_args = ka == (f[0] if f[0] == ka[0] else -1, f[1], f[2]) or (
                ka[1] == f[1] and ka[2] == f[2] and _round(ka[0]) == f[0]
            )
            ok = same_args and kp == f[3]
            self.agree(
                "alloc_iova_fast",
                ok,
                k,
                f"size={ka[0]} limit_pfn={ka[1]:#x} flush={int(ka[2])} -> pfn={kp:#x}",
                f"size={f[0]} limit_pfn={f[1]:#x} flush={int(f[2])} -> pfn={f[3]:#x}",
            )
            trees = [
                self.cap.calls[s] for s in k.children if self.cap.calls[s].kind == "alloc_iova"
            ]
            ksrc = "tree" if trees else "rcache"
            if kp == 0 and not trees:
                ksrc = "none"
            msrc = f[4] or "none"
            self.agree("rcache_vs_tree", ksrc == msrc, k, ksrc, msrc)
            for j in range(max(len(trees), len(f[5]))):
                t = trees[j] if j < len(trees) else None
                mt = f[5][j] if j < len(f[5]) else None
                if t is None or mt is None:
                    self.agree(
                        "alloc_iova",
                        False,
                        k,
                        "no rbtree call" if t is None else "rbtree call",
                        "no rbtree call" if mt is None else "rbtree call",
                    )
                    continue
                kt = (
                    int(t.args["size"]),
                    int(t.args["limit_pfn"]),
                    int(t.args.get("max32_alloc_size", mt[2])),
                    int(t.result.get("pfn_lo", 0)) if t.result.get("iova") else 0,
                )
                self.agree(
                    "alloc_iova",
                    kt == mt,
                    t,
                    "size={} limit={:#x} max32={:#x} -> {:#x}".format(*kt),
                    "size={} limit={:#x} max32={:#x} -> {:#x}".format(*mt),
                )
            self.remember(k, f"pfn={f[3]:#x} ({msrc})")

    def on_bare_alloc(self, c: Call) -> None:
        """An alloc_iova_fast with no iommu_dma_alloc_iova around it (probe missing or a
        caller other than dma-iommu): replay it with the kernel's arguments."""
        if c.parent is not None and self.cap.calls[c.parent].kind == "iommu_dma_alloc_iova":
            return
        d = self._dom(c)
        if d is None or d.iovad is None:
            self.skip("alloc_iova_fast")
            return
        fake = Call(c.seq, "iommu_dma_alloc_iova", c.line, c.ts_ns, c.cpu, c.pid, c.ctx, c.phase)
        fake.dom = c.dom
        fake.dev = c.dev
        fake.children = [c.seq]
        d.tree_log.clear()
        iovad = d.iovad
        pfn = iovad.alloc_iova_fast(
            int(c.args["size"]), int(c.args["limit_pfn"]), bool(c.args["flush_rcache"]), c.cpu
        )
        fc = (
            _round(int(c.args["size"])),
            int(c.args["limit_pfn"]),
            bool(c.args["flush_rcache"]),
            pfn,
            iovad.last_source,
            list(d.tree_log),
        )
        self._compare_allocs(fake, [c], [fc], d)
        kp = int(c.result.get("pfn", 0))
        if pfn and kp:
            g = self.granule
            rec = _Alloc(
                c.dom,
                kp * d.kernel_granule,
                int(c.args["size"]) * d.kernel_granule,
                pfn * g,
                _round(int(c.args["size"])) * g,
            )
            self.allocs[(c.dom, kp)] = rec
            if c.parent is not None:
                self.op_alloc[c.parent] = rec

    def _find_alloc(self, c: Call, kiova: int, d: _Dom) -> _Alloc | None:
        if c.parent is not None:
            rec = self.op_alloc.get(c.parent)
            if (
                rec is not None
                and rec.kernel_iova
                <= kiova
                < rec.kernel_iova + max(rec.kernel_bytes, 1) + d.kernel_granule
            ):
                return rec
        return self.allocs.get((c.dom, kiova // d.kernel_granule))

    def on_free(self, c: Call) -> None:
        """``free_iova_fast`` / ``free_iova``: free the model's IOVA for the kernel's and compare
        whether it went to the rcache or back to the tree."""
        d = self._dom(c)
        if d is None or d.iovad is None:
            self.skip("free_iova_fast")
            return
        kpfn = int(c.args["pfn"])
        rec = self.allocs.pop((c.dom, kpfn), None)
        if rec is None:
            if self.baseline:
                rec = _Alloc(
                    c.dom,
                    kpfn * d.kernel_granule,
                    0,
                    kpfn * self.granule,
                    int(c.args["size"]) * self.granule,
                )
            else:
                self.skip("free_iova_fast")
                return
        shift = self.granule.bit_length() - 1
        mpfn = rec.model_iova >> shift
        msize = int(c.args["size"]) if self.same_granule else rec.model_bytes >> shift
        if not self.strict and self.capture_strict:
            d.cookie.queue_iova(mpfn, msize, c.cpu)
            self.skip("free_iova_fast")
            self.remember(c, "queued")
        else:
            d.freed_to_tree = False
            d.iovad.free_iova_fast(mpfn, msize, c.cpu)
            if self.baseline:
                k = "tree" if c.result.get("to_tree") else "rcache"
                mm = "tree" if d.freed_to_tree else "rcache"
                self.agree("free_iova_fast", k == mm, c, k, mm)
            self.remember(c)
        self._sample(c.dom, d)

    def on_map(self, c: Call) -> None:
        """``__iommu_map``: map the kernel's paddr at the model's IOVA; compare the mapping
        and the page-table pages it allocated."""
        d = self._dom(c)
        if d is None:
            self.skip("iommu_map")
            return
        g = self.granule
        kiova = int(c.args["iova"])
        paddr = int(c.args["paddr"])
        size = int(c.args["size"])
        prot = int(c.args.get("prot", 3))
        gfp = GFP_KERNEL if int(c.args.get("gfp", 0)) == 0xCC0 else GFP_ATOMIC
        rec = self._find_alloc(c, kiova, d)
        if self.same_granule:
            miova = rec.model_iova + (kiova - rec.kernel_iova) if rec is not None else kiova
            mpa, msize = paddr, size
        else:
            if rec is None:
                self.skip("iommu_map")
                return
            mpa = _align_down(paddr, g)
            msize = _align_up(paddr + size, g) - mpa
            miova = rec.model_iova + rec.cursor
            rec.cursor += msize
        if rec is None and not self.baseline:
            self.skip("iommu_map")
            return
        ops = d.domain.ops
        before = ops.tables_allocated if ops is not None else 0
        ret = iommu_map(d.domain, miova, mpa, msize, prot, gfp)
        grown = (ops.tables_allocated if ops is not None else 0) - before
        self._track_pgtables()
        if ret:
            self.metrics.map_failures += 1
        elif self.cfg.device_access:
            self._device_access(d, miova, msize, prot)
        model = (
            f"refused: {errno_name(-ret)}"
            if ret
            else f"iova={miova:#x} paddr={ops.iova_to_phys(miova) if ops else 0:#x} size={msize:#x}"
        )
        if self.baseline:
            if c.result.get("ok"):
                k = (int(c.result["iova"]), int(c.result["paddr"]), int(c.result["size"]))
                mres = (miova, ops.iova_to_phys(miova) if ops and not ret else -1, msize)
                ok = not ret and mres == k
                why = ""
                if ret:
                    why = f"the model refuses this mapping ({errno_name(-ret)}): " + (
                        "something is already mapped there in the model"
                        if -ret == 17
                        else "see the model's iommu log"
                    )
                self.agree(
                    "iommu_map",
                    ok,
                    c,
                    f"iova={k[0]:#x} paddr={k[1]:#x} size={k[2]:#x}",
                    model,
                    why,
                )
            else:
                self.skip("iommu_map")
            if self.has_probe("arm_lpae_alloc_pages"):
                kp = sum(1 for s in c.children if self.cap.calls[s].kind == "arm_lpae_alloc_pages")
                self.agree(
                    "pgtable_alloc", kp == grown, c, f"{kp} table pages", f"{grown} table pages"
                )
            else:
                self.skip("pgtable_alloc")
        self.remember(c, model)

    def on_unmap(self, c: Call) -> None:
        """``__iommu_unmap`` (+ its iotlb sync): unmap on the model; compare the unmapped size,
        the page-table pages freed, the gathered range and the SMMU commands issued."""
        d = self._dom(c)
        if d is None:
            self.skip("iommu_unmap")
            return
        kiova = int(c.args["iova"])
        size = int(c.args["size"])
        rec = self._find_alloc(c, kiova, d)
        if self.same_granule:
            miova = rec.model_iova + (kiova - rec.kernel_iova) if rec is not None else kiova
            msize = size
        else:
            if rec is None or kiova != rec.kernel_iova:
                self.skip("iommu_unmap")
                return
            miova, msize = rec.model_iova, rec.model_bytes
        if rec is None and not self.baseline:
            self.skip("iommu_unmap")
            return
        if self.cfg.device_access:
            # the device's last access before the driver unmaps (completion/status)
            self._device_access(d, miova, min(msize, self.granule), 2)
        ops = d.domain.ops
        freed_before = ops.tables_freed if ops is not None else 0
        log = self.smmu.cmdq_log
        n0 = len(log)
        gather = IommuIotlbGather()
        gather.queued = not self.strict
        unmapped = iommu_unmap_fast(d.domain, miova, msize, gather)
        freed = (ops.tables_freed if ops is not None else 0) - freed_before
        kids = [self.cap.calls[s] for s in c.children]
        sync = next((k for k in kids if k.kind == "arm_smmu_iotlb_sync"), None)
        gathered = (gather.start, gather.end, gather.pgsize)
        if not gather.queued:
            iommu_iotlb_sync(d.domain, gather)
        self._track_tlbi()
        if self.baseline:
            ku = c.result.get("unmapped")
            if ku is None:
                self.skip("iommu_unmap")
            else:
                self.agree(
                    "iommu_unmap", ku == unmapped, c, f"unmapped={ku:#x}", f"unmapped={unmapped:#x}"
                )
            if self.has_probe("arm_lpae_free_pages"):
                kf = sum(1 for k in kids if k.kind == "arm_lpae_free_pages")
                self.agree(
                    "pgtable_free", kf == freed, c, f"{kf} table pages", f"{freed} table pages"
                )
            else:
                self.skip("pgtable_free")
            if sync is not None and self.capture_strict:
                ks = (int(sync.args["start"]), int(sync.args["end"]), int(sync.args["pgsize"]))
                self.agree(
                    "iotlb_sync",
                    ks == gathered,
                    sync,
                    "start={:#x} end={:#x} pgsize={:#x}".format(*ks),
                    "start={:#x} end={:#x} pgsize={:#x}".format(*gathered),
                )
            elif self.capture_strict:
                self.skip("iotlb_sync")
            kc: Counter[str] = Counter()
            for k in kids:
                if k.kind == "arm_smmu_cmdq_issue_cmdlist":
                    _add_cmdlist(kc, k)
            for s in kids:
                if s.kind in ("arm_smmu_iotlb_sync",):
                    for x in s.children:
                        _add_cmdlist(kc, self.cap.calls[x])
            mc = Counter(log[n0:])
            if self.has_probe("arm_smmu_cmdq_issue_cmdlist"):
                self.agree("smmu_cmds_per_call", kc == mc, c, _cmds(kc), _cmds(mc))
            else:
                self.skip("smmu_cmds_per_call")
        self.remember(c, f"unmapped={unmapped:#x}")

    def on_fq_flush(self, c: Call) -> None:
        """Lazy capture: the kernel's flush-queue flush, replayed at the same moment."""
        if self.strict or self.capture_strict:
            return
        d = self._dom(c)
        if d is not None:
            iommu_flush_iotlb_all(d.domain)
            self.fq_flushes_replayed += 1
            self._track_tlbi()

    def on_cma(self, c: Call) -> None:
        """``cma_alloc``: allocate the same count and alignment from the model's CMA area and
        compare the pfn."""
        mem = self.kernel.mem
        cma = mem.cma_areas.get(str(c.args.get("name"))) or mem.default_cma
        if cma is None:
            self.skip("cma_alloc")
            self.metrics.cma_failures += 1
            return
        pfn = cma.cma_alloc(int(c.args["count"]), int(c.args["align"]), no_warn=True)
        if pfn is None:
            self.metrics.cma_failures += 1
        used = cma.used() if callable(getattr(cma, "used", None)) else 0
        self.metrics.cma_pages_peak = max(self.metrics.cma_pages_peak, int(used))
        kp = c.result.get("pfn")
        if kp and pfn is not None:
            self.cma_pfns[int(kp)] = pfn
        if self.baseline and kp is not None:
            self.agree(
                "cma_alloc",
                (pfn or 0) == kp,
                c,
                f"pfn={kp:#x}" if kp else "failed",
                f"pfn={pfn:#x}" if pfn else "failed",
            )
        elif kp is None:
            self.skip("cma_alloc")
        self.remember(c, f"pfn={pfn:#x}" if pfn else "failed")

    def on_cma_release(self, c: Call) -> None:
        """``cma_release``: give the model's range back."""
        mem = self.kernel.mem
        cma = mem.cma_areas.get(str(c.args.get("name"))) or mem.default_cma
        mp = self.cma_pfns.pop(int(c.args["pfn"]), None)
        if cma is not None and mp is not None:
            cma.cma_release(mp, int(c.args["count"]))

    def on_contig(self, c: Call) -> None:
        """``dma_alloc_contiguous()`` (6.1): CMA only for blocking requests larger than a
        page (no per-device area in this capture)."""
        size = int(c.args.get("size", 0))
        gfp = int(c.args.get("gfp", 0))
        blocking = bool(gfp & 0x400)  # __GFP_DIRECT_RECLAIM
        model_cma = blocking and size > SZ_4K and self.kernel.mem.default_cma is not None
        if "page" not in c.result:
            self.skip("dma_alloc_contiguous")
            return
        kernel_cma = int(c.result["page"]) != 0
        if self.baseline:
            self.agree(
                "dma_alloc_contiguous",
                kernel_cma == model_cma,
                c,
                "CMA" if kernel_cma else "not CMA",
                "CMA" if model_cma else "not CMA",
            )

    # -- device accesses, metrics ----------------------------------------------------
    def _device_access(self, d: _Dom, iova: int, size: int, prot: int) -> None:
        """The device touches every granule of a new mapping once (write if it may
        write and not read, else read): this drives the detailed IOTLB."""
        sid = d.dev.sids[0][0] if d.dev.sids else None
        if sid is None:
            return
        g = self.granule
        write = bool(prot & 2) and not prot & 1
        tr = self.smmu.translate
        for off in range(0, size, g):
            tr(sid, iova + off, write)

    def _track_pgtables(self) -> None:
        total = 0
        for d in self.doms.values():
            if d.domain.ops is not None:
                total += d.domain.ops.table_pages
        m = self.metrics
        if total > m.pgtable_pages_peak:
            m.pgtable_pages_peak = total

    def _track_tlbi(self) -> None:
        n = self.smmu.tlbi_commands
        if n != self._tlbi_last:
            self._tlbi_last = n
            self.metrics.tlbi_series.append((self.now / 1e9, n))

    def _sample(self, dom: int, d: _Dom) -> None:
        if d.iovad is None:
            return
        used = d.iovad.allocated_pages
        s = self.metrics.iova_used_series.setdefault(d.info_name, [])
        s.append((self.now / 1e9, used * self.granule / 1024))
        total = sum(x.iovad.allocated_pages for x in self.doms.values() if x.iovad is not None)
        if total > self.metrics.iova_pages_peak:
            self.metrics.iova_pages_peak = total

    def finish(self) -> None:
        """Totals: SMMU commands per kind (model, kernel trace, QEMU), metrics, and the
        map_page dma_addr comparison."""
        cap = self.cap
        res = self.result
        m = self.metrics
        # dma_addr of iommu_dma_map_page: model iova + offset inside the granule (input)
        for c in cap.calls:
            if c.kind != "iommu_dma_map_page":
                continue
            rec = self.op_alloc.get(c.seq)
            kd = c.result.get("dma_addr")
            if kd is None or rec is None or not self.baseline:
                self.skip("dma_map_page")
                continue
            md = rec.model_iova + (int(c.args.get("offset", 0)) & (self.granule - 1))
            self.agree("dma_map_page", md == kd, c, f"{kd:#x}", f"{md:#x}")
        # SMMU commands
        model = Counter(self.smmu.cmd_counts)
        trace: Counter[str] = Counter()
        for c in cap.calls:
            if c.kind == "arm_smmu_cmdq_issue_cmdlist":
                _add_cmdlist(trace, c)
        kinds = sorted(set(model) | set(trace))
        res.commands = {"model": dict(model), "kernel_trace": dict(trace)}
        if cap.qemu_log is not None:
            q = parse_qemu_commands(cap.qemu_log)
            res.commands["qemu"] = dict(q)
            kinds = sorted(set(kinds) | set(q))
        if self.baseline and (
            "qemu" in res.commands or self.has_probe("arm_smmu_cmdq_issue_cmdlist")
        ):
            ref_name = "qemu" if "qemu" in res.commands else "kernel_trace"
            ref = res.commands[ref_name]
            # a lazy model flushing on its own timer cannot match the kernel's flush count;
            # replaying a lazy capture, the model flushes when the kernel did: comparable
            own_timer = not self.strict and self.capture_strict
            timing = {"SMMU_CMD_TLBI_NH_ASID", "SMMU_CMD_SYNC"} if own_timer else set()
            for k in kinds:
                key = f"smmu_cmd:{k}"
                a = res.agreement.setdefault(key, Agreement())
                if k in timing:
                    a.not_compared += 1
                    a.note = "lazy mode: depends on the flush-queue timer"
                    continue
                a.total += 1
                a.note = f"model vs {ref_name}"
                if model.get(k, 0) == ref.get(k, 0):
                    a.matched += 1
                else:
                    res.divergences.append(
                        Divergence(
                            key,
                            0,
                            -1,
                            None,
                            f"total {k}",
                            f"{ref.get(k, 0)} ({ref_name})",
                            str(model.get(k, 0)),
                            "the totals of this SMMU command kind differ",
                        )
                    )
            res.commands_note = f"compared with {ref_name}" + (
                "; lazy: TLBI_NH_ASID and SYNC depend on the timer" if own_timer else ""
            )
        # metrics
        m.cmd_counts = dict(model)
        m.commands_total = sum(model.values())
        m.invalidation_commands = self.smmu.tlbi_commands
        m.iotlb_hits = int(getattr(self.smmu.iotlb, "hits", 0))
        m.iotlb_misses = int(getattr(self.smmu.iotlb, "misses", 0))
        self._track_pgtables()
        m.pgtable_pages_final = sum(
            d.domain.ops.table_pages for d in self.doms.values() if d.domain.ops is not None
        )
        m.pgtable_bytes_peak = m.pgtable_pages_peak * self.granule
        m.iova_bytes_peak = m.iova_pages_peak * self.granule
        m.fq_flushes = (
            sum(d.cookie.fq_flushes for d in self.doms.values()) + self.fq_flushes_replayed
        )
        frees = gaps = 0
        for d in self.doms.values():
            if d.iovad is None or d.iovad.allocated_pages == 0:
                continue
            limit = DMA_BIT_MASK_32 >> (self.granule.bit_length() - 1)
            free = d.iovad.free_pages(limit)
            gap = d.iovad.largest_free_gap(limit)
            frees += free
            gaps += gap
            m.iova_largest_gap_bytes = max(m.iova_largest_gap_bytes, gap * self.granule)
        # fragmentation: 1 - largest free run / free space, averaged over used domains
        fr = [
            1
            - d.iovad.largest_free_gap(DMA_BIT_MASK_32 >> (self.granule.bit_length() - 1))
            / max(1, d.iovad.free_pages(DMA_BIT_MASK_32 >> (self.granule.bit_length() - 1)))
            for d in self.doms.values()
            if d.iovad is not None and d.iovad.allocated_pages
        ]
        m.iova_fragmentation = round(sum(fr) / len(fr), 6) if fr else 0.0
        if not self.baseline:
            res.agreement = {}
        if not self.capture_strict:
            res.notes.append(
                "the capture is in lazy mode: when IOVAs are freed and the IOTLB flushed"
                " depends on the flush-queue timer; the replay frees them when the kernel"
                " did (free_iova_fast events) and flushes when it did (fq_flush_iotlb),"
                " and compares everything else"
            )


def _round(size: int) -> int:
    """alloc_iova_fast's rounding: below 32 granules, up to a power of two."""
    if size < 32:
        return 1 << (size - 1).bit_length()
    return size


def _add_cmdlist(counter: Counter[str], c: Call) -> None:
    if c.kind != "arm_smmu_cmdq_issue_cmdlist":
        return
    n = int(c.args.get("n", 0))
    if n:
        op = int(c.args.get("op", 0))
        counter[CMD_NAMES.get(op, f"SMMU_CMD_{op:#04x}")] += n
    if c.args.get("sync"):
        counter["SMMU_CMD_SYNC"] += 1


def _cmds(c: Counter[str]) -> str:
    if not c:
        return "none"
    return " ".join(f"{k.removeprefix('SMMU_CMD_')}x{v}" for k, v in sorted(c.items()))


def _explain(kind: str, kernel: str, model: str) -> str:
    if kind in ("alloc_iova_fast", "rcache_vs_tree", "alloc_iova"):
        return (
            "the IOVA differs: compare the frees and allocations before it on this domain"
            " and CPU (an rcache magazine in a different state, or a free the capture"
            " lacks)"
        )
    if kind == "cma_alloc":
        return (
            "the CMA range differs: the CMA bitmap differs (an allocation or release the"
            " capture does not show, e.g. one made before the probes existed, or a"
            " different area size or base)"
        )
    if kind == "iommu_map":
        return "the page-table mapping differs"
    if kind in ("pgtable_alloc", "pgtable_free"):
        return "io-pgtable allocated or freed a different number of table pages"
    if kind in ("iotlb_sync", "smmu_cmds_per_call"):
        return "a different invalidation was issued for this unmap"
    return f"{kind} differs"


def replay(cap: Capture, soc: Any, cfg: ReplayConfig | None = None, **kw: Any) -> ReplayResult:
    """Boot the model for ``cap`` on ``soc`` with ``cfg`` and replay the whole history."""
    return ReplayEngine(cap, soc, cfg, **kw).run()
