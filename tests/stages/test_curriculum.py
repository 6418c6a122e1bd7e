"""``most curriculum`` at tiny size: specialists train only their group (the merge places each
group from its specialist), integration leaves the experts alone and moves the routers, the joint
phase is the run's stage 1, a second call is a no-op, and a step budget that misses a phase is
refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from most.layout import TokenLayout
from most.run import Run
from most.stages.curriculum import Phase, check_steps, curriculum
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig

SPECIALIST = ["\\.experts\\.", "embed_tokens", "lm_head"]
MIX = {"asr": 0.4, "tts": 0.4, "text_lm": 0.2}
SPECIALISTS = {
    "text": Phase(ratios={"text_lm": 1.0}, train=SPECIALIST),
    "speech": Phase(ratios={"asr": 0.5, "tts": 0.5}, train=SPECIALIST),
}
INTEGRATE = Phase(ratios=MIX, train=["\\.router\\.", "shared_expert"])
JOINT = Phase(ratios=MIX, new_embedding_rows_only=False)
STEPS = {"text": 3, "speech": 3, "integrate": 3, "joint": 3}
DATA = DataConfig(batch_size=4, max_len=64, val_batches=1)
OPTIM = OptimConfig(lr=2e-2, warmup_steps=1, weight_decay=0.0)
TRAINER = TrainerConfig(max_steps=3, val_every=3, ckpt_every=3, log_every=1, progress=False)


def _weights(hf: Path) -> dict[str, torch.Tensor]:
    return load_file(str(hf / "model.safetensors"))


def _groups(n_experts: int) -> list[list[int]]:
    """Expert ids of the text and speech groups (adapt's default: two equal contiguous ranges)."""
    return [list(range(0, n_experts // 2)), list(range(n_experts // 2, n_experts))]


def test_curriculum_phases(speech_run: Path) -> None:
    R = Run(speech_run)
    out = curriculum(
        run=speech_run,
        specialists=SPECIALISTS,
        integrate=INTEGRATE,
        joint=JOINT,
        steps=STEPS,
        data=DATA,
        optim=OPTIM,
        trainer=TRAINER,
    )
    assert out == R.hf("stage1") and (out / "config.json").is_file()
    assert TokenLayout.load(out).modalities == ("text", "speech")
    start = _weights(R.hf("adapt"))
    spec = {m: _weights(speech_run / "curriculum" / m / "stage1" / "hf") for m in SPECIALISTS}
    merged = _weights(speech_run / "curriculum" / "merge" / "hf")
    integrated = _weights(speech_run / "curriculum" / "integrate" / "stage1" / "hf")
    joint = _weights(out)
    experts = [k for k in merged if ".experts." in k]
    routers = [k for k in merged if ".router." in k]
    assert experts and routers
    text_ids, speech_ids = _groups(merged[experts[0]].shape[0])
    for k in experts:
        # each group from its own specialist; each specialist changed its group
        assert torch.equal(merged[k][text_ids], spec["text"][k][text_ids]), k
        assert torch.equal(merged[k][speech_ids], spec["speech"][k][speech_ids]), k
        assert not torch.equal(spec["speech"][k][speech_ids], start[k][speech_ids]), k
        # integration: experts frozen; joint: they train
        assert torch.equal(integrated[k], merged[k]), k
    assert any(not torch.equal(joint[k], integrated[k]) for k in experts)
    assert all(torch.equal(merged[k], start[k]) for k in routers)
    assert any(not torch.equal(integrated[k], merged[k]) for k in routers)
    attn = [k for k in merged if "self_attn" in k]
    assert all(torch.equal(integrated[k], start[k]) for k in attn)
    record = R.recorded("stage1")
    assert (
        record["settings"]["data.ratios.asr"] == 0.4
        and record["settings"]["trainer.max_steps"] == 3
    )
    # a second call: every phase up to date, nothing rewritten
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    curriculum(
        run=speech_run,
        specialists=SPECIALISTS,
        integrate=INTEGRATE,
        joint=JOINT,
        steps=STEPS,
        data=DATA,
        optim=OPTIM,
        trainer=TRAINER,
    )
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime


def test_steps_must_name_every_phase_that_runs() -> None:
    assert check_steps(SPECIALISTS, None, {"text": 1, "speech": 2, "joint": 3})
    with pytest.raises(ValueError, match="missing \\['integrate'\\]"):
        check_steps(SPECIALISTS, INTEGRATE, {"text": 1, "speech": 2, "joint": 3})
    with pytest.raises(ValueError, match="not run \\['music'\\]"):
        check_steps({}, None, {"joint": 3, "music": 1})
    with pytest.raises(ValueError, match=">= 1"):
        check_steps({}, None, {"joint": 0})
    with pytest.raises(ValueError, match="unknown tasks"):
        Phase(ratios={"asr": 1.0, "vision": 0.5})


def test_an_audio_adapter_is_refused_before_any_phase_runs(tmp_path):
    from most.moe.adapter import AdapterConfig
    from most.stages.curriculum import curriculum

    with pytest.raises(ValueError, match=r"adapter\.kind='moe'"):
        curriculum(run=tmp_path / "run", adapter=AdapterConfig(kind="moe"))
    assert not (tmp_path / "run").exists()
