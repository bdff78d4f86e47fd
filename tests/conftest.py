"""Test-suite settings: hypothesis explores new examples locally, but on CI (``CI`` set)
it runs a fixed, derandomised set so that a green main stays green."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
