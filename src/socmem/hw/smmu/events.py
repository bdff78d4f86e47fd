"""SMMUv3 event queue records and the kernel's log lines for them.

Models the record layout of ``EVTQ_*`` in drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h
(32 bytes = 4 x u64) and two renderings:

* :func:`render_raw` — Linux 6.1 ``arm_smmu_evtq_thread()``: ``dev_info`` of
  ``"event 0x%02x received:"`` then the four dwords as ``"\\t0x%016llx"``;
* :func:`render_decoded` — mainline (~v6.15+) ``arm_smmu_dump_event()``: the same raw
  lines (``dev_err``) followed by ``arm_smmu_decode_event()``'s decoded text
  (``"event: %s client: %s sid: %#x ssid: %#x iova: %#llx ipa: %#llx"`` ...).

Both are rate limited by one ``static DEFINE_RATELIMIT_STATE(rs, 5 * HZ, 10)`` per
handler, modelled by :class:`Ratelimit` (lib/ratelimit.c ``___ratelimit()``), which prints
``"<func>: N callbacks suppressed"`` (no device prefix) when a new interval opens after
messages were dropped.

``EVTQ_3_FETCH_ADDR`` is taken as GENMASK_ULL(51, 3) (our notes saw it only partially).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EVENT_CLASS_STR",
    "EVENT_NAMES",
    "KERNEL_EVENT_STR",
    "Ratelimit",
    "SmmuEvent",
    "c_hex",
    "render_decoded",
    "render_raw",
]

# --- event IDs (SMMUv3 architecture; arm-smmu-v3.h EVT_ID_*) ---------------------------
EVT_ID_UUT = 0x01
EVT_ID_BAD_STREAMID_CONFIG = 0x02
EVT_ID_STE_FETCH_FAULT = 0x03
EVT_ID_BAD_STE_CONFIG = 0x04
EVT_ID_BAD_ATS_TREQ = 0x05
EVT_ID_STREAM_DISABLED_FAULT = 0x06
EVT_ID_TRANSL_FORBIDDEN = 0x07
EVT_ID_BAD_SUBSTREAMID_CONFIG = 0x08
EVT_ID_CD_FETCH_FAULT = 0x09
EVT_ID_BAD_CD_CONFIG = 0x0A
EVT_ID_WALK_EABT = 0x0B
EVT_ID_TRANSLATION_FAULT = 0x10
EVT_ID_ADDR_SIZE_FAULT = 0x11
EVT_ID_ACCESS_FAULT = 0x12
EVT_ID_PERMISSION_FAULT = 0x13
EVT_ID_TLB_CONFLICT = 0x20
EVT_ID_CFG_CONFLICT = 0x21
EVT_ID_PAGE_REQUEST = 0x24
EVT_ID_VMS_FETCH_FAULT = 0x25

#: Architected names (SMMUv3 spec / QEMU's ``SMMU_EVT_*`` without the prefix).
EVENT_NAMES: dict[int, str] = {
    0x01: "F_UUT",
    0x02: "C_BAD_STREAMID",
    0x03: "F_STE_FETCH",
    0x04: "C_BAD_STE",
    0x05: "F_BAD_ATS_TREQ",
    0x06: "F_STREAM_DISABLED",
    0x07: "F_TRANSL_FORBIDDEN",
    0x08: "C_BAD_SUBSTREAMID",
    0x09: "F_CD_FETCH",
    0x0A: "C_BAD_CD",
    0x0B: "F_WALK_EABT",
    0x10: "F_TRANSLATION",
    0x11: "F_ADDR_SIZE",
    0x12: "F_ACCESS",
    0x13: "F_PERMISSION",
    0x20: "F_TLB_CONFLICT",
    0x21: "F_CFG_CONFLICT",
    0x24: "E_PAGE_REQUEST",
    0x25: "F_VMS_FETCH",
}

#: ``event_str[]`` of mainline arm-smmu-v3.c: the IDs the kernel names; others "UNKNOWN".
KERNEL_EVENT_STR: dict[int, str] = {
    k: EVENT_NAMES[k]
    for k in (0x02, 0x03, 0x04, 0x06, 0x08, 0x09, 0x0A, 0x10, 0x11, 0x12, 0x13, 0x25)
}

#: ``event_class_str[]``: EVTQ_1_CLASS values.
EVENT_CLASS_STR = (
    "CD fetch",
    "Stage 1 translation table fetch",
    "Input address caused fault",
    "Reserved",
)
EVTQ_1_CLASS_CD = 0
EVTQ_1_CLASS_TT = 1
EVTQ_1_CLASS_IN = 2

# --- record fields ---------------------------------------------------------------------
EVTQ_ENT_DWORDS = 4
EVTQ_0_ID_MASK = 0xFF
EVTQ_0_SSV = 1 << 11
EVTQ_0_SSID_SHIFT = 12
EVTQ_0_SSID_MASK = (1 << 20) - 1  # [31:12]
EVTQ_0_SID_SHIFT = 32
EVTQ_1_STAG_MASK = 0xFFFF
EVTQ_1_STALL = 1 << 31
EVTQ_1_PnU = 1 << 33
EVTQ_1_InD = 1 << 34
EVTQ_1_RnW = 1 << 35
EVTQ_1_S2 = 1 << 39
EVTQ_1_CLASS_SHIFT = 40
EVTQ_1_TT_READ = 1 << 44
EVTQ_3_IPA = ((1 << 52) - 1) & ~((1 << 12) - 1)  # GENMASK_ULL(51, 12)
EVTQ_3_FETCH_ADDR = ((1 << 52) - 1) & ~((1 << 3) - 1)  # GENMASK_ULL(51, 3)


def c_hex(x: int) -> str:
    """C's ``%#x`` / ``%#llx``: ``0x``-prefixed, except that zero prints as ``0``."""
    return f"{x:#x}" if x else "0"


