"""Find, load and check a scenario: a built-in name or a YAML file, against an SoC.

Rules that span objects (a stage reading a pool nobody writes, a master the SoC does
not have, a cycle) are reported with the file and line of the field at fault, like the
SoC loader does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from socmem.errors import InputError, InputErrors
from socmem.scenario.schema import BufferPool, Scenario, Stage, StageType
from socmem.soc.schema import Soc
from socmem.yamlfile import YamlDoc, dotted, load_yaml, parse_yaml, validate

DEFAULT_SCENARIO = "default"


@dataclass
class LoadedScenario:
    """A validated scenario, where it came from, and its warnings."""

    scenario: Scenario
    doc: YamlDoc
    warnings: list[str] = field(default_factory=list)

    def where(self, loc: tuple[str | int, ...]) -> str:
        """``file:line`` of a field."""
        return self.doc.where(loc)


def builtin_scenarios() -> list[str]:
    """Names of the scenarios shipped with socmem."""
    root = resources.files("socmem.scenario") / "builtin"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_scenario(spec: str | None = None) -> LoadedScenario:
    """Load a scenario by built-in name or path; structural rules checked (not the SoC)."""
    spec = spec or DEFAULT_SCENARIO
    if spec in builtin_scenarios():
        res = resources.files("socmem.scenario") / "builtin" / f"{spec}.yaml"
        doc = parse_yaml(res.read_text(encoding="utf-8"), f"<builtin scenario {spec}>")
    else:
        if not Path(spec).exists():
            raise InputError(
                "no such file or built-in scenario",
                where=spec,
                expected=f"a file, or one of: {', '.join(builtin_scenarios())}",
            )
        doc = load_yaml(spec)
    scenario = validate(Scenario, doc)
    loaded = LoadedScenario(scenario, doc)
    _raise(loaded, structure_problems(scenario), loaded.warnings)
    return loaded


def _raise(
    loaded: LoadedScenario,
    problems: list[tuple[tuple[str | int, ...], str, bool]],
    warnings: list[str],
) -> None:
    errors = [
        InputError(msg, where=loaded.where(loc), field=dotted(loc))
        for loc, msg, fatal in problems
        if fatal
    ]
    warnings.extend(f"{loaded.where(loc)}: {msg}" for loc, msg, fatal in problems if not fatal)
    if errors:
        raise InputErrors(errors)


def structure_problems(s: Scenario) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """Names unique, pools produced once and consumed, faults naming stages, no cycles."""
    out: list[tuple[tuple[str | int, ...], str, bool]] = []
    sections: tuple[tuple[str, Sequence[BufferPool | Stage]], ...] = (
        ("buffers", s.buffers),
        ("stages", s.stages),
    )
    for section, items in sections:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.name in seen:
                out.append(((section, i, "name"), f"name '{item.name}' is used twice", True))
            seen.add(item.name)
    pools = {b.name for b in s.buffers}
    for i, st in enumerate(s.stages):
        for key in ("inputs", "outputs"):
            for j, p in enumerate(getattr(st, key)):
                if p not in pools:
                    known = ", ".join(sorted(pools))
                    out.append(
                        (
                            (("stages", i, key, j)),
                            f"unknown buffer pool '{p}' (pools: {known})",
                            True,
                        )
                    )
    for i, b in enumerate(s.buffers):
        producers = s.producers(b.name)
        if len(producers) != 1:
            names = ", ".join(p.name for p in producers) or "none"
            out.append(
                (
                    ("buffers", i, "name"),
                    f"pool '{b.name}' needs exactly one producer (has {names})",
                    True,
                )
            )
        if not s.consumers(b.name):
            out.append((("buffers", i, "name"), f"pool '{b.name}' is never read", False))
    stages = {st.name for st in s.stages}
    for i, f in enumerate(s.faults):
        if f.stage not in stages:
            out.append((("faults", i, "stage"), f"unknown stage '{f.stage}'", True))
    if not any(p for _l, p, fatal in out if fatal):
        cycle = _cycle(s)
        if cycle:
            out.append(((), "the pipeline has a cycle: " + " -> ".join(cycle), True))
    return out


def _cycle(s: Scenario) -> list[str]:
    """A stage cycle through pools, if any (sources and displays cannot be in one)."""
    succ: dict[str, list[str]] = {
        st.name: [c.name for p in st.outputs for c in s.consumers(p)] for st in s.stages
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str]:
        state[n] = 1
        path.append(n)
        for m in succ[n]:
            if state.get(m) == 1:
                return [*path[path.index(m) :], m]
            if m not in state and (found := visit(m)):
                return found
        path.pop()
        state[n] = 2
        return []

    for st in s.stages:
        if st.name not in state and (found := visit(st.name)):
            return found
    return []


def soc_problems(s: Scenario, soc: Soc) -> list[tuple[tuple[str | int, ...], str, bool]]:
    """Stages on masters the SoC lacks or has disabled; kinds that look wrong (warnings)."""
    out: list[tuple[tuple[str | int, ...], str, bool]] = []
    for i, st in enumerate(s.stages):
        if st.type is StageType.CPU and st.master == "cpu":
            continue
        m = soc.master(st.master)
        if m is None:
            known = ", ".join(x.name for x in soc.masters if x.enabled)
            out.append(
                (
                    ("stages", i, "master"),
                    f"SoC '{soc.name}' has no master '{st.master}' (masters: {known})",
                    True,
                )
            )
        elif not m.enabled:
            out.append(
                (("stages", i, "master"), f"master '{st.master}' is disabled in '{soc.name}'", True)
            )
    return out


def check_against_soc(loaded: LoadedScenario, soc: Soc) -> None:
    """Raise :class:`InputErrors` for stages the SoC cannot run; collect warnings."""
    _raise(loaded, soc_problems(loaded.scenario, soc), loaded.warnings)
