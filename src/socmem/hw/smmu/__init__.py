"""ARM SMMU hardware models: SMMUv3 (:class:`SmmuV3`) and SMMUv2 / MMU-500 (:class:`SmmuV2`).

* :mod:`~socmem.hw.smmu.events`: SMMUv3 event records (4 x 64-bit, real layout), their
  kernel log renderings (6.1 raw and the newer decoded form) and the printk rate limit;
* :mod:`~socmem.hw.smmu.tlb`: the IOTLB (LRU, keyed by ASID and page number);
* :mod:`~socmem.hw.smmu.v3`: stream table, context descriptors, command queue, translation;
* :mod:`~socmem.hw.smmu.v2`: SMR/S2CR stream matching, context banks, context faults.
"""

from socmem.hw.smmu.events import Ratelimit, SmmuEvent
from socmem.hw.smmu.tlb import Iotlb
from socmem.hw.smmu.v2 import SmmuV2
from socmem.hw.smmu.v3 import CmdqEnt, ContextDescriptor, SmmuV3, StreamTableEntry

__all__ = [
    "CmdqEnt",
    "ContextDescriptor",
    "Iotlb",
    "Ratelimit",
    "SmmuEvent",
    "SmmuV2",
    "SmmuV3",
    "StreamTableEntry",
]