@dataclass(frozen=True, slots=True)
class SmmuEvent:
    """One event queue record: four 64-bit dwords with the real EVTQ bit layout.

    Build with :meth:`build`; read back with the properties, which follow
    ``arm_smmu_decode_event()`` (ssid is 0 = IOMMU_NO_PASID when SSV is clear).
    ``time`` is the model time (ns) the SMMU wrote it.
    """

    raw: tuple[int, int, int, int]
    time: int = 0

    @classmethod
    def build(
        cls,
        event_id: int,
        sid: int,
        *,
        ssid: int | None = None,
        addr: int = 0,
        read: bool = False,
        privileged: bool = False,
        instruction: bool = False,
        s2: bool = False,
        event_class: int = 0,
        tt_read: bool = False,
        stall: bool = False,
        stag: int = 0,
        ipa: int = 0,
        fetch_addr: int = 0,
        time: int = 0,
    ) -> SmmuEvent:
        """Encode a record (arm-smmu-v3.h ``EVTQ_0_*`` .. ``EVTQ_3_*``)."""
        dw0 = (event_id & EVTQ_0_ID_MASK) | ((sid & 0xFFFF_FFFF) << EVTQ_0_SID_SHIFT)
        if ssid is not None:
            dw0 |= EVTQ_0_SSV | ((ssid & EVTQ_0_SSID_MASK) << EVTQ_0_SSID_SHIFT)
        dw1 = (stag & EVTQ_1_STAG_MASK) | ((event_class & 3) << EVTQ_1_CLASS_SHIFT)
        if stall:
            dw1 |= EVTQ_1_STALL
        if privileged:
            dw1 |= EVTQ_1_PnU
        if instruction:
            dw1 |= EVTQ_1_InD
        if read:
            dw1 |= EVTQ_1_RnW
        if s2:
            dw1 |= EVTQ_1_S2
        if tt_read:
            dw1 |= EVTQ_1_TT_READ
        dw3 = (ipa & EVTQ_3_IPA) | (fetch_addr & EVTQ_3_FETCH_ADDR)
        return cls((dw0, dw1, addr & ((1 << 64) - 1), dw3), time)

    @property
    def id(self) -> int:
        """EVTQ_0_ID."""
        return self.raw[0] & EVTQ_0_ID_MASK

    @property
    def name(self) -> str:
        """Architected name, e.g. ``"F_TRANSLATION"``."""
        return EVENT_NAMES.get(self.id, "UNKNOWN")

    @property
    def sid(self) -> int:
        """EVTQ_0_SID."""
        return self.raw[0] >> EVTQ_0_SID_SHIFT

    @property
    def ssv(self) -> bool:
        """EVTQ_0_SSV."""
        return bool(self.raw[0] & EVTQ_0_SSV)

    @property
    def ssid(self) -> int:
        """EVTQ_0_SSID when SSV, else IOMMU_NO_PASID (0)."""
        return (self.raw[0] >> EVTQ_0_SSID_SHIFT) & EVTQ_0_SSID_MASK if self.ssv else 0

    @property
    def read(self) -> bool:
        """EVTQ_1_RnW."""
        return bool(self.raw[1] & EVTQ_1_RnW)

    @property
    def privileged(self) -> bool:
        """EVTQ_1_PnU."""
        return bool(self.raw[1] & EVTQ_1_PnU)

    @property
    def instruction(self) -> bool:
        """EVTQ_1_InD."""
        return bool(self.raw[1] & EVTQ_1_InD)

    @property
    def s2(self) -> bool:
        """EVTQ_1_S2."""
        return bool(self.raw[1] & EVTQ_1_S2)

    @property
    def stall(self) -> bool:
        """EVTQ_1_STALL."""
        return bool(self.raw[1] & EVTQ_1_STALL)

    @property
    def stag(self) -> int:
        """EVTQ_1_STAG."""
        return self.raw[1] & EVTQ_1_STAG_MASK

    @property
    def event_class(self) -> int:
        """EVTQ_1_CLASS."""
        return (self.raw[1] >> EVTQ_1_CLASS_SHIFT) & 3

    @property
    def iova(self) -> int:
        """EVTQ_2_ADDR."""
        return self.raw[2]

    @property
    def ipa(self) -> int:
        """EVTQ_3_IPA."""
        return self.raw[3] & EVTQ_3_IPA

    @property
    def fetch_addr(self) -> int:
        """EVTQ_3_FETCH_ADDR."""
        return self.raw[3] & EVTQ_3_FETCH_ADDR


