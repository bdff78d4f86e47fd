"""The lifetime sanitizer, rule by rule, on small sequences."""

from __future__ import annotations

import pytest

from socmem.check.lifetime import LifetimeSanitizer, sanitize
from socmem.linux.coherency import track_coherency
from socmem.linux.dma.scatterlist import SgTable
from socmem.linux.dma.types import DMA_BIDIRECTIONAL, DMA_TO_DEVICE
from socmem.linux.dmabuf.dma_buf import (
    DmaBuf,
    DmaBufAttachment,
    dma_buf_attach,
    dma_buf_detach,
    dma_buf_map_attachment,
    dma_buf_put,
    get_dma_buf,
)
from socmem.linux.dmabuf.fence import (
    DmaFence,
    DmaFenceOps,
    FenceWaitHang,
    dma_fence_context_alloc,
    dma_fence_signal,
    dma_fence_wait,
)
from socmem.linux.dmabuf.heaps import dma_heap_buffer_alloc, dma_heaps_for_kernel
from socmem.linux.dmabuf.sw_sync import SwSyncTimeline
from socmem.linux.kernel import Kernel
from socmem.soc.loader import load_soc

PAGE = 4096


def setup(soc: str = "reference-mobile") -> tuple[Kernel, LifetimeSanitizer]:
    k = Kernel.boot(load_soc(soc))
    return k, sanitize(k, coherency=track_coherency(k))


def fence(k: Kernel, name: str, ctx: int, seqno: int) -> DmaFence:
    ops = DmaFenceOps(get_driver_name=lambda f: name, get_timeline_name=lambda f: f"{name}-tl")
    return DmaFence(ops, ctx, seqno, core=k.core)


def alloc(k: Kernel, heap: str = "system", size: int = 16 * PAGE) -> DmaBuf:
    reg = dma_heaps_for_kernel(k)
    buf = dma_heap_buffer_alloc(reg[heap], size, 0o2, 0)
    assert isinstance(buf, DmaBuf)
    return buf


def attach_map(
    buf: DmaBuf, dev: object, direction: int = DMA_BIDIRECTIONAL
) -> tuple[DmaBufAttachment, SgTable]:
    a = dma_buf_attach(buf, dev)
    assert isinstance(a, DmaBufAttachment)
    sgt = dma_buf_map_attachment(a, direction)
    assert isinstance(sgt, SgTable)
    return a, sgt


def kinds(k: Kernel) -> dict[str, int]:
    return dict(k.findings.counts())


# -- out-of-order signalling ------------------------------------------------------------------
def test_out_of_order_signal_on_one_context() -> None:
    k, _san = setup()
    ctx = dma_fence_context_alloc(1, k.core)
    f1, f2 = fence(k, "gpu", ctx, 1), fence(k, "gpu", ctx, 2)
    dma_fence_signal(f2)
    dma_fence_signal(f1)
    assert kinds(k) == {"lifetime.fence-out-of-order": 1}
    (f,) = k.findings
    assert f.data["seqno"] == 2 and f.data["pending"] == [1]


def test_in_order_and_sw_sync_are_clean() -> None:
    k, san = setup()
    ctx = dma_fence_context_alloc(1, k.core)
    fs = [fence(k, "gpu", ctx, i) for i in (1, 2, 3)]
    for f in fs:
        dma_fence_signal(f)
    tl = SwSyncTimeline("tl", k.core)
    files = [tl.create_fence(v) for v in (1, 2, 3)]
    tl.inc(3)
    assert all(sf.fence.signaled_flag for sf in files)
    assert san.teardown() == []
    assert list(k.findings) == []


# -- fences never signalled ------------------------------------------------------------------
def test_never_signalled_per_context_at_teardown() -> None:
    k, san = setup()
    ctx = dma_fence_context_alloc(2, k.core)
    fence(k, "isp", ctx, 1)
    fence(k, "isp", ctx, 2)
    fence(k, "venc", ctx + 1, 7)
    done = fence(k, "venc", ctx + 1, 6)
    dma_fence_signal(done)
    got = san.teardown()
    assert [f.kind for f in got] == ["lifetime.fence-never-signalled"] * 2
    assert got[0].data["seqnos"] == [1, 2] and got[0].data["timeline"] == "isp-tl"
    assert got[1].data["seqnos"] == [7]
    assert san.teardown() == []  # idempotent


# -- deadlock ---------------------------------------------------------------------------------
def test_declared_wait_cycle_of_three_agents() -> None:
    k, san = setup()
    ctx = dma_fence_context_alloc(3, k.core)
    fa, fb, fc = (fence(k, n, ctx + i, 1) for i, n in enumerate(("a", "b", "c")))
    san.signals("a", fa)
    san.signals("b", fb)
    san.signals("c", fc)
    san.waits("a", fb)
    san.waits("b", fc)
    assert list(k.findings) == []
    san.waits("c", fa)
    assert kinds(k) == {"lifetime.fence-deadlock": 1}
    san.waits("c", fa)  # the same cycle is reported once
    assert san.teardown() == []  # its fences are explained by the deadlock
    assert kinds(k) == {"lifetime.fence-deadlock": 1}


