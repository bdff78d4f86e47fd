"""What every ``socmem`` subcommand shares: its consoles, the ``--force`` option, and the
two ways a result leaves the program (JSON on stdout, or text to a file or stdout)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from socmem.outfile import write_atomic

__all__ = ["ForceOpt", "err", "out", "print_json", "write_or_print"]

#: stdout; pipes and files get 120 columns, wide enough for the tables
out = Console(highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out = Console(highlight=False, width=120)
#: stderr: warnings and "wrote ..." lines
err = Console(stderr=True, highlight=False, soft_wrap=True)

ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output")]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (anything else JSON lacks as its ``str``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def write_or_print(text: str, output: Path | None, force: bool) -> None:
    """``text`` to stdout when ``output`` is None or ``-``, else atomically to ``output``."""
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        return
    write_atomic(output, text, force=force)
    err.print(f"wrote {output}")
