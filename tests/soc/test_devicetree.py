"""Tests of socmem.soc.devicetree: facts read off the fixture .dts files, and synthetic
trees for the dma-ranges / coherency / reserved-memory rules."""

from __future__ import annotations

from typing import Any

import pytest

from fdt_writer import Writer, build
from fixture_paths import FIXTURES, need
from socmem.soc.devicetree import (
    BoardDT,
    DmaRange,
    IommuMapEntry,
    IommuRef,
    classify_kind,
    iommu_model,
    read_board,
)
from socmem.soc.fdt import parse_fdt, read_fdt

FIXTURES = FIXTURES
DTB_DIR = FIXTURES / "dtb"
GUEST = FIXTURES / "real-kernel" / "qemu-virt-smmuv3" / "guest-fdt.dtb"

need(DTB_DIR)

_boards: dict[str, BoardDT] = {}


def board(name: str) -> BoardDT:
    """A fixture board, read once per session."""
    if name not in _boards:
        path = GUEST if name == "guest-fdt" else DTB_DIR / f"{name}.dtb"
        _boards[name] = read_board(read_fdt(str(path)))
    return _boards[name]


def master(b: BoardDT, path: str) -> Any:
    m = b.master(path)
    assert m is not None, f"{path} is not a master of {b.source}"
    return m


def synth(children: list[tuple[Any, ...]], **root: Any) -> BoardDT:
    props = {
        "#address-cells": [2],
        "#size-cells": [2],
        "model": "synthetic",
        "compatible": "test,board",
        **root,
    }
    return read_board(parse_fdt(build(props, children), source="synth.dtb"))


# -- sm8250-hdk ---------------------------------------------------------------------------


def test_sm8250_venus_stream_and_mask() -> None:
    b = board("sm8250-hdk")
    assert b.model == "Qualcomm Technologies, Inc. SM8250 HDK"
    assert b.compatible == ("qcom,sm8250-hdk", "qcom,sm8250")
    venus = master(b, "/soc@0/video-codec@aa00000")
    assert venus.kind == "video-codec" and venus.status == "okay"
    assert venus.iommus == (IommuRef("/soc@0/iommu@15000000", 0x2100, 0x400),)
    assert venus.memory_region == ("/reserved-memory/memory@86e00000",)
    smmu = b.iommu("/soc@0/iommu@15000000")
    assert smmu is not None and smmu.model == "arm,mmu-500" and smmu.iommu_cells == 2
    assert smmu.phandle == 0x2F and not smmu.dma_coherent
    # /soc@0 dma-ranges = <0 0 0 0 0x10 0>: 64 GiB window → 36-bit mask
    assert venus.dma_ranges == (DmaRange(0, 0, 0x10_0000_0000),)
    assert venus.bus_dma_limit == 0xF_FFFF_FFFF and venus.dma_mask_bits == 36
    assert not venus.dma_coherent


def test_sm8250_camss_disabled_with_eight_streams() -> None:
    camss = master(board("sm8250-hdk"), "/soc@0/camss@ac6a000")
    assert camss.kind == "camera" and camss.status == "disabled"
    assert camss.stream_ids == (0x800, 0x801, 0x840, 0x841, 0xC00, 0xC01, 0xC40, 0xC41)
    assert {ref.mask for ref in camss.iommus} == {0x400}
    assert {ref.iommu_path for ref in camss.iommus} == {"/soc@0/iommu@15000000"}


def test_sm8250_gpu_display_and_iommus() -> None:
    b = board("sm8250-hdk")
    assert [(i.path, i.model, i.iommu_cells) for i in b.iommus] == [
        ("/soc@0/iommu@3da0000", "arm,mmu-500", 2),
        ("/soc@0/iommu@15000000", "arm,mmu-500", 2),
    ]
    gpu = master(b, "/soc@0/gpu@3d00000")
    assert gpu.kind == "gpu"
    assert gpu.iommus == (IommuRef("/soc@0/iommu@3da0000", 0, 0x401),)
    mdss = master(b, "/soc@0/mdss@ae00000")
    assert mdss.kind == "display" and mdss.status == "disabled"
    assert mdss.iommus == (IommuRef("/soc@0/iommu@15000000", 0x820, 0x402),)
    pcie = master(b, "/soc@0/pci@1c00000")
    assert pcie.iommu_map == (
        IommuMapEntry(0x0, "/soc@0/iommu@15000000", 0x1C00, 1),
        IommuMapEntry(0x100, "/soc@0/iommu@15000000", 0x1C01, 1),
    )
    assert pcie.dma_coherent


