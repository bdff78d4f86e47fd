"""Findings: every misuse, fault or anomaly socmem detects, as data.

One type is shared by the functional model's checkers (dma-debug, cache coherency, the
lifetime sanitizer), the simulator and the trace analyses, so that results are counted,
filtered, reported and asserted the same way wherever they come from (DESIGN.md,
"Checks are first-class").

A :class:`Finding` carries:

* ``kind``: a stable, grep-able identifier such as ``"dma-debug.unmap-wrong-size"`` or
  ``"smmu.f-translation"``;
* ``severity``: :class:`Severity`;
* ``message``: the log line the kernel prints (or would print, had it noticed), verbatim
  in the kernel's format where the kernel has one;
* ``subject``: what the finding is about (a device, a buffer, a mapping), and
* ``history``: the life of that object as :class:`HistoryEvent` records with model
  timestamps (or trace timestamps for findings read from a real board).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """How bad a finding is.  Ordered, so ``f.severity >= Severity.WARNING`` works."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    FATAL = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One step in the life of an object: ``(time, what, detail)``.

    ``time`` is in seconds of model time (or of trace time for real captures); ``what`` is
    the operation in the kernel's words (``"dma_map_sg"``, ``"attach"``, ``"signal"``).
    """

    time: float
    what: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return {"time": self.time, "what": self.what, "detail": self.detail}


@dataclass(slots=True)
class Finding:
    """A detected misuse, fault or anomaly, with the evidence for it."""

    kind: str
    severity: Severity
    message: str
    subject: str = ""
    time: float | None = None
    history: list[HistoryEvent] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready data."""
        return {
            "kind": self.kind,
            "severity": str(self.severity),
            "message": self.message,
            "subject": self.subject,
            "time": self.time,
            "history": [h.to_dict() for h in self.history],
            "data": self.data,
        }


class FindingLog:
    """An append-only list of findings with the queries tests and reports need."""

    def __init__(self) -> None:
        self._items: list[Finding] = []

    def add(self, finding: Finding) -> Finding:
        """Record ``finding`` and return it."""
        self._items.append(finding)
        return finding

    def extend(self, findings: Iterable[Finding]) -> None:
        """Record several findings."""
        self._items.extend(findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def of_kind(self, kind: str) -> list[Finding]:
        """Findings whose kind is ``kind`` or starts with ``kind + '.'``."""
        return [f for f in self._items if f.kind == kind or f.kind.startswith(kind + ".")]

    def at_least(self, severity: Severity) -> list[Finding]:
        """Findings of ``severity`` or worse."""
        return [f for f in self._items if f.severity >= severity]

    def counts(self) -> Counter[str]:
        """How many findings of each kind."""
        return Counter(f.kind for f in self._items)

    def clear(self) -> None:
        """Forget every finding (a new run)."""
        self._items.clear()
