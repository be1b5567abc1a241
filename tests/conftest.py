"""Shared fixtures. Real data is read from ../shared/data (relative to the project root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MMDL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def shared_data(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test with a clear reason when absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} (clone ../shared beside the project)")
    return path


@pytest.fixture
def shared():
    """The ``shared_data`` helper as a fixture: ``shared("ncempy_dm", "x.dm4")``."""
    return shared_data


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch to the machine's cores and deterministic across tests."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.manual_seed(0)
    yield
