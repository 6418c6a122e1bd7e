"""Stages end to end at tiny size: losses fall, HF export reloads, re-runs are no-ops, bad input refused."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from most.cli import main as most_main
from most.layout import LayoutError, TokenLayout
from most.stages.stage1 import stage1
from most.stages.stage2 import stage2
from most.testing import UNIT_HASH
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig

REPO = Path(__file__).resolve().parents[2]
FAST = TrainerConfig(max_steps=24, val_every=12, ckpt_every=12, log_every=1, progress=False)
DATA = DataConfig(batch_size=4, max_len=64, val_batches=1)
OPTIM = OptimConfig(lr=1e-2, warmup_steps=2)


def losses(stage_dir: Path, key: str = "train/loss") -> list[float]:
    with open(stage_dir / "logs" / "metrics.csv") as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


def test_stage1_and_stage2_train_and_export(speech_run: Path) -> None:
    stage1(run=speech_run, data=DATA, optim=OPTIM, trainer=FAST)
    curve = losses(speech_run / "stage1")
    assert sum(curve[-4:]) / 4 < sum(curve[:4]) / 4 - 0.5, curve
    header = (speech_run / "stage1" / "logs" / "metrics.csv").read_text().splitlines()[0]
    for key in (
        "train/loss_asr",
        "train/loss_tts",
        "train/loss_text_lm",
        "train/aux_loss",
        "lr-AdamW",
    ):
        assert key in header, key
    hf = speech_run / "stage1" / "hf"
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(hf))
    layout = TokenLayout.load(hf)
    assert model.get_input_embeddings().num_embeddings >= layout.vocab_size
    assert len(AutoTokenizer.from_pretrained(str(hf))) == layout.vocab_size
    ckpts = {p.name for p in (speech_run / "stage1" / "ckpt").iterdir()}
    assert {"last.ckpt", "best.ckpt", "step=24.ckpt"} <= ckpts

    stage2(run=speech_run, data=DATA, optim=OPTIM, trainer=FAST, speech_mode="units")
    curve2 = losses(speech_run / "stage2")
    assert curve2[-1] < curve2[0]
    header = (speech_run / "stage2" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_s2t" in header and "train/loss_s2s" in header

    # finished: a re-run is a no-op (the weights file is not rewritten)
    before = (speech_run / "stage2" / "hf" / "model.safetensors").stat().st_mtime_ns
    stage2(run=speech_run, data=DATA, optim=OPTIM, trainer=FAST)
    assert (speech_run / "stage2" / "hf" / "model.safetensors").stat().st_mtime_ns == before


def test_layout_hash_mismatch_refused(speech_run: Path) -> None:
    (speech_run / "units" / UNIT_HASH).rename(speech_run / "units" / "otherhash")
    text = (speech_run / "units" / "tokenizer" / "unit_tokenizer.json").read_text()
    (speech_run / "units" / "tokenizer" / "unit_tokenizer.json").write_text(
        text.replace(UNIT_HASH, "otherhash")
    )
    with pytest.raises(LayoutError, match="unit tokenizer hash"):
        stage1(run=speech_run, data=DATA, trainer=FAST)
    assert not (speech_run / "stage1" / "hf").exists()


def test_bad_recipe_keys_refused(tmp_path: Path, capsys) -> None:
    assert most_main(["stage1", "--run", str(tmp_path), "--optim.learning_rate=1"]) == 2
    recipe = yaml.safe_load((REPO / "recipes/tiny/stage1.yaml").read_text())
    recipe["trainer"]["max_stepz"] = 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(recipe))
    assert most_main(["stage1", "--config", str(bad), "--run", str(tmp_path)]) == 2
    assert most_main(["stage1", "--run", str(tmp_path), "--trainer.strategy=zero9"]) == 2
    assert "max_stepz" in capsys.readouterr().err


TRAIN_RECIPES = sorted(
    p for stage in ("base", "stage1", "stage2") for p in REPO.glob(f"recipes/*/{stage}.yaml")
)


def test_training_recipes_exist() -> None:
    names = {f"{p.parent.name}/{p.stem}" for p in TRAIN_RECIPES}
    assert {
        "tiny/base",
        "tiny/stage1",
        "tiny/stage2",
        "deepseek-v2-lite/stage1",
        "qwen3-30b-a3b/stage2",
    } <= names


@pytest.mark.parametrize("path", TRAIN_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipes_parse(path: Path) -> None:
    """Every shipped training recipe is valid against its stage's signature."""
    from jsonargparse import ArgumentParser

    import importlib

    parser = ArgumentParser()
    stage = importlib.import_module(f"most.stages.{path.stem}")
    parser.add_function_arguments(getattr(stage, path.stem))
    cfg = parser.parse_path(str(path))
    assert parser.instantiate(cfg) is not None


def test_force_redoes_a_finished_stage(speech_run: Path) -> None:
    short = TrainerConfig(max_steps=2, val_every=0, ckpt_every=1, progress=False)
    stage1(run=speech_run, data=DATA, trainer=short)
    first = torch.load(speech_run / "stage1" / "ckpt" / "last.ckpt", weights_only=False)
    shutil.rmtree(speech_run / "stage1" / "logs")
    stage1(run=speech_run, data=DATA, trainer=short, force=True)
    again = torch.load(speech_run / "stage1" / "ckpt" / "last.ckpt", weights_only=False)
    assert first["global_step"] == again["global_step"] == 2
    assert (speech_run / "stage1" / "logs").is_dir()


def test_text_qa_replay_trains_qa_train_in_the_instruct_format(speech_run: Path) -> None:
    """``text_qa`` in a speech stage: qa_train questions in the instruct format join the mixture."""
    data = DataConfig(batch_size=4, max_len=64, val_batches=1, ratios={"text_qa": 0.5})
    short = TrainerConfig(max_steps=4, val_every=0, ckpt_every=4, log_every=1, progress=False)
    stage1(run=speech_run, data=data, optim=OPTIM, trainer=short)
    metrics = json.loads((speech_run / "stage1" / "metrics.json").read_text())
    assert metrics["ratios"] == {"asr": 0.4, "tts": 0.4, "text_lm": 0.2, "text_qa": 0.5}
    header = (speech_run / "stage1" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_instruct" in header  # the replay's examples were trained on

    shutil.rmtree(speech_run / "units" / UNIT_HASH / "sqa")
    with pytest.raises(FileNotFoundError, match="sqa"):
        stage1(run=speech_run, data=data, trainer=short, force=True)


def test_stage1_with_dropout_is_reproducible(speech_run: Path, tmp_path: Path) -> None:
    """Dropout draws from torch's global generator, which a fresh process does not start from a
    fixed seed: the stage seeds it, so two runs of one recipe give the same weights."""
    from safetensors.torch import load_file

    short = TrainerConfig(max_steps=3, val_every=0, ckpt_every=3, progress=False)
    weights = []
    for i in range(2):
        run = tmp_path / f"r{i}"
        shutil.copytree(speech_run, run, symlinks=True)
        torch.seed()  # what an import in a fresh process does
        stage1(run=run, data=DATA, optim=OptimConfig(lr=1e-2, dropout=0.3), trainer=short)
        weights.append(load_file(run / "stage1" / "hf" / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0, msg=k)
