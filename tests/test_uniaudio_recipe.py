"""recipes/uniaudio turns UniAudio's tasks on over recipes/tiny, which keeps them off."""

from __future__ import annotations

from pathlib import Path

import yaml

from most.layout import DEFAULT_SPECIALS, UNIAUDIO_SPECIALS
from most.train.stage import STAGE1_RATIOS, STAGE2_RATIOS
from most.train.uniaudio import TASKS

RECIPES = Path(__file__).parents[1] / "recipes"


def load(path: str) -> dict:
    return yaml.safe_load((RECIPES / path).read_text())


def test_tiny_keeps_the_tasks_off() -> None:
    assert all(STAGE1_RATIOS[t] == 0.0 == STAGE2_RATIOS[t] for t in TASKS)
    for stage in ("stage1", "stage2"):
        assert not set(TASKS) & set(load(f"tiny/{stage}.yaml")["data"]["ratios"])
    assert "tasks" not in load("tiny/data.yaml")


def test_overlay_turns_them_on_with_their_markers_and_voice_units() -> None:
    ratios = load("uniaudio/stage1.yaml")["data"]["ratios"]
    assert set(ratios) <= set(STAGE1_RATIOS) and all(ratios[t] > 0 for t in TASKS)
    specials = load("uniaudio/adapt.yaml")["layout"]["specials"]
    assert specials == [*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS]
    assert load("uniaudio/units.yaml")["tokenizer"]["kind"] == "rvq"
    data = load("uniaudio/data.yaml")["tasks"]
    assert data["n_parallel"] > 0 and data["n_noisy"] > 0
    assert load("uniaudio/eval.yaml")["sizes"]["tasks"] > 0
