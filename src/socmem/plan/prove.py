"""Plans are proven, not asserted: execute a plan on the functional kernel model.

:func:`prove_plan` boots :class:`~socmem.linux.kernel.Kernel` on the SoC, lets every
driver set its ``dma_parms`` (:func:`apply_driver_dma_parms`: the
``dma_set_max_seg_size()`` calls of the drivers' probes), registers the dma-buf heaps
(:func:`~socmem.linux.dmabuf.heaps.dma_heaps_for_kernel`) and, for every feasible pool:

1. allocates ``count`` buffers of the planned size from the planned heap
   (``DMA_HEAP_IOCTL_ALLOC`` path: :func:`dma_heap_buffer_alloc`);
2. attaches every master (``dma_buf_attach``) and maps it with the direction of its usage
   (``dma_buf_map_attachment``: dma-direct or dma-iommu, swiotlb and cache maintenance
   apply), then checks what the planner promised: DMA segments within the master's
   ``max_segments``, every segment reachable (``kernel.device_dma`` through the SMMU, or
   below the DMA limit for dma-direct), the base alignment;
3. passes a frame: the producer's fence (explicit: a ``sync_file``; implicit: the
   buffer's ``dma_resv`` as the write fence), signalled when the producer is done,
   waited by every consumer; CPU users bracket their access with
   ``dma_buf_begin_cpu_access`` / ``dma_buf_end_cpu_access``;
4. unmaps, detaches and releases everything.

The proof holds when no :class:`~socmem.check.finding.Finding` was raised and every
check passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from socmem.linux.device import Device
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaDataDirection
from socmem.linux.dmabuf.dma_buf import (
    IS_ERR,
    O_RDWR,
    DmaBuf,
    DmaBufAttachment,
    dma_buf_attach,
    dma_buf_begin_cpu_access,
    dma_buf_detach,
    dma_buf_end_cpu_access,
    dma_buf_map_attachment,
    dma_buf_put,
    dma_buf_unmap_attachment,
)
from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceOps,
    dma_fence_context_alloc,
    dma_fence_put,
    dma_fence_signal,
    dma_fence_wait,
)
from socmem.linux.dmabuf.heaps import (
    DmaHeap,
    DmaHeapRegistry,
    dma_heap_buffer_alloc,
    dma_heaps_for_kernel,
)
from socmem.linux.dmabuf.resv import (
    DmaResvUsage,
    dma_resv_add_fence,
    dma_resv_lock,
    dma_resv_reserve_fences,
    dma_resv_unlock,
    dma_resv_wait_timeout,
)
from socmem.linux.dmabuf.sync_file import sync_file_create, sync_file_get_fence
from socmem.linux.kernel import Kernel
from socmem.plan.planner import PoolPlan, ScenarioPlan, User
from socmem.scenario.schema import Scenario, SyncMode
from socmem.soc.schema import Soc

_FENCE_OPS = DmaFenceOps(lambda f: "socmem-plan", lambda f: "frame")


def apply_driver_dma_parms(kernel: Kernel) -> None:
    """What the drivers' probes do: ``dma_set_max_seg_size(dev, driver_max_segment_size)``
    for masters whose constraints name one (media drivers: ``UINT_MAX``)."""
    for dev in kernel.devices.values():
        if dev.master is None:
            continue
        c = dev.master.constraints.resolve(dev.master.kind)
        if c.driver_max_segment_size:
            dev.set_max_seg_size(c.driver_max_segment_size)


def heap_for(registry: DmaHeapRegistry, spec: str) -> DmaHeap | None:
    """The registered heap named by a scenario heap spelling."""
    if spec == "cma":
        return next((h for h in registry.heaps if h.kind == "cma"), None)
    if spec.startswith("carveout:"):
        return registry.find(spec.split(":", 1)[1])
    if spec.startswith("protected:"):
        return registry.find("protected," + spec.split(":", 1)[1])
    return registry.find(spec)


@dataclass
class PoolProof:
    """What executing one pool's plan showed."""

    pool: str
    heap: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    mappings: list[dict[str, object]] = field(default_factory=list)
    cpu_syncs: int = 0


@dataclass
class Proof:
    """The result of :func:`prove_plan`: per-pool evidence and every Finding raised."""

    ok: bool
    pools: dict[str, PoolProof]
    findings: list[str]


def prove_plan(plan: ScenarioPlan, scenario: Scenario, soc: Soc) -> Proof:
    """Execute every feasible pool of ``plan`` on a freshly booted kernel (module doc)."""
    kernel = Kernel.boot(soc)
    apply_driver_dma_parms(kernel)
    registry = dma_heaps_for_kernel(kernel)
    pools: dict[str, PoolProof] = {}
    live: list[DmaBuf] = []
    for name, pp in plan.pools.items():
        if not pp.feasible:
            continue
        pools[name] = _prove_pool(kernel, registry, pp, scenario, live)
    for b in live:
        dma_buf_put(b)
    findings = [f"{f.kind}: {f.message}" for f in kernel.findings]
    ok = not findings and all(p.ok for p in pools.values())
    return Proof(ok, pools, findings)


