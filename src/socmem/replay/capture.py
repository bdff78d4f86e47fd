"""Rebuild a real kernel's DMA history from a capture: the ordered calls, per device,
domain, iova_domain and CPU, each with the kernel's inputs and the kernel's results.

A capture is an ftrace text file (``trace.txt``), a directory holding one, or a tarball
written by ``socmem capture`` (:mod:`socmem.trace.capture`).  The history is read from
the kprobes of the replay probe set (``kprobe_events.txt`` of
``fixtures/real-kernel/qemu-virt-smmuv3-replay``): the DMA API of dma-iommu.c
(``iommu_dma_map_page`` ... with their kretprobes), ``iommu_dma_alloc_iova``, iova.c
(``init_iova_domain``, ``reserve_iova``, ``alloc_iova_fast`` / ``alloc_iova`` with
returns, ``free_iova_fast`` / ``free_iova``), the IOMMU core (``__iommu_map``,
``__iommu_unmap`` + the upstream ``iommu:map`` / ``iommu:unmap`` events that carry the
results), io-pgtable-arm (``__arm_lpae_alloc_pages`` / ``__arm_lpae_free_pages``), the
SMMUv3 driver (``arm_smmu_iotlb_sync``, ``arm_smmu_tlb_inv_walk``,
``arm_smmu_tlb_inv_context``, ``arm_smmu_cmdq_issue_cmdlist``), the flush queue
(``fq_flush_iotlb`` ...) and CMA (``dma_alloc_contiguous`` + ``cma:cma_alloc_start`` /
``cma_alloc_finish`` / ``cma_release``).

Matching follows the fixture README: a ``*_ret`` goes to the latest unmatched entry of
the same function with the same pid and CPU; the calls that may sleep (GFP_KERNEL:
``iommu_dma_alloc``, ``dma_alloc_contiguous``, ``arm_lpae_alloc_pages`` with gfp 0xcc0)
are matched by pid alone.  Work done in interrupt context runs under the interrupted
task's pid; the hardirq/softirq flag keeps it apart from the task's own calls.

Identity: ``iommu_setup_dma_ops`` gives dev → dom, cookie, ASID, ttbr and DMA limit; the
``iova_domain`` is embedded in the cookie at offset 8 (6.1 ``struct iommu_dma_cookie``),
which is how the IOVA-allocator events (they carry only ``iovad``) find their domain.
Without that probe, ``iommu_dma_alloc_iova`` (dev, dom, cookie) supplies the same link.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from socmem.errors import InputError
from socmem.infile import read_text
from socmem.trace.events import CmaAllocStart, CmaRange, IommuMap, IommuUnmap, KprobeEvent
from socmem.trace.ftrace import FtraceReader

__all__ = [
    "COOKIE_IOVAD_OFFSET",
    "Call",
    "Capture",
    "CaptureFiles",
    "DomainInfo",
    "build_capture",
    "load_capture",
    "read_capture_files",
]

#: 6.1 ``struct iommu_dma_cookie``: ``enum iommu_dma_cookie_type type`` (4 bytes, padded
#: to 8), then the embedded ``struct iova_domain iovad``.
COOKIE_IOVAD_OFFSET = 0x8
#: ``struct arm_smmu_domain`` holds its ``struct iommu_domain`` at this offset (6.1 arm64).
SMMU_DOMAIN_OFFSET = 0x98

GFP_KERNEL = 0xCC0

#: outer DMA-API operations (dma-iommu's dma_map_ops) and what their kretprobe returns
OUTER_OPS = {
    "iommu_dma_map_page": "dma_addr",
    "iommu_dma_unmap_page": None,
    "iommu_dma_map_sg": "count",
    "iommu_dma_unmap_sg": None,
    "iommu_dma_alloc": "cpu_addr",
    "iommu_dma_free": None,
    "iommu_dma_prepare_msi": None,
    "iommu_dma_map_resource": "dma_addr",
    "iommu_dma_unmap_resource": None,
}
_RET_FUNCS = {
    "iommu_dma_map_page",
    "iommu_dma_map_sg",
    "iommu_dma_alloc",
    "alloc_iova_fast",
    "alloc_iova",
    "dma_alloc_contiguous",
    "arm_lpae_alloc_pages",
}
#: the probes a full replay needs, by what they give
REQUIRED_PROBES = {
    "alloc_iova_fast": "the IOVA allocations to re-execute (size, limit, CPU)",
    "alloc_iova_fast_ret": "the kernel's IOVA results",
    "free_iova_fast": "the IOVA frees",
    "init_iova_domain": "each iova_domain's granule and start pfn",
    "__iommu_map": "the page-table mappings (iova, paddr, size, prot)",
    "__iommu_unmap": "the unmaps",
}
#: events that may come between a command-issuing call and its cmdlist
_KEEP_CMD_OWNER = {
    "unmap",
    "arm_smmu_iotlb_sync",
    "arm_smmu_tlb_inv_walk",
    "arm_lpae_free_pages",
    "arm_smmu_cmdq_issue_cmdlist",
    "arm_smmu_tlb_inv_context",
    "fq_flush_iotlb",
    "fq_flush_timeout",
    "__iommu_unmap",
}
_TS_RE = re.compile(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)")


@dataclass
class Call:
    """One kernel call read from the capture: inputs in ``args``, results in ``result``.

    ``kind`` is the kernel function (``alloc_iova_fast``, ``__iommu_map``,
    ``cma_alloc`` ...); ``dom`` is the ``struct iommu_domain *`` it acts on (0 when none),
    ``parent`` the enclosing call (e.g. the ``iommu_dma_map_page`` around an
    ``alloc_iova_fast``) and ``children`` the nested ones, in order.
    """

    seq: int
    kind: str
    line: int
    ts_ns: int
    cpu: int
    pid: int
    ctx: str
    phase: str
    dev: str | None = None
    dom: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    parent: int | None = None
    children: list[int] = field(default_factory=list)

    def brief(self) -> str:
        """One line: ``#12 line 345 cpu1 alloc_iova_fast(size=1 ...) -> pfn=0xfffff``."""
        a = " ".join(f"{k}={_fmt(v)}" for k, v in self.args.items())
        r = " ".join(f"{k}={_fmt(v)}" for k, v in self.result.items())
        return f"line {self.line} cpu{self.cpu} {self.kind}({a})" + (f" -> {r}" if r else "")


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int):
        return str(v)
    return f"{v:#x}" if v > 9 else str(v)


