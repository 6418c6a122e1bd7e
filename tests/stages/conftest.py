"""Fixtures of the stage tests: the tiny run after ``most eval``."""

from __future__ import annotations

from pathlib import Path

import pytest

from most.generate import Sampling
from most.stages.eval import AudioLM, Judges, Sizes, evaluate

SIZES = Sizes(asr=3, tts=2, sqa=1, text=1, wuggy=3, blimp=2, router=2)
SAMPLING = Sampling(max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="session")
def evaluated(eval_run, tmp_path_factory) -> tuple[Path, dict]:
    """``(run, report)``: the tiny run through ``most eval`` (read-only: the eval and release tests
    share it)."""
    run = tmp_path_factory.mktemp("evaluated")
    for name in ("data", "units", "base", "stage2", "judge"):
        (run / name).symlink_to(eval_run / name)
    report = evaluate(run=run, sizes=SIZES, sampling=SAMPLING, judges=Judges(), audio_lm=AudioLM())
    return run, report
