"""Readers of real kernel artifacts: ftrace text, dmesg, dma-buf bufinfo and fdinfo.

Streaming and tolerant: a malformed line is kept or counted, never an exception.  Only an
input that cannot be read at all raises :class:`socmem.errors.InputError`.
"""

from socmem.trace.ftrace import (
    BadLine,
    FtraceReader,
    Phase,
    ReaderStats,
    TraceEvent,
    TraceMetadata,
    parse_line,
    read_trace,
)

__all__ = [
    "BadLine",
    "FtraceReader",
    "Phase",
    "ReaderStats",
    "TraceEvent",
    "TraceMetadata",
    "parse_line",
    "read_trace",
]