def _prove_pool(
    kernel: Kernel, registry: DmaHeapRegistry, pp: PoolPlan, scenario: Scenario, live: list[DmaBuf]
) -> PoolProof:
    proof = PoolProof(pp.name, pp.heap)
    heap = heap_for(registry, pp.heap)
    if heap is None:
        proof.ok = False
        proof.problems.append(f"the kernel registers no heap for {pp.heap}")
        return proof
    pool = scenario.pool(pp.name)
    sync = pool.sync if pool is not None else SyncMode.EXPLICIT
    bufs: list[DmaBuf] = []
    for _ in range(pp.count):
        b = dma_heap_buffer_alloc(heap, pp.size, O_RDWR, 0)
        if IS_ERR(b) or not isinstance(b, DmaBuf):
            proof.ok = False
            proof.problems.append(f"allocation of {pp.size} bytes from {heap.name} failed: {b}")
            break
        bufs.append(b)
        live.append(b)
    if not bufs:
        return proof
    devices = [u for u in pp.users if not u.usage.is_cpu]
    cpu_users = [u for u in pp.users if u.usage.is_cpu]
    for i, b in enumerate(bufs):
        maps: list[tuple[DmaBufAttachment, SgTable | None, DmaDataDirection]] = []
        base = getattr(b.priv, "base", 0)
        if getattr(b.priv, "contiguous", False) and base % pp.alignment:
            proof.problems.append(f"buffer {i} at {base:#x} is not {pp.alignment}-byte aligned")
        for u in devices:
            dev = kernel.device(u.master)
            a = dma_buf_attach(b, dev)
            if IS_ERR(a):
                proof.problems.append(f"{u.master}: dma_buf_attach failed ({a})")
                continue
            assert isinstance(a, DmaBufAttachment)  # not an ERR_PTR: an attachment
            direction = DMA_FROM_DEVICE if u.writes else DMA_TO_DEVICE
            sgt = dma_buf_map_attachment(a, direction)
            if IS_ERR(sgt):
                proof.problems.append(f"{u.master}: dma_buf_map_attachment failed ({sgt})")
                dma_buf_detach(b, a)
                continue
            assert isinstance(sgt, SgTable)  # not an ERR_PTR: the sg table
            _check_mapping(kernel, dev, u, sgt, proof, i == 0)
            if pp.map_direction == "per-job" and not u.writes:
                # the reader's job: map, DMA, unmap, before the CPU syncs the buffer
                dma_buf_unmap_attachment(a, sgt, direction)
                maps.append((a, None, direction))
            else:
                maps.append((a, sgt, direction))
        if i == 0:
            _pass_frame(kernel, b, pp, devices, cpu_users, sync, proof)
        for a, mapped, direction in maps:
            if mapped is not None:
                dma_buf_unmap_attachment(a, mapped, direction)
            dma_buf_detach(b, a)
    proof.ok = not proof.problems
    return proof


def _check_mapping(
    kernel: Kernel, dev: Device, u: User, sgt: SgTable, proof: PoolProof, record: bool
) -> None:
    m = dev.master
    c = m.constraints.resolve(m.kind) if m is not None else None
    segs = sgt.sgl[: sgt.nents]
    max_segments = (
        c.max_segments if c and c.max_segments else (1 << 30 if dev.uses_iommu_dma else 1)
    )
    if len(segs) > max_segments:
        proof.problems.append(
            f"{u.master}: {len(segs)} DMA segments, the engine takes {max_segments}"
        )
    for s in segs:
        length = s.dma_length or s.length
        for addr in (s.dma_address, s.dma_address + length - 1):
            phys = kernel.device_dma(dev, addr, is_write=u.writes)
            if phys is None or (not dev.uses_iommu_dma and addr > dev.dma_mask):
                proof.problems.append(f"{u.master}: DMA address {addr:#x} is not reachable")
    if record:
        proof.mappings.append({
            "master": u.master, "via": "iommu" if dev.uses_iommu_dma else "direct",
            "nents": sgt.nents, "dma_address": segs[0].dma_address if segs else 0,
        })  # fmt: skip


def _pass_frame(
    kernel: Kernel,
    b: DmaBuf,
    pp: PoolPlan,
    devices: list[User],
    cpu_users: list[User],
    sync: SyncMode,
    proof: PoolProof,
) -> None:
    """Producer writes, signals its fence; consumers wait; CPU users sync around access."""
    core = kernel.core
    fence = DmaFence(_FENCE_OPS, dma_fence_context_alloc(1, core), 1, core=core)
    if sync is SyncMode.IMPLICIT:
        dma_resv_lock(b.resv)
        dma_resv_reserve_fences(b.resv, 1)
        dma_resv_add_fence(b.resv, fence, DmaResvUsage.WRITE)
        dma_resv_unlock(b.resv)
        waiters = []
    else:
        sf = sync_file_create(fence)
        waiters = [sync_file_get_fence(sf) for _ in devices[1:] + cpu_users]
    producer_cpu = any(u.writes for u in cpu_users)
    if producer_cpu:
        dma_buf_begin_cpu_access(b, DMA_TO_DEVICE)
        dma_buf_end_cpu_access(b, DMA_TO_DEVICE)
        proof.cpu_syncs += 2
    dma_fence_signal(fence)
    for w in waiters:
        if w is not None:
            dma_fence_wait(w, False)
            dma_fence_put(w)
    if sync is SyncMode.IMPLICIT:
        dma_resv_wait_timeout(b.resv, DmaResvUsage.WRITE, False, 1 << 62)
    for u in cpu_users:
        if not u.writes:
            dma_buf_begin_cpu_access(b, DMA_FROM_DEVICE)
            dma_buf_end_cpu_access(b, DMA_FROM_DEVICE)
            proof.cpu_syncs += 2
    dma_fence_put(fence)
