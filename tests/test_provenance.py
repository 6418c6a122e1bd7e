"""Provenance: a stage never reuses outputs made from other settings or inputs.

Each edge of the pipeline is tried: changed data -> units (tests/units/test_stage.py), base ->
adapt, adapt -> stage1, stage1 -> stage2, a changed eval section (tests/stages/test_eval.py) and
a report of another model -> release (tests/stages/test_release.py). The rule: the stage refuses
in one line naming what changed; ``force`` redoes it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from most.run import Run, StaleOutput, changes, fingerprint, folder_id
from most.stages.stage1 import stage1
from most.stages.stage2 import stage2
from most.testing import run_adapt
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig

DATA = DataConfig(batch_size=4, max_len=48, val_batches=1)
TINY = TrainerConfig(max_steps=4, val_every=0, ckpt_every=2, progress=False, threads=1)


def test_fingerprints_name_what_changed() -> None:
    a = fingerprint({"optim": {"lr": 1e-3}, "trainer": {"max_steps": 8}}, {"data": "d1"})
    b = fingerprint({"optim": {"lr": 2e-3}, "trainer": {"max_steps": 9}}, {"data": "d2"})
    assert a["id"] != b["id"] and fingerprint(a["settings"], a["inputs"])["id"] == a["id"]
    assert changes(a, b) == [
        "input data d1 -> d2",
        "optim.lr 0.001 -> 0.002",
        "trainer.max_steps 8 -> 9",
    ]
    assert changes(a, b, ignore=("trainer.",)) == ["input data d1 -> d2", "optim.lr 0.001 -> 0.002"]


def test_base_to_adapt(base_dirs, tmp_path: Path) -> None:
    """Another base under the same run: the adapted model is refused, then redone with force."""
    run = tmp_path / "run"
    run_adapt(run, base_dirs["qwen3_moe"])
    first = Run(run).output_id("adapt")
    run_adapt(run, base_dirs["qwen3_moe"])  # same base and settings: up to date
    assert Run(run).output_id("adapt") == first
    with pytest.raises(StaleOutput, match=r"\(input source \w+ -> \w+; source.model .*mixtral"):
        run_adapt(run, base_dirs["mixtral"])
    from most.adapt import SourceSection
    from most.stages.adapt import adapt
    from most.testing import layout_args

    adapt(
        run=run, source=SourceSection(model=base_dirs["mixtral"]), layout=layout_args(), force=True
    )
    assert Run(run).output_id("adapt") != first


def test_adapt_to_stage1_to_stage2(speech_run: Path) -> None:
    """A redone ``adapt`` makes stage 1 stale; stage 1 redone makes stage 2 stale."""
    run = Run(speech_run)
    stage1(run=speech_run, data=DATA, trainer=TINY)
    stage2(run=speech_run, data=DATA, trainer=TINY)
    stage1(run=speech_run, data=DATA, trainer=TINY)  # up to date: a no-op
    # `most adapt` again with other settings: its record (and so the id stage 1 read) changes
    run.record("adapt", fingerprint({"experts": {"init": "upcycle"}}, {}))
    with pytest.raises(
        StaleOutput, match=r"stage1 was made from other settings or inputs \(input init"
    ):
        stage1(run=speech_run, data=DATA, trainer=TINY)
    stage1(run=speech_run, data=DATA, trainer=TINY, force=True)
    assert json.loads(run.record_path("stage1").read_text())["inputs"]["init"] == folder_id(
        run.hf("adapt")
    )
    with pytest.raises(
        StaleOutput, match=r"stage2 was made from other settings or inputs \(input init"
    ):
        stage2(run=speech_run, data=DATA, trainer=TINY)


def test_resume_refuses_a_changed_recipe(speech_run: Path) -> None:
    """A half-done stage (checkpoints, no export) resumes with another step budget, never with
    another model or data recipe: that is refused, naming the keys."""
    stage1(run=speech_run, data=DATA, trainer=TINY)
    shutil.rmtree(Run(speech_run).hf("stage1"))  # as if killed before its export
    with pytest.raises(StaleOutput, match=r"\(data.max_len 48 -> 40; optim.lr .* -> 0.5\)"):
        from most.train.optim import OptimConfig

        stage1(run=speech_run, data=DataConfig(batch_size=4, max_len=40, val_batches=1),
               optim=OptimConfig(lr=0.5), trainer=TINY)  # fmt: skip
    assert (Run(speech_run).stage("stage1") / "ckpt" / "last.ckpt").is_file()  # nothing lost
