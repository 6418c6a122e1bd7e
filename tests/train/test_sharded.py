"""Sharded training (``trainer.strategy=fsdp``: FSDP2 per decoder layer) of the adapted
``MostForCausalLM``: two CPU processes (gloo) train and export the same model as one process that
sees both ranks' batches, through a full checkpoint that resumes; DeepSpeed ZeRO-2/3 and bf16
sharding on GPUs (marker ``gpu``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from most.stages.stage1 import stage1
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig
from most.train.sharding import check_available, decoder_layers

STEPS = 4
DATA = DataConfig(batch_size=2, max_len=40, val_batches=0)
OPTIM = OptimConfig(lr=3e-3, warmup_steps=1)
COMMON = dict(max_steps=STEPS, val_every=0, ckpt_every=2, log_every=1, progress=False, threads=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def most_cli(run: Path, *args: str) -> subprocess.CompletedProcess:
    """``most stage1`` on ``run`` with the test's data, optimizer and trainer settings."""
    env = {
        **os.environ,
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    settings = [f"--trainer.{k}={str(v).lower()}" for k, v in COMMON.items()]
    settings += [f"--data.{k}={getattr(DATA, k)}" for k in ("batch_size", "max_len", "val_batches")]
    settings += [f"--optim.lr={OPTIM.lr}", f"--optim.warmup_steps={OPTIM.warmup_steps}"]
    cmd = [sys.executable, "-m", "most.cli", "stage1", "--run", str(run), *settings, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)


FSDP = ("--trainer.strategy=fsdp", "--trainer.accelerator=cpu", "--trainer.devices=2")
FP32 = "--trainer.precision=32-true"


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def bf16_checkpoint(hf: Path) -> None:
    """Store the model folder ``hf`` in bf16, as published MoE checkpoints are."""
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(hf, dtype=torch.bfloat16).save_pretrained(hf)
    assert all(t.dtype == torch.bfloat16 for t in tensors(hf).values())


def assert_same_export(a: Path, b: Path, atol: float) -> float:
    """Same files, tensor names, shapes and dtypes; weights within ``atol``. Returns the largest
    difference."""
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("config.json", "token_layout.json", "tokenizer.json", "tokenizer_config.json"):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name
    with safe_open(a / "model.safetensors", "pt") as fa, safe_open(b / "model.safetensors", "pt") as fb:  # fmt: skip
        assert fa.metadata() == fb.metadata()
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    worst = 0.0
    for k in ta:
        assert (ta[k].shape, ta[k].dtype) == (tb[k].shape, tb[k].dtype), k
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=atol, msg=k)
        worst = max(worst, (ta[k] - tb[k]).abs().max().item())
    return worst


def test_fsdp_two_processes_export_what_one_process_trains(
    speech_run: Path, tmp_path: Path
) -> None:
    """FSDP2 on 2 gloo ranks (batch 2 each) and one process accumulating the same 2 micro-batches
    per step (``accumulate=2``, so rank r's batch of step s is its micro-batch r): the same mean
    gradient every step, so the two exports hold the same weights up to float rounding, and both
    moved far from the adapted model they started from."""
    bf16_checkpoint(speech_run / "adapt" / "hf")  # weights load as stored; both widen to fp32
    single = tmp_path / "single"
    shutil.copytree(speech_run, single)
    proc = most_cli(speech_run, *FSDP, FP32)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stderr + proc.stdout
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log

    sharded, one = speech_run / "stage1" / "hf", single_process(single)
    worst = assert_same_export(sharded, one, atol=1e-5)
    assert all(t.dtype == torch.float32 for t in tensors(sharded).values())  # fp32 masters
    start, end = tensors(speech_run / "adapt" / "hf"), tensors(sharded)
    moved = min((end[k] - start[k]).abs().max().item() for k in end if k in start)
    assert moved > 100 * max(worst, 1e-7), (moved, worst)  # every tensor trained, far beyond it

    # The checkpoint is a full one: one file, whole weights and optimizer state, as one process's.
    ckpts = [torch.load(r / "stage1/ckpt/last.ckpt", weights_only=False) for r in (speech_run, single)]  # fmt: skip
    assert ckpts[0]["global_step"] == ckpts[1]["global_step"] == STEPS
    shapes = [{k: v.shape for k, v in c["state_dict"].items()} for c in ckpts]
    assert shapes[0] == shapes[1]
    moments = [[s["exp_avg"].shape for s in c["optimizer_states"][0]["state"].values()] for c in ckpts]  # fmt: skip
    assert moments[0] == moments[1]
    print(f"largest weight difference {worst:.2e}, smallest largest move {moved:.2e}")


