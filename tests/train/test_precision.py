"""Precision: ``auto`` picks bf16-mixed where the CPU multiplies bf16 natively (AMX or
AVX512-BF16), and stage 1 in bf16-mixed on the CPU (the adapted model's experts padded for oneDNN)
tracks fp32."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from most.stages.stage1 import stage1
from most.train import config as config_mod
from most.train.config import TrainerConfig
from tests.train.test_cuda_train import adapted_run
from tests.train.test_stages import DATA, OPTIM, losses


def test_auto_precision_follows_native_bf16(monkeypatch) -> None:
    cpu = TrainerConfig(accelerator="cpu")
    for amx, avx512_bf16, want in (
        (True, False, "bf16-mixed"),
        (False, True, "bf16-mixed"),
        (False, False, "32-true"),
    ):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert cpu.resolved_precision() == want, (amx, avx512_bf16)
    assert TrainerConfig(accelerator="cpu", precision="16-mixed").resolved_precision() == "16-mixed"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probes
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not config_mod.cpu_has_bf16()


def test_stage1_bf16_on_cpu_tracks_fp32(speech_run: Path, tmp_path_factory) -> None:
    fp32_run = adapted_run(speech_run, tmp_path_factory.mktemp("fp32"))
    common = dict(max_steps=24, val_every=12, ckpt_every=12, log_every=1, progress=False)
    for run, precision in ((speech_run, "bf16-mixed"), (fp32_run, "32-true")):
        trainer = TrainerConfig(**common, accelerator="cpu", precision=precision)
        stage1(run=run, data=DATA, optim=OPTIM, trainer=trainer)
    bf16, fp32 = (torch.tensor(losses(r / "stage1")) for r in (speech_run, fp32_run))
    assert bf16.shape == fp32.shape == (24,) and torch.isfinite(bf16).all()
    assert bf16[-4:].mean() < bf16[:4].mean() - 0.3, bf16  # it learns
    assert (bf16 - fp32).abs().mean() < 0.1, (bf16, fp32)
    assert not torch.equal(bf16, fp32)  # it did run in bf16
    model = AutoModelForCausalLM.from_pretrained(str(speech_run / "stage1" / "hf"))
    assert next(model.parameters()).dtype == torch.float32  # fp32 master weights are exported
