"""Fixtures of the corpus tests: the tiny embedded-default corpus, built once per module."""

from __future__ import annotations

from pathlib import Path

import pytest

from most.testing import build_tiny


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("tiny")
    build_tiny(run)
    return run
