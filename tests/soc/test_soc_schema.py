"""SoC descriptions: built-ins, derived values, line-numbered errors, round trips."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from socmem.errors import InputError
from socmem.soc.loader import builtin_names, dump_soc, load_soc, load_soc_full, soc_from_doc
from socmem.soc.schema import IommuModel, MasterKind, ReservedKind
from socmem.yamlfile import parse_yaml

MINIMAL = """\
name: tiny
dram:
  type: LPDDR5
  data_rate: 6400MT/s
  channels: 4
  ranges:
    - {base: 0x8000_0000, size: 4GiB}
"""


def load_text(text: str, name: str = "soc.yaml"):
    return soc_from_doc(parse_yaml(textwrap.dedent(text), name)).soc


def errors_of(text: str) -> list[str]:
    with pytest.raises(InputError) as info:
        load_text(text)
    return info.value.render().splitlines()


def test_builtins_load_and_round_trip() -> None:
    assert {"reference-mobile", "midrange-lpddr4x", "nommu-imx8m"} <= set(builtin_names())
    for name in builtin_names():
        soc = load_soc(name)
        again = soc_from_doc(parse_yaml(dump_soc(soc), "dumped")).soc
        assert again == soc, name


def test_reference_mobile_figures() -> None:
    soc = load_soc("reference-mobile")
    assert soc.dram.peak_bandwidth == pytest.approx(51.2e9)
    assert soc.dram.achievable_bandwidth == pytest.approx(40.96e9)
    assert soc.iommus[0].model is IommuModel.SMMU_V3
    kinds = [m.kind for m in soc.masters]
    assert kinds.count(MasterKind.CAMERA) == 4
    for k in (MasterKind.ISP, MasterKind.NPU, MasterKind.DISPLAY, MasterKind.GPU):
        assert k in kinds
    assert sum(1 for m in soc.masters if m.kind is MasterKind.VIDEO_CODEC) == 2
    assert soc.cpu.cores == 8
    cma = soc.default_cma()
    assert cma is not None and cma.kind is ReservedKind.CMA and cma.size == 512 << 20
    assert any(r.secure and r.no_map for r in soc.reserved_memory)
    assert all(m.has_iommu for m in soc.masters)


def test_contrasting_builtins() -> None:
    nommu = load_soc("nommu-imx8m")
    assert not nommu.iommus and not any(m.has_iommu for m in nommu.masters)
    dcss = nommu.master("dcss")
    assert dcss is not None and dcss.bus_dma_limit == 0xFFFF_FFFF
    assert dcss.phys_reach() == [(0x4000_0000, 0x1_0000_0000)]
    mid = load_soc("midrange-lpddr4x")
    assert mid.dram.peak_bandwidth == pytest.approx(17.064e9)
    assert mid.iommus[0].model is IommuModel.MMU_500
    assert mid.iommus[0].invalidation.value == "lazy"


def test_dt_spelling_accepted() -> None:
    soc = load_text(
        MINIMAL
        + """\
reserved-memory:
  - name: fw
    reg: [{base: 0x9000_0000, size: 1MiB}]
    no-map: true
"""
    )
    assert soc.reserved_memory[0].no_map


def test_unknown_field_has_line() -> None:
    lines = errors_of(MINIMAL + "masters:\n  - name: a\n    colour: red\n")
    assert lines == ["soc.yaml:10: masters[0].colour: unknown field 'colour'"]


def test_wrong_unit_has_line_and_expectation() -> None:
    text = MINIMAL.replace("size: 4GiB", "size: 4 furlongs")
    (line,) = errors_of(text)
    assert line.startswith("soc.yaml:7: dram.ranges[0].size: cannot read size '4 furlongs'")


def test_missing_field_and_bad_enum() -> None:
    lines = errors_of("name: x\ndram:\n  type: SDRAM9\n  data_rate: 1MT/s\n  ranges: []\n")
    assert any("dram.channels: missing required field 'channels'" in x for x in lines)
    assert any(x.startswith("soc.yaml:3: dram.type:") and "LPDDR5" in x for x in lines)


def test_malformed_yaml_and_duplicate_key() -> None:
    with pytest.raises(InputError, match=r"soc.yaml:2: YAML syntax error"):
        load_text("name: x\n  bad: [unclosed\n")
    with pytest.raises(InputError, match=r"soc.yaml:2: duplicate key 'name'"):
        load_text("name: x\nname: y\n")
    with pytest.raises(InputError, match="empty"):
        load_text("")
    with pytest.raises(InputError, match="expected a mapping"):
        load_text("- 1\n- 2\n")


def test_overlapping_carveouts() -> None:
    lines = errors_of(
        MINIMAL
        + """\
