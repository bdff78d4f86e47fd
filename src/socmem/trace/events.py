"""Field decoding of known trace events, on demand.

Each decoder reads the ``TP_printk`` format of one kernel header (cited per decoder) and
returns a small frozen dataclass.  :func:`decode` dispatches on the event name (and, for
kprobes, on the body's ``(func+0x0/0x72c)`` / ``(caller <- func)`` prefix).  It never
raises: an event it does not know, or whose text does not fit the format (truncated line),
comes back as :class:`RawEvent` with a ``reason``.

Formats: ``/work/shared/reference/kernel-iommu-dma-formats.md`` §1 and the 6.12 tracefs
``format`` files (``linux-6.12-dma-trace-event-formats.txt``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DMA_ATTRS",
    "DMA_DIRECTIONS",
    "EVENT_SYSTEMS",
    "CmaAllocStart",
    "CmaRange",
    "DmaEvent",
    "FenceEvent",
    "IoPageFault",
    "IommuDeviceEvent",
    "IommuGroupEvent",
    "IommuMap",
    "IommuUnmap",
    "KprobeEvent",
    "MarkerEvent",
    "RawEvent",
    "SwiotlbBounced",
    "classify_event",
    "decode",
    "decode_body",
    "event_system",
    "parse_kprobe_args",
]


class _EventLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def body(self) -> str: ...


#: Upstream event name → trace system (include/trace/events/<system>.h).
EVENT_SYSTEMS: dict[str, str] = {
    **dict.fromkeys(
        (
            "add_device_to_group",
            "remove_device_from_group",
            "attach_device_to_domain",
            "detach_device_from_domain",
            "map",
            "unmap",
            "io_page_fault",
        ),
        "iommu",
    ),
    **dict.fromkeys(
        (
            "dma_map_page",
            "dma_map_phys",
            "dma_map_resource",
            "dma_unmap_page",
            "dma_unmap_phys",
            "dma_unmap_resource",
            "dma_alloc",
            "dma_alloc_pages",
            "dma_alloc_sgt",
            "dma_alloc_sgt_err",
            "dma_free",
            "dma_free_pages",
            "dma_free_sgt",
            "dma_map_sg",
            "dma_map_sg_err",
            "dma_unmap_sg",
            "dma_sync_single_for_cpu",
            "dma_sync_single_for_device",
            "dma_sync_sg_for_cpu",
            "dma_sync_sg_for_device",
        ),
        "dma",
    ),
    **dict.fromkeys(
        (
            "dma_fence_emit",
            "dma_fence_init",
            "dma_fence_destroy",
            "dma_fence_enable_signal",
            "dma_fence_signaled",
            "dma_fence_wait_start",
            "dma_fence_wait_end",
        ),
        "dma_fence",
    ),
    **dict.fromkeys(
        ("cma_alloc_start", "cma_alloc_finish", "cma_alloc_busy_retry", "cma_release"), "cma"
    ),
    "swiotlb_bounced": "swiotlb",
    "tracing_mark_write": "ftrace",
}

#: ``decode_dma_data_direction`` names (include/trace/events/dma.h), by enum value.
DMA_DIRECTIONS = ("BIDIRECTIONAL", "TO_DEVICE", "FROM_DEVICE", "NONE")

#: ``decode_dma_attrs`` (include/linux/dma-mapping.h bit values).
DMA_ATTRS: dict[str, int] = {
    "WEAK_ORDERING": 1 << 1,
    "WRITE_COMBINE": 1 << 2,
    "NO_KERNEL_MAPPING": 1 << 4,
    "SKIP_CPU_SYNC": 1 << 5,
    "FORCE_CONTIGUOUS": 1 << 6,
    "ALLOC_SINGLE_PAGES": 1 << 7,
    "NO_WARN": 1 << 8,
    "PRIVILEGED": 1 << 9,
    "MMIO": 1 << 10,
    "CACHELINES_OVERLAP": 1 << 11,
    "REQUIRE_COHERENT": 1 << 12,
    "CC_SHARED": 1 << 13,
    "ALLOC_CC_SHARED": 1 << 14,
}

_KPROBE_RE = re.compile(r"^\((?P<func>[^\s+()]+)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)\)\s*")
_KRETPROBE_RE = re.compile(
    r"^\((?P<caller>[^\s()]+?)(?:\+0x(?P<coff>[0-9a-f]+)/0x(?P<csize>[0-9a-f]+))?"
    r" <- (?P<func>[^\s()]+)\)\s*"
)
_ARG_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\{[^}]*\}|\S*)')


def classify_event(name: str, body: str) -> str:
    """The kind of an event: its trace system, ``"kprobe"``, ``"kretprobe"`` or ``"unknown"``."""
    sysname = EVENT_SYSTEMS.get(name)
    if sysname is not None:
        return sysname
    if body.startswith("("):
        if _KPROBE_RE.match(body):
            return "kprobe"
        if _KRETPROBE_RE.match(body):
            return "kretprobe"
    return "unknown"


def event_system(name: str, body: str = "") -> str | None:
    """Trace system of a known upstream event (``"kprobes"`` for probes), else ``None``."""
    kind = classify_event(name, body)
    if kind in ("kprobe", "kretprobe"):
        return "kprobes"
    return None if kind == "unknown" else kind


# -- records --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An event not decoded: unknown name, or text that does not fit its format."""

    name: str
    body: str
    reason: str = "unknown event"