def single_process(run: Path, steps: int = STEPS) -> Path:
    """Stage 1 on ``run`` in this process, accumulating 2 micro-batches per step: the batches the
    two FSDP ranks train on together. Returns the exported folder."""
    trainer = TrainerConfig(**{**COMMON, "max_steps": steps}, accelerator="cpu", devices=1, precision="32-true", accumulate=2)  # fmt: skip
    stage1(run=run, data=DATA, optim=OPTIM, trainer=trainer)
    return run / "stage1" / "hf"


@pytest.mark.slow
@pytest.mark.parametrize("sharded", [False, True], ids=["full", "sharded"])
def test_fsdp_resumes_from_its_checkpoint(speech_run: Path, tmp_path: Path, sharded: bool) -> None:
    """A 2-rank FSDP run cut after its step-2 checkpoint (one file, or a folder of per-rank shards)
    resumes and ends with the weights of an uninterrupted single-process run."""
    straight = tmp_path / "straight"
    shutil.copytree(speech_run, straight)
    args = (*FSDP, FP32, f"--trainer.sharded_checkpoint={str(sharded).lower()}")
    proc = most_cli(speech_run, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stage = speech_run / "stage1"
    ckpt = stage / "ckpt"
    assert (ckpt / "step=2.ckpt").is_dir() == sharded
    assert not [p for p in ckpt.iterdir() if p.name.startswith(".")]  # no temporaries left
    if sharded:
        assert {".metadata", "meta.pt"} <= {p.name for p in (ckpt / "step=2.ckpt").iterdir()}
    shutil.rmtree(stage / "hf")  # "crashed" after step 2: only its checkpoint is left
    for name in ("last.ckpt", f"step={STEPS}.ckpt"):
        shutil.rmtree(ckpt / name) if sharded else (ckpt / name).unlink()
    proc = most_cli(speech_run, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"resuming from {ckpt / 'step=2.ckpt'}" in proc.stdout
    assert json.loads((stage / "metrics.json").read_text())["resumed"] is True
    assert_same_export(stage / "hf", single_process(straight), atol=1e-6)


@pytest.mark.slow
def test_fsdp_with_lora_exports_the_merged_model_one_process_trains(
    speech_run: Path, tmp_path: Path
) -> None:
    """LoRA (attention, experts, speech rows, routers) under FSDP2 on 2 ranks: the merged export
    equals that of one process on the same batches."""
    single = tmp_path / "single"
    shutil.copytree(speech_run, single)
    lora = ["--lora.enabled=true", "--lora.r=2", "--lora.target_parameters=[experts.down_proj]"]
    proc = most_cli(speech_run, *FSDP, FP32, *lora)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = most_cli(single, FP32, "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.accumulate=2", *lora)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    sharded = speech_run / "stage1" / "hf"
    assert_same_export(sharded, single / "stage1" / "hf", atol=1e-6)
    start, end = tensors(speech_run / "adapt" / "hf"), tensors(sharded)
    assert not torch.equal(
        start["lm.model.layers.0.self_attn.q_proj.weight"],
        end["lm.model.layers.0.self_attn.q_proj.weight"],
    )


def test_decoder_layers_found_inside_the_adapted_model(speech_run: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(speech_run / "adapt" / "hf")
    layers = decoder_layers(model)
    assert layers == list(model.lm.model.layers) and len(layers) == 2


def test_skeleton_takes_the_gathered_weights_of_a_lora_model(
    speech_run: Path, tmp_path: Path
) -> None:
    """What a sharded export does on rank 0, without the sharding: the meta-device copy taken before
    training, filled with the model's state dict, exports the same merged files as the model
    itself (LoRA on attention and experts, trainable speech rows of the tied embedding)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from most.layout import TokenLayout
    from most.train.optim import LoraConfig, apply_lora
    from most.train.runner import export_hf
    from most.train.sharding import fill_skeleton, meta_skeleton

    hf = speech_run / "adapt" / "hf"
    lora = LoraConfig(enabled=True, r=2, target_parameters=["experts.down_proj"])
    model = apply_lora(AutoModelForCausalLM.from_pretrained(hf), lora)
    skeleton = meta_skeleton(model)
    assert all(p.is_meta for p in skeleton.parameters())
    torch.manual_seed(0)
    with torch.no_grad():  # "trained": adapters and the speech rows away from their start
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    gathered = {k: v.clone() for k, v in model.state_dict().items()}  # copies, as a gather makes
    filled = fill_skeleton(skeleton, gathered, model)
    assert not any(t.is_meta for t in (*filled.parameters(), *filled.buffers()))
    tok, layout = AutoTokenizer.from_pretrained(hf), TokenLayout.load(hf)
    export_hf(filled, tok, layout, tmp_path / "skeleton")
    export_hf(model, tok, layout, tmp_path / "live")
    assert_same_export(tmp_path / "skeleton", tmp_path / "live", atol=0.0)
    assert not torch.equal(
        tensors(tmp_path / "live")["lm.model.embed_tokens.weight"],
        tensors(hf)["lm.model.embed_tokens.weight"],
    )


def test_deepspeed_missing_is_one_clear_line(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a))  # fmt: skip
    with pytest.raises(ValueError, match=r"deepspeed_stage_3 needs DeepSpeed.*\[deepspeed\]"):
        check_available("deepspeed_stage_3")
    check_available("fsdp")


def test_a_stage_asking_for_missing_deepspeed_stops_before_loading(
    monkeypatch, tmp_path, capsys
) -> None:
    import importlib.util

    from most.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real(n, *a))  # fmt: skip
    # The recipe's init (RUN/adapt/hf) does not even exist: nothing is read before the refusal.
    recipe = str(Path(__file__).resolve().parents[2] / "recipes" / "qwen3-30b-a3b" / "stage1.yaml")
    args = ["--trainer.strategy=deepspeed_stage_2", "--trainer.sharded_checkpoint=false"]
    assert main(["stage1", "--config", recipe, "--run", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[deepspeed]'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_stage_2", "deepspeed_stage_3"])
def test_bf16_sharded_on_gpus_exports_what_one_gpu_trains(
    speech_run: Path, tmp_path: Path, strategy: str
) -> None:
    """bf16-mixed FSDP2 / ZeRO-2 / ZeRO-3 on up to 2 GPUs against one GPU accumulating the same
    micro-batches: same files, names, shapes and fp32 dtypes, weights within bf16 rounding (the
    ZeRO export gathers the fp32 masters). ``make test-gpu``; without CUDA it fails, not skips."""
    assert torch.cuda.is_available(), "make test-gpu needs a CUDA device"
    check_available(strategy)
    n = min(torch.cuda.device_count(), 2)
    single = tmp_path / "single"
    shutil.copytree(speech_run, single)
    gpu = ("--trainer.accelerator=gpu", "--trainer.precision=bf16-mixed")
    proc = most_cli(speech_run, *gpu, f"--trainer.strategy={strategy}", f"--trainer.devices={n}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = most_cli(single, *gpu, "--trainer.devices=1", f"--trainer.accumulate={n}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    sharded, one = speech_run / "stage1" / "hf", single / "stage1" / "hf"
    worst = assert_same_export(sharded, one, atol=5e-2)
    assert all(t.dtype == torch.float32 for t in tensors(sharded).values())
    start, end = tensors(speech_run / "adapt" / "hf"), tensors(sharded)
    moved = max((end[k] - start[k]).abs().max().item() for k in end if k in start)
    # 4 AdamW steps at lr 3e-3 move a weight by at most ~0.012; the runs agree far closer than that
    assert moved > 5e-3 and worst < moved / 4, (moved, worst)
    print(f"{strategy} on {n} GPU(s): largest difference {worst:.2e}, largest move {moved:.2e}")


def test_under_fsdp_only_global_rank_zero_reads_the_weights(monkeypatch):
    from most.train.sharding import _RANK_VARIABLES, loads_weights

    for name in _RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert loads_weights("fsdp") and loads_weights("ddp")
    for name in ("LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.setenv(name, "1")
        assert not loads_weights("fsdp"), name
        assert loads_weights("ddp"), name  # every DDP rank holds the whole model
        monkeypatch.setenv(name, "0")
    assert loads_weights("fsdp")
