"""An ARM SMMUv2 / MMU-500: stream matching, context banks, TLB maintenance registers.

The hardware half of drivers/iommu/arm/arm-smmu/arm-smmu.c:

* stream matching: SMR[i] = (id, mask, valid) matches a StreamID when
  ``(sid ^ id) & ~mask == 0``; S2CR[i] gives the type (translate / bypass / fault) and
  the context bank.  No match: a global fault (sGFSR.USF) — with the kernel's
  ``disable_bypass`` default — logged as ``"Blocked unknown Stream ID 0x%hx; ..."``;
* context banks: the stage-1 page table (IoPgtableArm) and the ASID (= cbndx in
  arm-smmu.c).  A fault sets FSR (TF 0x2 / PF 0x8 / AFF 0x4 / ASF 0x80, Format=2 for
  AArch64 contexts), FSYNR0 (PLVL, WNR, PNU, IND), FAR and CBFRSYNRA (the StreamID), then
  the modelled ``arm_smmu_context_fault()`` prints (``dev_err_ratelimited``)
  ``"Unhandled context fault: fsr=0x%x, iova=0x%08lx, fsynr=0x%x, cbfrsynra=0x%x, cb=%d"``
  and clears FSR;
* TLB maintenance registers: TLBIVA, TLBIVAL, TLBIASID, TLBSYNC per context bank and
  TLBIALLNSNH globally, counted in :attr:`SmmuV2.reg_counts`.

No memory access happens on a fault: :meth:`SmmuV2.translate` returns None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from socmem.check.finding import Finding, FindingLog, HistoryEvent, Severity
from socmem.hw.smmu.config import smmu_args_from_soc
from socmem.hw.smmu.events import (
    EVT_ID_ACCESS_FAULT,
    EVT_ID_ADDR_SIZE_FAULT,
    EVT_ID_PERMISSION_FAULT,
    EVT_ID_TRANSLATION_FAULT,
    Ratelimit,
)
from socmem.hw.smmu.tlb import Iotlb
from socmem.hw.smmu.v3 import _perm_ok, lpae_walk

if TYPE_CHECKING:
    from socmem.linux.iommu.io_pgtable_arm import IoPgtableArm
    from socmem.soc.schema import Iommu

__all__ = ["ContextBank", "S2cr", "SmmuV2", "Smr"]

ARM_SMMU_FSR_MULTI = 1 << 31
ARM_SMMU_FSR_SS = 1 << 30
ARM_SMMU_FSR_UUT = 1 << 8
ARM_SMMU_FSR_ASF = 1 << 7
ARM_SMMU_FSR_TLBLKF = 1 << 6
ARM_SMMU_FSR_TLBMCF = 1 << 5
ARM_SMMU_FSR_EF = 1 << 4
ARM_SMMU_FSR_PF = 1 << 3
ARM_SMMU_FSR_AFF = 1 << 2
ARM_SMMU_FSR_TF = 1 << 1
ARM_SMMU_FSR_FORMAT_AARCH64 = 2 << 9
ARM_SMMU_FSYNR0_WNR = 1 << 4
ARM_SMMU_FSYNR0_PNU = 1 << 5
ARM_SMMU_FSYNR0_IND = 1 << 6
ARM_SMMU_sGFSR_USF = 1 << 1
ARM_SMMU_GFSYNR0_WNR = 1 << 1

S2CR_TYPE_TRANS = 0
S2CR_TYPE_BYPASS = 1
S2CR_TYPE_FAULT = 2

_FSR_OF = {
    EVT_ID_TRANSLATION_FAULT: ARM_SMMU_FSR_TF,
    EVT_ID_PERMISSION_FAULT: ARM_SMMU_FSR_PF,
    EVT_ID_ACCESS_FAULT: ARM_SMMU_FSR_AFF,
    EVT_ID_ADDR_SIZE_FAULT: ARM_SMMU_FSR_ASF,
}
_KIND_OF = {
    ARM_SMMU_FSR_TF: "smmu.context-fault.translation",
    ARM_SMMU_FSR_PF: "smmu.context-fault.permission",
    ARM_SMMU_FSR_AFF: "smmu.context-fault.access-flag",
    ARM_SMMU_FSR_ASF: "smmu.context-fault.address-size",
}


@dataclass(slots=True)
class Smr:
    """A Stream Match Register: ``struct arm_smmu_smr`` (id, mask, valid)."""

    id: int
    mask: int
    valid: bool = True


@dataclass(slots=True)
class S2cr:
    """A Stream-to-Context Register: ``struct arm_smmu_s2cr`` (type, cbndx)."""

    type: int = S2CR_TYPE_FAULT
    cbndx: int = 0


@dataclass(slots=True)
class ContextBank:
    """A translation context bank: stage-1 table, ASID and its fault registers."""

    pgtable: IoPgtableArm | None = None
    asid: int = 0
    enabled: bool = False
    fsr: int = 0
    fsynr0: int = 0
    far: int = 0
    cbfrsynra: int = 0


class SmmuV2:
    """One SMMUv2 / MMU-500 (hardware).  Log lines read ``"arm-smmu <dev_name>: ..."``."""

    driver_name = "arm-smmu"

    def __init__(
        self,
        name: str,
        dev_name: str | None = None,
        *,
        num_context_banks: int = 128,
        num_mapping_groups: int = 128,
        ias: int = 48,
        oas: int = 48,
        pgsize_bitmap: int = (1 << 12) | (1 << 21) | (1 << 30),
        coherent_walk: bool = True,
        iotlb_entries: int = 512,
        utlb_entries: int = 32,
        walk_cache_entries: int = 64,
        clock: Callable[[], int] | None = None,
        findings: FindingLog | None = None,
    ) -> None:
        self.name = name
        self.dev_name = dev_name or name
        self.ias = ias
        self.oas = oas
        self.pgsize_bitmap = pgsize_bitmap
        self.coherent_walk = coherent_walk
        self.utlb_entries = utlb_entries
        self.walk_cache_entries = walk_cache_entries
        self.iotlb = Iotlb(iotlb_entries)
        self.smrs: list[Smr | None] = [None] * num_mapping_groups
        self.s2crs: list[S2cr] = [S2cr() for _ in range(num_mapping_groups)]
        self.cbs: list[ContextBank] = [ContextBank() for _ in range(num_context_banks)]
        self.clock: Callable[[], int] = clock or (lambda: 0)
        self.findings = findings if findings is not None else FindingLog()
        self.reg_counts: Counter[str] = Counter()
        self.log: list[str] = []
        self.cf_ratelimit = Ratelimit("arm_smmu_context_fault")
        self.gf_ratelimit = Ratelimit("arm_smmu_global_fault")
        self.stream_names: dict[int, str] = {}
        self.transactions = 0
        self.walks = 0

    @classmethod
    def from_soc(cls, iommu: Iommu, dev_name: str | None = None, **kw: object) -> SmmuV2:
        """An SMMUv2 / MMU-500 from the SoC's ``Iommu`` (page sizes, ias/oas, TLB sizes)."""
        args = smmu_args_from_soc(iommu)
        args.update(kw)
        return cls(iommu.name, dev_name or iommu.name, **args)  # type: ignore[arg-type]

    # ------------------------------------------------------------- registers --
    def write_tlbiva(self, cbndx: int, iova: int, size: int, leaf: bool) -> None:
        """ARM_SMMU_CB_S1_TLBIVA / TLBIVAL: invalidate one VA of the bank's ASID."""
        self.reg_counts["TLBIVAL" if leaf else "TLBIVA"] += 1
        self.iotlb.invalidate_range(self.cbs[cbndx].asid, iova, size)

    def write_tlbiasid(self, cbndx: int) -> None:
        """ARM_SMMU_CB_S1_TLBIASID: invalidate the bank's ASID."""
        self.reg_counts["TLBIASID"] += 1
        self.iotlb.invalidate_asid(self.cbs[cbndx].asid)

    def write_tlbsync(self, cbndx: int) -> None:
        """ARM_SMMU_CB_TLBSYNC (+ TLBSTATUS poll): completion of prior invalidations."""
        self.reg_counts["TLBSYNC"] += 1

    def write_tlbiallnsnh(self) -> None:
        """ARM_SMMU_GR0_TLBIALLNSNH + sTLBGSYNC."""
        self.reg_counts["TLBIALLNSNH"] += 1
        self.iotlb.invalidate_all()

    # ------------------------------------------------------------- translate --
    def match(self, sid: int) -> int | None:
        """Index of the first valid SMR matching ``sid`` (or None)."""
        for i, smr in enumerate(self.smrs):
            if smr is not None and smr.valid and not ((sid ^ smr.id) & ~smr.mask & 0xFFFF):
                return i
        return None

    def translate(
        self,
        sid: int,
        iova: int,
        is_write: bool = False,
        *,
        privileged: bool = False,
        instruction: bool = False,
        history: list[HistoryEvent] | None = None,
    ) -> int | None:
        """Translate one transaction: the physical address, or None after a fault."""
        self.transactions += 1
        idx = self.match(sid)
        if idx is None:
            self._global_fault(sid, is_write, True, history)
            return None
        s2cr = self.s2crs[idx]
        if s2cr.type == S2CR_TYPE_BYPASS:
            return iova
        if s2cr.type == S2CR_TYPE_FAULT:
            self._global_fault(sid, is_write, False, history)
            return None
        cb = self.cbs[s2cr.cbndx]
        oa, fsr, level = self._resolve(cb, iova, is_write, privileged, instruction)
        if fsr:
            self._context_fault(
                s2cr.cbndx, sid, iova, fsr, level, is_write, privileged, instruction, history
            )
        return oa

    def _resolve(
        self,
        cb: ContextBank,
        iova: int,
        is_write: bool,
        privileged: bool,
        instruction: bool,
    ) -> tuple[int | None, int, int]:
        """``(output address, 0, 0)``, or ``(None, FSR bits, level)`` of the context fault
        ending the translation in context bank ``cb``: IOTLB, then the table walk."""
        if not cb.enabled or cb.pgtable is None:
            return None, ARM_SMMU_FSR_TF, 0
        hit = self.iotlb.lookup(cb.asid, iova)
        if hit is not None:
            if not _perm_ok(hit.perms, is_write, privileged, instruction):
                return None, ARM_SMMU_FSR_PF, 3
            return hit.oa | (iova & (hit.size - 1)), 0, 0
        self.walks += 1
        status, base, size, perms = lpae_walk(cb.pgtable, iova)
        if status:
            return None, _FSR_OF[status], perms
        self.iotlb.fill(cb.asid, iova, size, base, perms)
        if not _perm_ok(perms, is_write, privileged, instruction):
            level = 3 - (size.bit_length() - 1 - cb.pgtable.pg_shift) // cb.pgtable.bits_per_level
            return None, ARM_SMMU_FSR_PF, level
        return base | (iova & (size - 1)), 0, 0

    def _prefix(self) -> str:
        return f"{self.driver_name} {self.dev_name}: "

    def _context_fault(
        self,
        cbndx: int,
        sid: int,
        iova: int,
        fsr_bit: int,
        level: int,
        is_write: bool,
        privileged: bool,
        instruction: bool,
        history: list[HistoryEvent] | None,
    ) -> None:
        cb = self.cbs[cbndx]
        fsynr = level & 3
        if is_write:
            fsynr |= ARM_SMMU_FSYNR0_WNR
        if privileged:
            fsynr |= ARM_SMMU_FSYNR0_PNU
        if instruction:
            fsynr |= ARM_SMMU_FSYNR0_IND
        # a fault while FSR still holds one sets MULTI; the handler clears FSR below
        cb.fsr = (ARM_SMMU_FSR_MULTI if cb.fsr else 0) | fsr_bit | ARM_SMMU_FSR_FORMAT_AARCH64
        cb.fsynr0 = fsynr
        cb.far = iova
        cb.cbfrsynra = sid & 0xFFFF
        line = (
            f"Unhandled context fault: fsr={cb.fsr:#x}, iova=0x{iova:08x},"
            f" fsynr={fsynr:#x}, cbfrsynra={cb.cbfrsynra:#x}, cb={cbndx}"
        )
        msg = self._prefix() + line
        now = self.clock()
        ok, note = self.cf_ratelimit.check(now)
        if note:
            self.log.append(note)
        if ok:
            self.log.append(msg)
        client = self.stream_names.get(sid, "(unassigned sid)")
        self.findings.add(
            Finding(
                kind=_KIND_OF[fsr_bit],
                severity=Severity.ERROR,
                message=msg,
                subject=f"{client} sid {sid:#x} iova {iova:#x}",
                time=now / 1e9,
                history=list(history or []),
                data={"fsr": cb.fsr, "fsynr0": fsynr, "far": iova, "cbfrsynra": sid, "cb": cbndx},
            )
        )
        cb.fsr = 0  # arm_smmu_context_fault() writes FSR back to clear it

    def _global_fault(
        self, sid: int, is_write: bool, usf: bool, history: list[HistoryEvent] | None
    ) -> None:
        gfsr = ARM_SMMU_sGFSR_USF if usf else 0
        gfsynr0 = ARM_SMMU_GFSYNR0_WNR if is_write else 0
        gfsynr1 = sid & 0xFFFF
        if usf:
            first = (
                f"Blocked unknown Stream ID 0x{gfsynr1:x}; boot with"
                ' "arm-smmu.disable_bypass=0" to allow, but this may have security implications'
            )
        else:
            first = "Unexpected global fault, this could be serious"
        lines = [
            self._prefix() + first,
            self._prefix() + f"\tGFSR 0x{gfsr:08x}, GFSYNR0 0x{gfsynr0:08x},"
            f" GFSYNR1 0x{gfsynr1:08x}, GFSYNR2 0x{0:08x}",
        ]
        ok, note = self.gf_ratelimit.check(self.clock())
        if note:
            self.log.append(note)
        if ok:
            self.log.extend(lines)
        self.findings.add(
            Finding(
                kind="smmu.global-fault.unknown-stream" if usf else "smmu.global-fault",
                severity=Severity.ERROR,
                message="\n".join(lines),
                subject=f"sid {sid:#x}",
                time=self.clock() / 1e9,
                history=list(history or []),
                data={"gfsr": gfsr, "gfsynr0": gfsynr0, "gfsynr1": gfsynr1},
            )
        )