@dataclass(frozen=True, slots=True)
class MarkerEvent:
    """``tracing_mark_write: <text>`` (a user ``trace_marker`` write)."""

    text: str


@dataclass(frozen=True, slots=True)
class IommuMap:
    """TRACE_EVENT(map) in include/trace/events/iommu.h.

    ``iova_end`` (exclusive) is printed by the range format (~v5.14+) and ``None`` in the
    old ``iova=0x%016llx paddr=...`` format.
    """

    iova: int
    paddr: int
    size: int
    iova_end: int | None = None


@dataclass(frozen=True, slots=True)
class IommuUnmap:
    """TRACE_EVENT(unmap) in include/trace/events/iommu.h."""

    iova: int
    size: int
    unmapped_size: int
    iova_end: int | None = None

    @property
    def partial(self) -> bool:
        """``unmapped_size < size``: the unmap failed part way."""
        return self.unmapped_size < self.size


@dataclass(frozen=True, slots=True)
class IommuGroupEvent:
    """DEFINE_EVENT(iommu_group_event, add_device_to_group / remove_device_from_group)."""

    action: str  # "add" | "remove"
    group_id: int
    device: str


@dataclass(frozen=True, slots=True)
class IommuDeviceEvent:
    """DEFINE_EVENT(iommu_device_event, attach_device_to_domain / detach_...)."""

    action: str  # "attach" | "detach"
    device: str


@dataclass(frozen=True, slots=True)
class IoPageFault:
    """DEFINE_EVENT(iommu_error, io_page_fault): ``IOMMU:%s %s iova=0x%016llx flags=0x%04x``."""

    driver: str
    device: str
    iova: int
    flags: int

    @property
    def write(self) -> bool:
        """IOMMU_FAULT_WRITE (0x1) is set."""
        return bool(self.flags & 1)


