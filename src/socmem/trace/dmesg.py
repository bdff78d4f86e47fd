"""Streaming, tolerant reader of kernel log text (``dmesg``, ``dmesg -r``, console logs).

Each line becomes a :class:`DmesgLine` (``[    1.234567] `` timestamp and ``<4>`` priority
prefix both optional, ``[  T123]`` printk caller id tolerated, ``dev_printk``'s ``<driver>
<device>: `` prefix split off when present).  Lines the memory stack prints are decoded:

* arm-smmu-v3 event records (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c,
  ``arm_smmu_dump_event`` / older ``arm_smmu_evtq_thread``): ``event 0x%02x received:``
  followed by four ``\\t0x%016llx`` dwords, and the ~v6.15+ decoded lines
  ``event: %s client: %s sid: %#x ssid: %#x iova: %#llx ipa: %#llx`` and
  ``%s %s %s %s "%s"%s%s stag: %#x`` → one :class:`SmmuEvent`, decoded per the SMMUv3
  event record layout (EVTQ_0_ID [7:0], SSV bit 11, SSID [31:12], SID [63:32]; EVTQ_1_STAG
  [15:0], STALL 31, PnU 33, InD 34, RnW 35, S2 39, CLASS [41:40]; EVTQ_2_ADDR; EVTQ_3_IPA
  [51:12]);
* SMMUv2 ``Unhandled context fault: fsr=0x%x, iova=0x%08lx, fsynr=0x%x, cbfrsynra=0x%x,
  cb=%d`` (drivers/iommu/arm/arm-smmu/arm-smmu.c, ``arm_smmu_context_fault``) →
  :class:`ContextFault`;
* ``swiotlb buffer is full (sz: %zd bytes), total %lu (slots), used %lu (slots)``
  (kernel/dma/swiotlb.c, ``swiotlb_tbl_map_single``) → :class:`SwiotlbFull`;
* ``cma_alloc: <name>: alloc failed, req-size: %lu pages, ret: %d`` (mm/cma.c,
  ``cma_alloc``; older without the name) → :class:`CmaAllocFail`;
* ``DMA-API: <driver> <device>: <text>`` (kernel/dma/debug.c ``err_printk``) →
  :class:`DmaApiWarning` with a ``kind`` per check;
* ``<func>: N callbacks suppressed`` (lib/ratelimit.c ``___ratelimit``) →
  :class:`RateLimited`.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from socmem.infile import open_lines

__all__ = [
    "DMA_API_KINDS",
    "SMMUV2_FSR_BITS",
    "SMMUV3_EVENT_CLASSES",
    "SMMUV3_EVENT_NAMES",
    "CmaAllocFail",
    "ContextFault",
    "DmaApiWarning",
    "DmesgLine",
    "DmesgReader",
    "DmesgStats",
    "RateLimited",
    "SmmuEvent",
    "SwiotlbFull",
    "decode_smmuv3_event",
    "read_dmesg",
]

#: ``event_str[]`` of arm-smmu-v3 (EVT_ID_* → name); unknown IDs print ``UNKNOWN``.
SMMUV3_EVENT_NAMES: dict[int, str] = {
    0x02: "C_BAD_STREAMID",
    0x03: "F_STE_FETCH",
    0x04: "C_BAD_STE",
    0x06: "F_STREAM_DISABLED",
    0x08: "C_BAD_SUBSTREAMID",
    0x09: "F_CD_FETCH",
    0x0A: "C_BAD_CD",
    0x10: "F_TRANSLATION",
    0x11: "F_ADDR_SIZE",
    0x12: "F_ACCESS",
    0x13: "F_PERMISSION",
    0x25: "F_VMS_FETCH",
}

#: ``event_class_str[]`` (EVTQ_1_CLASS).
SMMUV3_EVENT_CLASSES = (
    "CD fetch",
    "Stage 1 translation table fetch",
    "Input address caused fault",
    "Reserved",
)

#: ARM_SMMU_CB_FSR_* bits (drivers/iommu/arm/arm-smmu/arm-smmu.h).
SMMUV2_FSR_BITS: dict[str, int] = {
    "TF": 1 << 1,
    "AFF": 1 << 2,
    "PF": 1 << 3,
    "EF": 1 << 4,
    "TLBMCF": 1 << 5,
    "TLBLKF": 1 << 6,
    "ASF": 1 << 7,
    "UUT": 1 << 8,
    "SS": 1 << 30,
    "MULTI": 1 << 31,
}

#: kernel/dma/debug.c messages (text after ``DMA-API: <drv> <dev>: ``) → kind.
DMA_API_KINDS: tuple[tuple[str, str], ...] = (
    ("device driver maps memory from invalid area", "map-invalid-area"),
    ("device driver maps memory from vmalloc area", "map-vmalloc"),
    ("device driver maps memory from stack", "map-stack"),
    ("device driver maps memory from kernel text or rodata", "map-kernel-text"),
    ("mapping sg segment longer than device claims to support", "sg-segment-too-long"),
    ("mapping sg segment across boundary", "sg-segment-boundary"),
    ("cacheline tracking EEXIST", "cacheline-overlap"),
    ("cacheline tracking ENOMEM", "cacheline-enomem"),
    ("device driver tries to free an invalid DMA memory address", "free-invalid-address"),
    ("device driver tries to free DMA memory it has not allocated", "free-not-allocated"),
    ("device driver frees DMA memory with different size", "free-wrong-size"),
    ("device driver frees DMA memory with wrong function", "free-wrong-function"),
    ("device driver frees DMA memory with different CPU address", "free-wrong-cpu-address"),
    ("device driver frees DMA sg list with different entry count", "free-wrong-sg-count"),
    ("device driver frees DMA memory with different direction", "free-wrong-direction"),
    ("device driver failed to check map error", "map-error-not-checked"),
    ("device driver tries to sync DMA memory it has not allocated", "sync-not-allocated"),
    ("device driver syncs DMA memory outside allocated range", "sync-out-of-range"),
    ("device driver syncs DMA memory with different direction", "sync-wrong-direction"),
    ("device driver syncs device read-only DMA memory for cpu", "sync-read-only-for-cpu"),
    ("device driver syncs device write-only DMA memory to device", "sync-write-only-to-device"),
    ("device driver syncs DMA sg list with different entry count", "sync-wrong-sg-count"),
    ("device driver has pending DMA allocations while released", "pending-at-unbind"),
    ("rejecting DMA map of vmalloc memory", "map-vmalloc-rejected"),
)


# -- records --------------------------------------------------------------------------------


@dataclass(slots=True)
class DmesgLine:
    """One kernel log line.

    ``level`` is the console loglevel (0 emerg .. 7 debug) from a ``<N>`` prefix
    (``N & 7``; facility ``N >> 3``), ``None`` when absent.  ``driver``/``device`` are the
    ``dev_printk`` prefix when the line has one; ``message`` is the text after it.
    """

    line_no: int
    timestamp: float | None
    message: str
    level: int | None = None
    facility: int | None = None
    driver: str | None = None
    device: str | None = None
    caller: str | None = None
    text: str = ""


@dataclass(slots=True)
class SmmuEvent:
    """An SMMUv3 event record as the kernel logged it, decoded from its raw dwords.

    The raw dwords are authoritative; ``client``/``decoded_text`` come from the decoded
    lines that ~v6.15+ kernels print after them (``None`` on older kernels).
    """

    line_no: int
    timestamp: float | None
    smmu: str  # the SMMU device ("9050000.smmuv3")
    event_id: int
    name: str
    dwords: tuple[int, ...] = ()
    stream_id: int | None = None
    ssv: bool = False
    ssid: int = 0
    stag: int = 0
    stall: bool = False
    privileged: bool = False
    instruction: bool = False
    read: bool | None = None
    stage2: bool = False
    event_class: int | None = None
    class_name: str | None = None
    iova: int | None = None
    ipa: int | None = None
    fetch_addr: int | None = None
    client: str | None = None
    decoded_text: list[str] = field(default_factory=list)
    complete: bool = False  # all four dwords seen

    @property
    def write(self) -> bool | None:
        """RnW = 0: the faulting transaction was a write."""
        return None if self.read is None else not self.read

    @property
    def is_translation_class(self) -> bool:
        """F_TRANSLATION .. F_PERMISSION (0x10..0x13): dw1/dw2/dw3 carry the access."""
        return 0x10 <= self.event_id <= 0x13


def decode_smmuv3_event(dwords: Iterable[int]) -> dict[str, object]:
    """Decode an SMMUv3 event record (EVTQ_*, arm-smmu-v3.h) into a field dict."""
    dw = list(dwords) + [0] * 4
    d0, d1, d2, d3 = dw[:4]
    eid = d0 & 0xFF
    out: dict[str, object] = {
        "event_id": eid,
        "name": SMMUV3_EVENT_NAMES.get(eid, "UNKNOWN"),
        "ssv": bool(d0 >> 11 & 1),
        "ssid": (d0 >> 12) & 0xFFFFF if d0 >> 11 & 1 else 0,
        "stream_id": d0 >> 32,
    }
    if 0x10 <= eid <= 0x13:
        cls = (d1 >> 40) & 3
        out.update(
            stag=d1 & 0xFFFF,
            stall=bool(d1 >> 31 & 1),
            privileged=bool(d1 >> 33 & 1),
            instruction=bool(d1 >> 34 & 1),
            read=bool(d1 >> 35 & 1),
            stage2=bool(d1 >> 39 & 1),
            event_class=cls,
            class_name=SMMUV3_EVENT_CLASSES[cls],
            iova=d2,
            ipa=d3 & (((1 << 52) - 1) & ~0xFFF),
        )
    elif eid in (0x03, 0x09, 0x25):
        out["fetch_addr"] = d3 & (((1 << 52) - 1) & ~0x3F)
    return out


@dataclass(slots=True)
class ContextFault:
    """SMMUv2 ``Unhandled context fault`` (arm-smmu.c ``arm_smmu_context_fault``)."""

    line_no: int
    timestamp: float | None
    smmu: str | None
    fsr: int
    iova: int
    fsynr: int
    cbfrsynra: int | None
    cb: int

    @property
    def fsr_bits(self) -> tuple[str, ...]:
        """Names of the FSR bits set (TF, AFF, PF, EF, TLBMCF, TLBLKF, ASF, UUT, SS, MULTI)."""
        return tuple(n for n, b in SMMUV2_FSR_BITS.items() if self.fsr & b)

    @property
    def fsr_format(self) -> int:
        """FSR.FORMAT [10:9]."""
        return (self.fsr >> 9) & 3

    @property
    def write(self) -> bool:
        """FSYNR0.WNR (bit 4): the access was a write."""
        return bool(self.fsynr >> 4 & 1)

    @property
    def stream_id(self) -> int | None:
        """CBFRSYNRA holds the faulting StreamID."""
        return self.cbfrsynra


@dataclass(slots=True)
class SwiotlbFull:
    """``swiotlb buffer is full (sz: %zd bytes), total %lu (slots), used %lu (slots)``."""

    line_no: int
    timestamp: float | None
    driver: str | None
    device: str | None
    size: int
    total_slots: int
    used_slots: int


@dataclass(slots=True)
class CmaAllocFail:
    """mm/cma.c ``cma_alloc`` failure: ``cma_alloc: [<name>: ]alloc failed, req-size: N pages, ret: E``."""  # noqa: E501

    line_no: int
    timestamp: float | None
    name: str | None
    pages: int
    ret: int


@dataclass(slots=True)
class DmaApiWarning:
    """A kernel/dma/debug.c ``err_printk`` message; ``fields`` holds its ``[key=value]``s."""

    line_no: int
    timestamp: float | None
    driver: str
    device: str
    kind: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RateLimited:
    """lib/ratelimit.c: ``<func>: N callbacks suppressed`` (messages the log dropped)."""

    line_no: int
    timestamp: float | None
    function: str
    suppressed: int


Record = (
    DmesgLine | SmmuEvent | ContextFault | SwiotlbFull | CmaAllocFail | DmaApiWarning | RateLimited
)


@dataclass(slots=True)
class DmesgStats:
    """Counters of a read."""

    lines: int = 0
    records: Counter[str] = field(default_factory=Counter)
    blank_lines: int = 0
    undecodable_lines: int = 0
    incomplete_smmu_events: int = 0
    suppressed: int = 0
    truncated_last_line: bool = False
    warnings: list[str] = field(default_factory=list)


# -- parsing --------------------------------------------------------------------------------

_PREFIX_RE = re.compile(
    r"^(?:<(?P<prio>\d+)>)?(?:\[\s*(?P<ts>\d+\.\d+)\]\s?)?(?:\[\s*(?P<caller>[TC]\d+)\]\s?)?"
)
_DEV_RE = re.compile(r"^(?P<drv>[\w.\-]+) (?P<dev>[^\s:][^\s]*?): (?P<msg>.*)$", re.S)
_EVT_RE = re.compile(r"^event 0x([0-9a-fA-F]+) received:\s*$")
_DWORD_RE = re.compile(r"^\s*0x([0-9a-fA-F]{1,16})\s*$")
_EVT_DEC_RE = re.compile(
    r"^event: (?P<name>\S+) client: (?P<client>.+?) sid: (?P<sid>0x[0-9a-f]+|0) "
    r"ssid: (?P<ssid>0x[0-9a-f]+|0)"
)
_EVT_ACCESS_RE = re.compile(r"^(?:priv|unpriv) (?:inst|data) (?:read|write) s[12] \"")
_CTX_RE = re.compile(
    r"Unhandled context fault: fsr=0x([0-9a-f]+), iova=0x([0-9a-f]+), fsynr=0x([0-9a-f]+), "
    r"(?:cbfrsynra=0x([0-9a-f]+), )?cb=(\d+)"
)
_SWIOTLB_RE = re.compile(
    r"swiotlb buffer is full \(sz: (\d+) bytes\), total (\d+) \(slots\), used (\d+) \(slots\)"
)
_CMA_RE = re.compile(
    r"cma_alloc: (?:(?P<name>[^\s:]+): )?alloc failed, req-size: (?P<n>\d+) pages, ret: (?P<ret>-?\d+)"  # noqa: E501
)
_DMAAPI_RE = re.compile(r"DMA-API: (?P<drv>\S+) (?P<dev>\S+): (?P<msg>.*)$")
_BRACKET_RE = re.compile(r"\[([^\]=\[]+)=([^\]]*)\]")
_RATELIMIT_RE = re.compile(r"^(?P<func>[\w.]+): (?P<n>\d+) callbacks suppressed")


def parse_dmesg_line(line: str, line_no: int = 0) -> DmesgLine:
    """Split one log line into prefix parts and message (never raises)."""
    text = line.rstrip("\r\n")
    m = _PREFIX_RE.match(text)
    prio = ts = caller = None
    rest = text
    if m is not None and m.end() > 0:
        prio, ts, caller = m.group("prio"), m.group("ts"), m.group("caller")
        rest = text[m.end() :]
    p = int(prio) if prio is not None else None
    rec = DmesgLine(
        line_no,
        float(ts) if ts is not None else None,
        rest,
        level=p & 7 if p is not None else None,
        facility=p >> 3 if p is not None else None,
        caller=caller,
        text=text,
    )
    d = _DEV_RE.match(rest)
    if d is not None:
        rec.driver, rec.device, rec.message = d.group("drv"), d.group("dev"), d.group("msg")
    return rec


class DmesgReader:
    """Iterate the decoded records of a kernel log, streaming.

    ``source``: a path, a text/binary file object or an iterable of lines.  Yields
    :class:`DmesgLine` for ordinary lines and the typed records above for recognised ones.
    An SMMUv3 event is yielded once its four dwords (and decoded lines, if any) are read,
    i.e. when its SMMU prints something else, or at the end of input; an event cut short
    is still yielded with ``complete=False`` and counted in ``stats``.
    """

    def __init__(
        self, source: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str]
    ) -> None:
        self._input = open_lines(source, "log")
        self.source_name = self._input.name
        self.stats = DmesgStats()
        self._pending: dict[str, SmmuEvent] = {}

    def __iter__(self) -> Iterator[Record]:
        n = 0
        last = ""
        try:
            for raw in self._input.lines:
                n += 1
                last = raw
                if not raw.strip():
                    self.stats.blank_lines += 1
                    continue
                if "\ufffd" in raw or "\x00" in raw:
                    self.stats.undecodable_lines += 1
                yield from self._line(parse_dmesg_line(raw, n))
            for smmu in list(self._pending):
                yield self._emit(smmu)
        finally:
            self.stats.lines = n
            if last and not last.endswith("\n"):
                self.stats.truncated_last_line = True
            self._input.close()

    def smmu_events(self) -> Iterator[SmmuEvent]:
        """Only the SMMUv3 event records."""
        for r in self:
            if isinstance(r, SmmuEvent):
                yield r

    # -- internals ----------------------------------------------------------------------

    def _emit(self, smmu: str) -> SmmuEvent:
        ev = self._pending.pop(smmu)
        if not ev.complete:
            self.stats.incomplete_smmu_events += 1
        self.stats.records["SmmuEvent"] += 1
        return ev

    def _count(self, rec: Record) -> Record:
        self.stats.records[type(rec).__name__] += 1
        return rec

    def _line(self, ln: DmesgLine) -> Iterator[Record]:
        msg = ln.message
        dev = ln.device
        if dev is not None and dev in self._pending:
            pend = self._pending[dev]
            m = _DWORD_RE.match(msg)
            if m is not None and len(pend.dwords) < 4:
                pend.dwords = (*pend.dwords, int(m.group(1), 16))
                if len(pend.dwords) == 4:
                    for k, v in decode_smmuv3_event(pend.dwords).items():
                        setattr(pend, k, v)
                    pend.complete = True
                return
            m2 = _EVT_DEC_RE.match(msg)
            if m2 is not None:
                pend.client = m2.group("client")
                pend.decoded_text.append(msg)
                return
            if _EVT_ACCESS_RE.match(msg) or msg.startswith("event: "):
                pend.decoded_text.append(msg)
                return
            yield self._emit(dev)
        m = _EVT_RE.match(msg) if dev is not None else None
        if m is not None:
            eid = int(m.group(1), 16)
            self._pending[dev] = SmmuEvent(  # type: ignore[index]
                ln.line_no, ln.timestamp, dev or "", eid, SMMUV3_EVENT_NAMES.get(eid, "UNKNOWN")
            )
            return
        yield self._count(self._decode(ln))

    def _decode(self, ln: DmesgLine) -> Record:
        msg = ln.message
        text = ln.text
        if "context fault" in msg:
            m = _CTX_RE.search(msg)
            if m:
                return ContextFault(
                    ln.line_no,
                    ln.timestamp,
                    ln.device,
                    int(m.group(1), 16),
                    int(m.group(2), 16),
                    int(m.group(3), 16),
                    int(m.group(4), 16) if m.group(4) else None,
                    int(m.group(5)),
                )
        if "swiotlb buffer is full" in msg:
            m = _SWIOTLB_RE.search(msg)
            if m:
                return SwiotlbFull(
                    ln.line_no,
                    ln.timestamp,
                    ln.driver,
                    ln.device,
                    int(m.group(1)),
                    int(m.group(2)),
                    int(m.group(3)),
                )
        if "alloc failed, req-size" in text:
            m = _CMA_RE.search(text)
            if m:
                return CmaAllocFail(
                    ln.line_no,
                    ln.timestamp,
                    m.group("name"),
                    int(m.group("n")),
                    int(m.group("ret")),
                )
        if "DMA-API: " in text:
            m = _DMAAPI_RE.search(text)
            if m:
                body = m.group("msg")
                kind = next((k for p, k in DMA_API_KINDS if body.startswith(p)), "other")
                return DmaApiWarning(
                    ln.line_no,
                    ln.timestamp,
                    m.group("drv"),
                    m.group("dev"),
                    kind,
                    body,
                    dict(_BRACKET_RE.findall(body)),
                )
        if "callbacks suppressed" in msg:
            m = _RATELIMIT_RE.match(msg) or _RATELIMIT_RE.match(text[text.find(msg) :])
            if m:
                self.stats.suppressed += int(m.group("n"))
                return RateLimited(ln.line_no, ln.timestamp, m.group("func"), int(m.group("n")))
        return ln


def read_dmesg(
    source: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str],
) -> tuple[list[Record], DmesgStats]:
    """Read a whole log: all records (logs are small) and the stats."""
    r = DmesgReader(source)
    recs = list(r)
    return recs, r.stats
