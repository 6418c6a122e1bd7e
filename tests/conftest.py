"""Shared test fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real recordings and published configs (../shared/realdata beside the checkout)."""
    assert REALDATA.is_dir(), (
        f"{REALDATA} is missing: tests expect ../shared/realdata beside the repo"
    )
    return REALDATA
