from __future__ import annotations

from fixture_paths import DTB, need
from socmem.plan.explain import apply_soc_change
from socmem.plan.planner import plan_pool, plan_scenario
from socmem.plan.prove import prove_plan
from socmem.scenario.schema import Scenario
from socmem.soc.dt_import import import_dtb
from socmem.soc.loader import load_soc
from socmem.soc.schema import Range, Soc


def _scenario(soc: str, buffers: list[dict], stages: list[dict]) -> Scenario:
    return Scenario.model_validate({"name": "t", "soc": soc, "buffers": buffers, "stages": stages})


def _cam_to_display(cam: str, disp: str, **pool: object) -> Scenario:
    b = {"name": "frames", "width": 1366, "height": 768, "format": "NV12", "count": 2, **pool}
    return _scenario(
        "x",
        [b],
        [
            {"name": "cam", "type": "source", "master": cam, "fps": 30, "outputs": ["frames"]},
            {
                "name": "show",
                "type": "display",
                "master": disp,
                "inputs": ["frames"],
                "refresh": 60,
            },
        ],
    )


def _proven(plan, scenario, soc) -> None:  # type: ignore[no-untyped-def]
    proof = prove_plan(plan, scenario, soc)
    assert proof.ok, (proof.findings, {n: p.problems for n, p in proof.pools.items()})


def test_stride_64_meets_256_takes_the_lcm() -> None:
    soc = load_soc("reference-mobile")
    soc.master("display").constraints.stride_alignment = 256
    s = _cam_to_display("cam0", "display")
    plan = plan_scenario(s, soc)
    p = plan.pools["frames"]
    assert p.feasible and p.layout.stride == 1536 and p.layout.stride % 256 == 0
    assert "cam0 64" in p.reasons["stride"] and "display 256" in p.reasons["stride"]
    _proven(plan, s, soc)


def test_fixed_64_byte_pitch_conflicts_with_256() -> None:
    soc = load_soc("reference-mobile")
    soc.master("display").constraints.stride_alignment = 256
    soc.master("cam0").constraints.fixed_pitch = True
    p = plan_scenario(_cam_to_display("cam0", "display"), soc).pools["frames"]
    assert not p.feasible
    c = next(c for c in p.conflicts if c.kind == "pitch")
    assert c.master == "cam0" and c.other == "display" and "1408" in c.message
    assert any(f.kind == "copy" and "cam0 -> display" in f.description for f in p.fixes)


def test_compressed_format_a_consumer_cannot_read() -> None:
    soc = load_soc("reference-mobile")
    s = _scenario(
        "x",
        [
            {"name": "raw", "width": 1920, "height": 1080, "format": "RAW10"},
            {
                "name": "yuv",
                "width": 1920,
                "height": 1080,
                "format": "NV12",
                "compression": "ubwc",
            },
        ],
        [
            {"name": "cam", "type": "source", "master": "cam0", "fps": 30, "outputs": ["raw"]},
            {
                "name": "isp",
                "type": "process",
                "master": "isp",
                "inputs": ["raw"],
                "outputs": ["yuv"],
            },
            {
                "name": "show",
                "type": "display",
                "master": "display",
                "inputs": ["yuv"],
                "refresh": 60,
            },
            {"name": "npu", "type": "process", "master": "npu", "inputs": ["yuv"]},
        ],
    )
    p = plan_scenario(s, soc).pools["yuv"]
    assert not p.feasible
    (c,) = [c for c in p.conflicts if c.kind == "modifier"]
    assert c.master == "npu" and "ubwc" in c.message
    kinds = [f.kind for f in p.fixes]
    assert kinds[0] == "drop-compression" and "isp-conversion" in kinds and "copy" in kinds
    # without the request, the planner picks linear because the NPU reads linear only
    s.buffers[1].compression = "none"  # type: ignore[assignment]
    p2 = plan_scenario(s, soc).pools["yuv"]
    assert p2.feasible and p2.modifier == "linear" and "npu" in p2.reasons["modifier"]


def test_compression_when_every_party_supports_it() -> None:
    soc = load_soc("reference-mobile")
    s = _scenario(
        "x",
        [{"name": "yuv", "width": 3840, "height": 2160, "format": "NV12"}],
        [
            {"name": "dec", "type": "decode", "master": "venc", "outputs": ["yuv"]},
            {
                "name": "show",
                "type": "display",
                "master": "display",
                "inputs": ["yuv"],
                "refresh": 60,
            },
        ],
    )
    s.stages[0].master = "gpu"
    s.stages[0].type = "process"  # type: ignore[assignment]
    s.stages[0].inputs = []
    p = plan_scenario(s, soc).pools["yuv"]
    assert p.modifier in ("ubwc", "afbc") and p.bandwidth_compressed < p.bandwidth_raw


