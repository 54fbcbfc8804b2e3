"""Shared by the tests that need an external tool: fail under CI=true (CI installs every tool), skip elsewhere."""

from __future__ import annotations

import os

import pytest


def require(reason: str | None, what: str) -> None:
    """Do nothing when ``reason`` is None; else fail in CI (``what`` names the tool) or skip with the reason."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI needs {what}: {reason}")
    pytest.skip(reason)
