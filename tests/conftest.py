"""Shared fixtures. Real data is read from ../shared/data (beside the checkout) and skipped where absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tests write under the temporary directory (pytest's tmp_path): make it the output root, the way a
# deployment sets NEURORECON__OUTPUT__ROOT (outputs outside the root are refused).
os.environ.setdefault("NEURORECON__OUTPUT__ROOT", tempfile.gettempdir())

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NEURORECON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; tests that use it are skipped with a clear message where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set NEURORECON_SHARED_DATA to its location)")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    """Path of a file in ../shared/data, or skip the calling test with a message naming it."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (set NEURORECON_SHARED_DATA to the data folder)")
    return path
