"""debugfs ``dma_buf/bufinfo`` and ``/proc/<pid>/fdinfo/<fd>`` of dma-bufs: reader and writer.

bufinfo is printed by ``dma_buf_debug_show()`` in drivers/dma-buf/dma-buf.c (v6.x)::

    seq_puts(s, "\\nDma-buf Objects:\\n");
    seq_printf(s, "%-8s\\t%-8s\\t%-8s\\t%-8s\\texp_name\\t%-8s\\tname\\n",
               "size", "flags", "mode", "count", "ino");
    per buffer:
      seq_printf(s, "%08zu\\t%08x\\t%08x\\t%08ld\\t%s\\t%08lu\\t%s\\n", size, f_flags, f_mode,
                 file_count, exp_name, i_ino, name ?: "<none>");
      dma_resv_describe():  "\\t%s fence:" + dma_fence_describe(): "%s %s seq %llu %ssignalled\\n"
      seq_puts(s, "\\tAttached Devices:\\n");  then "\\t%s\\n" per attachment
      seq_printf(s, "Total %d devices attached\\n\\n", attach_count);
    seq_printf(s, "\\nTotal %d objects, %zu bytes\\n", count, size);

fdinfo is ``seq_show()`` in fs/proc/fd.c (``pos:\\t%lli``, ``flags:\\t0%o``, ``mnt_id:\\t%i``,
``ino:\\t%lu``) followed by ``dma_buf_show_fdinfo()`` (``size:\\t%zu``, ``count:\\t%ld``,
``exp_name:\\t%s``, ``name:\\t%s`` when a name is set).

:func:`render_bufinfo` writes records back in exactly that layout; reading a real bufinfo
and rendering it reproduces it byte for byte (tested on the fixtures).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from socmem.errors import InputError

__all__ = [
    "BufFence",
    "BufInfo",
    "DmaBufInfo",
    "FdInfo",
    "parse_bufinfo",
    "parse_fd_links",
    "parse_fdinfo",
    "read_bufinfo",
    "read_fdinfo",
    "render_bufinfo",
    "render_fdinfo",
]

_HEADER = "size    \tflags   \tmode    \tcount   \texp_name\tino     \tname"
_ROW_RE = re.compile(r"^(\d+)\t([0-9a-fA-F]+)\t([0-9a-fA-F]+)\t(-?\d+)\t(.*?)\t(\d+)\t(.*)$")
_FENCE_RE = re.compile(r"^\t(\w+) fence:(\S+) (.*) seq (\d+) (un)?signalled$")
_TOTAL_DEV_RE = re.compile(r"^Total (\d+) devices attached$")
_TOTAL_RE = re.compile(r"^Total (\d+) objects, (\d+) bytes$")


@dataclass(slots=True)
class BufFence:
    """One fence line of ``dma_resv_describe`` (usage kernel/write/read/bookkeep).

    Lines in another layout (older kernels' ``Exclusive fence:``/``Shared fence:``) keep
    only ``raw`` and are written back verbatim.
    """

    usage: str | None
    driver: str | None
    timeline: str | None
    seqno: int | None
    signalled: bool | None
    raw: str = ""

    def render(self) -> str:
        """The line as the kernel prints it (without newline)."""
        if self.usage is None or self.driver is None:
            return self.raw
        un = "" if self.signalled else "un"
        return f"\t{self.usage} fence:{self.driver} {self.timeline} seq {self.seqno} {un}signalled"


@dataclass(slots=True)
class DmaBufInfo:
    """One buffer of bufinfo: the row, its fences and its attached devices."""

    size: int
    flags: int
    mode: int
    count: int
    exp_name: str
    ino: int
    name: str | None
    fences: list[BufFence] = field(default_factory=list)
    attached: list[str] = field(default_factory=list)
    attached_total: int | None = None  # the "Total N devices attached" line
    extra: list[str] = field(default_factory=list)  # unrecognised lines, kept verbatim

    @property
    def named(self) -> bool:
        """A name was set (DMA_BUF_SET_NAME or by the exporter)."""
        return self.name not in (None, "", "<none>")


@dataclass(slots=True)
class BufInfo:
    """The whole bufinfo file."""

    buffers: list[DmaBufInfo] = field(default_factory=list)
    total_objects: int | None = None
    total_bytes: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def attached_devices(self) -> int:
        """Sum of attachments over all buffers."""
        return sum(len(b.attached) for b in self.buffers)

    def by_name(self) -> dict[str, DmaBufInfo]:
        """Buffers by name (unnamed ones left out)."""
        return {b.name: b for b in self.buffers if b.name is not None and b.named}

    def check_totals(self) -> list[str]:
        """Disagreements between the totals lines and the rows (empty when consistent)."""
        out = []
        if self.total_objects is not None and self.total_objects != len(self.buffers):
            out.append(f"Total {self.total_objects} objects, but {len(self.buffers)} rows")
        s = sum(b.size for b in self.buffers)
        if self.total_bytes is not None and self.total_bytes != s:
            out.append(f"Total {self.total_bytes} bytes, but rows add up to {s}")
        for b in self.buffers:
            if b.attached_total is not None and b.attached_total != len(b.attached):
                out.append(
                    f"ino {b.ino}: Total {b.attached_total} devices, {len(b.attached)} listed"
                )
        return out


def parse_bufinfo(text: str) -> BufInfo:
    """Parse bufinfo text.  Tolerant: unknown lines are kept per buffer or warned about."""
    info = BufInfo()
    cur: DmaBufInfo | None = None
    in_attached = False
    seen_header = False
    for n, line in enumerate(text.splitlines(), 1):
        if line in ("Dma-buf Objects:",):
            seen_header = True
            continue
        if line.startswith("size") and "exp_name" in line:
            continue
        if not line:
            continue
        m = _ROW_RE.match(line)
        if m is not None:
            name = m.group(7)
            cur = DmaBufInfo(
                int(m.group(1)),
                int(m.group(2), 16),
                int(m.group(3), 16),
                int(m.group(4)),
                m.group(5),
                int(m.group(6)),
                name,
            )
            info.buffers.append(cur)
            in_attached = False
            continue
        m = _TOTAL_RE.match(line)
        if m is not None:
            info.total_objects, info.total_bytes = int(m.group(1)), int(m.group(2))
            cur = None
            continue
        if cur is None:
            info.warnings.append(f"line {n}: not part of a buffer: {line!r}")
            continue
        m = _TOTAL_DEV_RE.match(line)
        if m is not None:
            cur.attached_total = int(m.group(1))
            in_attached = False
            continue
        if line == "\tAttached Devices:":
            in_attached = True
            continue
        if in_attached and line.startswith("\t"):
            cur.attached.append(line[1:])
            continue
        if "fence:" in line or "fence: " in line:
            m = _FENCE_RE.match(line)
            if m is not None:
                cur.fences.append(
                    BufFence(
                        m.group(1),
                        m.group(2),
                        m.group(3),
                        int(m.group(4)),
                        m.group(5) is None,
                        line,
                    )
                )
            else:
                cur.fences.append(BufFence(None, None, None, None, None, line))
            continue
        cur.extra.append(line)
        info.warnings.append(f"line {n}: unrecognised buffer line kept: {line!r}")
    if not seen_header and not info.buffers:
        info.warnings.append("no 'Dma-buf Objects:' header: not a bufinfo file?")
    info.warnings.extend(info.check_totals())
    return info


def read_bufinfo(path: str | os.PathLike[str]) -> BufInfo:
    """Read a bufinfo file (raises :class:`InputError` if it cannot be opened)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_bufinfo(f.read())
    except OSError as exc:
        raise InputError(f"cannot open bufinfo: {exc.strerror}", where=os.fspath(path)) from exc


def render_bufinfo(buffers: Iterable[DmaBufInfo], *, no_name: str = "<none>") -> str:
    """Write buffers in ``dma_buf_debug_show()`` layout (totals computed from the rows)."""
    out = ["\nDma-buf Objects:\n", _HEADER, "\n"]
    count = 0
    size = 0
    for b in buffers:
        name = b.name if b.name is not None else no_name
        out.append(
            f"{b.size:08d}\t{b.flags:08x}\t{b.mode:08x}\t{b.count:08d}\t{b.exp_name}\t"
            f"{b.ino:08d}\t{name}\n"
        )
        for fence in b.fences:
            out.append(fence.render() + "\n")
        out.extend(x + "\n" for x in b.extra)
        out.append("\tAttached Devices:\n")
        out.extend(f"\t{d}\n" for d in b.attached)
        out.append(f"Total {len(b.attached)} devices attached\n\n")
        count += 1
        size += b.size
    out.append(f"\nTotal {count} objects, {size} bytes\n")
    return "".join(out)


# -- fdinfo ---------------------------------------------------------------------------------


@dataclass(slots=True)
class FdInfo:
    """``/proc/<pid>/fdinfo/<fd>``; the dma-buf fields are ``None`` for other files.

    ``flags`` is the file's f_flags, printed in octal by the kernel (``02000002`` =
    O_CLOEXEC | O_RDWR).
    """

    fd: int | None = None
    target: str | None = None  # the "/proc/<pid>/fd/<fd>" link, when the dump had it
    pos: int | None = None
    flags: int | None = None
    mnt_id: int | None = None
    ino: int | None = None
    size: int | None = None
    count: int | None = None
    exp_name: str | None = None
    name: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_dmabuf(self) -> bool:
        """The fd is a dma-buf (dma_buf_show_fdinfo printed exp_name)."""
        return self.exp_name is not None


_FD_SEP_RE = re.compile(r"^== fd (\d+) -> (.*)$")
_INT_KEYS = {"pos": 10, "flags": 8, "mnt_id": 10, "ino": 10, "size": 10, "count": 10}


def parse_fdinfo(text: str) -> list[FdInfo]:
    """Parse one fdinfo, or a dump of several separated by ``== fd N -> target`` lines."""
    out: list[FdInfo] = []
    cur: FdInfo | None = None
    for line in text.splitlines():
        m = _FD_SEP_RE.match(line)
        if m is not None:
            cur = FdInfo(fd=int(m.group(1)), target=m.group(2))
            out.append(cur)
            continue
        if not line.strip():
            continue
        key, sep, val = line.partition(":")
        if not sep:
            continue
        val = val.strip("\t ")
        if cur is None:
            cur = FdInfo()
            out.append(cur)
        if key in _INT_KEYS:
            try:
                setattr(cur, key, int(val, _INT_KEYS[key]))
            except ValueError:
                cur.extra[key] = val
        elif key in ("exp_name", "name"):
            setattr(cur, key, val)
        else:
            cur.extra[key] = val
    return out


def read_fdinfo(path: str | os.PathLike[str]) -> list[FdInfo]:
    """Read an fdinfo file or dump."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_fdinfo(f.read())
    except OSError as exc:
        raise InputError(f"cannot open fdinfo: {exc.strerror}", where=os.fspath(path)) from exc


def render_fdinfo(info: FdInfo) -> str:
    """One fdinfo in fs/proc/fd.c + dma_buf_show_fdinfo layout."""
    out = [
        f"pos:\t{info.pos or 0}\n",
        f"flags:\t0{info.flags or 0:o}\n",
        f"mnt_id:\t{info.mnt_id or 0}\n",
        f"ino:\t{info.ino or 0}\n",
    ]
    if info.is_dmabuf:
        out += [f"size:\t{info.size}\n", f"count:\t{info.count}\n", f"exp_name:\t{info.exp_name}\n"]
        if info.name:
            out.append(f"name:\t{info.name}\n")
    return "".join(out)


_LINK_RE = re.compile(r"\s(\d+) -> (.+)$")


def parse_fd_links(text: str) -> dict[int, str]:
    """``ls -l /proc/<pid>/fd`` output → ``{fd: target}`` (``/dmabuf:<name>`` for dma-bufs)."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = _LINK_RE.search(line)
        if m is not None:
            out[int(m.group(1))] = m.group(2)
    return out