def _soc_ram_above_4g() -> Soc:
    soc = load_soc("reference-mobile")
    soc.dram.ranges = [Range(base=0x1_0000_0000, size=8 << 30)]
    soc.reserved_memory = [r for r in soc.reserved_memory if r.is_cma]
    soc.reserved_memory[0].alloc_ranges = [Range(base=0x1_0000_0000, size=2 << 30)]
    d = soc.master("display")
    d.iommus, d.memory_region, d.dma_mask_bits = [], [], 32
    return soc


def test_32bit_master_without_iommu_ram_above_4g() -> None:
    soc = _soc_ram_above_4g()
    s = _cam_to_display("cam0", "display")
    p = plan_scenario(s, soc).pools["frames"]
    assert not p.feasible and p.heap == "cma"
    (c,) = [c for c in p.conflicts if c.kind == "reach"]
    assert c.master == "display" and "no IOMMU" in c.message and "0x100000000" in c.message
    descs = [f.description for f in p.fixes]
    assert any("give display an IOMMU" in d for d in descs)
    swiotlb = next(f for f in p.fixes if f.kind == "swiotlb")
    assert not swiotlb.applicable and "256 KiB" in swiotlb.why_not
    assert p.fixes[-1] is swiotlb  # inapplicable fixes rank last
    # the whole DRAM is above 4 GiB: no CMA placement can help, the IOMMU is the way
    assert not any("CMA pool" in d for d in descs)


def test_protected_buffer_the_cpu_wants_to_read() -> None:
    soc = load_soc("reference-mobile")
    s = _scenario(
        "x",
        [
            {
                "name": "secure",
                "width": 1920,
                "height": 1080,
                "format": "NV12",
                "heap": "protected:secure-video",
            }
        ],
        [
            {"name": "dec", "type": "decode", "master": "vdec", "outputs": ["secure"]},
            {
                "name": "show",
                "type": "display",
                "master": "display",
                "inputs": ["secure"],
                "refresh": 60,
            },
            {"name": "app", "type": "cpu", "master": "cpu", "inputs": ["secure"]},
        ],
    )
    p = plan_scenario(s, soc).pools["secure"]
    assert not p.feasible and p.protected
    (c,) = p.conflicts
    assert c.kind == "protected" and c.master == "cpu" and "-EPERM" in c.message
    assert p.fixes[0].engineering == "firmware" and not p.fixes[-1].applicable
    # without the CPU reader, the vdec -> display path is a valid protected pool
    s.stages.pop()
    plan = plan_scenario(s, soc)
    assert plan.pools["secure"].feasible and plan.pools["secure"].cpu_caching == "none"
    _proven(plan, s, soc)


def test_builtin_scenarios_feasible_and_proven() -> None:
    from socmem.scenario.loader import load_scenario

    for name in ("default", "nommu-contiguous", "saturated", "bug-skip-sync"):
        s = load_scenario(name).scenario
        soc = load_soc(s.soc)
        plan = plan_scenario(s, soc)
        assert plan.feasible, name
        _proven(plan, s, soc)
    nommu = plan_scenario(load_scenario("nommu-contiguous").scenario, load_soc("nommu-imx8m"))
    assert nommu.pools["cam"].heap == "cma" and "no IOMMU" in nommu.pools["cam"].reasons["heap"]


def test_imx8mq_evk_display_and_video_need_contiguous_memory() -> None:
    soc = import_dtb(need(DTB / "imx8mq-evk.dtb")).soc
    names = {m.kind.value: m.name for m in soc.masters if m.enabled}
    vpu = next(m.name for m in soc.masters if "g2" in (m.compatible or [""])[0])
    s = _scenario(
        "x",
        [{"name": "video", "width": 1920, "height": 1080, "format": "NV12", "count": 4}],
        [
            {"name": "dec", "type": "decode", "master": vpu, "outputs": ["video"]},
            {
                "name": "show",
                "type": "display",
                "master": names["display"],
                "inputs": ["video"],
                "refresh": 60,
            },
        ],
    )
    # the EVK's DT has no CMA pool, but the kernel reserves its configured global CMA
    # area (CONFIG_CMA_SIZE_MBYTES, 64 MiB on Debian): display and VPU share it
    assert soc.kernel.cma_size == 64 << 20
    plan = plan_scenario(s, soc)
    assert plan.feasible and plan.pools["video"].heap == "cma"
    _proven(plan, s, soc)
    # a kernel without a default CMA area (cma=0): contiguity cannot be met
    soc = soc.model_copy(deep=True)
    soc.kernel.cma_size = None
    p = plan_scenario(s, soc).pools["video"]
    assert not p.feasible
    assert p.conflicts[0].kind == "contiguity" and "no IOMMU" in p.conflicts[0].message
    top = p.fixes[0]
    assert top.kind == "soc-change" and "CMA pool" in top.description
    fixed = apply_soc_change(soc, top)
    plan = plan_scenario(s, fixed)
    assert plan.feasible and plan.pools["video"].heap == "cma"
    _proven(plan, s, fixed)