def test_sm8250_reserved_memory_and_memory() -> None:
    b = board("sm8250-hdk")
    assert len(b.reserved) == 18
    assert sum(r.no_map for r in b.reserved) == 18
    assert {r.kind for r in b.reserved} == {"carveout"}
    cmd_db = b.region("memory@80860000")
    assert cmd_db is not None and cmd_db.compatible == ("qcom,cmd-db",)
    assert cmd_db.reg == ((0x80860000, 0x20000),)
    venus_fw = b.region("/reserved-memory/memory@86e00000")
    assert venus_fw is not None and venus_fw.total_size == 0x500000 and venus_fw.phandle == 0x83
    # memory@80000000 has reg size 0 (the bootloader fills it in): skipped with a warning
    assert b.memory == ()
    assert any("/memory@80000000" in w and "size 0" in w for w in b.warnings)
    assert b.cpu_count == 8


def test_clock_controllers_are_not_masters() -> None:
    b = board("sm8250-hdk")
    paths = {m.path for m in b.masters}
    fdt = read_fdt(str(DTB_DIR / "sm8250-hdk.dtb"))
    for node in fdt.walk():
        comps = node.prop_strings("compatible")
        if any(c.endswith(("-videocc", "-camcc", "-dispcc", "-gpucc", "-gcc")) for c in comps):
            assert node.path not in paths
            assert classify_kind(comps, node.name) == "other"


# -- sdm845-db845c ------------------------------------------------------------------------


def test_sdm845_pcie_iommu_map_and_camss() -> None:
    b = board("sdm845-db845c")
    pcie = master(b, "/soc@0/pci@1c00000")
    assert len(pcie.iommu_map) == 16
    assert pcie.iommu_map[0] == IommuMapEntry(0, "/soc@0/iommu@15000000", 0x1C10, 1)
    assert pcie.iommu_map[-1] == IommuMapEntry(0xF00, "/soc@0/iommu@15000000", 0x1C1F, 1)
    camss = master(b, "/soc@0/camss@acb3000")
    assert camss.status == "okay"  # status = "ok"
    assert camss.stream_ids == (0x808, 0x810, 0xC08, 0xC10)
    # the sensors on the CCI I2C bus do no DMA
    assert b.master("/soc@0/cci@ac4a000/i2c-bus@0/camera@10") is None
    assert len(b.reserved) == 21 and sum(r.no_map for r in b.reserved) == 21
    adreno_smmu = b.iommu("/soc@0/iommu@5040000")
    assert adreno_smmu is not None and adreno_smmu.model == "arm,smmu-v2"
    assert master(b, "/soc@0/gpu@5000000").iommus == (IommuRef("/soc@0/iommu@5040000", 0, None),)


# -- imx8mq-evk ---------------------------------------------------------------------------


def test_imx8mq_no_iommu_but_media_masters() -> None:
    b = board("imx8mq-evk")
    assert b.iommus == ()
    assert not any(m.behind_iommu for m in b.masters)
    kinds = {m.path: m.kind for m in b.masters}
    assert kinds["/soc@0/bus@30000000/lcd-controller@30320000"] == "display"
    assert kinds["/soc@0/gpu@38000000"] == "gpu"
    assert kinds["/soc@0/video-codec@38300000"] == "video-codec"
    assert kinds["/soc@0/video-codec@38310000"] == "video-codec"
    assert kinds["/soc@0/bus@30000000/dma-controller@302c0000"] == "dma-engine"
    assert kinds["/soc@0/bus@30800000/csi@30a90000"] == "camera"
    assert b.cpu_count == 4
    assert b.memory[0].base == 0x40000000 and b.memory[0].size == 0xC0000000


