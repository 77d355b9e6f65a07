"""Shared fixtures. Tests run offline and never write into the source tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    """../shared (teacher, data) when present; tests that need it skip otherwise."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present beside the repository")
    return SHARED
