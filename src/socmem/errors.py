"""Errors of socmem: the kernel's errno failures, and input errors a person can act on.

Two families, kept apart on purpose:

* :class:`KernelError` is what the modelled kernel returns to a caller that would see an
  error (user space, or a driver through a failing API).  It is an :class:`OSError`, so
  ``err.errno == errno.ENOMEM`` reads exactly like kernel code and like Python's own I/O
  errors.  In-kernel helpers that return ``0`` / ``-errno`` keep doing so; see DESIGN.md.
* :class:`InputError` is a problem with something the user gave socmem: a YAML file, a
  device tree blob, a trace, a command-line value.  It names the place (file and line, or a
  device-tree node path, or a field path) and what was expected.  The CLI prints it on one
  line and exits with :data:`EXIT_INPUT` (2); it never shows a traceback.
"""

from __future__ import annotations

import dataclasses
import errno as _errno
import os

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_INPUT = 2


class KernelError(OSError):
    """A failure the Linux kernel reports with an errno.

    ``KernelError(errno.EINVAL, "iommu_map: misaligned iova")`` carries ``.errno`` and
    ``.strerror`` like any :class:`OSError`; ``str()`` adds the symbolic name
    (``[EINVAL] iommu_map: misaligned iova``) so logs read like the kernel's.
    """

    def __init__(self, err: int, message: str = "") -> None:
        if err < 0:  # accept the in-kernel negative convention too
            err = -err
        super().__init__(err, message or os.strerror(err))

    @property
    def name(self) -> str:
        """The symbolic errno name, e.g. ``"ENOMEM"``."""
        return _errno.errorcode.get(self.errno or 0, str(self.errno))

    def __str__(self) -> str:
        return f"[{self.name}] {self.strerror}"


def errno_name(err: int) -> str:
    """``-12`` or ``12`` → ``"ENOMEM"``, as the kernel's ``%pe`` would print it."""
    return _errno.errorcode.get(abs(err), str(err))


@dataclasses.dataclass
class InputError(Exception):
    """Bad input: where it is, what was wrong, and what was expected.

    ``where`` is whatever locates the problem best: ``"soc.yaml:12"``,
    ``"board.dtb: /soc@0/iommu@15000000"``, ``"--duration"``.  ``field`` is the dotted
    path of the offending value inside a structured file, when there is one.
    """

    message: str
    where: str = ""
    field: str = ""
    expected: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        """The one-line (plus notes) text the CLI prints."""
        head = f"{self.where}: " if self.where else ""
        fld = f"{self.field}: " if self.field else ""
        text = f"{head}{fld}{self.message}"
        if self.expected:
            text += f" (expected {self.expected})"
        for note in self.notes:
            text += f"\n  {note}"
        return text

    def __str__(self) -> str:
        return self.render()


class InputErrors(InputError):
    """Several input errors found in one pass over a file, reported together."""

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(
            message=first.message,
            where=first.where,
            field=first.field,
            expected=first.expected,
            notes=list(first.notes),
        )

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)