def test_imx8mq_dma_ranges_and_no_reserved_memory() -> None:
    b = board("imx8mq-evk")
    # /soc@0 dma-ranges = <0x40000000 0x00 0x40000000 0xc0000000>
    gpu = master(b, "/soc@0/gpu@38000000")
    assert gpu.dma_ranges == (DmaRange(0x40000000, 0x40000000, 0xC0000000),)
    assert gpu.bus_dma_limit == 0xFFFF_FFFF and gpu.dma_mask_bits == 32
    # the AIPS bus under /soc@0 has no dma-ranges: of_dma_get_range → -ENODEV
    lcdif = master(b, "/soc@0/bus@30000000/lcd-controller@30320000")
    assert lcdif.dma_ranges == () and lcdif.bus_dma_limit is None and lcdif.dma_mask_bits == 32
    # this DTB has no /reserved-memory at all: CMA comes from the command line / Kconfig
    assert b.reserved == ()


# -- rk3399-gru-kevin ---------------------------------------------------------------------


def test_rk3399_rockchip_iommus_per_master() -> None:
    b = board("rk3399-gru-kevin")
    assert len(b.iommus) == 7
    assert {(i.model, i.iommu_cells) for i in b.iommus} == {("rockchip", 0)}
    assert [i.path for i in b.iommus if i.status == "disabled"] == ["/iommu@ff670800"]
    expected = {
        "/vop@ff8f0000": ("display", "/iommu@ff8f3f00"),
        "/vop@ff900000": ("display", "/iommu@ff903f00"),
        "/isp0@ff910000": ("isp", "/iommu@ff914000"),
        "/isp1@ff920000": ("isp", "/iommu@ff924000"),
        "/video-codec@ff650000": ("video-codec", "/iommu@ff650800"),
        "/video-codec@ff660000": ("video-codec", "/iommu@ff660480"),
    }
    for path, (kind, iommu) in expected.items():
        m = master(b, path)
        assert m.kind == kind
        assert m.iommus == (IommuRef(iommu, None, None),)  # #iommu-cells = 0: no ID
    assert master(b, "/isp0@ff910000").status == "disabled"
    assert master(b, "/gpu@ff9a0000").kind == "gpu" and not master(b, "/gpu@ff9a0000").iommus
    assert b.memory == ()  # no memory node in this DTB (the bootloader adds it)


# -- juno-r2 ------------------------------------------------------------------------------


def test_juno_mmu401_and_pcie_iommu_map() -> None:
    b = board("juno-r2")
    assert len(b.iommus) == 7
    assert {i.model for i in b.iommus} == {"arm,smmu-v2"}
    assert {i.iommu_cells for i in b.iommus} == {1}
    assert b.iommu("/iommu@2b500000").compatible == ("arm,mmu-401", "arm,smmu-v1")  # type: ignore[union-attr]
    pcie = master(b, "/pcie@40000000")
    assert pcie.iommu_map == (IommuMapEntry(0, "/iommu@2b500000", 0, 1),)
    assert pcie.iommu_map_mask == 0
    assert pcie.dma_coherent
    # PCI dma-ranges (3 child cells with flags): 2 GiB at 2 GiB, 8 GiB at 32 GiB
    assert pcie.dma_ranges == (
        DmaRange(0x8000_0000, 0x8000_0000, 0x8000_0000),
        DmaRange(0x8_0000_0000, 0x8_0000_0000, 0x2_0000_0000),
    )
    assert pcie.bus_dma_limit == 0x9_FFFF_FFFF and pcie.dma_mask_bits == 36
    dma = master(b, "/dma-controller@7ff00000")
    assert dma.kind == "dma-engine" and dma.stream_ids == tuple(range(9))
    assert {r.iommu_path for r in dma.iommus} == {"/iommu@7fb00000"}
    assert master(b, "/hdlcd@7ff50000").iommus == (IommuRef("/iommu@7fb10000", 0, None),)
    assert master(b, "/hdlcd@7ff60000").kind == "display"
    assert [(m.base, m.size) for m in b.memory] == [
        (0x8000_0000, 0x7F00_0000),
        (0x8_8000_0000, 0x1_8000_0000),
    ]
    assert b.cpu_count == 6


# -- zynqmp-zcu102 ------------------------------------------------------------------------


