"""Where the shared real-world fixtures live (device trees, kernel traces, logs).

They sit in ``shared/fixtures`` beside the repository (CI lays a copy there); set
``SOCMEM_SHARED_DIR`` to use another copy.  Missing fixtures fail the tests that need
them, loudly: a test that silently skips on CI cannot catch anything.  Set
``SOCMEM_ALLOW_MISSING_FIXTURES=1`` to skip them instead on a machine without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[1]


def _locate() -> Path:
    candidates = [
        Path(os.environ["SOCMEM_SHARED_DIR"]) if os.environ.get("SOCMEM_SHARED_DIR") else None,
        _REPO.parent / "shared",
        Path("/work/shared"),
    ]
    for c in candidates:
        if c is not None and (c / "fixtures").is_dir():
            return c
    return _REPO.parent / "shared"


SHARED = _locate()
FIXTURES = SHARED / "fixtures"
DTB = FIXTURES / "dtb"
REAL_KERNEL = FIXTURES / "real-kernel"
QEMU = REAL_KERNEL / "qemu-virt-smmuv3"
QEMU_REPLAY = REAL_KERNEL / "qemu-virt-smmuv3-replay"


def need(path: Path) -> Path:
    """``path`` if it exists; otherwise fail (or skip, when allowed) with where we looked."""
    if not path.exists():
        message = f"fixture {path} not found (set SOCMEM_SHARED_DIR to shared/)"
        if os.environ.get("SOCMEM_ALLOW_MISSING_FIXTURES"):
            pytest.skip(message, allow_module_level=True)
        pytest.fail(message)
    return path