def test_rk3399_per_master_iommus_use_the_system_heap() -> None:
    soc = import_dtb(need(DTB / "rk3399-gru-kevin.dtb")).soc
    vdec = next(m.name for m in soc.masters if m.compatible[:1] == ["rockchip,rk3399-vdec"])
    vop = next(m.name for m in soc.masters if m.compatible[:1] == ["rockchip,rk3399-vop-big"])
    gpu = next(m.name for m in soc.masters if m.kind.value == "gpu" and m.enabled)
    s = _scenario(
        "x",
        [{"name": "video", "width": 1920, "height": 1080, "format": "NV12", "count": 3}],
        [
            {"name": "dec", "type": "decode", "master": vdec, "outputs": ["video"]},
            {"name": "show", "type": "process", "master": gpu, "inputs": ["video"]},
        ],
    )
    s.stages[1].master = vop
    s.stages[1].type = "display"  # type: ignore[assignment]
    s.stages[1].refresh = 60
    plan = plan_scenario(s, soc)
    p = plan.pools["video"]
    assert p.feasible and p.heap in ("system", "cma")
    assert {m.master for m in p.iommu} == {vdec, vop}
    _proven(plan, s, soc)
    # the Mali has no IOMMU in this DT: sharing with it needs contiguous memory, which
    # the kernel's configured CMA area gives; a kernel without one (cma=0) cannot
    s.stages.append(
        s.stages[1].model_copy(update={"name": "gpu", "type": "process", "master": gpu})
    )
    p2 = plan_scenario(s, soc).pools["video"]
    assert p2.feasible and p2.heap == "cma"
    no_cma = soc.model_copy(deep=True)
    no_cma.kernel.cma_size = None
    p3 = plan_scenario(s, no_cma).pools["video"]
    assert not p3.feasible and any(c.master == gpu for c in p3.conflicts)


def test_sm8250_coherent_and_non_coherent_masters() -> None:
    soc = import_dtb(need(DTB / "sm8250-hdk.dtb")).soc
    venus = next(m.name for m in soc.masters if m.compatible[:1] == ["qcom,sm8250-venus"])
    coh = next(m for m in soc.masters if m.dma_coherent and m.has_iommu)
    coh.enabled = True
    s = _scenario(
        "x",
        [
            {"name": "bits", "size": "1MiB", "count": 2},
            {"name": "ring", "size": "256KiB", "count": 2},
        ],
        [
            {"name": "enc", "type": "decode", "master": venus, "outputs": ["bits"]},
            {"name": "app", "type": "cpu", "master": "cpu", "inputs": ["bits", "ring"]},
            {
                "name": "dev",
                "type": "process",
                "master": coh.name,
                "inputs": ["bits"],
                "outputs": ["ring"],
            },
        ],
    )
    first = plan_scenario(s, soc).pools["bits"]
    (c,) = first.conflicts  # a generic driver leaves dma_parms at 64 KiB
    assert c.kind == "segment-size" and c.master == coh.name
    assert first.fixes[0].kind == "driver" and "dma_set_max_seg_size" in first.fixes[0].description
    soc = apply_soc_change(soc, first.fixes[0])
    plan = plan_scenario(s, soc)
    bits, ring = plan.pools["bits"], plan.pools["ring"]
    assert bits.feasible and bits.cpu_caching == "cached+maintenance"
    assert bits.maintenance_per_frame_s > 0
    assert ring.cpu_caching == "cached" and ring.maintenance_per_frame_s == 0
    assert all("IOMMU_CACHE" in m.prot for m in ring.iommu)
    assert not any("IOMMU_CACHE" in m.prot for m in bits.iommu if m.master == venus)
    _proven(plan, s, soc)


def test_capacity_and_explicit_heap() -> None:
    soc = load_soc("nommu-imx8m")
    s = _scenario(
        "x",
        [{"name": "big", "width": 3840, "height": 2160, "format": "NV12", "count": 64}],
        [
            {"name": "gpu", "type": "decode", "master": "vpu", "outputs": ["big"]},
            {"name": "show", "type": "display", "master": "dcss", "inputs": ["big"], "refresh": 60},
        ],
    )
    p = plan_pool(s, soc, s.buffers[0])
    assert not p.feasible and p.conflicts[0].kind == "capacity"
