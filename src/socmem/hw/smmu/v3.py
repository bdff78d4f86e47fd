"""An ARM SMMUv3: stream table, context descriptors, command queue, IOTLB, event queue.

The hardware half of drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c, as the driver sees it:

* the **stream table** (``strtab``): one :class:`StreamTableEntry` per StreamID, written by
  the driver, read by the SMMU.  The SMMU caches the STE (and its CD) it fetched; only
  ``CMD_CFGI_STE`` / ``CMD_CFGI_CD`` / ``CMD_CFGI_ALL`` drop the cached copy, so a driver
  that forgets to invalidate keeps the old configuration, as on silicon.  STEs never
  written read as the driver's initial STE (``V=1, Config=abort``: 6.1 with
  ``disable_bypass``; pass ``default_ste_config=STRTAB_STE_0_CFG_BYPASS`` for bypass);
* **context descriptors** (:class:`ContextDescriptor`): ASID and the stage-1 page table
  (an :class:`~socmem.linux.iommu.io_pgtable_arm.IoPgtableArm`, the TTB0 reference);
* the **command queue** (:meth:`SmmuV3.issue`): CMD_CFGI_STE / CFGI_ALL / CFGI_CD /
  CFGI_CD_ALL, CMD_TLBI_NH_VA (with the range fields TG/NUM/SCALE when the SMMU has
  RIL), CMD_TLBI_NH_ASID, CMD_TLBI_NSNH_ALL, CMD_PREFETCH_CONFIG, CMD_SYNC; counted per
  opcode under QEMU's names (``SMMU_CMD_TLBI_NH_VA`` ...) and optionally logged;
* **translation** (:meth:`SmmuV3.translate`): STE -> CD -> IOTLB -> page-table walk, with
  the architected faults recorded in the **event queue** (:class:`SmmuEvent`): the
  transaction is terminated and **no memory access happens** (``None`` is returned).

Fault rules (SMMUv3 architecture, IHI 0070):

* StreamID >= 2**sid_bits: ``C_BAD_STREAMID``;
* STE.V == 0: ``C_BAD_STE``;
* STE.Config == abort (0b000): the transaction is terminated **silently, no event**
  (the model still records a Finding ``smmu.ste-abort``, with no kernel log line);
* STE.Config == bypass: output = input;
* stage 1: SubstreamID beyond S1CDMax: ``C_BAD_SUBSTREAMID``; a transaction without
  SubstreamID on a stream with S1CDMax > 0 and S1DSS == terminate:
  ``F_STREAM_DISABLED``; CD.V == 0: ``C_BAD_CD``; invalid descriptor or iova beyond the
  table's input size: ``F_TRANSLATION``; output beyond OAS: ``F_ADDR_SIZE``; AF == 0:
  ``F_ACCESS``; write to AP read-only, unprivileged access to a privileged-only page or
  instruction fetch from XN: ``F_PERMISSION``.  Stage 2 is not modelled.

Every event also yields a :class:`~socmem.check.finding.Finding` (kind
``"smmu." + name.lower().replace("_", "-")``, e.g. ``smmu.f-translation``) whose message is
the kernel's log text for it, and the event queue is drained by the modelled
``arm_smmu_evtq_thread()`` with its rate limit into :attr:`SmmuV3.log`.

Fault-record field choices: CLASS is IN (input address caused fault) for
translation-class faults, as the architecture defines; QEMU (the fixture) writes 0, so
``fault_class=0`` reproduces QEMU's records.  The walk cache and the uTLBs are not
modelled; their sizes are kept.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from socmem.check.finding import Finding, FindingLog, HistoryEvent, Severity
from socmem.hw.smmu.config import smmu_args_from_soc
from socmem.hw.smmu.events import (
    EVENT_NAMES,
    EVT_ID_ACCESS_FAULT,
    EVT_ID_ADDR_SIZE_FAULT,
    EVT_ID_BAD_CD_CONFIG,
    EVT_ID_BAD_STE_CONFIG,
    EVT_ID_BAD_STREAMID_CONFIG,
    EVT_ID_BAD_SUBSTREAMID_CONFIG,
    EVT_ID_PERMISSION_FAULT,
    EVT_ID_STREAM_DISABLED_FAULT,
    EVT_ID_TRANSLATION_FAULT,
    EVTQ_1_CLASS_IN,
    Ratelimit,
    SmmuEvent,
    render_decoded,
    render_raw,
)
from socmem.hw.smmu.tlb import Iotlb

if TYPE_CHECKING:
    from socmem.linux.iommu.io_pgtable_arm import IoPgtableArm
    from socmem.soc.schema import Iommu

__all__ = [
    "CMD_NAMES",
    "CmdqEnt",
    "ContextDescriptor",
    "SmmuV3",
    "StreamTableEntry",
    "lpae_walk",
]

# --- STE (arm-smmu-v3.h STRTAB_STE_*) ----------------------------------------------------
STRTAB_STE_0_CFG_ABORT = 0
STRTAB_STE_0_CFG_BYPASS = 4
STRTAB_STE_0_CFG_S1_TRANS = 5
STRTAB_STE_0_CFG_S2_TRANS = 6
STRTAB_STE_1_S1DSS_TERMINATE = 0x0
STRTAB_STE_1_S1DSS_BYPASS = 0x1
STRTAB_STE_1_S1DSS_SSID0 = 0x2

# --- command opcodes (CMDQ_OP_*) and QEMU's names for them ---------------------------------
CMDQ_OP_PREFETCH_CFG = 0x01
CMDQ_OP_CFGI_STE = 0x03
CMDQ_OP_CFGI_ALL = 0x04
CMDQ_OP_CFGI_CD = 0x05
CMDQ_OP_CFGI_CD_ALL = 0x06
CMDQ_OP_TLBI_NH_ALL = 0x10
CMDQ_OP_TLBI_NH_ASID = 0x11
CMDQ_OP_TLBI_NH_VA = 0x12
CMDQ_OP_TLBI_NH_VAA = 0x13
CMDQ_OP_TLBI_EL2_ALL = 0x20
CMDQ_OP_TLBI_EL2_ASID = 0x21
CMDQ_OP_TLBI_EL2_VA = 0x22
CMDQ_OP_TLBI_S12_VMALL = 0x28
CMDQ_OP_TLBI_S2_IPA = 0x2A
CMDQ_OP_TLBI_NSNH_ALL = 0x30
CMDQ_OP_ATC_INV = 0x40
CMDQ_OP_PRI_RESP = 0x41
CMDQ_OP_RESUME = 0x44
CMDQ_OP_CMD_SYNC = 0x46
CMDQ_TLBI_RANGE_NUM_MAX = 31
CMDQ_BATCH_ENTRIES = 64  # BITS_PER_LONG

#: Opcode -> the name QEMU's ``smmuv3_cmdq_opcode`` trace prints (hw/arm/smmuv3-internal.h).
CMD_NAMES: dict[int, str] = {
    0x01: "SMMU_CMD_PREFETCH_CONFIG",
    0x02: "SMMU_CMD_PREFETCH_ADDR",
    0x03: "SMMU_CMD_CFGI_STE",
    0x04: "SMMU_CMD_CFGI_STE_RANGE",  # Linux's CMDQ_OP_CFGI_ALL (range 31)
    0x05: "SMMU_CMD_CFGI_CD",
    0x06: "SMMU_CMD_CFGI_CD_ALL",
    0x10: "SMMU_CMD_TLBI_NH_ALL",
    0x11: "SMMU_CMD_TLBI_NH_ASID",
    0x12: "SMMU_CMD_TLBI_NH_VA",
    0x13: "SMMU_CMD_TLBI_NH_VAA",
    0x18: "SMMU_CMD_TLBI_EL3_ALL",
    0x1A: "SMMU_CMD_TLBI_EL3_VA",
    0x20: "SMMU_CMD_TLBI_EL2_ALL",
    0x21: "SMMU_CMD_TLBI_EL2_ASID",
    0x22: "SMMU_CMD_TLBI_EL2_VA",
    0x23: "SMMU_CMD_TLBI_EL2_VAA",
    0x28: "SMMU_CMD_TLBI_S12_VMALL",
    0x2A: "SMMU_CMD_TLBI_S2_IPA",
    0x30: "SMMU_CMD_TLBI_NSNH_ALL",
    0x40: "SMMU_CMD_ATC_INV",
    0x41: "SMMU_CMD_PRI_RESP",
    0x44: "SMMU_CMD_RESUME",
    0x45: "SMMU_CMD_STALL_TERM",
    0x46: "SMMU_CMD_SYNC",
}

# Permission bits of a walk result / IOTLB entry.
PERM_R = 1
PERM_W = 2
PERM_UNPRIV = 4
PERM_XN = 8

_PTE_VALID = 1
_PTE_TYPE_MASK = 3
_PTE_AF = 1 << 10
_PTE_AP_UNPRIV = 1 << 6
_PTE_AP_RDONLY = 2 << 6
_PTE_XN = 3 << 53
_PTE_HAP_READ = 1 << 6
_PTE_HAP_WRITE = 2 << 6


@dataclass(slots=True)
class CmdqEnt:
    """One command: ``struct arm_smmu_cmdq_ent`` (fields of every opcode, unused ones 0).

    :meth:`encode` builds the two dwords as ``arm_smmu_cmdq_build_cmd()`` does.
    """

    opcode: int
    sid: int = 0
    ssid: int = 0
    asid: int = 0
    vmid: int = 0
    addr: int = 0
    leaf: bool = False
    tg: int = 0
    ttl: int = 0
    num: int = 0
    scale: int = 0
    span: int = 0
    cs: int = 0

    @property
    def name(self) -> str:
        """QEMU's name for the opcode."""
        return CMD_NAMES.get(self.opcode, f"SMMU_CMD_{self.opcode:#04x}")

    def encode(self) -> tuple[int, int]:
        """The command's two 64-bit dwords (CMDQ_0_OP [7:0] and the per-opcode fields)."""
        op = self.opcode
        dw0 = op & 0xFF
        dw1 = 0
        if op == CMDQ_OP_PREFETCH_CFG:
            dw0 |= self.sid << 32
        elif op in (CMDQ_OP_CFGI_STE, CMDQ_OP_CFGI_CD, CMDQ_OP_CFGI_CD_ALL):
            dw0 |= self.sid << 32
            if op == CMDQ_OP_CFGI_CD:
                dw0 |= (self.ssid & 0xFFFFF) << 12
            dw1 |= int(self.leaf)
        elif op == CMDQ_OP_CFGI_ALL:
            dw1 |= 31  # CMDQ_CFGI_1_RANGE: "Cover the entire SID range"
        elif op in (CMDQ_OP_TLBI_NH_VA, CMDQ_OP_TLBI_EL2_VA):
            dw0 |= (self.num & 0x1F) << 12 | (self.scale & 0x1F) << 20
            dw0 |= (self.vmid & 0xFFFF) << 32 | (self.asid & 0xFFFF) << 48
            dw1 |= int(self.leaf) | (self.ttl & 3) << 8 | (self.tg & 3) << 10
            dw1 |= self.addr & ~0xFFF & ((1 << 64) - 1)
        elif op in (CMDQ_OP_TLBI_NH_ASID, CMDQ_OP_TLBI_EL2_ASID):
            dw0 |= (self.asid & 0xFFFF) << 48 | (self.vmid & 0xFFFF) << 32
        elif op == CMDQ_OP_TLBI_S12_VMALL:
            dw0 |= (self.vmid & 0xFFFF) << 32
        elif op == CMDQ_OP_CMD_SYNC:
            dw0 |= (self.cs & 3) << 12
        return dw0, dw1


