"""Fixtures of the training tests; the builders live in :mod:`most.testing`."""

from __future__ import annotations

from pathlib import Path

import pytest

from most.testing import write_speech_run, write_text_run


@pytest.fixture
def text_run(tmp_path: Path) -> Path:
    write_text_run(tmp_path)
    return tmp_path


@pytest.fixture
def speech_run(tmp_path: Path) -> Path:
    write_speech_run(tmp_path)
    return tmp_path
