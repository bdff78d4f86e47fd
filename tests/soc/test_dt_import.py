"""Importing real device tree blobs into SoC descriptions (facts read off the .dts files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_paths import FIXTURES, need
from socmem.cli import main
from socmem.errors import InputError
from socmem.soc.dt_import import import_dtb
from socmem.soc.loader import dump_soc, load_soc, soc_from_doc
from socmem.soc.schema import IommuModel, MasterKind, ReservedKind
from socmem.yamlfile import parse_yaml

FIX = FIXTURES
DTB = FIX / "dtb"
GUEST = FIX / "real-kernel" / "qemu-virt-smmuv3" / "guest-fdt.dtb"
ALL = [*sorted(DTB.glob("*.dtb")), GUEST]

need(DTB)


@pytest.mark.parametrize("blob", ALL, ids=lambda p: p.stem)
def test_every_fixture_imports_and_round_trips(blob: Path) -> None:
    result = import_dtb(blob)
    again = soc_from_doc(parse_yaml(dump_soc(result.soc), "dumped")).soc
    assert again == result.soc
    assert result.soc.assumptions, "what the DT cannot say must be listed"


def test_sm8250_hdk_streams_and_carveouts() -> None:
    soc = import_dtb(DTB / "sm8250-hdk.dtb").soc
    venus = soc.master("video-codec@aa00000")
    assert venus is not None and venus.kind is MasterKind.VIDEO_CODEC and venus.enabled
    assert [(s.iommu, s.id, s.mask) for s in venus.iommus] == [("iommu@15000000", 0x2100, 0x400)]
    camss = soc.master("camss@ac6a000")
    assert camss is not None and camss.kind is MasterKind.CAMERA and not camss.enabled
    assert [s.id for s in camss.iommus] == [0x800, 0x801, 0x840, 0x841, 0xC00, 0xC01, 0xC40, 0xC41]
    assert {s.mask for s in camss.iommus} == {0x400}
    gpu = soc.master("gpu@3d00000")
    assert gpu is not None and [(s.iommu, s.id, s.mask) for s in gpu.iommus] == [
        ("iommu@3da0000", 0x0, 0x401)
    ]
    assert {i.model for i in soc.iommus} == {IommuModel.MMU_500}
    assert len(soc.reserved_memory) == 18
    assert all(r.no_map for r in soc.reserved_memory)  # 18 "no-map;" in sm8250-hdk.dts
    assert any("bootloader" in a for a in soc.assumptions)  # memory node with size 0


def test_imx8mq_evk_has_no_iommu_and_contiguous_masters() -> None:
    soc = import_dtb(DTB / "imx8mq-evk.dtb").soc
    assert soc.iommus == []
    assert not any(m.has_iommu for m in soc.masters)
    kinds = {m.kind for m in soc.masters}
    assert {MasterKind.DISPLAY, MasterKind.VIDEO_CODEC, MasterKind.GPU} <= kinds
    assert soc.dram.ranges[0].base == 0x4000_0000 and soc.dram.ranges[0].size == 0xC000_0000
    vpu = soc.master("video-codec@38300000")
    assert vpu is not None
    # soc@0 dma-ranges = <0x40000000 0x0 0x40000000 0xc0000000>
    assert vpu.bus_dma_limit == 0xFFFF_FFFF
    assert vpu.dma_ranges[0].cpu_start == 0x4000_0000 and vpu.dma_ranges[0].size == 0xC000_0000


def test_rk3399_per_master_rockchip_iommus() -> None:
    soc = import_dtb(DTB / "rk3399-gru-kevin.dtb").soc
    assert soc.iommus and {i.model for i in soc.iommus} == {IommuModel.ROCKCHIP}
    vops = [m for m in soc.masters if m.kind is MasterKind.DISPLAY and m.iommus]
    assert {m.name for m in vops} == {"vop@ff8f0000", "vop@ff900000"}
    assert all(s.id is None for m in vops for s in m.iommus)  # #iommu-cells = <0>
    assert soc.master("isp0@ff910000").iommus[0].iommu == "iommu@ff914000"


def test_guest_fdt_pcie_iommu_map() -> None:
    soc = import_dtb(GUEST).soc
    (smmu,) = soc.iommus
    assert smmu.model is IommuModel.SMMU_V3
    pcie = [m for m in soc.masters if m.iommu_map]
    assert len(pcie) == 1
    (entry,) = pcie[0].iommu_map
    assert (entry.rid_base, entry.iommu_base, entry.length) == (0, 0, 0x10000)


def test_import_cli_writes_yaml_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "hdk.yaml"
    assert main(["soc", "import", str(DTB / "sm8250-hdk.dtb"), "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# socmem SoC description imported from")
    assert "assumptions:" in text
    assert load_soc(str(out)).master("video-codec@aa00000") is not None
    out.write_text("mine")
    assert main(["soc", "import", str(DTB / "sm8250-hdk.dtb"), "-o", str(out)]) == 2
    assert out.read_text() == "mine"
    assert "--force" in capsys.readouterr().err


def test_show_reads_a_dtb_by_magic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fdt = tmp_path / "fdt"  # like /sys/firmware/fdt: no suffix
    fdt.write_bytes((DTB / "juno-r2.dtb").read_bytes())
    assert main(["soc", "show", str(fdt)]) == 0
    assert "arm,smmu-v2" in capsys.readouterr().out


@pytest.mark.parametrize("cut", [0, 3, 40, 1000])
def test_truncated_dtb_is_a_clear_error(tmp_path: Path, cut: int) -> None:
    blob = tmp_path / "cut.dtb"
    blob.write_bytes((DTB / "juno-r2.dtb").read_bytes()[:cut])
    with pytest.raises(InputError) as info:
        import_dtb(blob)
    assert str(blob) in info.value.render()


def test_corrupt_dtb_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray((DTB / "juno-r2.dtb").read_bytes())
    data[0x40:0x60] = b"\xff" * 0x20  # smash the start of the structure block
    blob = tmp_path / "bad.dtb"
    blob.write_bytes(bytes(data))
    assert main(["soc", "import", str(blob)]) == 2
    err = capsys.readouterr().err
    assert "bad.dtb" in err and "Traceback" not in err


def test_cma_from_dt(tmp_path: Path) -> None:
    soc = import_dtb(DTB / "k3-j721e-sk.dtb").soc
    kinds = {r.kind for r in soc.reserved_memory}
    assert ReservedKind.CARVEOUT in kinds
    assert sum(1 for m in soc.masters if m.dma_coherent) >= 17


def test_kernel_default_cma_when_the_dt_has_none() -> None:
    soc = import_dtb(DTB / "imx8mq-evk.dtb").soc
    assert soc.kernel.cma_size == 64 << 20  # Debian arm64 6.1 CONFIG_CMA_SIZE_MBYTES
    cma = soc.default_cma()
    assert cma is not None and cma.name == "reserved" and cma.cma_default and cma.is_cma
    assert cma not in soc.reserved_memory and cma in soc.effective_reserved_memory()
    assert any("CONFIG_CMA_SIZE_MBYTES=64" in a for a in soc.assumptions)
    # a DT that names its default pool keeps it, and the kernel adds nothing
    guest = import_dtb(GUEST).soc
    assert guest.kernel.cma_size == 64 << 20
    ref = load_soc("reference-mobile")
    assert ref.kernel.cma_size is None and ref.default_cma().name == "linux,cma"  # type: ignore[union-attr]
