"""A use case: pipelines of stages on the SoC's masters, joined by shared buffer pools.

A :class:`Scenario` is what ``socmem run`` and ``socmem plan`` read: which masters do
what, at what rate, on which frames, and which buffers they share.

* A **buffer pool** (:class:`BufferPool`) is one edge of the graph: ``count`` buffers of
  one image format, allocated once from a dma-buf heap and shared, without copies, by
  its producer and every consumer (dma-buf attachments).  ``sync`` says how consumers
  learn a buffer is ready: explicit fences (``sync_file``, as Android and Wayland pass
  them) or implicit ones (the dma-buf's ``dma_resv``).
* A **stage** (:class:`Stage`) runs on one master: a camera ``source`` writing frames at
  its frame rate, a ``process`` stage (ISP, scaler, NPU inference, GPU composition)
  turning input frames into output frames, an ``encode`` / ``decode`` stage with
  reference frames and a bitstream, a ``display`` scanning a plane out at its refresh
  rate, or a ``cpu`` stage: a user-space process reading results.
* **Faults** (:class:`FaultInjection`) break one rule on purpose at a given frame, to
  show the checkers at work.

Units are written as people write them (``30fps``, ``60Hz``, ``20MiB``, ``5ms``,
``50Mbps``) and validated with line numbers like SoC descriptions.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

from pydantic import Field, model_validator

from socmem.units import BYTES_PER_PIXEL, Bandwidth, Duration, Frequency, Size
from socmem.yamlfile import InputModel

SCHEMA_VERSION: Final = 1


class SyncMode(enum.StrEnum):
    """How a consumer waits for a producer (and a producer for consumers to finish)."""

    EXPLICIT = "explicit"  # sync_file fences passed along with the buffer
    IMPLICIT = "implicit"  # fences in the dma-buf's dma_resv


class Compression(enum.StrEnum):
    """Frame-buffer compression of a pool's buffers."""

    NONE = "none"
    AFBC = "afbc"
    UBWC = "ubwc"


class BufferPool(InputModel):
    """``count`` image buffers of one format, shared by a producer and its consumers."""

    name: str
    width: int | None = Field(default=None, ge=1, le=65536)
    height: int | None = Field(default=None, ge=1, le=65536)
    format: str = Field(default="NV12", description="pixel format: " + ", ".join(BYTES_PER_PIXEL))
    size: Size | None = Field(
        default=None, description="bytes per buffer, for non-image buffers (bitstreams, tensors)"
    )
    count: int = Field(default=4, ge=1, le=64, description="pool depth (buffers in flight)")
    heap: str = Field(
        default="auto",
        description="dma-buf heap: auto (the planner decides), system, cma, "
        "carveout:<region>, protected:<region>",
    )
    compression: Compression = Compression.NONE
    compression_ratio: float = Field(
        default=0.6, gt=0, le=1, description="compressed / raw bytes (perf-anchors.md 2.25: 0.6)"
    )
    sync: SyncMode = SyncMode.EXPLICIT

    @model_validator(mode="after")
    def _known_format(self) -> BufferPool:
        if self.size is None and (self.width is None or self.height is None):
            raise ValueError("a buffer pool needs width and height (images) or size (bytes)")
        if self.size is not None and (self.width is not None or self.height is not None):
            raise ValueError("give either width/height (an image) or size (bytes), not both")
        if self.format.upper() not in BYTES_PER_PIXEL:
            known = ", ".join(BYTES_PER_PIXEL)
            raise ValueError(f"unknown pixel format {self.format!r} (known: {known})")
        self.format = self.format.upper()
        return self

    @property
    def bytes_per_pixel(self) -> float:
        """Bytes per pixel of the format (perf-anchors.md §2a)."""
        return BYTES_PER_PIXEL[self.format]

    @property
    def is_image(self) -> bool:
        """An image pool (width × height pixels) rather than a byte buffer."""
        return self.size is None

    @property
    def pixels(self) -> int:
        """Pixels per frame (0 for byte buffers)."""
        return (self.width or 0) * (self.height or 0)

    @property
    def frame_bytes(self) -> int:
        """Uncompressed bytes of one buffer (no padding: the planner adds stride)."""
        if self.size is not None:
            return self.size
        return int(self.pixels * self.bytes_per_pixel)

    @property
    def transfer_bytes(self) -> int:
        """Bytes one full read or write of a frame moves over DRAM, after compression."""
        if self.compression is Compression.NONE:
            return self.frame_bytes
        return int(self.frame_bytes * self.compression_ratio)


