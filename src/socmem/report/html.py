"""A small, self-contained HTML report: sections, tables, inline SVG plots, findings.

Reused by every command that writes HTML (``socmem trace analyze --html`` today, the
simulator later).  The page has no external resource: CSS is inline, plots are SVG
written by matplotlib into the page itself, and there is no JavaScript.

>>> rep = HtmlReport("My run")
>>> sec = rep.section("DRAM")
>>> sec.table(["master", "GB/s"], [["isp", 3.2]])
>>> sec.plot(line_svg({"isp": [(0.0, 1), (1.0, 3)]}, xlabel="s", ylabel="GB/s"))
>>> html = rep.render()

Plots need matplotlib; without it each plot is replaced by a one-line note.
"""

from __future__ import annotations

import html as _html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from socmem.check.finding import Finding

__all__ = [
    "HtmlReport",
    "Plot",
    "Section",
    "Table",
    "bar_svg",
    "histogram_svg",
    "line_svg",
    "plots_available",
]


@dataclass
class Table:
    """A table: column titles and rows of cells (numbers are right-aligned)."""

    columns: list[str]
    rows: list[list[Any]]
    title: str = ""
    note: str = ""


@dataclass
class Plot:
    """An inline SVG figure (``svg`` is the ``<svg>`` element text)."""

    svg: str
    title: str = ""
    caption: str = ""


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables and plots, in order."""

    title: str
    items: list[Table | Plot | str] = field(default_factory=list)

    def text(self, paragraph: str) -> Section:
        """Add a paragraph (plain text, escaped)."""
        self.items.append(paragraph)
        return self

    def table(
        self, columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "", note: str = ""
    ) -> Section:
        """Add a table."""
        self.items.append(Table(list(columns), [list(r) for r in rows], title, note))
        return self

    def plot(self, svg: str | None, title: str = "", caption: str = "") -> Section:
        """Add an SVG plot (``None``: the plot could not be drawn, a note is shown)."""
        if svg is None:
            self.items.append(f"({title or 'plot'}: matplotlib is not installed)")
        else:
            self.items.append(Plot(svg, title, caption))
        return self


class HtmlReport:
    """The whole page: a title, key facts, sections and a findings list."""

    def __init__(self, title: str, subtitle: str = "") -> None:
        self.title = title
        self.subtitle = subtitle
        self.facts: list[tuple[str, str]] = []
        self.sections: list[Section] = []
        self.findings: list[Finding] = []

    def fact(self, name: str, value: Any) -> HtmlReport:
        """A key fact shown at the top (``events: 23495``)."""
        self.facts.append((name, str(value)))
        return self

    def section(self, title: str) -> Section:
        """Append and return a new section."""
        sec = Section(title)
        self.sections.append(sec)
        return sec

    def add_findings(self, findings: Iterable[Finding]) -> HtmlReport:
        """Findings listed at the end, worst first."""
        self.findings.extend(findings)
        return self

    def render(self) -> str:
        """The complete HTML document."""
        import jinja2

        text = (
            resources.files("socmem.report")
            .joinpath("templates/report.html.j2")
            .read_text(encoding="utf-8")
        )
        env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
        env.filters["cell"] = _cell
        env.filters["num"] = lambda v: isinstance(v, int | float) and not isinstance(v, bool)
        tmpl = env.from_string(text)
        findings = sorted(self.findings, key=lambda f: (-int(f.severity), f.kind))
        return tmpl.render(
            title=self.title,
            subtitle=self.subtitle,
            facts=self.facts,
            sections=self.sections,
            findings=findings,
            Table=Table,
            Plot=Plot,
            is_table=lambda x: isinstance(x, Table),
            is_plot=lambda x: isinstance(x, Plot),
        )


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000 or abs(v) < 0.001:
            return f"{v:.4g}"
        return f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


# -- plots --------------------------------------------------------------------------------


def plots_available() -> bool:
    """matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


_STRIP = [
    re.compile(r"<\?xml[^>]*\?>\s*"),
    re.compile(r"<!DOCTYPE[^>]*>\s*", re.S),
    re.compile(r"<metadata>.*?</metadata>\s*", re.S),
]


def _figure(width: float = 7.5, height: float = 3.2) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    return fig, fig.add_subplot(1, 1, 1)


def _svg(fig: Any) -> str:
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "socmem"}):
        fig.tight_layout()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    for rx in _STRIP:
        text = rx.sub("", text)
    # the size attributes in pt make the figure fixed-width; let CSS scale it
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r"<svg\1", text, count=1)


def line_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    step: bool = True,
    max_lines: int = 12,
) -> str | None:
    """Lines (step lines by default: counters) of several series; ``None`` without matplotlib."""
    if not plots_available():
        return None
    fig, ax = _figure()
    for label, pts in list(series.items())[:max_lines]:
        if not pts:
            continue
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        if step:
            ax.step(xs, ys, where="post", label=label, linewidth=1.2)
        else:
            ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    return _svg(fig)


def bar_svg(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    ylabel: str = "",
    log: bool = False,
) -> str | None:
    """Grouped bars: one group per category, one bar per series."""
    if not plots_available():
        return None
    fig, ax = _figure()
    n = max(1, len(series))
    width = 0.8 / n
    for i, (label, vals) in enumerate(series.items()):
        xs = [j + i * width - 0.4 + width / 2 for j in range(len(categories))]
        ax.bar(xs, list(vals), width=width, label=label)
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, fontsize=8, rotation=15)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("symlog")
    ax.grid(True, axis="y", alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _svg(fig)


def histogram_svg(
    values: Mapping[str, Sequence[float]], *, xlabel: str = "", bins: int = 30
) -> str | None:
    """Overlaid histograms of several value sets."""
    if not plots_available():
        return None
    fig, ax = _figure()
    for label, vals in values.items():
        if vals:
            ax.hist(list(vals), bins=bins, alpha=0.6, label=f"{label} (n={len(vals)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.grid(True, alpha=0.3)
    if values:
        ax.legend(fontsize=8)
    return _svg(fig)


def escape(text: str) -> str:
    """HTML-escape ``text``."""
    return _html.escape(text)
