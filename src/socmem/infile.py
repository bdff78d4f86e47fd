"""Reading a file the user named: every way it can fail becomes one clear InputError.

The counterpart of :mod:`socmem.outfile`.  ``what`` says what the file should have been
(``"a YAML file"``, ``"a device tree blob"``), and ends up in the message's
"expected ..." so the user knows what was wanted.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from socmem.errors import InputError


def read_bytes(path: str | os.PathLike[str], what: str = "a file", limit: int = -1) -> bytes:
    """The file's bytes (its first ``limit`` bytes when given), or :class:`InputError`
    (missing, a directory, unreadable)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return fh.read(limit)
    except FileNotFoundError:
        raise InputError("no such file", where=str(p), expected=what) from None
    except IsADirectoryError:
        raise InputError("is a directory", where=str(p), expected=what) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(p), expected=what) from None


def read_text(path: str | os.PathLike[str], what: str = "a text file", strict: bool = True) -> str:
    """The file as UTF-8 text.  ``strict``: bytes that are not UTF-8 are an InputError
    naming the offset; otherwise they become U+FFFD (tolerant readers of kernel logs)."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte {exc.start})", where=str(path), expected=what
        ) from None


@dataclass
class TextLines:
    """A streaming reader's input: ``lines`` to iterate, the file's ``name`` ("" for a
    stream), and the file this module opened (``own``), closed by :meth:`close`."""

    lines: Iterable[str]
    name: str = ""
    own: IO[str] | None = None

    def close(self) -> None:
        """Close the file if this module opened it (a caller's stream stays open)."""
        if self.own is not None:
            self.own.close()


def open_lines(
    source: str | os.PathLike[str] | IO[str] | IO[bytes] | Iterable[str],
    noun: str,
    newline: str | None = None,
) -> TextLines:
    """Open a path, a binary or text stream, or an iterable of lines as UTF-8 text lines
    (undecodable bytes become U+FFFD: kernel logs are read tolerantly); a path that cannot
    be opened is an :class:`InputError` "cannot open ``noun``".  ``newline`` as for
    :func:`open` (``""`` keeps ``\r``)."""
    if isinstance(source, str | os.PathLike):
        name = os.fspath(source)
        try:
            fh = open(source, encoding="utf-8", errors="replace", newline=newline)  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"cannot open {noun}: {exc.strerror}", where=name) from exc
        return TextLines(fh, name, fh)
    mode = getattr(source, "mode", "")
    if isinstance(source, io.RawIOBase | io.BufferedIOBase) or (
        hasattr(source, "read") and isinstance(mode, str) and "b" in mode
    ):
        binary = cast("IO[bytes]", source)  # a binary stream (checked just above)
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline=newline)
        return TextLines(text)
    return TextLines(cast("Iterable[str]", source))
