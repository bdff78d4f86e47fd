"""Output files that are written whole or not at all, and never replace a file by accident.

Every file socmem writes (YAML, JSON, HTML reports, Perfetto traces, scripts) goes
through :func:`open_atomic`: the text goes to a temporary file in the same directory,
which replaces the target with ``os.replace`` only once it is complete; an existing
target is only replaced with ``force``; on any failure the target is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from socmem.errors import InputError


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask (0644 usually);
    ``mkstemp`` alone would leave our outputs 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_path(path: str | os.PathLike[str], force: bool = False) -> Path:
    """The output path, or an :class:`InputError` saying why it cannot be written."""
    p = Path(path)
    if p.is_dir():
        raise InputError("is a directory", where=str(p), expected="a file name")
    if p.exists() and not force:
        raise InputError("file exists; use --force to overwrite it", where=str(p))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("directory does not exist", where=str(parent))
    return p


@contextmanager
def open_atomic(path: str | os.PathLike[str], force: bool = False) -> Iterator[TextIO]:
    """A text file handle whose content replaces ``path`` only when the block succeeds."""
    p = check_output_path(path, force)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike[str], text: str, force: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically; refuse to replace a file unless ``force``."""
    with open_atomic(path, force) as fh:
        fh.write(text)
    return Path(path)
