"""A tiny embedded-default corpus through the real data stage (a few seconds of espeak-ng)."""

from __future__ import annotations

from pathlib import Path

from most.corpora.world import WorldConfig
from most.stages.data import SpeechConfig, data

TINY_WORLD = WorldConfig(
    seed=7, n_countries=4, n_cities=8, n_people=12, n_animals=4, n_objects=4, corpus_words=3000
)
TINY_SPEECH = SpeechConfig(
    n_train=24, n_short=5, n_dev=4, n_test=6, n_instructions=16, text_heldout_words=1000
)


def build_tiny(run: Path, **overrides) -> Path:
    """``most data`` with :data:`TINY_WORLD` and :data:`TINY_SPEECH` into ``run``."""
    kwargs = {"world": TINY_WORLD, "speech": TINY_SPEECH, "num_jobs": 2, **overrides}
    return data(run=run, **kwargs)
