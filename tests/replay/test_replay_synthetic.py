"""Small synthetic captures, one per kind of divergence the report must explain."""

from __future__ import annotations

import pytest

from fixture_paths import QEMU, need
from socmem.replay import ReplayResult, replay
from socmem.replay.capture import CaptureFiles, build_capture
from socmem.soc.dt_import import import_dtb

HEAD = "# tracer: nop\n#\n# entries-in-buffer/entries-written: 40/40   #P:2\n#\n"
DEV = '"0000:00:01.0"'
DOM = "0xffff000000009698"
COOKIE = "0xffff000000008400"
IOVAD = "0xffff000000008408"


def line(ts: float, event: str, body: str, cpu: int = 0, flags: str = "d....") -> str:
    return f"          insmod-550     [{cpu:03d}] {flags} {ts:12.6f}: {event}: {body}\n"


def kp(fn: str, args: str) -> str:
    return f"({fn}+0x0/0x100) {args}"


def kr(fn: str, args: str) -> str:
    return f"(caller+0x10/0x100 <- {fn}) {args}"


def setup() -> list[str]:
    return [
        line(
            1.0,
            "iommu_setup_dma_ops",
            kp(
                "iommu_setup_dma_ops",
                f"dev={DEV} dma_base=0x0 dma_limit=0xffffffff grp=0 dom={DOM} dom_type=0x3"
                f" cookie={COOKIE} asid=1 ttbr=0x47d19000",
            ),
        ),
        line(
            1.1,
            "init_iova_domain",
            kp("init_iova_domain", f"iovad={IOVAD} granule=4096 start_pfn=0x1"),
        ),
        line(
            1.2, "reserve_iova", kp("reserve_iova", f"iovad={IOVAD} pfn_lo=0x10000 pfn_hi=0x3efef")
        ),
    ]


def map_page(
    ts: float, pfn: int, paddr: int = 0x47C40000, *, ret: bool = True, tree: bool = True
) -> list[str]:
    out = [
        line(
            ts,
            "iommu_dma_map_page",
            kp(
                "iommu_dma_map_page",
                f"dev={DEV} dom={DOM} page=0xfffffcf0ba1f1000 offset=0x0 size=4096 dir=2 attrs=0x0",
            ),
        ),
        line(
            ts + 0.001,
            "iommu_dma_alloc_iova",
            kp(
                "iommu_dma_alloc_iova",
                f"dev={DEV} dom={DOM} cookie={COOKIE} size=4096 dma_limit=0xffffffffffffffff",
            ),
        ),
        line(
            ts + 0.002,
            "alloc_iova_fast",
            kp("alloc_iova_fast", f"iovad={IOVAD} size=1 limit_pfn=0xfffff flush_rcache=0"),
        ),
    ]
    if tree:
        out += [
            line(
                ts + 0.003,
                "alloc_iova",
                kp(
                    "alloc_iova",
                    f"iovad={IOVAD} size=1 limit_pfn=0xfffff size_aligned=1"
                    " max32_alloc_size=0x100000",
                ),
            ),
            line(
                ts + 0.004,
                "alloc_iova_ret",
                kr("alloc_iova", f"iova=0xffff000000001000 pfn_lo={pfn:#x} pfn_hi={pfn:#x}"),
            ),
        ]
    if ret:
        out.append(line(ts + 0.005, "alloc_iova_fast_ret", kr("alloc_iova_fast", f"pfn={pfn:#x}")))
    iova = pfn << 12
    out += [
        line(
            ts + 0.006,
            "__iommu_map",
            kp(
                "__iommu_map",
                f"dom={DOM} iova={iova:#x} paddr={paddr:#x} size=4096 prot=0x6 gfp=0xa20",
            ),
        ),
        line(
            ts + 0.007,
            "map",
            f"IOMMU: iova=0x{iova:016x} - 0x{iova + 4096:016x} paddr=0x{paddr:016x} size=4096",
        ),
        line(ts + 0.008, "iommu_dma_map_page_ret", kr("iommu_dma_map_page", f"dma_addr={iova:#x}")),
    ]
    return out