@dataclass
class DomainInfo:
    """A DMA domain of the capture: its devices and the kernel pointers naming it."""

    dom: int
    devices: list[str] = field(default_factory=list)
    cookie: int = 0
    iovad: int = 0
    asid: int | None = None
    ttbr: int | None = None
    group: int | None = None
    dma_limit: int | None = None
    granule: int | None = None
    start_pfn: int | None = None

    @property
    def name(self) -> str:
        """The first device's name (``0000:00:01.0``) or the pointer."""
        return self.devices[0] if self.devices else f"dom@{self.dom:#x}"


@dataclass
class CaptureFiles:
    """The texts of a capture: the trace and what lies beside it."""

    source: str
    trace_text: str
    side: dict[str, str] = field(default_factory=dict)
    dtb: bytes | None = None


@dataclass
class Capture:
    """The rebuilt history: every call in trace order plus the configuration read from
    the capture (strict/lazy, CPUs, CMA area, probes that were defined)."""

    source: str
    calls: list[Call] = field(default_factory=list)
    domains: dict[int, DomainInfo] = field(default_factory=dict)
    iovad_dom: dict[int, int] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)
    ncpus: int = 1
    strict: bool | None = None
    cmdline: str = ""
    cma_base: int | None = None
    cma_size: int | None = None
    cma_name: str = "reserved"
    probes_defined: set[str] | None = None
    event_counts: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    qemu_log: str | None = None
    dtb: bytes | None = None
    events: int = 0

    def by_kind(self, kind: str) -> list[Call]:
        """Every call of ``kind``, in order."""
        return [c for c in self.calls if c.kind == kind]

    def missing_probes(self) -> dict[str, str]:
        """Probes the replay needs that produced no event and (if known) were not
        defined: name → what is lost without it."""
        out = {}
        for probe, what in REQUIRED_PROBES.items():
            if self.event_counts.get(probe):
                continue
            if self.probes_defined is not None and probe in self.probes_defined:
                continue  # defined, just no hits
            out[probe] = what
        return out

    def domain_of_call(self, c: Call) -> DomainInfo | None:
        """The DomainInfo a call acts on."""
        return self.domains.get(c.dom)


