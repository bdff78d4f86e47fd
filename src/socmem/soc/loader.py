"""Find and load an SoC description: a built-in name, a YAML file, or a device tree blob.

``load_soc("reference-mobile")`` loads a built-in; ``load_soc("board.yaml")`` a file;
``load_soc("board.dtb")`` (or ``/sys/firmware/fdt``) imports a device tree.  Every error
is an :class:`~socmem.errors.InputError` naming the file and line (or DT node path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from socmem.errors import InputError, InputErrors
from socmem.soc.checks import check_soc
from socmem.soc.schema import Soc
from socmem.yamlfile import YamlDoc, dotted, load_yaml, parse_yaml, validate

DEFAULT_SOC = "reference-mobile"
FDT_MAGIC = b"\xd0\x0d\xfe\xed"


@dataclass
class LoadedSoc:
    """An SoC description and the warnings met while loading it."""

    soc: Soc
    origin: str
    warnings: list[str] = field(default_factory=list)


def builtin_names() -> list[str]:
    """Names of the SoC descriptions shipped with socmem."""
    root = resources.files("socmem.soc") / "builtin"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def _builtin_doc(name: str) -> YamlDoc:
    res = resources.files("socmem.soc") / "builtin" / f"{name}.yaml"
    return parse_yaml(res.read_text(encoding="utf-8"), f"<builtin {name}>")


def soc_from_doc(doc: YamlDoc) -> LoadedSoc:
    """Validate a parsed YAML document as an SoC and apply the cross-object rules."""
    soc = validate(Soc, doc)
    problems = check_soc(soc)
    errors = [
        InputError(p.message, where=doc.where(p.loc), field=dotted(p.loc))
        for p in problems
        if p.error
    ]
    if errors:
        raise InputErrors(errors)
    warnings = [f"{doc.where(p.loc)}: {p.message}" for p in problems if not p.error]
    return LoadedSoc(soc, doc.source, warnings)


def _is_dtb(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == FDT_MAGIC
    except OSError:
        return False


def load_soc_full(spec: str | None = None) -> LoadedSoc:
    """Load an SoC by built-in name, YAML path or DTB path, with warnings."""
    spec = spec or DEFAULT_SOC
    if spec in builtin_names():
        return soc_from_doc(_builtin_doc(spec))
    path = Path(spec)
    if not path.exists():
        hint = f"a file, or one of the built-in SoCs: {', '.join(builtin_names())}"
        raise InputError("no such file or built-in SoC", where=spec, expected=hint)
    if path.suffix in (".dtb", ".dtbo") or _is_dtb(path):
        from socmem.soc.dt_import import import_dtb  # the DT importer is only needed here

        result = import_dtb(path)
        return LoadedSoc(result.soc, str(path), result.warnings)
    return soc_from_doc(load_yaml(path))


def load_soc(spec: str | None = None) -> Soc:
    """Load an SoC by built-in name, YAML path or DTB path."""
    return load_soc_full(spec).soc


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class _Dumper(yaml.SafeDumper):
    """Block style, keys in schema order, long strings unwrapped."""


_HEXLIKE = re.compile(r"^0x[0-9a-f_]+$")


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if _HEXLIKE.match(data):  # addresses and stream IDs stay plain: 0x8000_0000
        return dumper.represent_scalar("tag:yaml.org,2002:int", data)
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


def _dict_representer(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.Node:
    leaf = len(data) <= 4 and all(not isinstance(v, dict | list) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=leaf)


def _list_representer(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    short = len(data) <= 8 and all(isinstance(v, str | int | float) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=short)


_Dumper.add_representer(str, _str_representer)
_Dumper.add_representer(dict, _dict_representer)
_Dumper.add_representer(list, _list_representer)


def dump_soc(soc: Soc, header: str = "") -> str:
    """The SoC as YAML in the same units a person writes (round-trips through load)."""
    data = _clean(soc.model_dump(mode="json", exclude_defaults=True))
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text