def test_zynqmp_28_masters_on_one_smmu() -> None:
    b = board("zynqmp-zcu102-rev1.0")
    assert len(b.iommus) == 1
    smmu = b.iommus[0]
    assert (smmu.path, smmu.model, smmu.iommu_cells) == ("/axi/iommu@fd800000", "arm,mmu-500", 1)
    assert smmu.status == "disabled"
    users = [m for m in b.masters if m.iommus]
    assert len(users) == 28
    assert {r.iommu_path for m in users for r in m.iommus} == {"/axi/iommu@fd800000"}
    ahci = master(b, "/axi/ahci@fd0c0000")
    assert ahci.stream_ids == (0x4C0, 0x4C1, 0x4C2, 0x4C3)
    assert master(b, "/axi/dma-controller@fd500000").stream_ids == (0x14E8,)
    # usb@fe300000 has no status but its glue parent is disabled
    assert master(b, "/axi/usb@ff9e0000/usb@fe300000").status == "disabled"


# -- k3-j721e-sk --------------------------------------------------------------------------


def test_j721e_coherent_masters_and_pcie_dma_ranges() -> None:
    b = board("k3-j721e-sk")
    coherent = [m for m in b.masters if m.dma_coherent]
    assert len(coherent) == 17
    # inherited from the dma-coherent simple-mfd bus, which itself is not a master
    assert master(b, "/bus@100000/bus@30000000/dma-controller@31150000").dma_coherent
    assert b.master("/bus@100000/bus@30000000") is None
    pcie = master(b, "/bus@100000/pcie@2900000")
    assert pcie.dma_ranges == (DmaRange(0, 0, 1 << 48),)
    assert pcie.bus_dma_limit == (1 << 48) - 1 and pcie.dma_mask_bits == 48
    assert not any(m.behind_iommu for m in b.masters)  # SMMUv3 present, no users
    assert [i.model for i in b.iommus] == ["arm,smmu-v3"]
    assert master(b, "/bus@100000/dss@4a00000").kind == "display"


def test_j721e_reserved_memory() -> None:
    b = board("k3-j721e-sk")
    assert len(b.reserved) == 20 and all(r.no_map for r in b.reserved)
    kinds = [r.kind for r in b.reserved]
    assert kinds.count("coherent-pool") == 18 and kinds.count("carveout") == 2
    optee = b.region("optee@9e800000")
    assert optee is not None and optee.alignment == 0x1000
    assert optee.reg == ((0x9E800000, 0x1800000),)
    r5f = master(b, "/bus@100000/bus@28380000/r5fss@41000000/r5f@41000000")
    assert r5f.memory_region == (
        "/reserved-memory/r5f-dma-memory@a0000000",
        "/reserved-memory/r5f-memory@a0100000",
    )


# -- qemu virt guest ----------------------------------------------------------------------


def test_guest_smmuv3_and_pcie_iommu_map() -> None:
    b = board("guest-fdt")
    assert b.model == "linux,dummy-virt" and b.cpu_count == 2
    assert [(i.path, i.model, i.iommu_cells, i.dma_coherent) for i in b.iommus] == [
        ("/smmuv3@9050000", "arm,smmu-v3", 1, True)
    ]
    pcie = master(b, "/pcie@10000000")
    assert pcie.iommu_map == (IommuMapEntry(0, "/smmuv3@9050000", 0, 0x10000),)
    assert pcie.iommu_map_mask is None and pcie.dma_coherent
    assert [(m.base, m.size) for m in b.memory] == [(0x4000_0000, 0x8000_0000)]
    virtio = [m for m in b.masters if m.compatible == ("virtio,mmio",)]
    assert len(virtio) == 32 and all(m.dma_coherent for m in virtio)
    assert b.warnings == ()


# -- synthetic trees ----------------------------------------------------------------------