def render_raw(ev: SmmuEvent) -> list[str]:
    """6.1 ``arm_smmu_evtq_thread()`` / mainline ``arm_smmu_dump_raw_event()`` messages
    (without the ``"<driver> <dev>: "`` prefix)."""
    lines = [f"event 0x{ev.id:02x} received:"]
    lines.extend(f"\t0x{dw:016x}" for dw in ev.raw)
    return lines


def render_decoded(ev: SmmuEvent, client: str | None) -> list[str]:
    """Mainline ``arm_smmu_dump_event()``: raw lines then the decoded lines.

    ``client`` is the master's dev_name for a registered SID, else None
    (``"(unassigned sid)"``).
    """
    lines = render_raw(ev)
    name = KERNEL_EVENT_STR.get(ev.id, "UNKNOWN")
    who = client if client is not None else "(unassigned sid)"
    head = f"event: {name} client: {who} sid: {c_hex(ev.sid)} ssid: {c_hex(ev.ssid)}"
    if ev.id in (
        EVT_ID_TRANSLATION_FAULT,
        EVT_ID_ADDR_SIZE_FAULT,
        EVT_ID_ACCESS_FAULT,
        EVT_ID_PERMISSION_FAULT,
    ):
        lines.append(f"{head} iova: {c_hex(ev.iova)} ipa: {c_hex(ev.ipa)}")
        class_tt = ev.id == EVT_ID_PERMISSION_FAULT and ev.event_class == EVTQ_1_CLASS_TT
        ttd = (" ttd_read" if ev.raw[1] & EVTQ_1_TT_READ else " ttd_write") if class_tt else ""
        lines.append(
            f"{'priv' if ev.privileged else 'unpriv'} {'inst' if ev.instruction else 'data'}"
            f" {'read' if ev.read else 'write'} {'s2' if ev.s2 else 's1'}"
            f' "{EVENT_CLASS_STR[ev.event_class]}"{ttd}{" stall" if ev.stall else ""}'
            f" stag: {c_hex(ev.stag)}"
        )
    elif ev.id in (EVT_ID_STE_FETCH_FAULT, EVT_ID_CD_FETCH_FAULT, EVT_ID_VMS_FETCH_FAULT):
        lines.append(f"{head} fetch_addr: {c_hex(ev.fetch_addr)}")
    else:
        lines.append(head)
    return lines


class Ratelimit:
    """``struct ratelimit_state`` + ``___ratelimit()`` (lib/ratelimit.c).

    ``interval`` in model ns (DEFAULT_RATELIMIT_INTERVAL = 5 * HZ = 5 s), ``burst``
    (DEFAULT_RATELIMIT_BURST = 10), ``func`` the caller's ``__func__`` used in the
    ``"%s: %d callbacks suppressed"`` warning.
    """

    def __init__(self, func: str, interval: int = 5_000_000_000, burst: int = 10) -> None:
        self.func = func
        self.interval = interval
        self.burst = burst
        self.begin: int | None = None
        self.printed = 0
        self.missed = 0

    def check(self, now: int) -> tuple[bool, str | None]:
        """``__ratelimit(rs)``: (print this message?, a "callbacks suppressed" line or None)."""
        if not self.interval:
            return True, None
        note = None
        if self.begin is None:
            self.begin = now
        if now > self.begin + self.interval:  # time_is_before_jiffies(begin + interval)
            if self.missed:
                note = f"{self.func}: {self.missed} callbacks suppressed"
                self.missed = 0
            self.begin = now
            self.printed = 0
        if self.burst and self.burst > self.printed:
            self.printed += 1
            return True, note
        self.missed += 1
        return False, note
