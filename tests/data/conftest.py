"""Where the real benchmark files are, and an environment that never sees the user's own data.

The files live outside the repository (they are never copied into it): $MOSA_DATA_DIR when set,
else shared/data beside the repository root, which is where CI puts them.
"""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("MOSA_DATA_DIR") or REPO_ROOT.parent / "shared" / "data")
SKIP_REASON = f"benchmark data not found at {SHARED_DATA}: set MOSA_DATA_DIR or put shared/data beside the repository"


@pytest.fixture(autouse=True)
def isolated_data_env(monkeypatch, tmp_path):
    """No test reads the developer's cache or MOSA_DATA_DIR unless it asks for `shared_data`."""
    monkeypatch.delenv("MOSA_DATA_DIR", raising=False)
    monkeypatch.setenv("MOSA_CACHE_DIR", str(tmp_path / "mosa-cache"))


def shared_data_or_skip() -> Path:
    if not (SHARED_DATA / "PROVENANCE.md").is_file():
        pytest.skip(SKIP_REASON)
    return SHARED_DATA


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """The real data folder, also set as MOSA_DATA_DIR for the test."""
    path = shared_data_or_skip()
    monkeypatch.setenv("MOSA_DATA_DIR", str(path))
    return path