def test_observed_self_wait_is_a_deadlock_before_the_hang() -> None:
    k, san = setup()
    f = fence(k, "npu", dma_fence_context_alloc(1, k.core), 1)
    san.signals("npu", f)
    with san.agent("npu"), pytest.raises(FenceWaitHang):
        dma_fence_wait(f)
    assert set(kinds(k)) == {"lifetime.fence-deadlock", "dma-fence.wait-forever"}


def test_signalled_fence_breaks_the_edge() -> None:
    k, san = setup()
    ctx = dma_fence_context_alloc(2, k.core)
    fa, fb = fence(k, "a", ctx, 1), fence(k, "b", ctx + 1, 1)
    san.signals("a", fa)
    san.signals("b", fb)
    san.waits("a", fb)
    dma_fence_signal(fb)
    san.waits("b", fa)
    dma_fence_signal(fa)
    assert list(k.findings) == []


# -- dma after free / release while mapped ----------------------------------------------------
def test_release_while_mapped_behind_smmu_is_silent_corruption() -> None:
    """The buffer goes while cam0 still maps it: the IOMMU mapping outlives the pages."""
    k, san = setup()
    cam = k.device("cam0")
    buf = alloc(k)
    _a, sgt = attach_map(buf, cam)
    dma_buf_put(buf)  # last reference, still attached and mapped
    assert buf.released
    san.device_access(cam, sgt.sgl[0].dma_address, PAGE, True)
    assert kinds(k) == {"dma-buf.release-while-attached": 1, "lifetime.dma-after-free": 1}
    (f,) = k.findings.of_kind("lifetime.dma-after-free")
    assert f.data["mode"] == "stale-iommu-mapping" and "silent corruption" in f.message
    assert "free in the buddy allocator" in f.data["owner_now"]


def test_nommu_dma_after_free_names_the_new_owner() -> None:
    k, san = setup("nommu-imx8m")
    csi, vpu = k.device("csi1"), k.device("vpu")
    buf = alloc(k, "linux,cma")
    a, sgt = attach_map(buf, csi)
    addr = sgt.sgl[0].dma_address
    from socmem.linux.dmabuf.dma_buf import dma_buf_unmap_attachment

    dma_buf_unmap_attachment(a, sgt, DMA_BIDIRECTIONAL)
    dma_buf_detach(buf, a)
    dma_buf_put(buf)
    other = alloc(k, "linux,cma")  # the same CMA pages, now another buffer's
    attach_map(other, vpu)
    san.device_access(csi, addr, 2 * PAGE, True)
    assert kinds(k) == {"lifetime.dma-after-free": 1}
    (f,) = k.findings
    assert f.data["owner_now"] == other.label() and f.data["pages"] == 2
    # the vpu's own access to the new buffer is legitimate
    san.device_access(vpu, addr, PAGE, False)
    assert len(k.findings) == 1


# -- fence races ------------------------------------------------------------------------------
def test_resv_write_fence_race_with_driver_name_signaller() -> None:
    from socmem.linux.dmabuf.resv import (
        DmaResvUsage,
        dma_resv_add_fence,
        dma_resv_lock,
        dma_resv_reserve_fences,
        dma_resv_unlock,
    )

    k, san = setup()
    isp, npu = k.device("isp"), k.device("npu")
    buf = alloc(k)
    _, sgt_isp = attach_map(buf, isp)
    _, sgt_npu = attach_map(buf, npu, DMA_TO_DEVICE)
    f = fence(k, "isp", dma_fence_context_alloc(1, k.core), 1)
    dma_resv_lock(buf.resv)
    dma_resv_reserve_fences(buf.resv, 1)
    dma_resv_add_fence(buf.resv, f, DmaResvUsage.WRITE)
    dma_resv_unlock(buf.resv)
    san.device_access(isp, sgt_isp.sgl[0].dma_address, PAGE, True)  # the producer: fine
    assert list(k.findings) == []
    san.device_access(npu, sgt_npu.sgl[0].dma_address, PAGE, False)
    san.device_access(npu, sgt_npu.sgl[0].dma_address, PAGE, False)  # reported once
    assert kinds(k) == {"lifetime.read-before-signal": 1}
    dma_fence_signal(f)


# -- leaks ------------------------------------------------------------------------------------
def test_kernel_reference_never_put_is_a_leak_unless_owned() -> None:
    k, san = setup()
    leaked, owned = alloc(k), alloc(k)
    san.kernel_owner(owned, "gpu-driver")
    get_dma_buf(leaked)
    dma_buf_put(leaked)  # one reference of two
    got = san.teardown()
    assert [f.kind for f in got] == ["lifetime.dmabuf-leak"]
    assert got[0].data["ino"] == leaked.ino


def test_release_while_mapped_without_dma_buf_finding_is_added() -> None:
    """A mapping detached without unmap is reported by dma-buf (detach-while-mapped);
    the sanitizer adds nothing for the later release."""
    k, san = setup()
    cam = k.device("cam0")
    buf = alloc(k)
    a, _sgt = attach_map(buf, cam)
    dma_buf_detach(buf, a)
    dma_buf_put(buf)
    san.teardown()
    assert kinds(k) == {"dma-buf.detach-while-mapped": 1}


def test_detach_restores_the_kernel() -> None:
    k, san = setup()
    san.detach()
    assert "device_dma" not in k.__dict__
    f = fence(k, "x", dma_fence_context_alloc(1, k.core), 2)
    fence(k, "x", f.context, 1)
    dma_fence_signal(f)
    assert list(k.findings) == []
