"""DMA API constants shared by every DMA module: one place to import them from.

* ``enum dma_data_direction`` — include/linux/dma-direction.h.
* ``DMA_ATTR_*`` — include/linux/dma-mapping.h (6.1 values; bit 0 and bit 3 are unused
  since ``DMA_ATTR_WRITE_BARRIER`` / ``DMA_ATTR_NON_CONSISTENT`` were removed).
* ``DMA_MAPPING_ERROR`` — ``(~(dma_addr_t)0)`` with a 64-bit ``dma_addr_t``.
* ``DMA_BIT_MASK(n)`` — include/linux/dma-mapping.h.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "DMA_ATTR_ALLOC_SINGLE_PAGES",
    "DMA_ATTR_FORCE_CONTIGUOUS",
    "DMA_ATTR_NO_KERNEL_MAPPING",
    "DMA_ATTR_NO_WARN",
    "DMA_ATTR_PRIVILEGED",
    "DMA_ATTR_SKIP_CPU_SYNC",
    "DMA_ATTR_WEAK_ORDERING",
    "DMA_ATTR_WRITE_COMBINE",
    "DMA_BIDIRECTIONAL",
    "DMA_BIT_MASK",
    "DMA_FROM_DEVICE",
    "DMA_MAPPING_ERROR",
    "DMA_NONE",
    "DMA_TO_DEVICE",
    "DmaDataDirection",
    "dma_mapping_error",
    "min_not_zero",
    "valid_dma_direction",
]

U64_MASK = (1 << 64) - 1

#: ``DMA_MAPPING_ERROR``: ``~(dma_addr_t)0`` (64-bit dma_addr_t).
DMA_MAPPING_ERROR = U64_MASK


class DmaDataDirection(IntEnum):
    """``enum dma_data_direction`` (include/linux/dma-direction.h)."""

    DMA_BIDIRECTIONAL = 0
    DMA_TO_DEVICE = 1
    DMA_FROM_DEVICE = 2
    DMA_NONE = 3

    def __str__(self) -> str:
        return self.name


DMA_BIDIRECTIONAL = DmaDataDirection.DMA_BIDIRECTIONAL
DMA_TO_DEVICE = DmaDataDirection.DMA_TO_DEVICE
DMA_FROM_DEVICE = DmaDataDirection.DMA_FROM_DEVICE
DMA_NONE = DmaDataDirection.DMA_NONE

# include/linux/dma-mapping.h
DMA_ATTR_WEAK_ORDERING = 1 << 1
DMA_ATTR_WRITE_COMBINE = 1 << 2
DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4
DMA_ATTR_SKIP_CPU_SYNC = 1 << 5
DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6
DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7
DMA_ATTR_NO_WARN = 1 << 8
DMA_ATTR_PRIVILEGED = 1 << 9


def DMA_BIT_MASK(n: int) -> int:
    """``DMA_BIT_MASK(n)``: ``~0ULL`` for 64, else ``(1 << n) - 1``."""
    return U64_MASK if n >= 64 else (1 << n) - 1


def valid_dma_direction(direction: int) -> bool:
    """include/linux/dma-direction.h ``valid_dma_direction``: BIDIRECTIONAL, TO or FROM."""
    return direction in (DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE)


def dma_mapping_error(dma_addr: int) -> int:
    """``dma_mapping_error()`` minus the dma-debug hook: ``-ENOMEM`` (-12) on error, else 0."""
    return -12 if dma_addr == DMA_MAPPING_ERROR else 0


def min_not_zero(a: int | None, b: int | None) -> int:
    """include/linux/minmax.h ``min_not_zero``: the smaller non-zero value (None counts as 0)."""
    a = a or 0
    b = b or 0
    if a == 0:
        return b
    if b == 0:
        return a
    return min(a, b)