def test_dma_ranges_translate_through_two_levels() -> None:
    b = synth(
        [
            (
                "bus@0",
                {
                    "#address-cells": [2],
                    "#size-cells": [2],
                    "ranges": True,
                    "compatible": "simple-bus",
                    "dma-ranges": [0, 0, 0x8, 0, 0x1, 0],
                },
                [
                    (
                        "sub@0",
                        {
                            "#address-cells": [1],
                            "#size-cells": [1],
                            "ranges": True,
                            "dma-ranges": [0x1000_0000, 0, 0x2000_0000, 0x1000_0000],
                        },
                        [
                            ("npu@100", {"compatible": "vendor,npu", "reg": [0x100, 0x100]}, []),
                        ],
                    ),
                    ("vpu@200", {"compatible": "vendor,vpu", "reg": [0, 0x200, 0, 0x100]}, []),
                ],
            ),
        ]
    )
    npu = master(b, "/bus@0/sub@0/npu@100")
    assert npu.kind == "npu"
    assert npu.dma_ranges == (DmaRange(0x1000_0000, 0x8_2000_0000, 0x1000_0000),)
    assert npu.bus_dma_limit == 0x1FFF_FFFF and npu.dma_mask_bits == 29
    vpu = master(b, "/bus@0/vpu@200")
    assert vpu.dma_ranges == (DmaRange(0, 0x8_0000_0000, 0x1_0000_0000),)
    assert vpu.bus_dma_limit == 0xFFFF_FFFF and vpu.dma_mask_bits == 32


def test_empty_dma_ranges_pass_through_and_missing_ones_stop() -> None:
    b = synth(
        [
            (
                "soc",
                {
                    "#address-cells": [1],
                    "#size-cells": [1],
                    "ranges": True,
                    "dma-ranges": [0, 0, 0, 0x4000_0000],
                },
                [
                    (
                        "bridge",
                        {"#address-cells": [1], "#size-cells": [1], "dma-ranges": True},
                        [
                            ("gpu@1", {"compatible": "vendor,gpu", "reg": [1, 1]}, []),
                        ],
                    ),
                    (
                        "plain",
                        {"#address-cells": [1], "#size-cells": [1]},
                        [
                            ("gpu@2", {"compatible": "vendor,gpu", "reg": [2, 1]}, []),
                        ],
                    ),
                ],
            ),
        ]
    )
    through = master(b, "/soc/bridge/gpu@1")
    assert through.dma_ranges == (DmaRange(0, 0, 0x4000_0000),)
    assert through.bus_dma_limit == 0x3FFF_FFFF and through.dma_mask_bits == 30
    stopped = master(b, "/soc/plain/gpu@2")
    assert stopped.dma_ranges == () and stopped.bus_dma_limit is None
    assert stopped.dma_mask_bits == 32


def test_dma_range_written_as_a_mask_is_bumped_with_a_warning() -> None:
    b = synth(
        [
            (
                "soc",
                {"#address-cells": [1], "#size-cells": [1], "dma-ranges": [0, 0, 0, 0xFFFF_FFFF]},
                [
                    ("display@1", {"compatible": "vendor,display", "reg": [1, 1]}, []),
                ],
            ),
        ]
    )
    disp = master(b, "/soc/display@1")
    assert disp.bus_dma_limit == 0xFFFF_FFFF and disp.dma_mask_bits == 32
    assert any("Invalid size 0xffffffff for dma-range(s)" in w for w in b.warnings)


def test_untranslatable_dma_range_is_skipped_with_a_warning() -> None:
    b = synth(
        [
            (
                "outer",
                {"#address-cells": [1], "#size-cells": [1], "dma-ranges": [0, 0, 0x1000, 0x1000]},
                [
                    (
                        "inner",
                        {
                            "#address-cells": [1],
                            "#size-cells": [1],
                            "dma-ranges": [0, 0x9000_0000, 0x1000],
                        },
                        [
                            ("gpu@1", {"compatible": "vendor,gpu", "reg": [1, 1]}, []),
                        ],
                    ),
                ],
            ),
        ]
    )
    gpu = master(b, "/outer/inner/gpu@1")
    assert gpu.dma_ranges == () and gpu.bus_dma_limit is None
    assert any("/outer/inner: translation of DMA address 0x0" in w for w in b.warnings)