@dataclass(frozen=True, slots=True)
class DmaEvent:
    """Any event of include/trace/events/dma.h (v6.12+, every naming variant).

    ``op`` normalises the name: ``map`` (dma_map_page / dma_map_phys / dma_map_resource),
    ``unmap``, ``alloc`` (dma_alloc, dma_alloc_pages, dma_alloc_sgt), ``alloc_err``
    (dma_alloc_sgt_err), ``free`` (dma_free, dma_free_pages, dma_free_sgt), ``map_sg``,
    ``map_sg_err``, ``unmap_sg``, ``sync_for_cpu``, ``sync_for_device``.  Addresses print
    without ``0x`` (``%llx``) and are read as hex; ``size`` is decimal; arrays are hex.
    Fields a variant does not print are ``None``.
    """

    event: str
    op: str
    device: str
    dir: str | None = None
    dma_addr: int | None = None
    size: int | None = None
    phys_addr: int | None = None
    virt_addr: int | None = None
    flags: str | None = None
    attrs: tuple[str, ...] = ()
    dma_addrs: tuple[int, ...] | None = None
    sizes: tuple[int, ...] | None = None
    phys_addrs: tuple[int, ...] | None = None
    nents: int | None = None
    full_nents: int | None = None
    ents: int | None = None
    full_ents: int | None = None
    truncated: bool = False
    err: int | None = None
    sg: bool = False

    @property
    def attrs_value(self) -> int:
        """The attrs as the kernel's bit mask (unknown leftovers printed as 0x.. kept)."""
        v = 0
        for a in self.attrs:
            v |= DMA_ATTRS.get(a, 0) or (int(a, 16) if a.startswith("0x") else 0)
        return v


@dataclass(frozen=True, slots=True)
class FenceEvent:
    """DECLARE_EVENT_CLASS(dma_fence) in include/trace/events/dma_fence.h.

    ``driver=%s timeline=%s context=%u seqno=%u`` for all seven events.
    """

    event: str
    driver: str
    timeline: str
    context: int
    seqno: int

    @property
    def op(self) -> str:
        """``init``, ``emit``, ``signaled``, ``destroy``, ``wait_start`` ..."""
        return self.event.removeprefix("dma_fence_")


@dataclass(frozen=True, slots=True)
class CmaAllocStart:
    """TRACE_EVENT(cma_alloc_start) in include/trace/events/cma.h, old and ~v6.18 forms."""

    name: str
    count: int
    align: int
    available_count: int | None = None
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class CmaRange:
    """cma_alloc_finish / cma_alloc_busy_retry / cma_release (include/trace/events/cma.h).

    ``pfn`` is printed ``0x%lx`` on current kernels and ``%lx`` (no ``0x``) on ~v5.10-v6.2;
    both are hex.  ``errorno`` only exists on current kernels; ``page`` is the hashed
    pointer text.
    """

    event: str
    name: str | None
    pfn: int
    page: str | None
    count: int
    align: int | None = None
    errorno: int | None = None

    @property
    def failed(self) -> bool:
        """A finish with pfn 0 / errorno != 0 is a failed allocation."""
        return self.event == "cma_alloc_finish" and (bool(self.errorno) or self.pfn == 0)


@dataclass(frozen=True, slots=True)
class SwiotlbBounced:
    """TRACE_EVENT(swiotlb_bounced) in include/trace/events/swiotlb.h.

    ``dev_name: %s dma_mask=%llx dev_addr=%llx size=%zu %s`` (FORCE / NORMAL).
    """

    device: str
    dma_mask: int
    dev_addr: int
    size: int
    force: bool


@dataclass(frozen=True, slots=True)
class KprobeEvent:
    """A kprobe / kretprobe event (kernel/trace/trace_kprobe.c ``print_kprobe_event``).

    Kprobes print ``(func+0x0/0x72c) args``; kretprobes ``(caller+0x1f0/0x250 <- func)
    args``.  Fetch args are ``name=value``: quoted strings (``dev="9050000.smmuv3"``) come
    back as ``str``, ``0x`` hex and decimal (signed) as ``int``, anything else as ``str``.
    """

    name: str
    func: str
    is_return: bool
    offset: int = 0
    caller: str | None = None
    caller_offset: int | None = None
    args: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.args[key]

    def get(self, key: str, default: Any = None) -> Any:
        """``args.get``."""
        return self.args.get(key, default)


Decoded = (
    RawEvent
    | MarkerEvent
    | IommuMap
    | IommuUnmap
    | IommuGroupEvent
    | IommuDeviceEvent
    | IoPageFault
    | DmaEvent
    | FenceEvent
    | CmaAllocStart
    | CmaRange
    | SwiotlbBounced
    | KprobeEvent
)

# -- helpers --------------------------------------------------------------------------------


