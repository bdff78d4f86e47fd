"""Replay a real kernel's DMA history on the model, call for call, then ask "what if".

* :mod:`socmem.replay.capture` rebuilds the ordered calls from a capture (per device,
  domain, iova_domain and CPU, with the kernel's inputs and results);
* :mod:`socmem.replay.engine` boots the model on a matching SoC and re-executes every
  call from its inputs, comparing each result with the kernel's;
* :mod:`socmem.replay.whatif` replays the same history on a changed model and reports
  what moved;
* :mod:`socmem.replay.cli` is ``socmem replay``.
"""

from socmem.replay.capture import Call, Capture, build_capture, load_capture
from socmem.replay.engine import (
    Agreement,
    Divergence,
    Metrics,
    ReplayConfig,
    ReplayEngine,
    ReplayResult,
    replay,
)
from socmem.replay.whatif import WhatIf, parse_sets, run_whatif

__all__ = [
    "Agreement",
    "Call",
    "Capture",
    "Divergence",
    "Metrics",
    "ReplayConfig",
    "ReplayEngine",
    "ReplayResult",
    "WhatIf",
    "build_capture",
    "load_capture",
    "parse_sets",
    "replay",
    "run_whatif",
]