@pytest.fixture(scope="module")
def soc():  # type: ignore[no-untyped-def]
    return import_dtb(need(QEMU / "guest-fdt.dtb")).soc


def run(lines: list[str], soc, dmesg: str = "") -> ReplayResult:  # type: ignore[no-untyped-def]
    files = CaptureFiles(
        "synthetic",
        HEAD + "".join(lines),
        {"proc-cmdline.txt": "iommu.strict=1", "dmesg.txt": dmesg},
    )
    return replay(build_capture(files), soc)


def test_agreeing_history(soc) -> None:  # type: ignore[no-untyped-def]
    res = run(setup() + map_page(2.0, 0xFFFFF), soc)
    assert res.agreement["alloc_iova_fast"].matched == 1
    assert res.agreement["iommu_map"].matched == 1
    assert res.divergences == []


def test_iova_that_differs(soc) -> None:  # type: ignore[no-untyped-def]
    # the kernel says 0xffffe, but from an empty domain the model's first pfn is 0xfffff
    res = run(setup() + map_page(2.0, 0xFFFFE), soc)
    a = res.agreement["alloc_iova_fast"]
    assert (a.matched, a.total) == (0, 1)
    d = next(d for d in res.divergences if d.kind == "alloc_iova_fast")
    assert "pfn=0xffffe" in d.kernel and "pfn=0xfffff" in d.model
    assert "IOVA differs" in d.explanation
    assert any("reserve_iova" in c for c in d.context)  # the calls before it on this domain


def test_cma_pfn_that_differs(soc) -> None:  # type: ignore[no-untyped-def]
    lines = [
        line(0.4, "cma_alloc_start", "name=reserved count=64 align=6"),
        line(
            0.41,
            "cma_alloc_finish",
            "name=reserved pfn=0xb9a40 page=000000008310238c count=64 align=6",
        ),
    ]
    res = run(lines, soc, dmesg="[    0.000000] cma: Reserved 64 MiB at 0x00000000b9a00000\n")
    a = res.agreement["cma_alloc"]
    assert (a.matched, a.total) == (0, 1)
    d = res.divergences[0]
    assert d.kind == "cma_alloc" and "0xb9a40" in d.kernel and "0xb9a00" in d.model
    assert "CMA" in d.explanation


def test_map_the_model_refuses(soc) -> None:  # type: ignore[no-untyped-def]
    # the same IOVA mapped twice without an unmap: the model's page table refuses it
    lines = setup() + map_page(2.0, 0xFFFFF)
    lines.append(
        line(
            3.0,
            "__iommu_map",
            kp(
                "__iommu_map",
                f"dom={DOM} iova=0xfffff000 paddr=0x47c41000 size=4096 prot=0x6 gfp=0xa20",
            ),
        )
    )
    lines.append(
        line(
            3.001,
            "map",
            "IOMMU: iova=0x00000000fffff000 - 0x0000000100000000"
            " paddr=0x0000000047c41000 size=4096",
        )
    )
    res = run(lines, soc)
    a = res.agreement["iommu_map"]
    assert (a.matched, a.total) == (1, 2)
    d = next(d for d in res.divergences if d.kind == "iommu_map")
    assert "refused" in d.model and "EEXIST" in d.model
    assert "refuses" in d.explanation


def test_missing_probe_said_clearly(soc) -> None:  # type: ignore[no-untyped-def]
    # no alloc_iova_fast_ret: results unknown, said so, and not counted as agreement
    res = run(setup() + map_page(2.0, 0xFFFFF, ret=False), soc)
    assert "alloc_iova_fast_ret" in res.missing_probes
    assert "results" in res.missing_probes["alloc_iova_fast_ret"]
    a = res.agreement["alloc_iova_fast"]
    assert (a.total, a.not_compared) == (0, 1)


def test_orphan_return_noted(soc) -> None:  # type: ignore[no-untyped-def]
    lines = [*setup(), line(2.0, "alloc_iova_fast_ret", kr("alloc_iova_fast", "pfn=0xfffff"))]
    res = run(lines, soc)
    assert any("without its entry event" in n for n in res.notes)