def _value(v: str) -> Any:
    if v.startswith('"') and v.endswith('"') and len(v) >= 2:
        return v[1:-1]
    if v.startswith("{") and v.endswith("}"):
        inner = v[1:-1].strip()
        return tuple(_value(x) for x in inner.split(",")) if inner else ()
    try:
        if v[:2] in ("0x", "0X") or v[:3] in ("-0x",):
            return int(v, 16)
        return int(v)
    except ValueError:
        return v


def parse_kprobe_args(text: str) -> dict[str, Any]:
    """``dev="9050000.smmuv3" size=1048576 gfp=0xcc0`` → ``{"dev": ..., "size": ..., ...}``."""
    return {k: _value(v) for k, v in _ARG_RE.findall(text)}


def _kv(text: str) -> dict[str, str]:
    return dict(_ARG_RE.findall(text))


def _hexarr(v: str | None) -> tuple[int, ...] | None:
    if v is None:
        return None
    inner = v.strip("{}").strip()
    return tuple(int(x, 16) for x in inner.split(",")) if inner else ()


def _hx(v: str | None) -> int | None:
    return None if v is None or v == "" or v == "(null)" else int(v, 16)


def _attrs(v: str | None) -> tuple[str, ...]:
    return tuple(a for a in (v or "").split("|") if a)


_DMA_OPS = {
    "dma_map_page": ("map", False),
    "dma_map_phys": ("map", False),
    "dma_map_resource": ("map", False),
    "dma_unmap_page": ("unmap", False),
    "dma_unmap_phys": ("unmap", False),
    "dma_unmap_resource": ("unmap", False),
    "dma_alloc": ("alloc", False),
    "dma_alloc_pages": ("alloc", False),
    "dma_alloc_sgt": ("alloc", True),
    "dma_alloc_sgt_err": ("alloc_err", True),
    "dma_free": ("free", False),
    "dma_free_pages": ("free", False),
    "dma_free_sgt": ("free", True),
    "dma_map_sg": ("map_sg", True),
    "dma_map_sg_err": ("map_sg_err", True),
    "dma_unmap_sg": ("unmap_sg", True),
    "dma_sync_single_for_cpu": ("sync_for_cpu", False),
    "dma_sync_single_for_device": ("sync_for_device", False),
    "dma_sync_sg_for_cpu": ("sync_for_cpu", True),
    "dma_sync_sg_for_device": ("sync_for_device", True),
}

_FRAC_RE = re.compile(r"(\d+)/(\d+)")


def _dma(name: str, body: str) -> DmaEvent:
    """include/trace/events/dma.h: ``"%s dir=%s dma_addr=%llx size=%zu ..."`` (all classes)."""
    op, sg = _DMA_OPS[name]
    device, _, rest = body.partition(" ")
    kv = _kv(rest)
    nents = full_nents = ents = full_ents = None
    if "nents" in kv:
        m = _FRAC_RE.fullmatch(kv["nents"])
        if m:
            nents, full_nents = int(m.group(1)), int(m.group(2))
    if "ents" in kv:
        m = _FRAC_RE.fullmatch(kv["ents"])
        if m:
            ents, full_ents = int(m.group(1)), int(m.group(2))
    phys_addrs = _hexarr(kv.get("phys_addrs"))
    dma_addrs = _hexarr(kv.get("dma_addrs"))
    if name == "dma_map_sg_err":  # the array printed as dma_addrs= holds physical addresses
        phys_addrs, dma_addrs = dma_addrs, None
    if "dma_addr" not in kv and "dir" not in kv and "dma_addrs" not in kv:
        raise ValueError("no dma fields")
    return DmaEvent(
        event=name,
        op=op,
        device=device,
        dir=kv.get("dir"),
        dma_addr=_hx(kv.get("dma_addr")),
        size=int(kv["size"]) if "size" in kv else None,
        phys_addr=_hx(kv.get("phys_addr")),
        virt_addr=_hx(kv.get("virt_addr")),
        flags=kv.get("flags"),
        attrs=_attrs(kv.get("attrs")),
        dma_addrs=dma_addrs,
        sizes=_hexarr(kv.get("sizes")),
        phys_addrs=phys_addrs,
        nents=nents,
        full_nents=full_nents,
        ents=ents,
        full_ents=full_ents,
        truncated="[TRUNCATED]" in rest,
        err=int(kv["err"]) if "err" in kv else None,
        sg=sg,
    )


