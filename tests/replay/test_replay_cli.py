"""``socmem replay``: exit codes, JSON, HTML, --set validation."""

from __future__ import annotations

import json

import pytest

from fixture_paths import QEMU, QEMU_REPLAY, need
from socmem.cli import main
from socmem.errors import InputError
from socmem.replay.whatif import parse_sets


def args(*extra: str) -> list[str]:
    return ["replay", str(need(QEMU_REPLAY)), "--soc", str(need(QEMU / "guest-fdt.dtb")), *extra]


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args("--json", "--set", "rcache=off")) == 0
    doc = json.loads(capsys.readouterr().out)
    ag = doc["replay"]["agreement"]
    assert ag["alloc_iova_fast"] == {"matched": 1734, "total": 1734, "not_compared": 0, "note": ""}
    assert doc["replay"]["divergences"] == []
    assert doc["replay"]["smmu_commands"]["qemu"]["SMMU_CMD_TLBI_NH_VA"] == 1471
    t = doc["whatif"]["metrics"]["tree_allocations"]
    assert (t["baseline"], t["whatif"]) == (628, 1734)


def test_console_and_html(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.html"
    assert main(args("--set", "invalidation=lazy", "--html", str(out), "--fail-on-divergence")) == 0
    text = capsys.readouterr().out
    assert "alloc_iova_fast" in text and "1734" in text and "what-if" in text
    html = out.read_text()
    assert "<svg" in html and "IOVA space used" in html and "Invalidation commands" in html
    # never overwrite without --force
    assert main(args("--html", str(out))) == 2
    assert main(args("--html", str(out), "--force")) == 0


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("granule=8K", "4K, 16K or 64K"),
        ("invalidation=sometimes", "strict or lazy"),
        ("dma_mask=20", "bits"),
        ("rcache=maybe", "on or off"),
        ("iotlb_entries=0", "1 or more"),
        ("cma_size=3M", "multiple"),
        ("colour=blue", "granule"),
        ("granule", "KEY=VALUE"),
    ],
)
def test_set_validation(item: str, needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError) as exc:
        parse_sets([item])
    assert needle in str(exc.value)
    assert main(args("--set", item)) == 2
    assert needle in capsys.readouterr().err.replace("\n", " ")


def test_missing_capture_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert main(["replay", str(tmp_path / "nope")]) == 2
    (tmp_path / "trace.txt").write_text("# tracer: nop\n")
    assert main(["replay", str(tmp_path)]) == 2  # no events, and no device tree


def test_parse_sets_values() -> None:
    cfg = parse_sets(
        [
            "granule=64K",
            "invalidation=lazy",
            "dma_mask=40",
            "rcache=off",
            "iotlb_entries=64",
            "cma_size=16M",
        ]
    )
    assert (
        cfg.granule,
        cfg.strict,
        cfg.dma_limit,
        cfg.rcache,
        cfg.iotlb_entries,
        cfg.cma_size,
    ) == (65536, False, (1 << 40) - 1, False, 64, 16 << 20)
    assert parse_sets(["iova_limit=0xffffffff"]).dma_limit == 0xFFFFFFFF
