"""`most stage3` on the tiny spoken run: pairs from training prompts only (the run's held-out
splits repeat most training sentences), DPO training, the HF export, ``compare.json``; and an
interrupted run that resumes: sampled chunks and pairs are read back, not sampled again, and
training continues from its checkpoint to the weights of the uninterrupted run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file

import most.stages.stage3 as stage3_module
from most.eval.preference import PairsConfig, heldout_texts
from most.generate import Sampling
from most.run import Run
from most.stages.eval import Judges, Sizes
from most.stages.stage3 import Comparison, stage3
from most.testing import SPEECH_SENTENCES
from most.text import normalize
from most.train.config import TrainerConfig
from most.train.dpo import DPOConfig
from most.train.optim import OptimConfig

TRAINER = TrainerConfig(
    max_steps=4, ckpt_every=2, val_every=0, log_every=1, progress=False, threads=1,
    precision="32-true",
)  # fmt: skip
SETTINGS = dict(
    pairs=PairsConfig(tts=4, sqa=4, samples=4, chunk=1),
    sampling=Sampling(do_sample=True, max_new_tokens=12, batch_size=8),
    dpo=DPOConfig(batch_size=2, max_len=128),
    optim=OptimConfig(lr=1e-3, warmup_steps=0),
    trainer=TRAINER,
    evaluation=Comparison(
        sizes=Sizes(asr=2, tts=2, sqa=1, text=1, wuggy=0, blimp=0, router=0),
        judges=Judges(names=["ctc"]),
        sampling=Sampling(max_new_tokens=8, batch_size=4),
    ),
    threads=1,
    device="cpu",
)


@pytest.fixture
def run(eval_run: Path, tmp_path: Path) -> Path:
    """The shared tiny spoken run (stage 2 = the untrained adapted model), linked read-only."""
    for name in ("data", "units", "base", "stage2", "judge"):
        (tmp_path / name).symlink_to(eval_run / name)
    return tmp_path


def test_stage3_pairs_train_compare_and_resume(run: Path, monkeypatch, capsys) -> None:
    result = stage3(run=run, **SETTINGS)
    root = Run(run).stage("stage3")
    pairs = datasets.load_from_disk(str(root / "pairs"))
    assert len(pairs) >= 1 and set(pairs["task"]) <= {"tts", "s2s"}
    # no held-out text is a prompt: here five of the six training sentences are also spoken in
    # dev/test/test_voices, so the one TTS prompt left is the sixth
    held = heldout_texts(run)
    assert not {normalize(t) for t in pairs["text"]} & held
    tts_texts = {t for t, task in zip(pairs["text"], pairs["task"], strict=True) if task == "tts"}
    assert tts_texts <= {SPEECH_SENTENCES[5]}
    assert all(math.isfinite(x) and x < 0 for x in pairs["ref_chosen_logps"])
    # trained and exported; compared on the same report keys
    metrics = json.loads((root / "metrics.json").read_text())
    assert metrics["steps"] == 4 and not metrics["resumed"] and metrics["pairs"] == len(pairs)
    assert "train/reward_accuracy" in (root / "logs" / "metrics.csv").read_text().splitlines()[0]
    saved = json.loads((root / "compare.json").read_text())
    assert saved["before"] == result["before"] and set(saved["before"]) == set(saved["after"])
    assert {"tts.ctc.wer_model", "sqa.s2s.accuracy", "asr.test.wer", "text.ppl_model"} <= set(
        saved["checks"]
    )
    assert saved["checks"]["tts.ctc.wer_model"]["noise"] is not None
    after = json.loads((root / "eval_after" / "report.json").read_text())
    assert after["meta"]["model"] == str(root / "hf") and after["metrics"] == saved["after"]
    weights = load_file(root / "hf" / "model.safetensors")

    # interrupted during training at step 2: no export, no later checkpoints, no evals after
    for gone in ("hf", "eval_after"):
        shutil.rmtree(root / gone)
    for gone in ("compare.json", "ckpt/last.ckpt", "ckpt/step=4.ckpt"):
        (root / gone).unlink()

    def never(*args, **kwargs):
        raise AssertionError("sampled again")

    monkeypatch.setattr(stage3_module, "sample_tts", never)
    monkeypatch.setattr(stage3_module, "sample_sqa", never)
    capsys.readouterr()
    stage3(run=run, **SETTINGS)
    out = capsys.readouterr().out
    assert f"resuming from {root / 'ckpt' / 'step=2.ckpt'}" in out and "reading the pairs" in out
    assert json.loads((root / "metrics.json").read_text())["resumed"] is True
    resumed = load_file(root / "hf" / "model.safetensors")
    assert all(torch.equal(resumed[k], weights[k]) for k in weights)

    # interrupted while sampling: the chunks on disk are read back, the missing one sampled
    shutil.rmtree(root / "hf")
    shutil.rmtree(root / "pairs")
    chunks = sorted((root / "samples").iterdir())
    chunks[-1].unlink()
    calls = []
    monkeypatch.setattr(stage3_module, "sample_tts", _counted(calls, "tts"))
    monkeypatch.setattr(stage3_module, "sample_sqa", _counted(calls, "s2s"))
    stage3(run=run, **SETTINGS)
    assert calls == [chunks[-1].name.split("-")[0]]
    assert datasets.load_from_disk(str(root / "pairs"))[:] == pairs[:]


def _counted(calls: list, task: str):
    from most.eval import preference

    real = preference.sample_tts if task == "tts" else preference.sample_sqa

    def sample(*args, **kwargs):
        calls.append(task)
        return real(*args, **kwargs)

    return sample


def test_the_stage2_side_is_the_runs_eval_when_it_matches(run: Path) -> None:
    """``RUN/eval`` made from the stage-2 model with the stage's evaluation settings is the
    ``before`` side; no second eval of that model is made."""
    from dataclasses import replace

    from most.stages.eval import evaluate

    cfg = SETTINGS["evaluation"]
    report = evaluate(run=run, sizes=cfg.sizes, judges=cfg.judges, sampling=cfg.sampling)
    one_step = replace(TRAINER, max_steps=1)
    result = stage3(run=run, **{**SETTINGS, "trainer": one_step})
    assert result["before"] == report["metrics"]
    assert not (Run(run).stage("stage3") / "eval_before").exists()
