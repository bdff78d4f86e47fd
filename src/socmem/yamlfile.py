"""YAML input with line numbers, validated by pydantic.

``load_yaml`` reads a file with PyYAML's safe composer and keeps the line of every key
and value, so that :func:`validate` can turn pydantic's field paths
(``masters.3.iommus.0.id``) into ``soc.yaml:42: masters[3].iommus[0].id: ...``.
Duplicate keys, which PyYAML silently accepts, are errors here.

Output files are written by :mod:`socmem.outfile`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from socmem.errors import InputError, InputErrors
from socmem.infile import read_text

Loc = tuple[str | int, ...]
#: libyaml's parser when PyYAML has it (several times faster), the same safe constructors
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
M = TypeVar("M", bound=BaseModel)


@dataclass
class YamlDoc:
    """A parsed YAML document and the line (1-based) of each path inside it."""

    data: Any
    source: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """Line of ``loc``, or of its nearest ancestor that the file contains."""
        key = tuple(loc)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def where(self, loc: Sequence[str | int]) -> str:
        """``file:line`` for ``loc``."""
        line = self.line_of(loc)
        return f"{self.source}:{line}" if line else self.source


def field_name(key: Any) -> Any:
    """A YAML key as the field it fills: DT spelling ``no-map`` is the field ``no_map``."""
    return key.replace("-", "_") if isinstance(key, str) else key


class InputModel(BaseModel):
    """Base of every model read from a user's YAML (SoC, constraints, scenario).

    Unknown fields are errors, and keys may be written with the device tree's dashes;
    :func:`field_name` is the one spelling rule, shared with the line map :func:`parse_yaml`
    builds, so that errors point at the line the user wrote.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _dt_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {field_name(k): v for k, v in data.items()}
        return data


def parse_yaml(text: str, source: str) -> YamlDoc:
    """Parse YAML text, keeping lines; raise :class:`InputError` on syntax errors."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise InputError("the file is empty", where=source, expected="a YAML mapping")
        doc = YamlDoc(data=None, source=source)
        doc.data = _build(node, (), doc, loader)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(f"YAML syntax error: {problem}", where=f"{source}{line}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"YAML error: {exc}", where=source) from None
    finally:
        loader.dispose()


def _build(node: yaml.Node, loc: Loc, doc: YamlDoc, loader: Any) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str | int):
                raise InputError(
                    f"mapping key {key!r} is not a name",
                    where=f"{doc.source}:{key_node.start_mark.line + 1}",
                )
            if key in out:
                raise InputError(
                    f"duplicate key '{key}'",
                    where=f"{doc.source}:{key_node.start_mark.line + 1}",
                    expected="each key once per mapping",
                )
            child = (*loc, field_name(key))
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(value_node, child, doc, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), doc, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(path: str | os.PathLike[str]) -> YamlDoc:
    """Read and parse a YAML file; a missing or unreadable file is an :class:`InputError`."""
    return parse_yaml(read_text(path, "a YAML file"), str(Path(path)))


def dotted(loc: Sequence[str | int]) -> str:
    """``('masters', 3, 'iommus', 0, 'id')`` → ``masters[3].iommus[0].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_FLOW_COMMA_HINT = (
    "a comma inside [...] or {...} separates items: quote values that contain one, "
    'e.g. model: "arm,mmu-500"'
)


def _message(err: dict[str, Any], model: type[BaseModel]) -> tuple[str, str]:
    kind = err["type"]
    value = err.get("input")
    expected = str((err.get("ctx") or {}).get("expected", ""))
    if kind == "enum" and isinstance(value, str) and f"'{value}," in expected:
        return f"{err['msg']}; {_FLOW_COMMA_HINT}", ""
    msg: str = err["msg"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        return f"unknown field '{loc[-1]}'", ""
    if kind == "missing":
        return f"missing required field '{loc[-1]}'", ""
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Assertion failed, "):
        msg = msg[len("Assertion failed, ") :]
    return msg, ""


def _pydantic_loc(loc: Sequence[Any]) -> Loc:
    # pydantic adds the validator or union branch names into loc for some errors
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith("function-"))


def validate(model: type[M], doc: YamlDoc) -> M:
    """Validate ``doc`` as ``model``; every error carries its file:line and field path."""
    if not isinstance(doc.data, dict):
        raise InputError(
            f"the document is a {type(doc.data).__name__}",
            where=doc.where(()),
            expected=f"a mapping of {model.__name__} fields",
        )
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            loc = _pydantic_loc(err["loc"])
            message, expected = _message(dict(err), model)
            errors.append(
                InputError(message, where=doc.where(loc), field=dotted(loc), expected=expected)
            )
        raise InputErrors(errors) from None