class StageType(enum.StrEnum):
    """What a stage does each frame."""

    SOURCE = "source"  # camera sensor → memory
    PROCESS = "process"  # ISP, scaler, NPU, GPU: inputs → outputs
    ENCODE = "encode"
    DECODE = "decode"
    DISPLAY = "display"
    CPU = "cpu"  # a user-space process reading (or writing) buffers


class Stage(InputModel):
    """One step of a pipeline, on one master of the SoC."""

    name: str
    type: StageType
    master: str = Field(description="the SoC master it runs on (for cpu stages: 'cpu')")
    inputs: list[str] = Field(default_factory=list, description="buffer pools read")
    outputs: list[str] = Field(default_factory=list, description="buffer pools written")
    fps: Frequency | None = Field(default=None, description="frame rate of a source stage")
    refresh: Frequency | None = Field(default=None, description="refresh rate of a display stage")
    compute: Duration | None = Field(
        default=None,
        description="compute time per frame (default: pixels / the master's pixel rate)",
    )
    every: int = Field(default=1, ge=1, description="process every Nth input frame (decimation)")
    weights: Size = Field(default=0, description="bytes of weights read per inference (NPU)")
    reference_frames: int = Field(default=0, ge=0, le=16, description="codec reference frames")
    bitrate: Bandwidth | None = Field(default=None, description="encoder output / decoder input")
    latency_budget: Duration | None = Field(
        default=None, description="display: how long scan-out may starve before underflow"
    )
    process_name: str | None = Field(default=None, description="cpu stages: the user-space process")

    @model_validator(mode="after")
    def _shape(self) -> Stage:
        t = self.type
        if t is StageType.SOURCE:
            if self.fps is None:
                raise ValueError("a source stage needs 'fps'")
            if self.inputs or len(self.outputs) != 1:
                raise ValueError("a source stage has no inputs and exactly one output")
        elif t is StageType.DISPLAY:
            if self.refresh is None:
                raise ValueError("a display stage needs 'refresh'")
            if len(self.inputs) != 1 or self.outputs:
                raise ValueError("a display stage has exactly one input and no outputs")
        elif t in (StageType.PROCESS, StageType.ENCODE):
            if not self.inputs:
                raise ValueError(f"a {t.value} stage needs at least one input")
        elif t is StageType.DECODE and not self.outputs:
            raise ValueError("a decode stage needs an output")
        elif t is StageType.CPU and not (self.inputs or self.outputs):
            raise ValueError("a cpu stage reads or writes at least one pool")
        return self


class FaultKind(enum.StrEnum):
    """Rules a stage can break on purpose."""

    SKIP_CACHE_SYNC = "skip-cache-sync"  # no dma_sync_* / begin_cpu_access
    SKIP_FENCE_WAIT = "skip-fence-wait"  # read before the producer's fence signals
    RELEASE_EARLY = "release-early"  # drop the last buffer reference while DMA runs
    UNMAP_BEFORE_DMA_DONE = "unmap-before-dma-done"


class FaultInjection(InputModel):
    """Break ``kind`` in ``stage`` from frame ``frame`` on (``once``: only that frame)."""

    stage: str
    kind: FaultKind
    frame: int = Field(default=0, ge=0)
    once: bool = True


class Scenario(InputModel):
    """A use case for ``socmem run`` and ``socmem plan``."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str
    description: str = ""
    soc: str = Field(default="reference-mobile", description="default SoC (built-in name or file)")
    duration: Duration = Field(default=2.0, description="simulated time")
    qos: bool = Field(default=True, description="interconnect QoS on (strict priority classes)")
    buffers: list[BufferPool] = Field(min_length=1)
    stages: list[Stage] = Field(min_length=1)
    faults: list[FaultInjection] = Field(default_factory=list)

    def pool(self, name: str) -> BufferPool | None:
        """The buffer pool called ``name``."""
        return next((b for b in self.buffers if b.name == name), None)

    def stage(self, name: str) -> Stage | None:
        """The stage called ``name``."""
        return next((s for s in self.stages if s.name == name), None)

    def producers(self, pool: str) -> list[Stage]:
        """Stages writing ``pool``."""
        return [s for s in self.stages if pool in s.outputs]

    def consumers(self, pool: str) -> list[Stage]:
        """Stages reading ``pool``."""
        return [s for s in self.stages if pool in s.inputs]
