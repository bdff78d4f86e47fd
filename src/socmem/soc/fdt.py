"""A small, strict reader of flattened device tree blobs (DTB).

Models the format of the devicetree specification, chapter 5 "Flattened Devicetree (DTB)
Format" (the same layout libfdt's ``fdt_check_header()`` / ``fdt_next_tag()`` and the
kernel's ``drivers/of/fdt.c`` unflattening walk): a 40-byte big-endian header, the memory
reservation block (``/memreserve/`` entries), the structure block (tokens
``FDT_BEGIN_NODE``, ``FDT_END_NODE``, ``FDT_PROP``, ``FDT_NOP``, ``FDT_END``, 4-byte
aligned) and the strings block (property names).

The blob is unflattened into a tree of :class:`FdtNode` whose property values stay raw
``bytes``; typed accessors (``prop_u32s``, ``prop_strings``, ``reg``, ...) decode them on
demand.  Every inconsistency in the blob raises :class:`socmem.errors.InputError` naming
the blob and, where it applies, the node path; no ``IndexError`` or ``struct.error``
escapes.  Only the standard library is used.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from socmem.errors import InputError

FDT_MAGIC = 0xD00DFEED
FDT_BEGIN_NODE = 0x1
FDT_END_NODE = 0x2
FDT_PROP = 0x3
FDT_NOP = 0x4
FDT_END = 0x9

#: Versions this reader understands (libfdt: FDT_FIRST_SUPPORTED_VERSION is 16 for the
#: layout used here, FDT_LAST_SUPPORTED_VERSION 17).
FDT_MIN_VERSION = 16
FDT_LAST_COMP_VERSION = 17

_HEADER = struct.Struct(">10I")  # spec 5.2 (version 17 header, 40 bytes)
_HEADER_V16_SIZE = 36  # version 16 has no size_dt_struct
_U32 = struct.Struct(">I")
_PROP_HDR = struct.Struct(">II")  # len, nameoff
_RSV_ENTRY = struct.Struct(">QQ")  # address, size

#: Spec 2.3.5: when a parent has no ``#address-cells`` / ``#size-cells``, a client
#: program assumes 2 and 1.
DEFAULT_ADDRESS_CELLS = 2
DEFAULT_SIZE_CELLS = 1


def _align4(offset: int) -> int:
    return (offset + 3) & ~3


def read_number(cells: list[int] | tuple[int, ...], start: int, count: int) -> int:
    """Combine ``count`` big-endian 32-bit cells into one integer (kernel ``of_read_number``).

    Unlike the kernel, which keeps only 64 bits, all the cells are kept.
    """
    value = 0
    for cell in cells[start : start + count]:
        value = (value << 32) | cell
    return value


@dataclass(eq=False, slots=True)
class FdtNode:
    """One node of the unflattened tree (kernel ``struct device_node``).

    ``name`` is the node name with its unit address (``"iommu@15000000"``; the root's
    name is ``""``), ``path`` its full path (``"/soc@0/iommu@15000000"``), ``props`` the
    raw property values in blob order.  ``source`` names the blob in error messages.
    """

    name: str
    path: str
    parent: FdtNode | None = field(default=None, repr=False)
    props: dict[str, bytes] = field(default_factory=dict, repr=False)
    children: list[FdtNode] = field(default_factory=list, repr=False)
    source: str = field(default="<dtb>", repr=False)

    # -- identity -------------------------------------------------------------------

    @property
    def base_name(self) -> str:
        """The name without its unit address (``"iommu"`` for ``"iommu@15000000"``)."""
        return self.name.split("@", 1)[0]

    @property
    def unit_address(self) -> str:
        """The unit address text after ``@`` (``""`` when there is none)."""
        _, _, unit = self.name.partition("@")
        return unit

    @property
    def where(self) -> str:
        """``"<source>: <path>"``, the locator used in :class:`InputError`."""
        return f"{self.source}: {self.path}"

    def error(self, message: str, expected: str = "") -> InputError:
        """An :class:`InputError` located at this node."""
        return InputError(message, where=self.where, expected=expected)

    # -- raw properties -------------------------------------------------------------

    def has(self, name: str) -> bool:
        """Whether the property exists (kernel ``of_property_read_bool``)."""
        return name in self.props

    def get(self, name: str) -> bytes | None:
        """The raw value of a property, or ``None`` (kernel ``of_get_property``)."""
        return self.props.get(name)

    def prop_u32s(self, name: str) -> list[int]:
        """A property as a list of big-endian u32 cells; ``[]`` when absent.

        Raises :class:`InputError` if the length is not a multiple of 4
        (kernel ``of_property_read_u32_array`` returns ``-EOVERFLOW``/``-EINVAL``).
        """
        raw = self.props.get(name)
        if raw is None:
            return []
        if len(raw) % 4:
            raise self.error(
                f"property {name!r} is {len(raw)} bytes long", expected="a multiple of 4 bytes"
            )
        return list(struct.unpack(f">{len(raw) // 4}I", raw))

    def prop_cells(self, name: str) -> list[int]:
        """The property as 32-bit cells (``<...>`` in dts); same as :meth:`prop_u32s`."""
        return self.prop_u32s(name)

    def prop_u32(self, name: str, default: int | None = None) -> int | None:
        """A single-cell property (``#iommu-cells``, ``phandle``), or ``default``."""
        raw = self.props.get(name)
        if raw is None:
            return default
        if len(raw) != 4:
            raise self.error(f"property {name!r} is {len(raw)} bytes long", expected="one cell")
        return int(_U32.unpack(raw)[0])

    def prop_number(self, name: str, cells: int) -> int | None:
        """A property holding one number of ``cells`` cells (reserved-memory ``size``)."""
        raw = self.props.get(name)
        if raw is None:
            return None
        if len(raw) != 4 * cells:
            raise self.error(
                f"property {name!r} is {len(raw)} bytes long",
                expected=f"{cells} cell(s) = {4 * cells} bytes",
            )
        return read_number(self.prop_u32s(name), 0, cells)

    def prop_strings(self, name: str) -> list[str]:
        """A NUL-separated string list (``compatible``); ``[]`` when absent.

        Kernel ``of_property_read_string_array``; the value must end with a NUL.
        """
        raw = self.props.get(name)
        if raw is None or raw == b"":
            return []
        if raw[-1] != 0:
            raise self.error(
                f"string property {name!r} is not NUL-terminated",
                expected="NUL-terminated strings",
            )
        return [s.decode("utf-8", "backslashreplace") for s in raw[:-1].split(b"\0")]

    def prop_str(self, name: str, default: str | None = None) -> str | None:
        """The first string of a string property (kernel ``of_property_read_string``)."""
        strings = self.prop_strings(name)
        return strings[0] if strings else default

    # -- addressing -----------------------------------------------------------------

    @property
    def phandle(self) -> int | None:
        """The node's ``phandle`` (or legacy ``linux,phandle``), ``None`` if it has none."""
        value = self.prop_u32("phandle")
        return self.prop_u32("linux,phandle") if value is None else value

    @property
    def own_address_cells(self) -> int:
        """This node's ``#address-cells`` (for its children), spec default 2."""
        value = self.prop_u32("#address-cells")
        return DEFAULT_ADDRESS_CELLS if value is None else value

    @property
    def own_size_cells(self) -> int:
        """This node's ``#size-cells`` (for its children), spec default 1."""
        value = self.prop_u32("#size-cells")
        return DEFAULT_SIZE_CELLS if value is None else value

    @property
    def address_cells(self) -> int:
        """Cells of an address in this node's ``reg``: the parent's ``#address-cells``.

        Spec 2.3.5 (not inherited from further ancestors; default 2).  Kernel
        ``of_n_addr_cells`` also walks further up; real blobs always set it on the parent.
        """
        return self.parent.own_address_cells if self.parent else DEFAULT_ADDRESS_CELLS

    @property
    def size_cells(self) -> int:
        """Cells of a size in this node's ``reg``: the parent's ``#size-cells`` (default 1)."""
        return self.parent.own_size_cells if self.parent else DEFAULT_SIZE_CELLS

    def pairs(self, name: str, address_cells: int, size_cells: int) -> list[tuple[int, int]]:
        """A property of ``(address, size)`` entries with the given cell counts."""
        cells = self.prop_u32s(name)
        step = address_cells + size_cells
        if not cells:
            return []
        if step == 0 or len(cells) % step:
            raise self.error(
                f"property {name!r} has {len(cells)} cells, not a multiple of "
                f"#address-cells + #size-cells = {address_cells} + {size_cells}",
                expected=f"a multiple of {step} cells",
            )
        return [
            (
                read_number(cells, i, address_cells),
                read_number(cells, i + address_cells, size_cells),
            )
            for i in range(0, len(cells), step)
        ]

    def reg(self) -> list[tuple[int, int]]:
        """``reg`` as ``(address, size)`` pairs in the parent's bus address space.

        Uses the parent's ``#address-cells`` / ``#size-cells`` (kernel ``of_get_address``,
        untranslated); a ``#size-cells`` of 0 gives sizes of 0.
        """
        return self.pairs("reg", self.address_cells, self.size_cells)

    # -- tree -----------------------------------------------------------------------

    def child(self, name: str) -> FdtNode | None:
        """The child named ``name`` (exact), or by base name if ``name`` has no ``@``.

        Kernel ``__of_find_node_by_path`` matching.
        """
        for node in self.children:
            if node.name == name:
                return node
        if "@" not in name:
            for node in self.children:
                if node.base_name == name:
                    return node
        return None

    def walk(self) -> Iterator[FdtNode]:
        """This node and all its descendants, depth first, in blob order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def ancestors(self) -> Iterator[FdtNode]:
        """The parent, grandparent, ... up to the root."""
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def is_available(self) -> bool:
        """Kernel ``of_device_is_available``: ``status`` absent, ``"okay"`` or ``"ok"``."""
        status = self.prop_str("status")
        return status is None or status in ("okay", "ok")


@dataclass(eq=False, slots=True)
class Fdt:
    """A parsed blob: header fields, ``/memreserve/`` entries and the node tree."""

    root: FdtNode
    source: str
    version: int
    last_comp_version: int
    boot_cpuid_phys: int
    totalsize: int
    memreserve: list[tuple[int, int]]
    node_count: int
    _phandles: dict[int, FdtNode] = field(repr=False)

    def walk(self) -> Iterator[FdtNode]:
        """Every node, depth first, in blob order (kernel ``for_each_of_allnodes``)."""
        return self.root.walk()

    def find(self, path: str) -> FdtNode | None:
        """The node at ``path`` (kernel ``of_find_node_by_path``), or ``None``.

        An absolute path (``/soc@0/iommu@15000000``); a component without ``@`` also
        matches a node by base name.  A path not starting with ``/`` is looked up in
        ``/aliases`` first.
        """
        if not path.startswith("/"):
            alias, _, rest = path.partition("/")
            aliases = self.root.child("aliases")
            target = aliases.prop_str(alias) if aliases else None
            if target is None:
                return None
            path = target.rstrip("/") + ("/" + rest if rest else "")
        node: FdtNode | None = self.root
        for part in path.split("/"):
            if not part:
                continue
            assert node is not None
            node = node.child(part)
            if node is None:
                return None
        return node

    def by_phandle(self, phandle: int) -> FdtNode | None:
        """The node with this ``phandle`` / ``linux,phandle`` (``of_find_node_by_phandle``)."""
        return self._phandles.get(phandle)


def _fail(source: str, message: str, expected: str = "") -> InputError:
    return InputError(message, where=source, expected=expected)


def _parse_header(data: bytes, source: str) -> tuple[int, ...]:
    if len(data) < _HEADER_V16_SIZE:
        raise _fail(
            source,
            f"truncated blob: {len(data)} bytes, shorter than the FDT header",
            expected=f"at least {_HEADER_V16_SIZE} bytes",
        )
    padded = data[: _HEADER.size].ljust(_HEADER.size, b"\0")
    fields = _HEADER.unpack(padded)
    magic, totalsize, off_struct, off_strings, off_rsv, version, last_comp = fields[:7]
    if magic != FDT_MAGIC:
        raise _fail(
            source,
            f"bad magic 0x{magic:08x}, not a device tree blob",
            expected=f"0x{FDT_MAGIC:08x}",
        )
    if version < FDT_MIN_VERSION:
        raise _fail(
            source, f"unsupported FDT version {version}", expected=f"version >= {FDT_MIN_VERSION}"
        )
    if last_comp > FDT_LAST_COMP_VERSION:
        raise _fail(
            source,
            f"unsupported last_comp_version {last_comp}",
            expected=f"<= {FDT_LAST_COMP_VERSION}",
        )
    header_size = _HEADER.size if version >= 17 else _HEADER_V16_SIZE
    if len(data) < header_size:
        raise _fail(
            source, f"truncated blob: {len(data)} bytes", expected=f"a {header_size}-byte header"
        )
    if totalsize > len(data):
        raise _fail(
            source,
            f"truncated blob: header totalsize is {totalsize} bytes but only "
            f"{len(data)} bytes were given",
            expected=f"{totalsize} bytes",
        )
    if totalsize < header_size:
        raise _fail(
            source,
            f"totalsize {totalsize} is smaller than the header",
            expected=f">= {header_size}",
        )
    size_strings = fields[8]
    size_struct = fields[9] if version >= 17 else totalsize - off_struct
    for name, off, size in (
        ("memory reservation block", off_rsv, 0),
        ("structure block", off_struct, size_struct),
        ("strings block", off_strings, size_strings),
    ):
        if off < header_size or off + size > totalsize:
            raise _fail(
                source,
                f"{name} at offset 0x{off:x} (size 0x{size:x}) is out of range",
                expected=f"within the header's totalsize 0x{totalsize:x}",
            )
    if off_rsv % 8:
        raise _fail(
            source,
            f"memory reservation block offset 0x{off_rsv:x} is misaligned",
            expected="8-byte alignment",
        )
    if off_struct % 4:
        raise _fail(
            source,
            f"structure block offset 0x{off_struct:x} is misaligned",
            expected="4-byte alignment",
        )
    return (*fields[:9], size_struct)


def _parse_memreserve(data: bytes, off: int, end: int, source: str) -> list[tuple[int, int]]:
    """Spec 5.3: (address, size) u64 pairs up to a (0, 0) terminator."""
    entries: list[tuple[int, int]] = []
    while True:
        if off + _RSV_ENTRY.size > end:
            raise _fail(
                source,
                "memory reservation block is not terminated",
                expected="a (0, 0) entry within totalsize",
            )
        address, size = _RSV_ENTRY.unpack_from(data, off)
        off += _RSV_ENTRY.size
        if address == 0 and size == 0:
            return entries
        entries.append((address, size))


def parse_fdt(data: bytes, source: str = "<dtb>") -> Fdt:
    """Parse a DTB into an :class:`Fdt` (spec chapter 5; kernel ``unflatten_device_tree``).

    ``source`` names the blob in error messages.  Bytes after ``totalsize`` (padding of
    a blob copied into a larger buffer) are ignored.  Raises :class:`InputError` on any
    corruption: bad magic, truncation, out-of-range offsets, unterminated strings, bad
    tokens, unbalanced nodes, bad property name offsets, duplicate phandles.
    """
    data = bytes(data)
    (
        _,
        totalsize,
        off_struct,
        off_strings,
        off_rsv,
        version,
        last_comp,
        boot_cpu,
        size_strings,
        size_struct,
    ) = _parse_header(data, source)
    memreserve = _parse_memreserve(data, off_rsv, totalsize, source)

    strings_end = off_strings + size_strings
    names: dict[int, str] = {}
    struct_end = off_struct + size_struct
    unpack_u32 = _U32.unpack_from
    unpack_prop = _PROP_HDR.unpack_from

    root: FdtNode | None = None
    node: FdtNode | None = None
    phandles: dict[int, FdtNode] = {}
    count = 0
    pos = off_struct
    where = source

    def need(size: int, what: str) -> None:
        if pos + size > struct_end:
            raise _fail(
                where,
                f"structure block truncated inside {what} at offset 0x{pos:x}",
                expected="FDT_END before the end of the structure block",
            )

    while True:
        need(4, "a token")
        (token,) = unpack_u32(data, pos)
        pos += 4
        if token == FDT_BEGIN_NODE:
            nul = data.find(b"\0", pos, struct_end)
            if nul < 0:
                raise _fail(
                    where,
                    f"unterminated node name at offset 0x{pos:x}",
                    expected="a NUL-terminated node name",
                )
            name = data[pos:nul].decode("utf-8", "backslashreplace")
            pos = _align4(nul + 1)
            if node is None:
                if root is not None:
                    raise _fail(
                        source,
                        f"second root node {name!r} at offset 0x{pos:x}",
                        expected="a single root node",
                    )
                if name:
                    raise _fail(
                        source, f"root node has name {name!r}", expected="an empty root name"
                    )
                node = root = FdtNode("", "/", None, source=source)
            else:
                if not name:
                    raise _fail(
                        where,
                        f"node with an empty name at offset 0x{pos:x}",
                        expected="a node name",
                    )
                path = f"{node.path}/{name}" if node.parent is not None else f"/{name}"
                child = FdtNode(name, path, node, source=source)
                node.children.append(child)
                node = child
            where = node.where
            count += 1
        elif token == FDT_PROP:
            need(_PROP_HDR.size, "a property header")
            length, nameoff = unpack_prop(data, pos)
            pos += _PROP_HDR.size
            if node is None:
                raise _fail(
                    source,
                    f"property outside any node at offset 0x{pos:x}",
                    expected="FDT_BEGIN_NODE first",
                )
            need(length, "a property value")
            pname = names.get(nameoff)
            if pname is None:
                start = off_strings + nameoff
                nul = data.find(b"\0", start, strings_end) if nameoff < size_strings else -1
                if nul < 0:
                    raise _fail(
                        where,
                        f"property name offset 0x{nameoff:x} is outside the strings block "
                        f"or unterminated",
                        expected=f"a NUL-terminated name within 0x{size_strings:x} bytes",
                    )
                pname = names[nameoff] = data[start:nul].decode("utf-8", "backslashreplace")
            if pname in node.props:
                raise _fail(
                    where, f"duplicate property {pname!r}", expected="each property once per node"
                )
            value = data[pos : pos + length]
            node.props[pname] = value
            pos = _align4(pos + length)
            if pname in ("phandle", "linux,phandle"):
                if length != 4:
                    raise _fail(where, f"{pname} is {length} bytes", expected="one cell")
                (ph,) = unpack_u32(value, 0)
                if ph in (0, 0xFFFFFFFF):
                    raise _fail(
                        where,
                        f"invalid {pname} 0x{ph:x}",
                        expected="a phandle other than 0 and 0xffffffff",
                    )
                other = phandles.get(ph)
                if other is not None and other is not node:
                    raise _fail(
                        where,
                        f"phandle 0x{ph:x} is also used by {other.path}",
                        expected="unique phandles",
                    )
                phandles[ph] = node
        elif token == FDT_END_NODE:
            if node is None:
                raise _fail(
                    source,
                    f"unbalanced FDT_END_NODE at offset 0x{pos - 4:x}",
                    expected="a matching FDT_BEGIN_NODE",
                )
            node = node.parent
            where = node.where if node is not None else source
        elif token == FDT_NOP:
            continue
        elif token == FDT_END:
            if node is not None:
                raise _fail(
                    where,
                    "FDT_END inside an open node (unbalanced nodes)",
                    expected="FDT_END_NODE for every FDT_BEGIN_NODE",
                )
            if root is None:
                raise _fail(source, "structure block has no root node", expected="FDT_BEGIN_NODE")
            break
        else:
            raise _fail(
                where,
                f"bad token 0x{token:x} at offset 0x{pos - 4:x}",
                expected="FDT_BEGIN_NODE, FDT_END_NODE, FDT_PROP, FDT_NOP or FDT_END",
            )
    return Fdt(
        root=root,
        source=source,
        version=version,
        last_comp_version=last_comp,
        boot_cpuid_phys=boot_cpu,
        totalsize=totalsize,
        memreserve=memreserve,
        node_count=count,
        _phandles=phandles,
    )


def read_fdt(path: str) -> Fdt:
    """Read and parse a ``.dtb`` file; the file name is the ``source`` in errors."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"cannot read device tree blob: {exc.strerror}", where=path) from exc
    return parse_fdt(data, source=path)
