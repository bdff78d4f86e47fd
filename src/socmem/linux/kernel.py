"""Boot the functional kernel model on an SoC description: ``Kernel.boot(soc)``.

What boot does, in the order the kernel does it:

1. ``/reserved-memory`` is placed (static regions where they are, dynamic ones
   top-down in their alloc-ranges: :mod:`socmem.linux.reserved_mem`) and the page
   allocator, CMA areas and carveout pools come up (:class:`~socmem.linux.mm.PhysMem`,
   arm64 6.1 zones: ``ZONE_DMA`` below 4 GiB);
2. swiotlb gets its default pool when some memory lies beyond ``ZONE_DMA``
   (arm64 ``mem_init``), and restricted-dma-pools become per-device pools;
3. every ARM SMMU probes: stream table, groups, default DMA domains (strict or lazy as
   the SoC says, or as overridden), IOVA cookies (:func:`boot_soc_iommu`);
4. every enabled master becomes a :class:`~socmem.linux.device.Device` with the DMA
   masks and dma-ranges ``of_dma_configure_id`` gives it, its own CMA area if its
   ``memory-region`` names one, and dma-debug watching it (``CONFIG_DMA_API_DEBUG``).

One :class:`~socmem.linux.clock.ModelClock`, one
:class:`~socmem.check.finding.FindingLog` and one
:class:`~socmem.linux.dmabuf.fence.DmaBufCore` are shared by everything booted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from socmem.check.finding import FindingLog
from socmem.linux.clock import ModelClock, ns_to_s
from socmem.linux.device import Device
from socmem.linux.dma.debug import DmaDebug
from socmem.linux.dma.direct import DirectDevice
from socmem.linux.dma.swiotlb import (
    IoTlbMem,
    arm64_swiotlb_needed,
    rmem_swiotlb_device_init,
    rmem_swiotlb_setup,
    swiotlb_init,
)
from socmem.linux.dmabuf.fence import DmaBufCore
from socmem.linux.iommu.dma_iommu import boot_soc_iommu
from socmem.linux.iommu.iommu import IommuDevice
from socmem.linux.mm import DramRange, PhysMem, arm64_zone_limits
from socmem.linux.reserved_mem import layout_reserved_memory
from socmem.soc.schema import Invalidation, IommuModel, Master, Soc


def _driver_name(m: Master) -> str:
    """A driver name for log lines: the vendor-less first compatible, or the kind."""
    if m.compatible:
        return m.compatible[0].split(",")[-1]
    return m.kind.value


@dataclass
class Kernel:
    """The booted functional model: memory, swiotlb, SMMU drivers and devices."""

    soc: Soc
    clock: ModelClock
    findings: FindingLog
    core: DmaBufCore
    mem: PhysMem
    swiotlb: IoTlbMem | None
    dma_debug: DmaDebug | None
    iommu_drivers: dict[str, object] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    restricted_pools: dict[str, IoTlbMem] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    ncpus: int = 1

    @classmethod
    def boot(
        cls,
        soc: Soc,
        *,
        ncpus: int | None = None,
        invalidation: Invalidation | str | None = None,
        dma_debug: bool = True,
        clock: ModelClock | None = None,
    ) -> Kernel:
        """Boot on ``soc``; ``invalidation`` overrides every IOMMU's strict/lazy policy."""
        clock = clock or ModelClock()
        findings = FindingLog()
        core = DmaBufCore(clock=clock, findings=findings)
        ncpus = ncpus or soc.cpu.cores
        log: list[str] = []

        layout = layout_reserved_memory(soc)
        log.extend(layout.log)
        dram = [DramRange(r.base, r.size) for r in soc.dram.ranges]
        lo = min(d.base for d in dram)
        hi = max(d.base + d.size for d in dram)
        mem = PhysMem(dram, layout.regions, limits=arm64_zone_limits(lo, hi))
        log.extend(mem.log)

        swiotlb = swiotlb_init(
            mem, addressing_limit=arm64_swiotlb_needed(mem), num_possible_cpus=ncpus
        )
        if swiotlb is not None:
            log.extend(swiotlb.log)

        debug = DmaDebug(findings, clock=lambda: ns_to_s(clock.now)) if dma_debug else None
        kernel = cls(
            soc=soc,
            clock=clock,
            findings=findings,
            core=core,
            mem=mem,
            swiotlb=swiotlb,
            dma_debug=debug,
            log=log,
            ncpus=ncpus,
        )
        iommu_devs = kernel._boot_iommus(invalidation)
        kernel._boot_devices(iommu_devs, layout.restricted)
        return kernel

    # -- boot steps ----------------------------------------------------------------------
    def _boot_iommus(self, invalidation: Invalidation | str | None) -> dict[str, IommuDevice]:
        out: dict[str, IommuDevice] = {}
        soc = self.soc
        for iommu in soc.iommus:
            if not any(m.enabled for m in soc.masters_of(iommu.name)):
                continue
            if not iommu.model.is_arm_smmu:
                self.log.append(
                    f"socmem: IOMMU {iommu.name} ({iommu.model.value}) is modelled as an "
                    "SMMUv3 with LPAE page tables"
                )
                soc = soc.model_copy(deep=True)
                for i in soc.iommus:
                    if i.name == iommu.name:
                        i.model = IommuModel.SMMU_V3
            lazy = None if invalidation is None else Invalidation(invalidation) is Invalidation.LAZY
            driver, devices = boot_soc_iommu(
                soc,
                iommu.name,
                dev_name=iommu.source or iommu.name,
                ncpus=self.ncpus,
                clock=lambda: self.clock.now,
                lazy=lazy,
                findings=self.findings,
            )
            self.iommu_drivers[iommu.name] = driver
            for d in devices:
                out[d.name] = d
        return out

    def _boot_devices(self, iommu_devs: dict[str, IommuDevice], restricted: list[str]) -> None:
        for m in self.soc.masters:
            if not m.enabled:
                continue
            cma_area = next(
                (self.mem.cma_areas[r] for r in m.memory_region if r in self.mem.cma_areas), None
            )
            direct = DirectDevice.from_master(
                m,
                mem=self.mem,
                dma_io_tlb_mem=self.swiotlb,
                cma_area=cma_area,
                driver_name=_driver_name(m),
                findings=self.findings,
            )
            for r in m.memory_region:
                if r in restricted:
                    pool = self.restricted_pools.get(r)
                    if pool is None:
                        region = next(x for x in self.mem.regions if x.name == r)
                        pool = rmem_swiotlb_setup(region, self.log)
                        self.restricted_pools[r] = pool
                    rmem_swiotlb_device_init(pool, direct)
            self.devices[m.name] = Device(
                name=m.name,
                direct=direct,
                iommu=iommu_devs.get(m.name),
                driver_name=_driver_name(m),
                master=m,
                secure=m.secure,
                dma_debug=self.dma_debug,
            )

    # -- use -----------------------------------------------------------------------------
    def device(self, name: str) -> Device:
        """The device for master ``name``; KeyError names the ones that exist."""
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(
                f"no enabled master {name!r}; devices: {', '.join(sorted(self.devices))}"
            ) from None

    def iommu_driver(self, name: str) -> object:
        """The booted SMMU driver of IOMMU ``name``."""
        return self.iommu_drivers[name]

    def smmu_of(self, dev: Device) -> object | None:
        """The SMMU hardware model ``dev`` translates through, or None."""
        if dev.iommu is None or dev.iommu.driver is None:
            return None
        return dev.iommu.driver.smmu

    def device_dma(self, dev: Device, iova: int, is_write: bool) -> int | None:
        """A device access at bus address ``iova``: the physical address reached, or None
        when the SMMU faults (no memory is touched; the fault is queued and logged)."""
        if not dev.uses_iommu_dma:
            from socmem.linux.dma.direct import dma_to_phys

            return dma_to_phys(dev.direct, iova)
        smmu = self.smmu_of(dev)
        assert dev.iommu is not None and smmu is not None
        sid = dev.iommu.sids[0][0]
        return smmu.translate(sid, iova, is_write=is_write)  # type: ignore[attr-defined]
