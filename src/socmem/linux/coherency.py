"""Cache coherency of a booted kernel: the CPU cache model wired to the DMA API, streaming
ownership, and the data operations device and CPU models use.

``track_coherency(kernel)`` returns a :class:`CoherencyTracker` that:

* installs the ``arch_sync(paddr, size, dir, for_cpu)`` hook on every **non-coherent**
  device (``dev.direct.arch_sync``).  dma-direct (``arch_sync_dma_for_device/cpu``,
  ``arch_dma_prep_coherent``) and the DMA API layer for dma-iommu (mapping.c
  ``_arch_sync``) both call it, so every map, unmap and ``dma_sync_*`` a driver does
  reaches the cache model on the right physical ranges, with arm64's semantics
  (arch/arm64/mm/dma-mapping.c):

  - ``arch_sync_dma_for_device`` → ``dcache_clean_poc`` for every direction;
  - ``arch_sync_dma_for_cpu`` → ``dcache_inval_poc`` unless ``DMA_TO_DEVICE``;
  - ``arch_dma_prep_coherent`` → ``dcache_clean_inval_poc`` (recognised by the
    ``prep_coherent_bytes`` counter dma-direct bumps just before calling the hook).

* tracks **streaming ownership** (Documentation/core-api/dma-api.rst, "streaming DMA
  mappings"): a for-device sync (``dma_map_*``, ``dma_sync_*_for_device``) gives the
  range to that device; a for-cpu sync (``dma_sync_*_for_cpu``, ``dma_unmap_*``) gives it
  back.  A range may be owned by several devices at once (one dma-buf, many
  attachments).  A CPU access to a range some device owns is
  ``coherency.cpu-access-while-device-owns``.  ``arch_dma_prep_coherent`` (coherent
  allocations) changes no ownership.

  The DMA layer calls no hook for **coherent** devices (and none for
  ``DMA_ATTR_SKIP_CPU_SYNC``), so ownership of their buffers must be told explicitly:
  :meth:`CoherencyTracker.on_map`, :meth:`~CoherencyTracker.on_unmap`,
  :meth:`~CoherencyTracker.on_sync_for_device`, :meth:`~CoherencyTracker.on_sync_for_cpu`.
  These only change ownership and history; they never do cache maintenance (that comes
  from the DMA layer through the hook).  Calling them for a non-coherent device as well is
  harmless (ownership is a set: giving a device a range twice is idempotent).
  ``dma_buf_begin/end_cpu_access`` need no call here: exporters implement them with
  ``dma_sync_sg*_for_cpu/device`` on their attachments, which reach the hook.

* offers the **data operations**: :meth:`CoherencyTracker.device_write` /
  :meth:`~CoherencyTracker.device_read` take a DMA address, translate it page by page
  through :meth:`Kernel.device_dma` (SMMU or dma-ranges; an SMMU fault means that page is
  not accessed) and apply the access to the cache model with the device's coherency;
  :meth:`~CoherencyTracker.cpu_read` / :meth:`~CoherencyTracker.cpu_write` take a
  physical address and a CPU mapping (``cached``, ``uncached``, ``writecombine``, or the
  DMA layer's ``linear`` / ``dmacoherent``).

:meth:`CoherencyTracker.detach` puts the previous hooks back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from socmem.check.finding import Finding, Severity
from socmem.hw.cache import CacheCostModel, CpuCacheModel, CpuMapping, IntervalMap, MaintenanceCost
from socmem.linux.dma.direct import ArchSyncHook
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_TO_DEVICE, DmaDataDirection

if TYPE_CHECKING:
    from socmem.linux.device import Device
    from socmem.linux.kernel import Kernel

__all__ = ["CoherencyTracker", "DmaAccess", "Ranges", "track_coherency"]

PAGE_SIZE = 4096

#: A buffer's physical extent: an sg table (CPU side, ``orig_nents``), a list of
#: ``(phys, size)`` pairs, or one pair.
Ranges = SgTable | Iterable[tuple[int, int]] | tuple[int, int]

_Owners = tuple[tuple[str, int], ...]  # (device name, since ns), sorted by name


def _ranges(r: Ranges) -> list[tuple[int, int]]:
    if isinstance(r, SgTable):
        return [(s.phys, s.length) for s in r.sgl[: r.orig_nents]]
    if isinstance(r, tuple) and len(r) == 2 and all(isinstance(x, int) for x in r):
        return [r]  # type: ignore[list-item]
    return [(int(a), int(n)) for a, n in r]  # type: ignore[misc]


@dataclass
class DmaAccess:
    """What a device access reached: the physical runs touched and the bytes that
    faulted in the SMMU (not accessed)."""

    runs: list[tuple[int, int]]
    faulted: int = 0
    stale: int = 0

    @property
    def bytes(self) -> int:
        """Bytes actually accessed."""
        return sum(n for _, n in self.runs)


class CoherencyTracker:
    """The CPU cache model of a booted :class:`~socmem.linux.kernel.Kernel`, with
    ownership tracking and hooks on its non-coherent devices.

    ``capacity`` (bytes) bounds the cache (None: unbounded); ``speculative`` selects the
    worst-case speculative fills of :class:`~socmem.hw.cache.CpuCacheModel`.
    """

    def __init__(
        self,
        kernel: Kernel,
        *,
        capacity: int | None = None,
        speculative: bool = True,
        cost_model: CacheCostModel | None = None,
    ) -> None:
        self.kernel = kernel
        self.cache = CpuCacheModel(
            kernel.soc.cpu.cache_line,
            capacity=capacity,
            speculative=speculative,
            findings=kernel.findings,
            clock=lambda: kernel.clock.now,
            cost_model=cost_model,
        )
        self.owners: IntervalMap[_Owners] = IntervalMap()
        self._saved: dict[str, ArchSyncHook | None] = {}
        self._prep_seen: dict[str, int] = {}
        for dev in kernel.devices.values():
            if not dev.coherent:
                self._install(dev)

    # -- hooks -------------------------------------------------------------------------------
    def _install(self, dev: Device) -> None:
        prev = dev.direct.arch_sync
        self._saved[dev.name] = prev
        self._prep_seen[dev.name] = dev.direct.stats.prep_coherent_bytes

        def hook(paddr: int, size: int, dir: DmaDataDirection, for_cpu: bool) -> None:
            self.arch_sync(dev, paddr, size, DmaDataDirection(dir), for_cpu)
            if prev is not None:
                prev(paddr, size, dir, for_cpu)

        dev.direct.arch_sync = hook

    def detach(self) -> None:
        """Put back the hooks that were there before :func:`track_coherency`."""
        for name, prev in self._saved.items():
            self.kernel.devices[name].direct.arch_sync = prev
        self._saved.clear()

    def arch_sync(
        self, dev: Device, paddr: int, size: int, dir: DmaDataDirection, for_cpu: bool
    ) -> None:
        """The ``arch_sync`` hook of ``dev``: arm64's ``arch_sync_dma_for_device`` (clean),
        ``arch_sync_dma_for_cpu`` (invalidate unless ``DMA_TO_DEVICE``) or
        ``arch_dma_prep_coherent`` (clean+invalidate), plus the ownership change."""
        prep = dev.direct.stats.prep_coherent_bytes
        if prep != self._prep_seen.get(dev.name, 0):
            self._prep_seen[dev.name] = prep
            self.cache.clean_invalidate(paddr, size, dev.name, "arch_dma_prep_coherent")
            return
        if for_cpu:
            if dir != DMA_TO_DEVICE:
                self.cache.invalidate(
                    paddr,
                    size,
                    dev.name,
                    f"arch_sync_dma_for_cpu({dir}): dma_sync_*_for_cpu / dma_unmap_*",
                )
            else:
                self.cache.note(
                    paddr, size, "arch_sync_dma_for_cpu", f"{dev.name}: {dir}, no maintenance"
                )
            self._release(dev, [(paddr, size)])
        else:
            self.cache.clean(
                paddr,
                size,
                dev.name,
                f"arch_sync_dma_for_device({dir}): dma_map_* / dma_sync_*_for_device",
            )
            self._give(dev, [(paddr, size)])

    # -- ownership ---------------------------------------------------------------------------
    def _give(self, dev: Device, ranges: list[tuple[int, int]]) -> None:
        now = self.kernel.clock.now
        for a, n in ranges:
            for s, e, v in list(self.owners.items(a, a + n)):
                owners = dict(v or ())
                owners.setdefault(dev.name, now)
                self.owners.assign(s, e, tuple(sorted(owners.items())))

    def _release(self, dev: Device, ranges: list[tuple[int, int]]) -> None:
        for a, n in ranges:
            for s, e, v in list(self.owners.present(a, a + n)):
                owners = tuple(o for o in v if o[0] != dev.name)
                self.owners.assign(s, e, owners or None)

    def owned_by_device(self, paddr: int, size: int, dev: Device) -> None:
        """``dev`` owns ``[paddr, paddr + size)`` from now (no maintenance)."""
        self._give(dev, [(paddr, size)])

    def owned_by_cpu(self, paddr: int, size: int, dev: Device) -> None:
        """``dev`` gives ``[paddr, paddr + size)`` back to the CPU (no maintenance)."""
        self._release(dev, [(paddr, size)])

    def device_owners(self, paddr: int, size: int) -> set[str]:
        """Devices owning some part of the range."""
        return {d for _, _, v in self.owners.present(paddr, paddr + size) for d, _ in v}

    def _notify(self, dev: Device, r: Ranges, what: str, dir: int, give: bool | None) -> None:
        rs = _ranges(r)
        for a, n in rs:
            self.cache.note(a, n, what, f"{dev.name} {DmaDataDirection(dir)}")
        if give is True:
            self._give(dev, rs)
        elif give is False:
            self._release(dev, rs)

    def on_map(self, dev: Device, ranges: Ranges, dir: int) -> None:
        """A streaming ``dma_map_*`` of ``ranges`` for ``dev``: the device owns them."""
        self._notify(dev, ranges, "dma_map", dir, True)

    def on_unmap(self, dev: Device, ranges: Ranges, dir: int) -> None:
        """``dma_unmap_*``: the CPU owns the ranges again."""
        self._notify(dev, ranges, "dma_unmap", dir, False)

    def on_sync_for_device(self, dev: Device, ranges: Ranges, dir: int) -> None:
        """``dma_sync_*_for_device`` (``dma_buf_end_cpu_access``): the device owns them."""
        self._notify(dev, ranges, "dma_sync_for_device", dir, True)

    def on_sync_for_cpu(self, dev: Device, ranges: Ranges, dir: int) -> None:
        """``dma_sync_*_for_cpu`` (``dma_buf_begin_cpu_access``): the CPU owns them."""
        self._notify(dev, ranges, "dma_sync_for_cpu", dir, False)

    def _check_cpu_access(self, paddr: int, size: int, what: str) -> None:
        segs = list(self.owners.present(paddr, paddr + size))
        if not segs:
            return
        dev, since = segs[0][2][0]
        a, b = segs[0][0], segs[-1][1]
        f = Finding(
            kind="coherency.cpu-access-while-device-owns",
            severity=Severity.WARNING,
            message=(
                f"socmem-coherency: cpu {what} of 0x{paddr:x}+{size} while device {dev} owns "
                f"0x{a:x}+{b - a} (dma_map_* / dma_sync_*_for_device at {since / 1e6:.3f} ms, "
                "no dma_sync_*_for_cpu / dma_unmap_* since)"
            ),
            subject=f"phys 0x{paddr:x}+{size}",
            time=self.kernel.clock.now / 1e9,
            history=self.cache.history.of(a, b),
            data={"paddr": paddr, "size": size, "device": dev, "owned": [a, b - a]},
        )
        self.kernel.findings.add(f)

    # -- data operations ---------------------------------------------------------------------
    def _translate(self, dev: Device, dma_addr: int, size: int, is_write: bool) -> DmaAccess:
        """Per page through ``kernel.device_dma``; adjacent physical pieces merged."""
        acc = DmaAccess([])
        addr, end = dma_addr, dma_addr + size
        while addr < end:
            n = min(PAGE_SIZE - (addr & (PAGE_SIZE - 1)), end - addr)
            phys = self.kernel.device_dma(dev, addr, is_write)
            if phys is None:
                acc.faulted += n
            elif acc.runs and acc.runs[-1][0] + acc.runs[-1][1] == phys:
                acc.runs[-1] = (acc.runs[-1][0], acc.runs[-1][1] + n)
            else:
                acc.runs.append((phys, n))
            addr += n
        return acc

    def device_write(self, dev: Device, dma_addr: int, size: int) -> DmaAccess:
        """``dev`` writes ``size`` bytes at bus address ``dma_addr``."""
        acc = self._translate(dev, dma_addr, size, True)
        for phys, n in acc.runs:
            self.cache.device_write(phys, n, dev.coherent, dev.name)
        return acc

    def device_read(self, dev: Device, dma_addr: int, size: int) -> DmaAccess:
        """``dev`` reads ``size`` bytes at bus address ``dma_addr``."""
        acc = self._translate(dev, dma_addr, size, False)
        for phys, n in acc.runs:
            acc.stale += self.cache.device_read(phys, n, dev.coherent, dev.name)
        return acc

    def cpu_read(self, paddr: int, size: int, mapping: str | CpuMapping = "cached") -> int:
        """The CPU reads ``[paddr, paddr + size)``: stale bytes returned."""
        self._check_cpu_access(paddr, size, "read")
        return self.cache.cpu_read(paddr, size, mapping)

    def cpu_write(self, paddr: int, size: int, mapping: str | CpuMapping = "cached") -> None:
        """The CPU writes ``[paddr, paddr + size)``."""
        self._check_cpu_access(paddr, size, "write")
        self.cache.cpu_write(paddr, size, mapping)

    # -- cost --------------------------------------------------------------------------------
    def cost(self, dev: Device | str | None = None) -> MaintenanceCost:
        """Maintenance done for ``dev`` (or in total)."""
        if dev is None:
            return self.cache.total
        name = dev if isinstance(dev, str) else dev.name
        return self.cache.cost.get(name, MaintenanceCost())

    def estimated_ns(self, dev: Device | str | None = None) -> float:
        """Estimated CPU time of that maintenance (perf-anchors §4.10, §4.2)."""
        return self.cache.cost_model.ns(self.cost(dev).lines)


def track_coherency(
    kernel: Kernel,
    *,
    capacity: int | None = None,
    speculative: bool = True,
    cost_model: CacheCostModel | None = None,
) -> CoherencyTracker:
    """Attach a :class:`CoherencyTracker` to ``kernel`` (see the module docstring)."""
    return CoherencyTracker(
        kernel, capacity=capacity, speculative=speculative, cost_model=cost_model
    )