# ------------------------------------------------------------------------ reading files
_SIDE = (
    "proc-cmdline.txt",
    "dmesg.txt",
    "kprobe_events.txt",
    "probe-results.txt",
    "qemu-host-trace.log",
    "trace-stats.txt",
    "iommu_groups.txt",
    "pci-devices.txt",
)


def read_capture_files(path: str | Path) -> CaptureFiles:
    """Read a capture: a trace file (side files taken from its directory), a directory
    with ``trace.txt``, or a ``socmem capture`` tarball.  InputError when unreadable."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or directory", where=str(p), expected="a capture")
    if p.is_dir():
        trace = p / "trace.txt"
        if not trace.is_file():
            raise InputError(
                "no trace.txt in this directory", where=str(p), expected="a capture directory"
            )
        return _from_dir(p, trace)
    if p.name.endswith((".tar.gz", ".tgz", ".tar", ".tar.xz", ".tar.bz2")) or _is_tar(p):
        return _from_tar(p)
    return _from_dir(p.parent, p)


def _is_tar(p: Path) -> bool:
    try:
        return tarfile.is_tarfile(p)
    except OSError:
        return False


def _read_text(p: Path) -> str:
    return read_text(p, "a capture file", strict=False)


#: what the ring buffer held before the capture cleared it (boot-time events, e.g. the CMA
#: allocations made before the SMMU probed): replayed first, when the capture has it
BOOT_TRACE = "boot-trace.txt"


def _from_dir(d: Path, trace: Path) -> CaptureFiles:
    text = _read_text(trace)
    boot = d / BOOT_TRACE
    if trace.name == "trace.txt" and boot.is_file():
        text = _read_text(boot) + text
    files = CaptureFiles(str(trace), text)
    for name in _SIDE:
        f = d / name
        if f.is_file():
            files.side[name] = _read_text(f)
    for name in ("fdt.dtb", "guest-fdt.dtb"):
        f = d / name
        if f.is_file():
            files.dtb = f.read_bytes()
            break
    return files


def _from_tar(p: Path) -> CaptureFiles:
    try:
        with tarfile.open(p) as tar:
            texts: dict[str, bytes] = {}
            for m in tar.getmembers():
                if not m.isfile():
                    continue
                fh = tar.extractfile(m)
                if fh is not None:
                    texts[Path(m.name).name] = fh.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InputError(f"not a readable tarball: {exc}", where=str(p)) from None
    if "trace.txt" not in texts:
        raise InputError("the tarball holds no trace.txt", where=str(p), expected="a capture")
    text = texts["trace.txt"].decode("utf-8", "replace")
    if BOOT_TRACE in texts:
        text = texts[BOOT_TRACE].decode("utf-8", "replace") + text
    files = CaptureFiles(f"{p}:trace.txt", text)
    for name in _SIDE:
        if name in texts:
            files.side[name] = texts[name].decode("utf-8", "replace")
    files.dtb = texts.get("fdt.dtb") or texts.get("guest-fdt.dtb")
    return files


def load_capture(path: str | Path) -> Capture:
    """:func:`read_capture_files` then :func:`build_capture`."""
    return build_capture(read_capture_files(path))


# ------------------------------------------------------------------------ the rebuild
def _ctx(flags: str | None) -> str:
    if flags and len(flags) >= 3:
        c = flags[2]
        if c in "hH":
            return "hardirq"
        if c == "s":
            return "softirq"
    return "task"


_CMA_RE = re.compile(r"cma: Reserved (\d+) MiB at (0x[0-9a-f]+)")
_STRICT_RE = re.compile(r"(?:^|\s)iommu\.strict=(\S+)")
_PASSTHROUGH_RE = re.compile(r"(?:^|\s)iommu\.passthrough=(\S+)")
_DMESG_LAZY_RE = re.compile(r"iommu: DMA domain TLB invalidation policy: (\w+) mode")


def _config(cap: Capture, files: CaptureFiles) -> None:
    cmdline = files.side.get("proc-cmdline.txt", "").strip()
    dmesg = files.side.get("dmesg.txt", "")
    cap.cmdline = cmdline
    m = _STRICT_RE.search(cmdline)
    if m:
        cap.strict = m.group(1).lower() in ("1", "y", "yes", "on", "true")
    else:
        m2 = _DMESG_LAZY_RE.search(dmesg)
        if m2:
            cap.strict = m2.group(1).lower() == "strict"
    m3 = _CMA_RE.search(dmesg)
    if m3:
        cap.cma_size = int(m3.group(1)) << 20
        cap.cma_base = int(m3.group(2), 16)
    pe = files.side.get("kprobe_events.txt")
    if pe is not None:
        names = set()
        for line in pe.splitlines():
            head = line.split(" ", 1)[0]
            if "/" in head:
                names.add(head.split("/", 1)[1])
        cap.probes_defined = names
    cap.qemu_log = files.side.get("qemu-host-trace.log")
    cap.dtb = files.dtb
    m4 = _TS_RE.search(files.trace_text[:4096])
    if m4:
        cap.ncpus = int(m4.group(3))


def build_capture(files: CaptureFiles) -> Capture:
    """Read every event of the trace and rebuild the calls (see the module docstring)."""
    cap = Capture(files.source)
    _config(cap, files)
    _Builder(cap).run(files)
    return cap


class _Builder:
    def __init__(self, cap: Capture) -> None:
        self.cap = cap
        self.calls = cap.calls
        # entry stacks for kretprobes: (func, pid) -> [Call]
        self.stacks: dict[tuple[str, int], list[Call]] = defaultdict(list)
        # innermost open outer DMA op per (pid, cpu, ctx)
        self.op: dict[tuple[int, int, str], Call] = {}
        self.alloc_req: dict[tuple[int, int, str], Call] = {}
        self.last_map: dict[tuple[int, int, str], Call] = {}
        self.last_unmap: dict[tuple[int, int, str], Call] = {}
        self.cmd_owner: dict[tuple[int, int, str], Call] = {}
        self.last_free: dict[tuple[int, int, str], Call] = {}
        self.contig: dict[int, Call] = {}
        self.cma_open: dict[int, Call] = {}
        self.max_cpu = 0

    # -- helpers ---------------------------------------------------------------------
    def new(self, kind: str, ev: Any, ctx: str, phase: str, args: dict[str, Any]) -> Call:
        c = Call(len(self.calls), kind, ev.line_no, ev.ts_ns, ev.cpu, ev.pid, ctx, phase)
        c.args = args
        self.calls.append(c)
        return c

    def adopt(self, parent: Call | None, child: Call) -> None:
        if parent is not None:
            child.parent = parent.seq
            parent.children.append(child.seq)
            if not child.dom:
                child.dom = parent.dom
            if child.dev is None:
                child.dev = parent.dev

    def domain(self, dom: int) -> DomainInfo:
        d = self.cap.domains.get(dom)
        if d is None:
            d = DomainInfo(dom)
            self.cap.domains[dom] = d
        return d

    def link_cookie(self, dom: int, cookie: int, dev: str | None) -> None:
        d = self.domain(dom)
        if cookie and not d.cookie:
            d.cookie = cookie
            d.iovad = cookie + COOKIE_IOVAD_OFFSET
            self.cap.iovad_dom[d.iovad] = dom
        if dev and dev not in d.devices:
            d.devices.append(dev)
            if dev not in self.cap.devices:
                self.cap.devices.append(dev)

    def pop_ret(self, func: str, ev: Any, ctx: str) -> Call | None:
        st = self.stacks.get((func, ev.pid))
        if not st:
            self.cap.notes.append(
                f"line {ev.line_no}: {func}_ret without its entry event (entry probe missing"
                " or the entry was lost); result not used"
            )
            return None
        for i in range(len(st) - 1, -1, -1):
            if st[i].cpu == ev.cpu:
                return st.pop(i)
        # a call that may sleep can return on another CPU
        for i in range(len(st) - 1, -1, -1):
            c = st[i]
            if c.kind in ("iommu_dma_alloc", "dma_alloc_contiguous") or (
                c.args.get("gfp") == GFP_KERNEL
            ):
                return st.pop(i)
        return st.pop()

    # -- main loop ---------------------------------------------------------------------
    def run(self, files: CaptureFiles) -> None:
        reader = FtraceReader(io.StringIO(files.trace_text))
        cap = self.cap
        counts = cap.event_counts
        for ev in reader:
            name = ev.name
            if name == "tracing_mark_write":
                continue
            counts[name] += 1
            cap.events += 1
            d = ev.decode()
            ctx = _ctx(ev.flags)
            phase = reader.phase.name
            cpu = ev.cpu
            if cpu > self.max_cpu:
                self.max_cpu = cpu
            key = (ev.pid, cpu, ctx)
            if name not in _KEEP_CMD_OWNER:
                self.cmd_owner.pop(key, None)
            if isinstance(d, KprobeEvent):
                self.kprobe(name, d, ev, ctx, phase, key)
            elif isinstance(d, IommuMap):
                m = self.last_map.pop(key, None)
                if m is None:
                    cap.notes.append(
                        f"line {ev.line_no}: iommu:map without a __iommu_map before it"
                        " (probe missing?)"
                    )
                    continue
                m.result.update(iova=d.iova, paddr=d.paddr, size=d.size, ok=True)
            elif isinstance(d, IommuUnmap):
                u = self.last_unmap.get(key)
                if u is None or "unmapped" in u.result:
                    cap.notes.append(
                        f"line {ev.line_no}: iommu:unmap without a __iommu_unmap before it"
                        " (probe missing?)"
                    )
                    continue
                u.result["unmapped"] = d.unmapped_size
            elif isinstance(d, CmaAllocStart):
                c = self.new("cma_alloc", ev, ctx, phase, {"count": d.count, "align": d.align})
                c.args["name"] = d.name
                parent = self.contig.get(ev.pid)
                if parent is not None:
                    self.adopt(parent, c)
                else:
                    c.dev = None
                self.cma_open[ev.pid] = c
            elif isinstance(d, CmaRange):
                if d.event == "cma_alloc_finish":
                    c2 = self.cma_open.pop(ev.pid, None)
                    if c2 is None:
                        cap.notes.append(f"line {ev.line_no}: cma_alloc_finish without start")
                        continue
                    c2.result["pfn"] = 0 if d.failed else d.pfn
                elif d.event == "cma_release":
                    c3 = self.new("cma_release", ev, ctx, phase, {"pfn": d.pfn, "count": d.count})
                    c3.args["name"] = d.name
        cap.ncpus = max(cap.ncpus, self.max_cpu + 1)
        for (func, _pid), st in self.stacks.items():
            for c in st:
                if func in _RET_FUNCS and not c.result:
                    c.result["unreturned"] = True

    def kprobe(
        self, name: str, d: KprobeEvent, ev: Any, ctx: str, phase: str, key: tuple[int, int, str]
    ) -> None:
        a = d.args
        cap = self.cap
        if name.endswith("_ret") and d.is_return:
            func = name[:-4]
            if func not in _RET_FUNCS:
                return  # the return of a call the replay does not re-execute (dma_*_attrs ...)
            c = self.pop_ret(func, ev, ctx)
            if c is None:
                return
            c.result.update({k: v for k, v in a.items()})
            if func in OUTER_OPS and self.op.get((c.pid, c.cpu, c.ctx)) is c:
                del self.op[(c.pid, c.cpu, c.ctx)]
            if func == "dma_alloc_contiguous":
                self.contig.pop(c.pid, None)
            return
        if name in OUTER_OPS:
            c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dev"})
            c.dev = a.get("dev")
            c.dom = a.get("dom", 0) or 0
            if c.dom and c.dev:
                self.link_cookie(c.dom, 0, c.dev)
            self.op[key] = c
            self.cmd_owner.pop(key, None)
            if OUTER_OPS[name] is not None:
                self.stacks[(name, ev.pid)].append(c)
            return
        if name == "iommu_setup_dma_ops":
            c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dev"})
            c.dev = a.get("dev")
            c.dom = a.get("dom", 0)
            self.link_cookie(c.dom, a.get("cookie", 0), c.dev)
            info = self.domain(c.dom)
            info.asid = a.get("asid")
            info.ttbr = a.get("ttbr")
            info.group = a.get("grp")
            info.dma_limit = a.get("dma_limit")
            return
        if name == "iommu_dma_alloc_iova":
            c = self.new(name, ev, ctx, phase, {"size": a["size"], "dma_limit": a["dma_limit"]})
            c.dev = a.get("dev")
            c.dom = a.get("dom", 0)
            self.link_cookie(c.dom, a.get("cookie", 0), c.dev)
            self.adopt(self.op.get(key), c)
            self.alloc_req[key] = c
            return
        if name == "init_iova_domain":
            c = self.new(name, ev, ctx, phase, dict(a))
            c.dom = cap.iovad_dom.get(a["iovad"], 0)
            if c.dom:
                info = self.domain(c.dom)
                info.granule = a.get("granule")
                info.start_pfn = a.get("start_pfn")
            return
        if name in ("reserve_iova", "free_iova_fast", "free_iova", "alloc_iova_fast"):
            iovad = a.get("iovad", 0)
            c = self.new(name, ev, ctx, phase, dict(a))
            c.dom = cap.iovad_dom.get(iovad, 0)
            if name == "alloc_iova_fast":
                req = self.alloc_req.get(key)
                if req is not None and (
                    req.dom != c.dom or any(self.calls[s].result.get("pfn") for s in req.children)
                ):
                    req = None
                parent = req if req is not None else self.op.get(key)
                self.adopt(parent, c)
                self.stacks[(name, ev.pid)].append(c)
            elif name == "free_iova_fast":
                self.adopt(self.op.get(key), c)
                self.last_free[key] = c
            elif name == "free_iova":
                f = self.last_free.get(key)
                if f is not None and f.args.get("pfn") == a.get("pfn") and f.dom == c.dom:
                    self.adopt(f, c)
                    f.result["to_tree"] = True
                else:
                    self.adopt(self.op.get(key), c)
            if c.dev is None and c.dom:
                c.dev = self.domain(c.dom).name
            return
        if name == "alloc_iova":
            st = self.stacks.get(("alloc_iova_fast", ev.pid), [])
            parent = next((x for x in reversed(st) if x.cpu == ev.cpu), None)
            c = self.new(name, ev, ctx, phase, dict(a))
            c.dom = cap.iovad_dom.get(a.get("iovad", 0), 0)
            self.adopt(parent, c)
            self.stacks[(name, ev.pid)].append(c)
            return
        if name in ("__iommu_map", "__iommu_unmap"):
            c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dom"})
            c.dom = a.get("dom", 0)
            self.adopt(self.op.get(key), c)
            if c.dev is None and c.dom in cap.domains:
                c.dev = cap.domains[c.dom].name
            if name == "__iommu_map":
                self.last_map[key] = c
            else:
                self.last_unmap[key] = c
                self.cmd_owner[key] = c
            self.pt_owner = c
            return
        if name in ("arm_smmu_iotlb_sync", "arm_smmu_tlb_inv_walk", "arm_lpae_free_pages"):
            c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dom"})
            u = self.last_unmap.get(key)
            self.adopt(u, c)
            if name == "arm_smmu_iotlb_sync":
                c.dom = a.get("dom", 0) or c.dom
            return
        if name == "arm_lpae_alloc_pages":
            c = self.new(name, ev, ctx, phase, dict(a))
            owner = getattr(self, "pt_owner", None)
            m = self.last_map.get(key)
            if m is not None:
                self.adopt(m, c)
            elif owner is not None and owner.pid == ev.pid and owner.kind == "__iommu_map":
                self.adopt(owner, c)
            self.stacks[(name, ev.pid)].append(c)
            return
        if name in ("arm_smmu_tlb_inv_context", "fq_flush_iotlb", "fq_flush_timeout"):
            c = self.new(name, ev, ctx, phase, dict(a))
            smmu_dom = a.get("smmu_dom")
            if smmu_dom:
                c.dom = smmu_dom + SMMU_DOMAIN_OFFSET
            cookie = a.get("cookie")
            if cookie:
                c.dom = next((x.dom for x in cap.domains.values() if x.cookie == cookie), 0)
            self.cmd_owner[key] = c
            return
        if name == "arm_smmu_cmdq_issue_cmdlist":
            cmd0 = a.get("cmd0", 0)
            c = self.new(
                name,
                ev,
                ctx,
                phase,
                {"n": a.get("n", 0), "sync": a.get("sync", 0), "op": cmd0 & 0xFF},
            )
            c.args["asid"] = cmd0 >> 48
            self.adopt(self.cmd_owner.get(key), c)
            return
        if name == "dma_alloc_contiguous":
            c = self.new(name, ev, ctx, phase, {"size": a.get("size", 0), "gfp": a.get("gfp", 0)})
            c.dev = a.get("dev")
            self.contig[ev.pid] = c
            self.stacks[(name, ev.pid)].append(c)
            return
        if name in ("dma_release_from_contiguous", "dma_free_contiguous"):
            c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dev"})
            c.dev = a.get("dev")
            return
        # anything else (dma_buf_*, fq_ring_free, iommu_dma_init_fq ...): kept as a call
        c = self.new(name, ev, ctx, phase, {k: v for k, v in a.items() if k != "dev"})
        c.dev = a.get("dev")
        if name == "iommu_dma_init_fq":
            cap.strict = False if cap.strict is None else cap.strict