_MAP_RE = re.compile(
    r"IOMMU: iova=0x([0-9a-f]+)(?: - 0x([0-9a-f]+))? paddr=0x([0-9a-f]+) size=(\d+)"
)
_UNMAP_RE = re.compile(
    r"IOMMU: iova=0x([0-9a-f]+)(?: - 0x([0-9a-f]+))? size=(\d+) unmapped_size=(\d+)"
)
_GROUP_RE = re.compile(r"IOMMU: groupID=(-?\d+) device=(\S*)")
_DEVICE_RE = re.compile(r"IOMMU: device=(\S*)")
_FAULT_RE = re.compile(r"IOMMU:(\S*) (\S*) iova=0x([0-9a-f]+) flags=0x([0-9a-f]+)")
_FENCE_RE = re.compile(r"driver=(.*?) timeline=(.*) context=(\d+) seqno=(\d+)")
_SWIOTLB_RE = re.compile(
    r"dev_name: (\S*) dma_mask=([0-9a-f]+) dev_addr=([0-9a-f]+) size=(\d+) (FORCE|NORMAL)"
)


def _iommu_map(name: str, body: str) -> IommuMap:
    """TRACE_EVENT(map), include/trace/events/iommu.h (range and pre-~v5.14 forms)."""
    m = _MAP_RE.match(body)
    if m is None:
        raise ValueError("map format")
    end = m.group(2)
    return IommuMap(
        int(m.group(1), 16), int(m.group(3), 16), int(m.group(4)), int(end, 16) if end else None
    )


def _iommu_unmap(name: str, body: str) -> IommuUnmap:
    """TRACE_EVENT(unmap), include/trace/events/iommu.h (range and old forms)."""
    m = _UNMAP_RE.match(body)
    if m is None:
        raise ValueError("unmap format")
    end = m.group(2)
    return IommuUnmap(
        int(m.group(1), 16), int(m.group(3)), int(m.group(4)), int(end, 16) if end else None
    )


def _iommu_group(name: str, body: str) -> IommuGroupEvent:
    """DECLARE_EVENT_CLASS(iommu_group_event): ``IOMMU: groupID=%d device=%s``."""
    m = _GROUP_RE.match(body)
    if m is None:
        raise ValueError("group format")
    return IommuGroupEvent(
        "add" if name.startswith("add") else "remove", int(m.group(1)), m.group(2)
    )


def _iommu_device(name: str, body: str) -> IommuDeviceEvent:
    """DECLARE_EVENT_CLASS(iommu_device_event): ``IOMMU: device=%s``."""
    m = _DEVICE_RE.match(body)
    if m is None:
        raise ValueError("device format")
    return IommuDeviceEvent("attach" if name.startswith("attach") else "detach", m.group(1))


def _io_page_fault(name: str, body: str) -> IoPageFault:
    """DEFINE_EVENT(iommu_error, io_page_fault): ``IOMMU:%s %s iova=0x%016llx flags=0x%04x``."""
    m = _FAULT_RE.match(body)
    if m is None:
        raise ValueError("io_page_fault format")
    return IoPageFault(m.group(1), m.group(2), int(m.group(3), 16), int(m.group(4), 16))


def _fence(name: str, body: str) -> FenceEvent:
    """DECLARE_EVENT_CLASS(dma_fence): ``driver=%s timeline=%s context=%u seqno=%u``."""
    m = _FENCE_RE.match(body)
    if m is None:
        raise ValueError("dma_fence format")
    return FenceEvent(name, m.group(1), m.group(2), int(m.group(3)), int(m.group(4)))