def test_dma_mem_interconnect_is_the_dma_parent_and_cycles_stop() -> None:
    b = synth(
        [
            (
                "noc@0",
                {
                    "#interconnect-cells": [1],
                    "phandle": [1],
                    "dma-coherent": True,
                    "#address-cells": [2],
                    "#size-cells": [2],
                    "dma-ranges": [0, 0, 0, 0x8000_0000, 0x1, 0],
                },
                [],
            ),
            (
                "soc",
                {"#address-cells": [1], "#size-cells": [1], "compatible": "simple-bus"},
                [
                    (
                        "gpu@1",
                        {
                            "compatible": "vendor,gpu",
                            "reg": [1, 1],
                            "interconnects": [1, 5],
                            "interconnect-names": "dma-mem",
                        },
                        [],
                    ),
                ],
            ),
            (
                "loop",
                {
                    "#interconnect-cells": [0],
                    "phandle": [2],
                    "interconnects": [2],
                    "interconnect-names": "dma-mem",
                    "#address-cells": [1],
                    "#size-cells": [1],
                },
                [
                    ("vpu@3", {"compatible": "vendor,vpu", "reg": [3, 1]}, []),
                ],
            ),
        ]
    )
    gpu = master(b, "/soc/gpu@1")  # of_dma_get_range / of_dma_is_coherent follow the NoC
    assert gpu.dma_coherent
    assert gpu.dma_ranges == (DmaRange(0, 0x8000_0000, 0x1_0000_0000),)
    vpu = master(b, "/loop/vpu@3")  # /loop is its own dma parent: no hang
    assert vpu.dma_ranges == () and not vpu.dma_coherent


def test_coherency_inheritance_and_override() -> None:
    b = synth(
        [
            (
                "soc",
                {
                    "#address-cells": [1],
                    "#size-cells": [1],
                    "dma-coherent": True,
                    "compatible": "simple-bus",
                },
                [
                    ("gpu@1", {"compatible": "vendor,gpu", "reg": [1, 1]}, []),
                    (
                        "vpu@2",
                        {"compatible": "vendor,vpu", "reg": [2, 1], "dma-noncoherent": True},
                        [],
                    ),
                ],
            ),
        ]
    )
    assert b.master("/soc") is None  # a bus, not a master
    assert master(b, "/soc/gpu@1").dma_coherent
    assert not master(b, "/soc/vpu@2").dma_coherent


def test_iommu_specifiers_by_cell_count_and_dangling_phandles() -> None:
    b = synth(
        [
            (
                "smmu@1",
                {
                    "compatible": "qcom,sdm845-smmu-500\0arm,mmu-500",
                    "#iommu-cells": [1],
                    "stream-match-mask": [0x7C00],
                    "phandle": [1],
                },
                [],
            ),
            ("dart@2", {"compatible": "apple,t8103-dart", "#iommu-cells": [3], "phandle": [2]}, []),
            ("nocells@3", {"phandle": [3]}, []),
            ("isp@10", {"compatible": "vendor,isp", "iommus": [1, 0x42, 2, 7, 8, 9]}, []),
            ("camera@11", {"compatible": "vendor,camera", "iommus": [0x99, 1]}, []),
            ("npu@12", {"compatible": "vendor,npu", "iommus": [3, 1]}, []),
            ("gpu@13", {"compatible": "vendor,gpu", "iommus": [1]}, []),
            (
                "pcie@14",
                {
                    "iommu-map": [0, 0x77, 0, 0x100, 0x100, 1, 0x100, 0x100],
                    "iommu-map-mask": [0xFF00],
                },
                [],
            ),
            ("vpu@15", {"compatible": "vendor,vpu", "memory-region": [0x55]}, []),
        ]
    )
    assert [i.model for i in b.iommus] == ["arm,mmu-500", "apple-dart"]
    isp = master(b, "/isp@10")
    assert isp.iommus == (
        IommuRef("/smmu@1", 0x42, 0x7C00),  # 1 cell + the SMMU's stream-match-mask
        IommuRef("/dart@2", 7, None, (7, 8, 9)),  # 3 cells: kept raw
    )
    assert master(b, "/camera@11").iommus == ()
    assert master(b, "/npu@12").iommus == ()
    assert master(b, "/gpu@13").iommus == ()
    pcie = master(b, "/pcie@14")
    assert pcie.iommu_map == (IommuMapEntry(0x100, "/smmu@1", 0x100, 0x100),)
    assert pcie.iommu_map_mask == 0xFF00
    assert master(b, "/vpu@15").memory_region == ()
    text = "\n".join(b.warnings)
    assert "/camera@11: iommus[0] points to phandle 0x99, which no node has" in text
    assert "/npu@12: iommus[0] points to /nocells@3, which has no #iommu-cells" in text
    assert "/gpu@13: iommus[0] is truncated" in text
    assert "/pcie@14: iommu-map entry for rid 0x0 points to phandle 0x77" in text
    assert "/vpu@15: memory-region points to phandle 0x55" in text


