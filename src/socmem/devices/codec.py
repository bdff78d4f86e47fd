"""Video encoder and decoder: a processing engine with reference frames and a bitstream.

Rules (on top of :mod:`socmem.devices.processor`):

* **Encode** reads the source frame and ``reference_frames`` reference frames (each the
  size the source frame has in memory: compressed when its pool is), writes the
  reconstructed frame (the next reference, same size) and the bitstream
  (``bitrate`` / input frame rate bytes) into its output pool's buffer.  The bitstream is
  the output frame's valid bytes.
* **Decode** reads the bitstream (its input frame's valid bytes, or ``bitrate`` / fps
  without an input) and ``reference_frames`` reference frames, and writes the decoded
  frame.  Without an input pool it decodes at ``fps`` (default 30) on its own clock.
* Compute time: ``compute``, else pixels / the master's ``traffic.pixel_rate``.
"""

from __future__ import annotations

from socmem.devices.processor import PipelineStage
from socmem.sim.allocation import Frame

__all__ = ["Decoder", "Encoder"]


class Encoder(PipelineStage):
    """An ``encode`` stage."""

    kind = "encode"

    def _fps_in(self, frame: Frame | None) -> float:
        if frame is not None:
            fps = self.ctx.stream_fps.get(frame.buffer.pool.spec.name)
            if fps:
                return fps / self.stage.every
        return float(self.stage.fps or 30.0)

    def traffic(self, frame: Frame | None) -> tuple[int, list[int], list[int], int]:
        """Source + references read; reconstruction + bitstream written."""
        st = self.stage
        src = frame.nbytes if frame is not None else 0
        bitstream = int(float(st.bitrate or 0.0) / self._fps_in(frame))
        writes: list[int] = []
        valid: list[int] = []
        for i, p in enumerate(self.outputs):
            nb = (
                min(bitstream, p.spec.frame_bytes) if not p.spec.is_image else p.spec.transfer_bytes
            )
            valid.append(nb)
            writes.append(nb + (src if i == 0 else 0))
        if not self.outputs:
            writes = [src + bitstream]
        return src * (1 + st.reference_frames), writes, valid, self.compute_ns(frame)


class Decoder(PipelineStage):
    """A ``decode`` stage."""

    kind = "decode"

    def traffic(self, frame: Frame | None) -> tuple[int, list[int], list[int], int]:
        """Bitstream + references read; the decoded frame written."""
        st = self.stage
        out = self.outputs[0].spec.transfer_bytes if self.outputs else 0
        if frame is not None:
            bits = frame.nbytes
        else:
            bits = int(float(st.bitrate or 0.0) / float(st.fps or 30.0))
        writes = [p.spec.transfer_bytes for p in self.outputs]
        return bits + out * st.reference_frames, writes, list(writes), self.compute_ns(None)
