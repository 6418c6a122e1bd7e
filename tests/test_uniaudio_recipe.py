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


def composed(stage: str, *overlays: str) -> dict:
    """``most <stage>``'s arguments from recipes/tiny and ``overlays`` in order (as ``make``
    passes them), parsed and validated, not run."""
    from most.cli import parse_command

    args = ["--config", str(RECIPES / "tiny" / f"{stage}.yaml")]
    for o in overlays:
        if (RECIPES / o / f"{stage}.yaml").is_file():
            args += ["--config", str(RECIPES / o / f"{stage}.yaml")]
    return parse_command(stage, [*args, "--run", "runs/x"])


def test_uniaudio_and_music_compose_into_one_model() -> None:
    overlays = ("uniaudio", "music", "uniaudio-music", "multiscale")
    ratios = composed("stage1", *overlays)["data"].ratios
    assert all(ratios[t] > 0 for t in (*TASKS, "asr", "tts", "ttm", "music_continue"))
    assert set(ratios) <= set(STAGE1_RATIOS) and abs(sum(ratios.values()) - 1.0) < 1e-9
    stage1 = composed("stage1", *overlays)
    assert stage1["multiscale"].enabled and stage1["optim"].loss_weighting == "token"
    assert stage1["data"].max_len == 768 and stage1["data"].tts_history_noise == 0.0
    adapt = composed("adapt", *overlays)
    assert adapt["music"] and adapt["layout"].specials == [*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS]
    assert composed("units", *overlays)["tokenizer"].kind == "rvq"
    data = composed("data", *overlays)
    assert data["music"].train > 0 and data["tasks"].n_noisy > 0
    sizes = composed("eval", *overlays)["sizes"]
    assert sizes.music > 0 and sizes.tasks > 0
