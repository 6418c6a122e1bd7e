"""CUDA: stage 1 trains the adapted model on one GPU in bf16-mixed, tracks the CPU's fp32 loss
curve, and exports fp32 weights (``make test-gpu``). Deselected by default (marker ``gpu``);
without CUDA it fails rather than skips."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from most.adapt import SourceSection
from most.stages.adapt import adapt
from most.modeling import MostForCausalLM
from most.stages.stage1 import stage1
from most.train.config import TrainerConfig
from tests.moe.conftest import save_base
from tests.train.test_stages import DATA, OPTIM, losses

pytestmark = pytest.mark.gpu


def adapted_run(speech_run: Path, copy: Path) -> Path:
    """``speech_run`` with the adapted MoST model as ``adapt/hf`` (not the plain stand-in), and a
    copy of it for a second run."""
    shutil.rmtree(speech_run / "adapt")
    adapt(run=speech_run, source=SourceSection(model=save_base("qwen3_moe", copy / "base")))
    shutil.copytree(speech_run, copy / "run")
    return copy / "run"


def test_stage1_bf16_on_gpu_tracks_cpu_fp32(speech_run: Path, tmp_path_factory) -> None:
    assert torch.cuda.is_available(), "make test-gpu needs a CUDA device"
    cpu_run = adapted_run(speech_run, tmp_path_factory.mktemp("cpu"))
    common = dict(max_steps=24, val_every=12, ckpt_every=12, log_every=1, progress=False)
    gpu = TrainerConfig(**common, accelerator="gpu")
    assert gpu.resolved_precision() == "bf16-mixed"
    stage1(run=speech_run, data=DATA, optim=OPTIM, trainer=gpu)
    cpu = TrainerConfig(**common, accelerator="cpu", precision="32-true")
    stage1(run=cpu_run, data=DATA, optim=OPTIM, trainer=cpu)
    on_gpu, on_cpu = (torch.tensor(losses(r / "stage1")) for r in (speech_run, cpu_run))
    assert on_gpu.shape == on_cpu.shape == (24,) and torch.isfinite(on_gpu).all()
    assert on_gpu[-4:].mean() < on_gpu[:4].mean() - 0.3, on_gpu  # it learns (same data order)
    # bf16 autocast drifts from fp32, but the curves stay together over the run
    assert (on_gpu - on_cpu).abs().mean() < 0.1, (on_gpu, on_cpu)
    assert abs(on_gpu[-4:].mean() - on_cpu[-4:].mean()) < 0.15, (on_gpu, on_cpu)
    model = AutoModelForCausalLM.from_pretrained(str(speech_run / "stage1" / "hf"))
    assert isinstance(model, MostForCausalLM)
    assert next(model.parameters()).dtype == torch.float32  # master weights, not bf16 copies
