"""A multi-scale model through the stages on the tiny spoken run: ``rvq`` units -> adapt ->
``stage1 --multiscale.enabled`` -> eval -> release, and the release reloads in a fresh process
(plumbing, not quality: a few steps of a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

from most.adapt import SourceSection
from most.multiscale import MostMultiScale
from most.multiscale.batches import MultiScaleSettings
from most.run import Run
from most.stages.adapt import adapt
from most.stages.eval import AudioLM, Judges, Models, Sizes, evaluate
from most.stages.release import ReleaseSource, release
from most.stages.stage1 import stage1
from most.stages.units import TokenizerConfig, units
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig

from .conftest import SAMPLING


@pytest.fixture(scope="module")
def ms_run(eval_run: Path, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ms-run")
    for name in ("data", "base", "judge"):
        (run / name).symlink_to(eval_run / name)
    cfg = TokenizerConfig(kind="rvq", fit_seconds=30.0, gl_iters=2)
    cfg.rvq.k = 8
    cfg.rvq.n_codebooks = 2
    units(run=run, tokenizer=cfg)
    adapt(run=run, source=SourceSection(model=Run(run).hf("base")))
    stage1(
        run=run,
        data=DataConfig(batch_size=2, max_len=128, pack=True, val_batches=1),
        optim=OptimConfig(lr=1e-2, warmup_steps=2, loss_weighting="token"),
        trainer=TrainerConfig(max_steps=6, val_every=6, ckpt_every=6, progress=False),
        multiscale=MultiScaleSettings(enabled=True, local_hidden_size=16, local_heads=2),
    )
    return run


def test_eval_and_release_of_a_multi_scale_model(ms_run: Path) -> None:
    R = Run(ms_run)
    sizes = Sizes(asr=2, tts=1, sqa=0, text=1, wuggy=2, blimp=2, router=2)
    report = evaluate(
        run=ms_run,
        models=Models(model=R.hf("stage1")),
        sizes=sizes,
        sampling=SAMPLING,
        judges=Judges(),
        audio_lm=AudioLM(),
    )
    metrics = report["metrics"]
    assert metrics["asr.test.wer"] >= 0 and "tts.ctc.wer_model" in metrics
    assert "text.ppl_model" in metrics
    # the sections that read flat unit ids through the model are skipped, and the report says so
    assert not any(k.startswith(("audio_lm.", "router.")) for k in metrics)
    assert report["meta"]["sizes"]["router"] == 0 and report["meta"]["sizes"]["wuggy"] == 0
    out = release(run=ms_run, source=ReleaseSource(model=R.hf("stage1")))
    check = json.loads((out / "eval" / "reload_check.json").read_text())
    assert check["identical"] and check["examples"] > 0
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, MostMultiScale) and model.config.n_codebooks == 2