def test_reserved_memory_kinds_and_memreserve() -> None:
    rsv: tuple[Any, ...] = (
        "reserved-memory",
        {"#address-cells": [2], "#size-cells": [2], "ranges": True},
        [
            (
                "linux,cma",
                {
                    "compatible": "shared-dma-pool",
                    "reusable": True,
                    "size": [0, 0x2000_0000],
                    "alignment": [0, 0x40_0000],
                    "alloc-ranges": [0, 0x4000_0000, 0, 0xC000_0000],
                    "linux,cma-default": True,
                    "phandle": [4],
                },
                [],
            ),
            (
                "pool@90000000",
                {
                    "compatible": "shared-dma-pool",
                    "no-map": True,
                    "reg": [0, 0x9000_0000, 0, 0x10_0000],
                    "linux,dma-default": True,
                },
                [],
            ),
            (
                "swiotlb@a0000000",
                {"compatible": "restricted-dma-pool", "reg": [0, 0xA000_0000, 0, 0x40_0000]},
                [],
            ),
            (
                "fw@b0000000",
                {"reg": [0, 0xB000_0000, 0, 0x1000], "no-map": True, "status": "disabled"},
                [],
            ),
            ("dyn", {"size": [0, 0x10_0000]}, []),
            ("bad-align", {"size": [0, 0x1000], "alignment": [0x1000]}, []),
        ],
    )
    mem: tuple[Any, ...] = (
        "memory@40000000",
        {
            "device_type": "memory",
            "reg": [0, 0x4000_0000, 0, 0x8000_0000, 0x8, 0x8000_0000, 0, 0x8000_0000],
        },
        [],
    )
    cpus: tuple[Any, ...] = (
        "cpus",
        {"#address-cells": [1], "#size-cells": [0]},
        [
            ("cpu@0", {"device_type": "cpu", "reg": [0], "compatible": "arm,cortex-a55"}, []),
            ("cpu@1", {"device_type": "cpu", "reg": [1], "compatible": "arm,cortex-a55"}, []),
            ("cpu-map", {}, []),
        ],
    )
    codec: tuple[Any, ...] = (
        "codec@1000",
        {"compatible": "vendor,video-codec", "reg": [0, 0x1000, 0, 0x100], "memory-region": [4]},
        [],
    )
    tree = ("", {"#address-cells": [2], "#size-cells": [2]}, [rsv, mem, cpus, codec])
    b = read_board(parse_fdt(Writer().node(*tree).blob([(0x4000_0000, 0x1000)])))
    assert [(m.base, m.size, m.end) for m in b.memory] == [
        (0x4000_0000, 0x8000_0000, 0xC000_0000),
        (0x8_8000_0000, 0x8000_0000, 0x9_0000_0000),
    ]
    assert [(m.base, m.size) for m in b.memreserve] == [(0x4000_0000, 0x1000)]
    assert b.cpu_count == 2 and not any(m.kind == "cpu" for m in b.masters)
    kinds = {r.name: r.kind for r in b.reserved}
    assert kinds == {
        "linux,cma": "cma",
        "pool@90000000": "coherent-pool",
        "swiotlb@a0000000": "restricted-dma-pool",
        "fw@b0000000": "carveout",
        "dyn": "dynamic",
        "bad-align": "dynamic",
    }
    cma = b.region("linux,cma")
    assert cma is not None and cma.cma_default and cma.reusable and not cma.no_map
    assert (cma.size, cma.alignment) == (0x2000_0000, 0x40_0000)
    assert cma.alloc_ranges == ((0x4000_0000, 0xC000_0000),)
    assert cma.reg == () and cma.total_size == 0x2000_0000 and cma.phandle == 4
    pool = b.region("pool@90000000")
    assert pool is not None and pool.dma_default and pool.no_map
    fw = b.region("/reserved-memory/fw@b0000000")
    assert fw is not None and fw.status == "disabled"
    assert master(b, "/codec@1000").memory_region == ("/reserved-memory/linux,cma",)
    assert any("/reserved-memory/bad-align: invalid alignment" in w for w in b.warnings)


