"""The self-contained HTML report renderer."""

from __future__ import annotations

import re

from socmem.check.finding import Finding, HistoryEvent, Severity
from socmem.report.html import HtmlReport, bar_svg, histogram_svg, line_svg


def test_render_sections_tables_plots_findings() -> None:
    rep = HtmlReport("Run <1>", "sub")
    rep.fact("events", 12)
    sec = rep.section("DRAM")
    sec.text("a & b")
    sec.table(["master", "GB/s", "none"], [["isp", 3.25, None], ["npu", 12000, 0.0001]])
    sec.plot(line_svg({"isp": [(0.0, 1), (1.0, 3)]}, xlabel="s", ylabel="GB/s"), title="bw")
    sec.plot(bar_svg(["a", "b"], {"x": [1, 2]}), title="bars")
    sec.plot(histogram_svg({"lat": [1.0, 2.0, 2.5]}), title="hist")
    rep.add_findings(
        [
            Finding("x.info", Severity.INFO, "fyi"),
            Finding(
                "x.err",
                Severity.ERROR,
                "bad <thing>",
                "dev",
                1.5,
                [HistoryEvent(1.0, "map", "iova=0x1000")],
            ),
        ]
    )
    html = rep.render()
    assert html.startswith("<!DOCTYPE html>")
    assert "Run &lt;1&gt;" in html and "a &amp; b" in html and "bad &lt;thing&gt;" in html
    assert html.count("<svg") == 3
    assert html.index("x.err") < html.index("x.info")  # worst first
    assert "12,000" in html and "3.25" in html
    # self-contained: no external resource, no script
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(?:src|href)="(?:https?:)?//', html)
    assert "<?xml" not in html and "<metadata>" not in html


def test_plot_without_data() -> None:
    assert line_svg({}) is not None
