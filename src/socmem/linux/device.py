"""``struct device`` as the DMA API sees it: one per bus master of the SoC.

A :class:`Device` joins the views the layers below keep of the same device, so that
each layer stays the kernel's own shape:

* ``direct``: what dma-direct reads (masks, ``bus_dma_limit``, ``dma_range_map``,
  ``cma_area``, the swiotlb pool, coherency): :class:`~socmem.linux.dma.direct.DirectDevice`;
* ``iommu``: what the IOMMU core and dma-iommu read (stream IDs, group, domain):
  :class:`~socmem.linux.iommu.iommu.IommuDevice`, or None without an IOMMU;
* the fields dma-debug reads (``name``, ``driver_name``, ``bus_name``, ``dma_parms``).

The DMA masks are held once, here, and written through to both views, as
``dma_set_mask()`` writes ``*dev->dma_mask`` that both dma-direct and dma-iommu read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from socmem.linux.dma.direct import DirectDevice
from socmem.linux.iommu.iommu import IOMMU_DOMAIN_IDENTITY, IommuDevice, IommuDomain

if TYPE_CHECKING:
    from socmem.linux.dma.debug import DmaDebug
    from socmem.soc.schema import Master


@dataclass(eq=False)
class Device:
    """A DMA-capable device (include/linux/device.h ``struct device``).

    ``bound`` is whether a driver is bound (dma-debug's unbind check fires when it
    goes); ``secure`` marks a master allowed to touch protected memory.
    """

    name: str
    direct: DirectDevice
    iommu: IommuDevice | None = None
    driver_name: str | None = None
    bus_name: str = "platform"
    master: Master | None = None
    secure: bool = False
    bound: bool = True
    dma_debug: DmaDebug | None = None
    cpu: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    # -- what dma-debug reads ------------------------------------------------------------
    @property
    def max_segment_size(self) -> int:
        """``dma_get_max_seg_size()``."""
        return self.direct.max_segment_size

    @property
    def segment_boundary_mask(self) -> int:
        """``dma_get_seg_boundary()``."""
        return self.direct.segment_boundary_mask

    @property
    def coherent(self) -> bool:
        """``dev_is_dma_coherent()``."""
        return self.direct.dma_coherent

    dma_coherent = coherent

    # -- masks ---------------------------------------------------------------------------
    @property
    def dma_mask(self) -> int:
        """``*dev->dma_mask``."""
        return self.direct.dma_mask

    @property
    def coherent_dma_mask(self) -> int:
        """``dev->coherent_dma_mask``."""
        return self.direct.coherent_dma_mask

    def _set_masks(self, mask: int | None = None, coherent: int | None = None) -> None:
        if mask is not None:
            self.direct.dma_mask = mask
            if self.iommu is not None:
                self.iommu.dma_mask = mask
        if coherent is not None:
            self.direct.coherent_dma_mask = coherent
            if self.iommu is not None:
                self.iommu.coherent_dma_mask = coherent

    def set_max_seg_size(self, size: int) -> None:
        """``dma_set_max_seg_size()``."""
        self.direct.max_segment_size = size
        if self.iommu is not None:
            self.iommu.max_segment_size = size

    # -- which ops -----------------------------------------------------------------------
    @property
    def domain(self) -> IommuDomain | None:
        """The IOMMU domain the device's group is attached to, if any."""
        if self.iommu is None or self.iommu.group is None:
            return None
        return self.iommu.group.domain

    @property
    def uses_iommu_dma(self) -> bool:
        """True when the DMA API goes through dma-iommu (a DMA or DMA_FQ domain);
        false for dma-direct (no IOMMU, or an identity domain: ``dma_map_direct``)."""
        dom = self.domain
        return dom is not None and dom.type != IOMMU_DOMAIN_IDENTITY and dom.iova_cookie is not None

    def __repr__(self) -> str:
        via = "iommu" if self.uses_iommu_dma else "direct"
        return f"Device({self.name}, {via})"
