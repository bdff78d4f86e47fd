"""Tests of socmem.soc.fdt: the DTB reader against real blobs and hand-built corrupt ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from fdt_writer import Writer, build
from fixture_paths import FIXTURES, need
from socmem.errors import InputError
from socmem.soc.fdt import Fdt, parse_fdt, read_fdt

FIXTURES = FIXTURES
DTB_DIR = FIXTURES / "dtb"
GUEST = FIXTURES / "real-kernel" / "qemu-virt-smmuv3" / "guest-fdt.dtb"
ALL_DTBS = [*sorted(DTB_DIR.glob("*.dtb")), GUEST]

need(DTB_DIR)

_cache: dict[str, Fdt] = {}


def real(name: str) -> Fdt:
    """A fixture blob, parsed once per test session."""
    if name not in _cache:
        path = GUEST if name == "guest-fdt" else DTB_DIR / f"{name}.dtb"
        _cache[name] = read_fdt(str(path))
    return _cache[name]


def node_openings(dts: str) -> int:
    """Nodes in a dtc decompilation: one ``{`` per node, none inside strings here."""
    return sum(line.rstrip().endswith("{") for line in dts.splitlines())


# -- real blobs ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ALL_DTBS, ids=lambda p: p.stem)
def test_every_fixture_parses_and_node_count_matches_dts(path: Path) -> None:
    fdt = read_fdt(str(path))
    dts = path.with_suffix(".dts").read_text()
    assert fdt.node_count == node_openings(dts) == dts.count("{")
    assert fdt.node_count == sum(1 for _ in fdt.walk())
    # every `phandle = <...>` of the decompilation is indexed
    assert len(fdt._phandles) == dts.count("phandle = <")
    assert fdt.version == 17 and fdt.last_comp_version == 16
    assert fdt.memreserve == []  # no /memreserve/ line in any fixture


def test_node_counts_of_fixtures() -> None:
    counts = {p.stem: read_fdt(str(p)).node_count for p in ALL_DTBS}
    assert counts == {
        "imx8mq-evk": 227,
        "juno-r2": 257,
        "k3-j721e-sk": 327,
        "rk3399-gru-kevin": 549,
        "sc7280-idp": 958,
        "sdm845-db845c": 890,
        "sm8250-hdk": 806,
        "zynqmp-zcu102-rev1.0": 249,
        "guest-fdt": 59,
    }


def test_guest_fdt_is_a_one_mib_buffer() -> None:
    data = GUEST.read_bytes()
    assert len(data) == 1 << 20
    fdt = parse_fdt(data, source="guest-fdt.dtb")
    assert fdt.totalsize == 0x100000
    assert fdt.root.prop_str("model") == "linux,dummy-virt"


def test_trailing_padding_after_totalsize_is_ignored() -> None:
    data = (DTB_DIR / "sm8250-hdk.dtb").read_bytes()
    padded = parse_fdt(data + b"\0" * (1 << 20))
    assert padded.totalsize == len(data)
    assert padded.node_count == real("sm8250-hdk").node_count


def test_root_properties_and_string_lists() -> None:
    root = real("sm8250-hdk").root
    assert root.path == "/" and root.name == ""
    assert root.prop_str("model") == "Qualcomm Technologies, Inc. SM8250 HDK"
    assert root.prop_strings("compatible") == ["qcom,sm8250-hdk", "qcom,sm8250"]
    assert root.prop_u32("#address-cells") == 2 and root.prop_u32("#size-cells") == 2
    assert root.prop_strings("no-such-property") == []
    assert root.prop_str("no-such-property", "x") == "x"


def test_find_by_path_unit_address_and_alias() -> None:
    fdt = real("sm8250-hdk")
    venus = fdt.find("/soc@0/video-codec@aa00000")
    assert venus is not None and venus.name == "video-codec@aa00000"
    assert venus.prop_strings("compatible") == ["qcom,sm8250-venus"]
    assert fdt.find("/soc/video-codec@aa00000") is venus  # base-name match
    assert fdt.find("/soc@0/no-such-node") is None
    assert fdt.find("/reserved-memory/memory@86e00000") is not None
    i2c0 = fdt.find("i2c0")  # aliases: i2c0 = "/soc@0/geniqup@9c0000/i2c@980000"
    assert i2c0 is not None and i2c0.path == "/soc@0/geniqup@9c0000/i2c@980000"
    assert fdt.find("no-such-alias") is None


def test_reg_uses_parent_cells() -> None:
    fdt = real("sm8250-hdk")
    venus = fdt.find("/soc@0/video-codec@aa00000")
    assert venus is not None
    assert (venus.address_cells, venus.size_cells) == (2, 2)  # /soc@0 #address/#size-cells
    assert venus.reg() == [(0xAA00000, 0x100000)]
    camss = fdt.find("/soc@0/camss@ac6a000")
    assert camss is not None and len(camss.reg()) == 10
    assert camss.reg()[0] == (0xAC6A000, 0x2000) and camss.reg()[-1] == (0xACDB200, 0x2200)
    cpu0 = fdt.find("/cpus/cpu@0")
    assert cpu0 is not None and cpu0.size_cells == 0 and cpu0.reg() == [(0, 0)]
    # imx8mq: /soc@0 has #address-cells = #size-cells = 1
    gpu = real("imx8mq-evk").find("/soc@0/gpu@38000000")
    assert gpu is not None and gpu.reg() == [(0x38000000, 0x40000)]


def test_cells_and_phandles() -> None:
    fdt = real("sm8250-hdk")
    venus = fdt.find("/soc@0/video-codec@aa00000")
    assert venus is not None
    assert venus.prop_cells("iommus") == [0x2F, 0x2100, 0x400]
    assert venus.prop_u32s("iommus") == venus.prop_cells("iommus")
    smmu = fdt.by_phandle(0x2F)
    assert smmu is not None and smmu.path == "/soc@0/iommu@15000000"
    assert smmu.phandle == 0x2F and smmu.prop_u32("#iommu-cells") == 2
    region = fdt.by_phandle(venus.prop_u32s("memory-region")[0])
    assert region is not None and region.path == "/reserved-memory/memory@86e00000"
    assert fdt.by_phandle(0xDEAD) is None


def test_walk_is_depth_first_in_blob_order() -> None:
    fdt = real("guest-fdt")
    paths = [n.path for n in fdt.walk()]
    assert paths[:3] == ["/", "/psci", "/memory@40000000"]
    assert paths.index("/smmuv3@9050000") < paths.index("/pcie@10000000")
    smmu = fdt.find("/smmuv3@9050000")
    assert smmu is not None and smmu.parent is fdt.root
    assert [a.path for a in smmu.ancestors()] == ["/"]


def test_parse_speed_is_milliseconds() -> None:
    import time

    data = (DTB_DIR / "sc7280-idp.dtb").read_bytes()
    start = time.perf_counter()
    for _ in range(5):
        parse_fdt(data)
    assert (time.perf_counter() - start) / 5 < 0.25  # generous: ~5 ms on a laptop


# -- synthetic blobs ----------------------------------------------------------------------


def simple_tree() -> Writer:
    w = Writer()
    w.node(
        "",
        {"#address-cells": [2], "#size-cells": [1], "model": "test"},
        [
            (
                "soc",
                {"#address-cells": [1], "#size-cells": [1], "compatible": "simple-bus"},
                [
                    (
                        "dev@1000",
                        {"reg": [0x1000, 0x100], "phandle": [7], "compatible": "a,b\0c,d"},
                        [],
                    ),
                ],
            ),
            ("legacy", {"linux,phandle": [9]}, []),
        ],
    )
    return w


def test_writer_blob_round_trip_and_memreserve() -> None:
    blob = simple_tree().blob([(0x8000_0000, 0x10_0000), (0x1_0000_0000, 0x2000)])
    fdt = parse_fdt(blob, source="t.dtb")
    assert fdt.memreserve == [(0x8000_0000, 0x10_0000), (0x1_0000_0000, 0x2000)]
    dev = fdt.find("/soc/dev@1000")
    assert dev is not None and dev.reg() == [(0x1000, 0x100)]
    assert dev.prop_strings("compatible") == ["a,b", "c,d"]
    assert fdt.by_phandle(7) is dev
    legacy = fdt.by_phandle(9)  # linux,phandle
    assert legacy is not None and legacy.path == "/legacy" and legacy.phandle == 9
    assert dev.unit_address == "1000" and dev.base_name == "dev"


def test_default_cells_are_two_and_one() -> None:
    blob = build({}, [("bus", {}, [("x@0", {"reg": [0, 0x10, 0x20]}, [])])])
    node = parse_fdt(blob).find("/bus/x@0")
    assert node is not None
    assert (node.address_cells, node.size_cells) == (2, 1)
    assert node.reg() == [(0x10, 0x20)]


def expect_error(blob: bytes, *fragments: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_fdt(blob, source="bad.dtb")
    text = str(info.value)
    assert info.value.where.startswith("bad.dtb")
    for fragment in fragments:
        assert fragment in text, text
    return info.value


def header_word(blob: bytes, index: int, value: int) -> bytes:
    return blob[: 4 * index] + struct.pack(">I", value) + blob[4 * index + 4 :]


def test_bad_magic() -> None:
    err = expect_error(header_word(simple_tree().blob(), 0, 0x12345678), "bad magic 0x12345678")
    assert err.expected == "0xd00dfeed"


def test_not_a_blob_at_all() -> None:
    expect_error(b"", "truncated blob: 0 bytes")
    expect_error(b"hello world, this is not a device tree blob....", "bad magic")


def test_truncated_blob() -> None:
    blob = (DTB_DIR / "juno-r2.dtb").read_bytes()
    err = expect_error(blob[:-100], "truncated blob", f"totalsize is {len(blob)} bytes")
    assert err.where == "bad.dtb"


def test_totalsize_larger_than_data() -> None:
    blob = simple_tree().blob()
    expect_error(header_word(blob, 1, len(blob) + 64), "truncated blob")


def test_offsets_out_of_range() -> None:
    blob = simple_tree().blob()
    expect_error(header_word(blob, 2, 0x10_0000), "structure block", "out of range")
    expect_error(header_word(blob, 3, len(blob) - 2), "strings block", "out of range")
    expect_error(header_word(blob, 4, 0x10_0000), "memory reservation block", "out of range")
    expect_error(header_word(blob, 9, len(blob)), "structure block", "out of range")


def test_unsupported_version() -> None:
    blob = simple_tree().blob()
    expect_error(header_word(blob, 5, 15), "unsupported FDT version 15")
    expect_error(header_word(blob, 6, 18), "unsupported last_comp_version 18")


def test_version_16_header_without_size_dt_struct() -> None:
    blob = header_word(simple_tree().blob(), 5, 16)
    fdt = parse_fdt(header_word(blob, 9, 0xFFFF_FFFF))  # size_dt_struct not read in v16
    assert fdt.version == 16 and fdt.find("/soc/dev@1000") is not None


def test_memreserve_not_terminated() -> None:
    w = simple_tree()
    blob = w.blob()
    # point the reservation block at the last 8-aligned 16 bytes: the strings, no (0, 0)
    expect_error(header_word(blob, 4, (len(blob) - 16) & ~7), "not terminated")


def test_unterminated_property_name() -> None:
    blob = simple_tree().blob()
    # drop the NUL of the last name from the strings block
    size_strings = struct.unpack_from(">I", blob, 32)[0]
    err = expect_error(header_word(blob, 8, size_strings - 1), "property name offset")
    assert err.where.startswith("bad.dtb: /")


def test_property_name_offset_outside_strings_block() -> None:
    w = Writer()
    w.begin("").prop("#address-cells", [2]).begin("node@0")
    w.prop("bogus", [1], nameoff=0x4000).end().end()
    err = expect_error(w.blob(), "property name offset 0x4000", "outside the strings block")
    assert err.where == "bad.dtb: /node@0"


def test_unterminated_node_name() -> None:
    w = Writer().begin("")
    w.token(1)
    w.struct += b"abcd"  # a name with no NUL up to the end of the structure block
    expect_error(w.blob(finish=False), "unterminated node name")


def test_bad_token() -> None:
    w = Writer().begin("").begin("child")
    w.token(7)
    err = expect_error(w.end().end().blob(), "bad token 0x7")
    assert err.where == "bad.dtb: /child"


def test_unbalanced_nodes() -> None:
    missing_end = Writer().begin("").begin("child").end()  # root never closed
    err = expect_error(missing_end.blob(), "unbalanced")
    assert err.where == "bad.dtb: /"
    extra_end = Writer().begin("").end().end()
    expect_error(extra_end.blob(), "unbalanced FDT_END_NODE")
    no_end_token = Writer().begin("").end()
    expect_error(no_end_token.blob(finish=False), "structure block truncated")
    two_roots = Writer().begin("").end().begin("").end()
    expect_error(two_roots.blob(), "second root node")


def test_property_value_running_past_the_structure_block() -> None:
    w = Writer().begin("")
    w.token(3)
    w.struct += struct.pack(">II", 0x1000, w.name_offset("big"))
    expect_error(w.blob(finish=False), "truncated inside a property value")


def test_nops_are_skipped() -> None:
    w = Writer().token(4).begin("").token(4).prop("a", [1]).token(4).end().token(4)
    assert parse_fdt(w.blob()).root.prop_u32("a") == 1


def test_duplicate_phandle_and_invalid_phandle() -> None:
    dup = build({}, [("a", {"phandle": [5]}, []), ("b", {"phandle": [5]}, [])])
    err = expect_error(dup, "phandle 0x5 is also used by /a")
    assert err.where == "bad.dtb: /b"
    expect_error(build({}, [("a", {"phandle": [0xFFFFFFFF]}, [])]), "invalid phandle")
    expect_error(build({}, [("a", {"phandle": [1, 2]}, [])]), "phandle is 8 bytes")


def test_typed_accessor_errors_name_the_node() -> None:
    blob = build(
        {"#address-cells": [2], "#size-cells": [2]},
        [
            (
                "odd@0",
                {"reg": [0, 0x1000, 0], "weird": b"\x00\x01\x02", "s": b"no-nul", "one": [1, 2]},
                [],
            ),
        ],
    )
    node = parse_fdt(blob, source="b.dtb").find("/odd@0")
    assert node is not None
    with pytest.raises(InputError) as info:
        node.reg()
    assert info.value.where == "b.dtb: /odd@0"
    assert "not a multiple of #address-cells + #size-cells = 2 + 2" in info.value.message
    with pytest.raises(InputError, match="3 bytes long"):
        node.prop_u32s("weird")
    with pytest.raises(InputError, match="not NUL-terminated"):
        node.prop_strings("s")
    with pytest.raises(InputError, match="expected one cell"):
        node.prop_u32("one")


@pytest.mark.parametrize("cut", [8, 39, 41, 100, 500])
def test_any_truncation_of_a_real_blob_is_an_input_error(cut: int) -> None:
    data = (DTB_DIR / "imx8mq-evk.dtb").read_bytes()
    with pytest.raises(InputError):
        parse_fdt(data[:cut])


def test_mangled_structure_blocks_never_escape_as_other_exceptions() -> None:
    data = bytearray((DTB_DIR / "zynqmp-zcu102-rev1.0.dtb").read_bytes())
    off_struct = struct.unpack_from(">I", data, 8)[0]
    raised = 0
    for pos in range(off_struct, off_struct + 4000, 52):
        blob = bytearray(data)
        blob[pos : pos + 4] = b"\xff\xff\xff\x7f"
        try:
            parse_fdt(bytes(blob))
        except InputError:
            raised += 1
    assert raised > 0