reserved_memory:
  - name: a
    reg: [{base: 0x9000_0000, size: 16MiB}]
  - name: b
    reg: [{base: 0x9080_0000, size: 16MiB}]
"""
    )
    assert lines == [
        "soc.yaml:12: reserved_memory[1].reg[0]: carveout 'b' [0x9080_0000+16MiB] "
        "overlaps 'a' [0x9000_0000+16MiB]"
    ]


def test_stream_id_claimed_twice_respects_masks_and_groups() -> None:
    base = (
        MINIMAL
        + """\
iommus:
  - {name: smmu, model: "arm,mmu-500"}
masters:
  - name: a
    iommus: [{iommu: smmu, id: 0x800, mask: 0x400}]
  - name: b
    iommus: [{iommu: smmu, id: 0xc00}]
"""
    )
    (line,) = errors_of(base)
    assert line.startswith("soc.yaml:14: masters[1].iommus[0]: stream ID 0xc00 on 'smmu'")
    assert "already claimed by 'a'" in line
    # 0x820 is not matched by 0x800/0x400: no conflict
    load_text(base.replace("id: 0xc00", "id: 0x820"))
    # a shared IOMMU group may share stream IDs, as Linux groups them
    grouped = base.replace("  - name: a\n", "  - name: a\n    iommu_group: g\n").replace(
        "  - name: b\n", "  - name: b\n    iommu_group: g\n"
    )
    load_text(grouped)
    # a disabled master claims nothing
    load_text(base.replace("  - name: b\n", "  - name: b\n    enabled: false\n"))


def test_flow_comma_gets_a_hint() -> None:
    lines = errors_of(MINIMAL + "iommus:\n  - {name: smmu, model: arm,mmu-500}\n")
    assert any("quote values that contain one" in x for x in lines)


def test_dangling_references() -> None:
    lines = errors_of(
        MINIMAL + "masters:\n  - name: a\n    iommus: [{iommu: nope, id: 1}]\n"
        "    memory_region: [missing]\n"
    )
    assert any("unknown IOMMU 'nope'" in x and x.startswith("soc.yaml:10:") for x in lines)
    assert any("unknown reserved region 'missing'" in x for x in lines)


def test_reserved_binding_rules() -> None:
    lines = errors_of(
        MINIMAL + "reserved_memory:\n  - name: a\n    size: 1MiB\n    no_map: true\n"
        "    reusable: true\n"
    )
    assert "mutually exclusive" in lines[0]
    lines = errors_of(MINIMAL + "reserved_memory:\n  - name: a\n    no_map: true\n")
    assert "needs 'reg' (static) or 'size' (dynamic)" in lines[0]


def test_missing_file_and_unknown_builtin(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or built-in SoC"):
        load_soc(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="not UTF-8"):
        load_soc(str(bad))


def test_dma_reach_with_offset() -> None:
    soc = load_text(
        MINIMAL
        + """\
masters:
  - name: dev
    dma_mask_bits: 32
    dma_ranges: [{dma_start: 0x0, cpu_start: 0x8000_0000, size: 2GiB}]
"""
    )
    m = soc.masters[0]
    assert m.dma_ranges[0].offset == 0x8000_0000
    assert m.bus_dma_limit == 0x7FFF_FFFF
    assert m.phys_reach() == [(0x8000_0000, 0x1_0000_0000)]


def test_warnings_for_region_outside_dram() -> None:
    doc = parse_yaml(
        MINIMAL + "reserved_memory:\n  - name: sram\n    reg: [{base: 0x1000, size: 4K}]\n",
        "soc.yaml",
    )
    loaded = soc_from_doc(doc)
    assert loaded.warnings == ["soc.yaml:10: reserved region 'sram' at 0x1000 lies outside DRAM"]


def test_load_soc_full_default() -> None:
    assert load_soc_full().soc.name == "reference-mobile"
