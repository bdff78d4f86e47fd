"""A tiny FDT writer for the tests (devicetree spec chapter 5, encoded by hand,
independent of :mod:`socmem.soc.fdt`): token-level for corrupt blobs, :func:`build` for
whole trees written as ``(name, {prop: value}, [children...])``."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

BEGIN, END_NODE, PROP, NOP, END = 1, 2, 3, 4, 9
HEADER_SIZE = 40

PropValue = bytes | str | list[int] | tuple[int, ...] | bool


def _pad4(data: bytes | bytearray) -> bytes:
    return bytes(data) + b"\0" * (-len(data) % 4)


def encode(value: PropValue) -> bytes:
    """``"a"`` → string, ``["a", "b"]`` not supported (use ``"a\\0b"``), ints → u32 cells,
    ``True`` → empty (boolean property), bytes as they are."""
    if isinstance(value, bool):
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode() + b"\0"
    return struct.pack(f">{len(value)}I", *value)


class Writer:
    """Token-level writer; :meth:`node` adds a whole subtree."""

    def __init__(self) -> None:
        self.struct = bytearray()
        self.strings = bytearray()
        self._offsets: dict[str, int] = {}

    def name_offset(self, name: str) -> int:
        if name not in self._offsets:
            self._offsets[name] = len(self.strings)
            self.strings += name.encode() + b"\0"
        return self._offsets[name]

    def token(self, token: int) -> Writer:
        self.struct += struct.pack(">I", token)
        return self

    def begin(self, name: str) -> Writer:
        self.token(BEGIN)
        self.struct += _pad4(name.encode() + b"\0")
        return self

    def end(self) -> Writer:
        return self.token(END_NODE)

    def prop(self, name: str, value: PropValue, nameoff: int | None = None) -> Writer:
        raw = encode(value)
        off = self.name_offset(name) if nameoff is None else nameoff
        self.token(PROP)
        self.struct += struct.pack(">II", len(raw), off) + _pad4(raw)
        return self

    def node(
        self,
        name: str,
        props: dict[str, PropValue] | None = None,
        children: list[tuple[Any, ...]] | None = None,
    ) -> Writer:
        """``children`` are ``(name, props, children)`` tuples."""
        self.begin(name)
        for key, value in (props or {}).items():
            self.prop(key, value)
        for child in children or []:
            self.node(*child)
        return self.end()

    def blob(
        self,
        memreserve: Sequence[tuple[int, int]] = (),
        *,
        finish: bool = True,
        **fields: int,
    ) -> bytes:
        """Assemble header + memreserve + struct + strings; ``fields`` override header words
        (magic, totalsize, off_dt_struct, off_dt_strings, off_mem_rsvmap, version,
        last_comp_version, boot_cpuid_phys, size_dt_strings, size_dt_struct)."""
        struct_block = bytes(self.struct) + (struct.pack(">I", END) if finish else b"")
        rsv = b"".join(struct.pack(">QQ", a, s) for a, s in memreserve) + b"\0" * 16
        off_rsv = HEADER_SIZE
        off_struct = off_rsv + len(rsv)
        off_strings = off_struct + len(struct_block)
        total = off_strings + len(self.strings)
        header = {
            "magic": 0xD00DFEED,
            "totalsize": total,
            "off_dt_struct": off_struct,
            "off_dt_strings": off_strings,
            "off_mem_rsvmap": off_rsv,
            "version": 17,
            "last_comp_version": 16,
            "boot_cpuid_phys": 0,
            "size_dt_strings": len(self.strings),
            "size_dt_struct": len(struct_block),
        }
        header.update(fields)
        return struct.pack(">10I", *header.values()) + rsv + struct_block + bytes(self.strings)


def build(
    root_props: dict[str, PropValue],
    children: list[tuple[Any, ...]] | None = None,
    memreserve: Sequence[tuple[int, int]] = (),
) -> bytes:
    """A complete blob whose root has ``root_props`` and ``children``."""
    return Writer().node("", root_props, children).blob(memreserve)