@dataclass(slots=True)
class ContextDescriptor:
    """A stage-1 context descriptor (CTXDESC_CD_0_* ...): ASID and the TTB0 page table.

    ``record_faults``/``abort`` are CD.R / CD.A (the driver sets both); ``epd0`` disables
    TTB0 walks (every access faults with F_TRANSLATION).
    """

    asid: int
    ttb0: IoPgtableArm | None
    valid: bool = True
    epd0: bool = False
    record_faults: bool = True
    abort: bool = True
    stall: bool = False


@dataclass(slots=True)
class StreamTableEntry:
    """An STE (STRTAB_STE_0_* ...): V, Config, the CD table (SSID -> CD), S1CDMax, S1DSS."""

    valid: bool = True
    config: int = STRTAB_STE_0_CFG_ABORT
    cds: dict[int, ContextDescriptor] = field(default_factory=dict)
    s1cdmax: int = 0
    s1dss: int = STRTAB_STE_1_S1DSS_SSID0

    def dword0(self) -> int:
        """STE dword 0 as far as modelled: V [0], Config [3:1], S1CDMax [63:59]."""
        return int(self.valid) | (self.config & 7) << 1 | (self.s1cdmax & 0x1F) << 59


def lpae_walk(pgtable: IoPgtableArm, iova: int) -> tuple[int, int, int, int]:
    """Walk an LPAE table like the SMMU's table walker: ``(status, oa, size, perms_or_level)``.

    ``status`` is 0 (ok: leaf output base ``oa``, leaf ``size``, ``perms``),
    ``EVT_ID_TRANSLATION_FAULT`` or ``EVT_ID_ACCESS_FAULT`` (4th item = the level).
    Reads the real descriptor bits (type, AF, AP[2:1] / S2AP, XN) via ``pte_at``.
    """
    if iova >> pgtable.cfg.ias:
        return EVT_ID_TRANSLATION_FAULT, 0, 0, 0
    level, pte = pgtable.pte_at(iova)
    if not pte & _PTE_VALID:
        return EVT_ID_TRANSLATION_FAULT, 0, 0, level
    typ = pte & _PTE_TYPE_MASK
    if (level == 3 and typ != 3) or (level < 3 and typ == 3):
        return EVT_ID_TRANSLATION_FAULT, 0, 0, level
    if not pte & _PTE_AF:
        return EVT_ID_ACCESS_FAULT, 0, 0, level
    size = 1 << (pgtable.pg_shift + (3 - level) * pgtable.bits_per_level)
    d = pgtable.decode(pte, level)
    if d.stage == 1:
        perms = PERM_R
        if not pte & _PTE_AP_RDONLY:
            perms |= PERM_W
        if pte & _PTE_AP_UNPRIV:
            perms |= PERM_UNPRIV
    else:
        perms = PERM_UNPRIV
        if pte & _PTE_HAP_READ:
            perms |= PERM_R
        if pte & _PTE_HAP_WRITE:
            perms |= PERM_W
    if pte & _PTE_XN == _PTE_XN:
        perms |= PERM_XN
    return 0, d.oa, size, perms


