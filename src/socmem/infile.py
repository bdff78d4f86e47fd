"""Reading a file the user named: every way it can fail becomes one clear InputError.

The counterpart of :mod:`socmem.outfile`.  ``what`` says what the file should have been
(``"a YAML file"``, ``"a device tree blob"``), and ends up in the message's
"expected ..." so the user knows what was wanted.
"""

from __future__ import annotations

import os
from pathlib import Path

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
