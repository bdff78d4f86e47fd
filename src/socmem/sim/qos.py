"""QoS policy of the fluid model: the classes and the allocation rule, stated once.

**The allocation rule.**  A resource of capacity ``C`` bytes/s is shared by flows, each
with a QoS class, a weight ``w > 0`` and a limit ``k`` (its cap: the smaller of the
master's own maximum bandwidth and its regulator's rate; ``inf`` when it has neither).

* *Strict priority between classes* (QoS on): classes are served in rank order
  (``REALTIME``, then ``HIGH``, then ``BEST_EFFORT``); each class gets what the classes
  above it left, up to its demand (the sum of its flows' limits).
* *Weighted max-min fairness within a class* (water-filling): with ``A`` bytes/s
  available, every flow gets ``min(k, w · L)`` where the level ``L`` solves
  ``Σ min(k, w · L) = A``; if the class's demand is at most ``A``, every flow gets its
  limit.
* *QoS off*: every flow is in one class; the same water-filling applies.

:func:`waterfill` computes this allocation from scratch.  It is the oracle the
incremental implementation in :mod:`socmem.sim.fluid` is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import IntEnum

__all__ = ["QosClass", "waterfill"]


class QosClass(IntEnum):
    """QoS class of a flow; a lower value is served first when QoS is on."""

    REALTIME = 0
    HIGH = 1
    BEST_EFFORT = 2


def waterfill(
    capacity: float,
    flows: Sequence[tuple[int, float, float]],
    qos: bool = True,
) -> list[float]:
    """Rates (bytes/s) for ``flows`` given as ``(class rank, weight, limit)`` tuples.

    Reference implementation of the module's allocation rule, O(n log n) per call.
    """
    rates = [0.0] * len(flows)
    ranks = sorted({f[0] for f in flows}) if qos else [None]
    avail = capacity
    for rank in ranks:
        idx = [i for i, f in enumerate(flows) if rank is None or f[0] == rank]
        demand = math.fsum(flows[i][2] for i in idx)
        if demand <= avail:
            for i in idx:
                rates[i] = flows[i][2]
            avail -= demand
            continue
        # saturated: raise the level through the sorted normalised limits
        idx.sort(key=lambda i: flows[i][2] / flows[i][1])
        rest_w = math.fsum(flows[i][1] for i in idx)
        left = avail
        level = 0.0
        j = 0
        while j < len(idx):
            i = idx[j]
            w, k = flows[i][1], flows[i][2]
            if k / w * rest_w <= left:  # this flow saturates at its limit
                rates[i] = k
                left -= k
                rest_w -= w
                j += 1
            else:
                break
        level = left / rest_w if rest_w > 0 else 0.0
        for i in idx[j:]:
            rates[i] = flows[i][1] * level
        avail = 0.0
    return rates
