"""The SMMU's IOTLB: an LRU cache of leaf translations tagged by ASID.

Not a kernel structure: hardware (TCU/TBU main TLB, sized from the SoC's
``Iommu.tlb.iotlb_entries``).  Entries are keyed by ``(asid, iova >> leaf_shift,
leaf_shift)`` (the VPN at the size of the leaf that translated it: 4K page, 2M block ...)
and hold the output base and the permissions the walker read, so a hit needs no walk
and a stale entry keeps translating until a TLBI removes it, as on silicon.

Counters: ``hits``, ``misses``, ``fills``, ``evictions``, ``invalidated``.  The walk
cache and the per-TBU micro-TLBs are not modelled (their sizes are kept for reports).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

__all__ = ["Iotlb", "IotlbEntry"]


class IotlbEntry(NamedTuple):
    """A cached leaf: output address of the leaf base and the access rights.

    ``perms`` bits: 1 read, 2 write, 4 unprivileged allowed, 8 execute-never.
    """

    oa: int
    perms: int
    size: int


class Iotlb:
    """LRU IOTLB with ``capacity`` entries (0 disables caching)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._map: OrderedDict[tuple[int, int, int], IotlbEntry] = OrderedDict()
        self._shifts: dict[int, int] = {}  # leaf shift -> live entries with it
        self.hits = 0
        self.misses = 0
        self.fills = 0
        self.evictions = 0
        self.invalidated = 0

    def __len__(self) -> int:
        return len(self._map)

    def lookup(self, asid: int, iova: int) -> IotlbEntry | None:
        """Find the entry translating ``iova`` for ``asid``; counts a hit or a miss."""
        m = self._map
        for shift in self._shifts:
            key = (asid, iova >> shift, shift)
            e = m.get(key)
            if e is not None:
                m.move_to_end(key)
                self.hits += 1
                return e
        self.misses += 1
        return None

    def fill(self, asid: int, iova: int, size: int, oa: int, perms: int) -> None:
        """Insert the leaf translating ``iova`` (``size`` bytes), evicting the LRU entry."""
        if self.capacity <= 0:
            return
        shift = size.bit_length() - 1
        key = (asid, iova >> shift, shift)
        m = self._map
        if key not in m:
            if len(m) >= self.capacity:
                old, _ = m.popitem(last=False)
                self._drop_shift(old[2])
                self.evictions += 1
            self._shifts[shift] = self._shifts.get(shift, 0) + 1
        m[key] = IotlbEntry(oa & ~(size - 1), perms, size)
        m.move_to_end(key)
        self.fills += 1

    def _drop_shift(self, shift: int) -> None:
        n = self._shifts[shift] - 1
        if n:
            self._shifts[shift] = n
        else:
            del self._shifts[shift]

    def _remove(self, key: tuple[int, int, int]) -> None:
        del self._map[key]
        self._drop_shift(key[2])
        self.invalidated += 1

    def invalidate_range(self, asid: int | None, start: int, size: int) -> int:
        """Drop every entry of ``asid`` (None: all ASIDs) overlapping [start, start+size).

        Cost is bounded by min(entries, pages in range x leaf sizes in use).
        """
        end = start + size
        removed = 0
        m = self._map
        pages = 0
        for shift in self._shifts:
            pages += (((end - 1) >> shift) - (start >> shift)) + 1
        if asid is not None and pages <= len(m):
            for shift in list(self._shifts):
                for vpn in range(start >> shift, ((end - 1) >> shift) + 1):
                    key = (asid, vpn, shift)
                    if key in m:
                        self._remove(key)
                        removed += 1
            return removed
        for key in [
            k
            for k in m
            if (asid is None or k[0] == asid)
            and (k[1] << k[2]) < end
            and ((k[1] + 1) << k[2]) > start
        ]:
            self._remove(key)
            removed += 1
        return removed

    def invalidate_asid(self, asid: int) -> int:
        """Drop every entry tagged ``asid`` (CMD_TLBI_NH_ASID / TLBIASID)."""
        keys = [k for k in self._map if k[0] == asid]
        for k in keys:
            self._remove(k)
        return len(keys)

    def invalidate_all(self) -> int:
        """Drop everything (CMD_TLBI_NSNH_ALL / TLBIALLNSNH)."""
        n = len(self._map)
        self.invalidated += n
        self._map.clear()
        self._shifts.clear()
        return n