@pytest.mark.parametrize(
    ("compatible", "name", "kind"),
    [
        (["qcom,sm8250-venus"], "video-codec@aa00000", "video-codec"),
        (["qcom,sm8250-camss"], "camss@ac6a000", "camera"),
        (["rockchip,rk3399-cif-isp"], "isp0@ff910000", "isp"),
        (["rockchip,rkisp1"], "isp@0", "isp"),
        (["fsl,imx8mq-mipi-csi2"], "csi@30a70000", "camera"),
        (["rockchip,rk3588-rknn-core"], "npu@fdab0000", "npu"),
        (["qcom,sm8250-mdss"], "mdss@ae00000", "display"),
        (["fsl,imx8mq-lcdif", "fsl,imx28-lcdif"], "lcd-controller@30320000", "display"),
        (["nxp,imx8mq-dcss"], "display-controller@32e00000", "display"),
        (["arm,mali-dp650"], "malidp@0", "display"),
        (["vivante,gc"], "gpu@38000000", "gpu"),
        (["qcom,adreno-650.2", "qcom,adreno"], "gpu@3d00000", "gpu"),
        (["arm,juno-mali", "arm,mali-t624"], "gpu@2d000000", "gpu"),
        (["fsl,imx8mq-sdma", "fsl,imx7d-sdma"], "dma-controller@302c0000", "dma-engine"),
        (["qcom,bam-v1.7.0"], "dma-controller@1dc4000", "dma-engine"),
        (["xlnx,zynqmp-dma-1.0"], "dma-controller@fd500000", "dma-engine"),
        (["arm,cortex-a76"], "cpu@400", "cpu"),
        (["qcom,sm8250-videocc"], "clock-controller@abf0000", "other"),
        (["qcom,sm8250-camcc"], "clock-controller@ad00000", "other"),
        (["qcom,sm8250-dispcc"], "clock-controller@af00000", "other"),
        (["qcom,sm8250-mmss-noc"], "interconnect@1740000", "other"),
        (["qcom,sm8250-smmu-500", "arm,mmu-500"], "iommu@15000000", "other"),
        (["fsl,imx8mq-mipi-dphy"], "dphy@30a00300", "other"),
        (["fsl,imx8mq-vpu-blk-ctrl"], "blk-ctrl@38320000", "other"),
        (["rockchip,rk3399-mipi-dsi"], "dsi@ff960000", "other"),
        (["qcom,sm8250-pdc"], "interrupt-controller@b220000", "other"),
        ([], "gpu-thermal", "other"),
        (["vendor,something"], "widget@0", "other"),
    ],
)
def test_classify_kind(compatible: list[str], name: str, kind: str) -> None:
    assert classify_kind(compatible, name) == kind


@pytest.mark.parametrize(
    ("compatible", "model"),
    [
        (["arm,smmu-v3"], "arm,smmu-v3"),
        (["qcom,sm8250-smmu-500", "qcom,adreno-smmu", "arm,mmu-500"], "arm,mmu-500"),
        (["arm,mmu-401", "arm,smmu-v1"], "arm,smmu-v2"),
        (["qcom,msm8996-smmu-v2", "qcom,smmu-v2"], "arm,smmu-v2"),
        (["rockchip,iommu"], "rockchip"),
        (["nvidia,tegra210-smmu"], "tegra"),
        (["apple,t8103-dart"], "apple-dart"),
        (["mediatek,mt8183-m4u"], "mediatek"),
        (["samsung,exynos-sysmmu"], "exynos-sysmmu"),
        (["virtio,iommu"], "other"),
    ],
)
def test_iommu_model(compatible: list[str], model: str) -> None:
    assert iommu_model(compatible) == model


def test_all_fixture_boards_read_without_error() -> None:
    for path in [*sorted(DTB_DIR.glob("*.dtb")), GUEST]:
        b = read_board(read_fdt(str(path)))
        assert b.masters and b.cpu_count > 0
        for m in b.masters:
            assert m.status in ("okay", "disabled")
            assert 1 <= m.dma_mask_bits <= 64
            assert all(r.iommu_path in {i.path for i in b.iommus} for r in m.iommus)