def _cma_start(name: str, body: str) -> CmaAllocStart:
    """TRACE_EVENT(cma_alloc_start): ``name=%s count=%lu align=%u`` or, ~v6.18+,
    ``name=%s request_count=%lu available_count=%lu total_count=%lu align=%u``."""
    kv = _kv(body)
    count = kv.get("count", kv.get("request_count"))
    if count is None or "align" not in kv:
        raise ValueError("cma_alloc_start format")
    avail = kv.get("available_count")
    total = kv.get("total_count")
    return CmaAllocStart(
        kv.get("name", ""),
        int(count),
        int(kv["align"]),
        int(avail) if avail else None,
        int(total) if total else None,
    )


def _cma_range(name: str, body: str) -> CmaRange:
    """cma_alloc_finish / cma_alloc_busy_retry / cma_release (include/trace/events/cma.h)."""
    kv = _kv(body)
    if "pfn" not in kv or "count" not in kv:
        raise ValueError("cma format")
    align = kv.get("align")
    err = kv.get("errorno")
    return CmaRange(
        name,
        kv.get("name"),
        int(kv["pfn"], 16),
        kv.get("page"),
        int(kv["count"]),
        int(align) if align else None,
        int(err) if err else None,
    )


def _swiotlb(name: str, body: str) -> SwiotlbBounced:
    """TRACE_EVENT(swiotlb_bounced), include/trace/events/swiotlb.h."""
    m = _SWIOTLB_RE.match(body)
    if m is None:
        raise ValueError("swiotlb_bounced format")
    return SwiotlbBounced(
        m.group(1), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)), m.group(5) == "FORCE"
    )


def _marker(name: str, body: str) -> MarkerEvent:
    """TRACE_PRINT (kernel/trace/trace_entries.h): the text written to ``trace_marker``."""
    return MarkerEvent(body.rstrip("\n"))


_DECODERS: dict[str, Any] = {
    "map": _iommu_map,
    "unmap": _iommu_unmap,
    "add_device_to_group": _iommu_group,
    "remove_device_from_group": _iommu_group,
    "attach_device_to_domain": _iommu_device,
    "detach_device_from_domain": _iommu_device,
    "io_page_fault": _io_page_fault,
    **dict.fromkeys(_DMA_OPS, _dma),
    **{n: _fence for n, s in EVENT_SYSTEMS.items() if s == "dma_fence"},
    "cma_alloc_start": _cma_start,
    "cma_alloc_finish": _cma_range,
    "cma_alloc_busy_retry": _cma_range,
    "cma_release": _cma_range,
    "swiotlb_bounced": _swiotlb,
    "tracing_mark_write": _marker,
}


def _kprobe(name: str, body: str) -> KprobeEvent | None:
    if not body.startswith("("):
        return None
    m = _KPROBE_RE.match(body)
    if m is not None:
        return KprobeEvent(
            name,
            m.group("func"),
            False,
            int(m.group("off"), 16),
            args=parse_kprobe_args(body[m.end() :]),
        )
    m = _KRETPROBE_RE.match(body)
    if m is not None:
        coff = m.group("coff")
        return KprobeEvent(
            name,
            m.group("func"),
            True,
            0,
            m.group("caller"),
            int(coff, 16) if coff else None,
            parse_kprobe_args(body[m.end() :]),
        )
    return None


def decode_body(name: str, body: str) -> Decoded:
    """Decode the TP_printk text ``body`` of event ``name``; never raises."""
    body = body.strip()
    fn = _DECODERS.get(name)
    if fn is not None:
        try:
            return fn(name, body)
        except (ValueError, KeyError, IndexError) as exc:
            # a kprobe may carry an upstream event's name (e.g. a probe named "map")
            kp = _kprobe(name, body)
            if kp is not None:
                return kp
            return RawEvent(name, body, f"does not match the {name} format ({exc})")
    kp = _kprobe(name, body)
    if kp is not None:
        return kp
    return RawEvent(name, body)


def decode(event: _EventLike) -> Decoded:
    """Decode a :class:`~socmem.trace.ftrace.TraceEvent` (anything with name and body)."""
    return decode_body(event.name, event.body)