def _perm_ok(perms: int, is_write: bool, privileged: bool, instruction: bool) -> bool:
    if not perms & (PERM_W if is_write else PERM_R):
        return False
    if not privileged and not perms & PERM_UNPRIV:
        return False
    return not (instruction and perms & PERM_XN)


class SmmuV3:
    """One SMMUv3 instance (the hardware), named like the kernel names its device.

    ``dev_name`` is the platform device name (``"9050000.smmuv3"``), used in log lines
    ``"arm-smmu-v3 <dev_name>: ..."``.  ``features``: ``range_inv`` (IDR3.RIL,
    ARM_SMMU_FEAT_RANGE_INV), ``hyp`` (ARM_SMMU_FEAT_HYP), ``prefetch`` (no
    ARM_SMMU_OPT_SKIP_PREFETCH).  ``log_format`` picks the 6.1 raw lines or the decoded
    mainline form.  ``clock`` returns model time in ns (default: always 0).
    """

    driver_name = "arm-smmu-v3"

    def __init__(
        self,
        name: str,
        dev_name: str | None = None,
        *,
        sid_bits: int = 16,
        ssid_bits: int = 20,
        asid_bits: int = 16,
        ias: int = 48,
        oas: int = 48,
        pgsize_bitmap: int = (1 << 12) | (1 << 21) | (1 << 30),
        range_inv: bool = True,
        hyp: bool = False,
        prefetch: bool = True,
        coherent_walk: bool = True,
        iotlb_entries: int = 2048,
        utlb_entries: int = 32,
        walk_cache_entries: int = 64,
        default_ste_config: int = STRTAB_STE_0_CFG_ABORT,
        fault_class: int = EVTQ_1_CLASS_IN,
        log_format: Literal["6.1", "latest"] = "6.1",
        clock: Callable[[], int] | None = None,
        findings: FindingLog | None = None,
        detect_stale: bool = True,
        log_commands: bool = False,
        auto_drain: bool = True,
        evtq_entries: int = 1 << 15,
    ) -> None:
        self.name = name
        self.dev_name = dev_name or name
        self.sid_bits = sid_bits
        self.ssid_bits = ssid_bits
        self.asid_bits = asid_bits
        self.ias = ias
        self.oas = oas
        self.pgsize_bitmap = pgsize_bitmap
        self.range_inv = range_inv
        self.hyp = hyp
        self.prefetch = prefetch
        self.coherent_walk = coherent_walk
        self.utlb_entries = utlb_entries
        self.walk_cache_entries = walk_cache_entries
        self.iotlb = Iotlb(iotlb_entries)
        self.default_ste = StreamTableEntry(valid=True, config=default_ste_config)
        self.fault_class = fault_class
        self.log_format = log_format
        self.clock: Callable[[], int] = clock or (lambda: 0)
        self.findings = findings if findings is not None else FindingLog()
        self.detect_stale = detect_stale
        self.auto_drain = auto_drain
        self.evtq_entries = evtq_entries
        # memory the driver writes
        self.strtab: dict[int, StreamTableEntry] = {}
        # what the SMMU has cached (sid -> STE snapshot)
        self._cfg_cache: dict[int, StreamTableEntry] = {}
        # commands
        self.cmd_counts: Counter[str] = Counter()
        self.cmdq_log: list[str] | None = [] if log_commands else None
        # events
        self.evtq: list[SmmuEvent] = []
        self.events: list[SmmuEvent] = []  # every event ever recorded
        self.evtq_overflows = 0
        self.ratelimit = Ratelimit("arm_smmu_evtq_thread")
        self.log: list[str] = []
        # kernel's SID registry (arm_smmu_insert_master): sid -> dev_name, for "client"
        self.stream_names: dict[int, str] = {}
        # counters
        self.transactions = 0
        self.walks = 0
        self.aborted = 0
        self.bypassed = 0
        self.stale_hits = 0

    @classmethod
    def from_soc(cls, iommu: Iommu, dev_name: str | None = None, **kw: object) -> SmmuV3:
        """An SMMUv3 built from the SoC description: granules -> page sizes, ias/oas, TLB
        sizes, walk coherency.  ``kw`` overrides any constructor argument."""
        args = smmu_args_from_soc(iommu)
        args.update(kw)
        return cls(iommu.name, dev_name or iommu.name, **args)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ commands --
    def issue(self, cmds: list[CmdqEnt], sync: bool = False) -> None:
        """Consume ``cmds`` in order, then a CMD_SYNC if ``sync``
        (``arm_smmu_cmdq_issue_cmdlist(smmu, cmds, n, sync)``)."""
        for cmd in cmds:
            self._execute(cmd)
        if sync:
            self._execute(CmdqEnt(CMDQ_OP_CMD_SYNC))

    def _execute(self, cmd: CmdqEnt) -> None:
        name = CMD_NAMES.get(cmd.opcode, f"SMMU_CMD_{cmd.opcode:#04x}")
        self.cmd_counts[name] += 1
        if self.cmdq_log is not None:
            self.cmdq_log.append(name)
        op = cmd.opcode
        if op == CMDQ_OP_TLBI_NH_VA:
            if cmd.tg:
                tg_shift = 10 + 2 * cmd.tg
                size = (cmd.num + 1) << (cmd.scale + tg_shift)
                self.iotlb.invalidate_range(cmd.asid, cmd.addr, size)
            else:
                self.iotlb.invalidate_range(cmd.asid, cmd.addr, 1)
        elif op == CMDQ_OP_TLBI_NH_ASID:
            self.iotlb.invalidate_asid(cmd.asid)
        elif op in (CMDQ_OP_TLBI_NSNH_ALL, CMDQ_OP_TLBI_EL2_ALL, CMDQ_OP_TLBI_S12_VMALL):
            self.iotlb.invalidate_all()
        elif op in (CMDQ_OP_CFGI_STE, CMDQ_OP_CFGI_CD, CMDQ_OP_CFGI_CD_ALL):
            self._cfg_cache.pop(cmd.sid, None)
        elif op == CMDQ_OP_CFGI_ALL:
            self._cfg_cache.clear()
        # PREFETCH_CONFIG, CMD_SYNC: no architectural state change in this model

    @property
    def tlbi_commands(self) -> int:
        """TLB invalidation commands consumed so far (every SMMU_CMD_TLBI_*)."""
        return sum(n for k, n in self.cmd_counts.items() if k.startswith("SMMU_CMD_TLBI_"))

    # ------------------------------------------------------------------ config --
    def write_ste(self, sid: int, ste: StreamTableEntry) -> None:
        """The driver writes STE ``sid`` in memory (not visible until CFGI_STE if cached)."""
        self.strtab[sid] = ste

    def _fetch_ste(self, sid: int) -> StreamTableEntry:
        ste = self._cfg_cache.get(sid)
        if ste is None:
            mem = self.strtab.get(sid, self.default_ste)
            ste = dataclasses.replace(mem, cds=dict(mem.cds))
            self._cfg_cache[sid] = ste
        return ste

    # --------------------------------------------------------------- translate --
    def translate(
        self,
        sid: int,
        iova: int,
        is_write: bool = False,
        *,
        ssid: int | None = None,
        privileged: bool = False,
        instruction: bool = False,
        history: list[HistoryEvent] | None = None,
    ) -> int | None:
        """Translate one transaction: the output (physical) address, or None when the
        SMMU terminates it (a fault recorded in the event queue, or an abort STE)."""
        self.transactions += 1
        oa, event_id = self._resolve(sid, iova, is_write, ssid, privileged, instruction, history)
        if event_id:
            self._fault(event_id, sid, iova, is_write, ssid, privileged, instruction, history)
        return oa

    def _resolve(
        self,
        sid: int,
        iova: int,
        is_write: bool,
        ssid: int | None,
        privileged: bool,
        instruction: bool,
        history: list[HistoryEvent] | None,
    ) -> tuple[int | None, int]:
        """``(output address, 0)``, ``(None, event id)`` for a fault, or ``(None, 0)`` for a
        transaction an abort STE terminates silently: STE → CD → IOTLB → table walk."""
        if sid >> self.sid_bits:
            return None, EVT_ID_BAD_STREAMID_CONFIG
        ste = self._fetch_ste(sid)
        if not ste.valid:
            return None, EVT_ID_BAD_STE_CONFIG
        cfg = ste.config
        if cfg == STRTAB_STE_0_CFG_BYPASS:
            self.bypassed += 1
            return iova, 0
        if cfg == STRTAB_STE_0_CFG_ABORT:
            self.aborted += 1
            self._abort_finding(sid, iova, is_write, history)
            return None, 0
        if cfg != STRTAB_STE_0_CFG_S1_TRANS:
            return None, EVT_ID_BAD_STE_CONFIG
        if ssid is not None:
            if not ste.s1cdmax or ssid >> ste.s1cdmax:
                return None, EVT_ID_BAD_SUBSTREAMID_CONFIG
            cd = ste.cds.get(ssid)
        else:
            if ste.s1cdmax and ste.s1dss == STRTAB_STE_1_S1DSS_TERMINATE:
                return None, EVT_ID_STREAM_DISABLED_FAULT
            if ste.s1cdmax and ste.s1dss == STRTAB_STE_1_S1DSS_BYPASS:
                self.bypassed += 1
                return iova, 0
            cd = ste.cds.get(0)
        if cd is None or not cd.valid or cd.ttb0 is None:
            return None, EVT_ID_BAD_CD_CONFIG
        if cd.epd0:
            return None, EVT_ID_TRANSLATION_FAULT
        hit = self.iotlb.lookup(cd.asid, iova)
        if hit is not None:
            oa = hit.oa | (iova & (hit.size - 1))
            if self.detect_stale:
                self._check_stale(sid, cd, iova, oa, hit.perms, history)
            if not _perm_ok(hit.perms, is_write, privileged, instruction):
                return None, EVT_ID_PERMISSION_FAULT
            return oa, 0
        self.walks += 1
        status, base, size, perms = lpae_walk(cd.ttb0, iova)
        if status:
            return None, status
        oa = base | (iova & (size - 1))
        if oa >> self.oas:
            return None, EVT_ID_ADDR_SIZE_FAULT
        self.iotlb.fill(cd.asid, iova, size, base, perms)
        if not _perm_ok(perms, is_write, privileged, instruction):
            return None, EVT_ID_PERMISSION_FAULT
        return oa, 0

    def _check_stale(
        self,
        sid: int,
        cd: ContextDescriptor,
        iova: int,
        oa: int,
        perms: int,
        history: list[HistoryEvent] | None,
    ) -> None:
        assert cd.ttb0 is not None
        status, base, size, wperms = lpae_walk(cd.ttb0, iova)
        if status == 0 and (base | (iova & (size - 1))) == oa and wperms == perms:
            return
        self.stale_hits += 1
        client = self.stream_names.get(sid, "(unassigned sid)")
        now = self.clock()
        self.findings.add(
            Finding(
                kind="smmu.stale-iotlb-hit",
                severity=Severity.WARNING,
                message=(
                    f"{self.driver_name} {self.dev_name}: sid {sid:#x} iova {iova:#x} translated"
                    f" to {oa:#x} by a stale IOTLB entry (asid {cd.asid}): the page table no"
                    " longer maps it; the access reaches memory until a TLBI removes the entry"
                ),
                subject=f"{client} sid {sid:#x} iova {iova:#x}",
                time=now / 1e9,
                history=list(history or []),
                data={"sid": sid, "iova": iova, "oa": oa, "asid": cd.asid},
            )
        )

    def _abort_finding(
        self, sid: int, iova: int, is_write: bool, history: list[HistoryEvent] | None
    ) -> None:
        client = self.stream_names.get(sid, "(unassigned sid)")
        self.findings.add(
            Finding(
                kind="smmu.ste-abort",
                severity=Severity.ERROR,
                message=(
                    f"(no kernel log: STE.Config=abort terminates the transaction silently)"
                    f" {self.driver_name} {self.dev_name}: sid {sid:#x}"
                    f" {'write' if is_write else 'read'} iova {iova:#x} aborted"
                ),
                subject=f"{client} sid {sid:#x} iova {iova:#x}",
                time=self.clock() / 1e9,
                history=list(history or []),
                data={"sid": sid, "iova": iova, "write": is_write},
            )
        )

    # ------------------------------------------------------------------ events --
    def _fault(
        self,
        event_id: int,
        sid: int,
        iova: int,
        is_write: bool,
        ssid: int | None,
        privileged: bool,
        instruction: bool,
        history: list[HistoryEvent] | None,
    ) -> None:
        translation_class = event_id in (
            EVT_ID_TRANSLATION_FAULT,
            EVT_ID_ADDR_SIZE_FAULT,
            EVT_ID_ACCESS_FAULT,
            EVT_ID_PERMISSION_FAULT,
        )
        ev = SmmuEvent.build(
            event_id,
            sid,
            ssid=ssid,
            addr=iova,
            read=not is_write,
            privileged=privileged,
            instruction=instruction,
            event_class=self.fault_class if translation_class else 0,
            time=self.clock(),
        )
        self.record_event(ev, history)
        return None

    def _prefix(self) -> str:
        return f"{self.driver_name} {self.dev_name}: "

    def render(self, ev: SmmuEvent) -> list[str]:
        """The kernel's log lines for ``ev`` (with the device prefix, no rate limit)."""
        if self.log_format == "6.1":
            body = render_raw(ev)
        else:
            body = render_decoded(ev, self.stream_names.get(ev.sid))
        p = self._prefix()
        return [p + line for line in body]

    def record_event(self, ev: SmmuEvent, history: list[HistoryEvent] | None = None) -> None:
        """Write ``ev`` into the event queue (and a Finding); drain if ``auto_drain``."""
        if len(self.evtq) >= self.evtq_entries:
            self.evtq_overflows += 1
        else:
            self.evtq.append(ev)
        self.events.append(ev)
        client = self.stream_names.get(ev.sid, "(unassigned sid)")
        self.findings.add(
            Finding(
                kind="smmu." + EVENT_NAMES.get(ev.id, "unknown").lower().replace("_", "-"),
                severity=Severity.ERROR,
                message="\n".join(self.render(ev)),
                subject=f"{client} sid {ev.sid:#x} iova {ev.iova:#x}",
                time=ev.time / 1e9,
                history=list(history or []),
                data={"raw": list(ev.raw), "event": ev.name, "sid": ev.sid, "iova": ev.iova},
            )
        )
        if self.auto_drain:
            self.evtq_thread()

    def evtq_thread(self) -> list[str]:
        """``arm_smmu_evtq_thread()``: drain the queue, print what the rate limit lets
        through (no IOPF handler is modelled, so every event is "unhandled").  Returns the
        lines printed, also appended to :attr:`log`."""
        out: list[str] = []
        if self.evtq_overflows:
            out.append(self._prefix() + "EVTQ overflow detected -- events lost")
            self.evtq_overflows = 0
        now = self.clock()
        for ev in self.evtq:
            ok, note = self.ratelimit.check(now)
            if note:
                out.append(note)
            if ok:
                out.extend(self.render(ev))
        self.evtq.clear()
        self.log.extend(out)
        return out
