"""`most stage1` (and stage 2 after it) at tiny size: losses fall, HF export reloads, re-runs are
no-ops, bad input refused; resumption after SIGKILL, DDP on two CPU processes, ``--dry_run`` on the
MoST-scale recipes, bf16-mixed on the CPU and (marker ``gpu``) on one GPU."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from most.adapt import SourceSection
from most.cli import main as most_main
from most.layout import LayoutError, TokenLayout
from most.modeling import MostForCausalLM
from most.run import StaleOutput
from most.stages.adapt import adapt
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

    # finished: a re-run is a no-op (the weights file is not rewritten); other settings are refused
    before = (speech_run / "stage2" / "hf" / "model.safetensors").stat().st_mtime_ns
    stage2(run=speech_run, data=DATA, optim=OPTIM, trainer=FAST, speech_mode="units")
    assert (speech_run / "stage2" / "hf" / "model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(StaleOutput, match=r"speech_mode units -> text_then_units\); pass --force"):
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


def test_a_time_cap_that_cuts_the_budget_is_reported(speech_run: Path, capsys) -> None:
    """The max_time_min safety stop ending training early is said on stderr and in metrics.json."""
    capped = TrainerConfig(max_steps=10_000, max_time_min=0.005, val_every=0, ckpt_every=50, progress=False)  # fmt: skip
    stage1(run=speech_run, data=DATA, optim=OPTIM, trainer=capped)
    metrics = json.loads((speech_run / "stage1" / "metrics.json").read_text())
    assert metrics["cut_by_time_cap"] is True and 0 < metrics["steps"] < 10_000
    err = capsys.readouterr().err
    assert f"ended training at step {metrics['steps']} of 10000" in err
    assert "schedule did not finish" in err


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


def adapted_run(speech_run: Path, base: Path, copy: Path) -> Path:
    """``speech_run`` with ``base`` through ``most adapt`` as ``adapt/hf`` (not the plain
    stand-in), and a copy of it for a second run."""
    shutil.rmtree(speech_run / "adapt")
    adapt(run=speech_run, source=SourceSection(model=base))
    shutil.copytree(speech_run, copy / "run")
    return copy / "run"


def test_stage1_bf16_on_cpu_tracks_fp32(speech_run: Path, base_dirs, tmp_path_factory) -> None:
    """bf16-mixed on the CPU (the adapted model's experts padded for oneDNN) tracks fp32."""
    fp32_run = adapted_run(speech_run, base_dirs["qwen3_moe"], tmp_path_factory.mktemp("fp32"))
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


@pytest.mark.gpu
def test_stage1_bf16_on_gpu_tracks_cpu_fp32(speech_run: Path, base_dirs, tmp_path_factory) -> None:
    """On one GPU in bf16-mixed stage 1 tracks the CPU's fp32 loss curve and exports fp32 weights
    (``make test-gpu``; without CUDA it fails rather than skips)."""
    assert torch.cuda.is_available(), "make test-gpu needs a CUDA device"
    cpu_run = adapted_run(speech_run, base_dirs["qwen3_moe"], tmp_path_factory.mktemp("cpu"))
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


@pytest.mark.parametrize("family", ["deepseek-v2-lite", "qwen3-30b-a3b"])
def test_recipe_dry_run_prints_report(realdata: Path, family: str, tmp_path: Path, capsys) -> None:
    """``--dry_run``: the MoST-scale recipes validate against the published configs, no weights
    loaded."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_function_arguments(stage1)
    cfg = parser.instantiate_classes(
        parser.parse_path(str(REPO / "recipes" / family / "stage1.yaml"))
    )
    cfg.init = realdata / "moe_configs" / f"{family}.config.json"
    cfg.run = tmp_path  # nothing is read from or written to the run folder
    cfg.dry_run = True
    stage1(**vars(cfg))
    out = capsys.readouterr().out
    assert '"world_size": 64' in out and '"global_batch": 512' in out
    assert not any(tmp_path.iterdir())


RESUME_ARGS = [
    "--trainer.max_steps=30",
    "--trainer.ckpt_every=4",
    "--trainer.val_every=0",
    "--trainer.progress=false",
    "--trainer.threads=1",
    "--data.batch_size=4",
    "--data.max_len=48",
    "--optim.warmup_steps=3",
]


def most_stage1(run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    cmd = [sys.executable, "-m", "most.cli", "stage1", "--run", str(run), *RESUME_ARGS, *extra]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def test_resume_after_sigkill_matches_uninterrupted(speech_run: Path, tmp_path: Path) -> None:
    """A run killed with SIGKILL mid-run and resumed ends with the same weights as an uninterrupted
    run."""
    straight = tmp_path / "straight"
    shutil.copytree(speech_run, straight, ignore=shutil.ignore_patterns("straight"))
    reference = most_stage1(straight)

    killed = most_stage1(speech_run)
    ckpt_dir = speech_run / "stage1" / "ckpt"
    deadline = time.monotonic() + 240
    while not (ckpt_dir / "step=8.ckpt").exists():  # killed mid-run, after two checkpoints
        assert killed.poll() is None and time.monotonic() < deadline, "run ended before the kill"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    assert not (speech_run / "stage1" / "hf").exists()
    last = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert 4 <= last["global_step"] < 30  # last.ckpt may trail step=8.ckpt by one save
    assert last["MixtureDataModule"]["position"] == last["global_step"]

    finish(most_stage1(speech_run))  # same command: resumes from last.ckpt
    finish(reference)
    a = load_file(speech_run / "stage1" / "hf" / "model.safetensors")
    b = load_file(straight / "stage1" / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the resumed run did not simply start over
    metrics = (speech_run / "stage1" / "metrics.json").read_text()
    assert '"resumed": true' in metrics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes(speech_run: Path) -> None:
    """DDP with 2 CPU processes (gloo): both ranks train on different batches, rank 0 exports
    once."""
    env = {
        **os.environ,
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    cmd = [
        sys.executable,
        "-m",
        "most.cli",
        "stage1",
        "--run",
        str(speech_run),
        "--trainer.strategy=ddp",
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.threads=1",
        "--trainer.max_steps=6",
        "--trainer.ckpt_every=3",
        "--trainer.val_every=3",
        "--trainer.log_every=1",
        "--trainer.progress=false",
        "--data.batch_size=2",
        "--data.max_len=48",
        "--data.val_batches=1",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    assert "All distributed processes registered" in proc.stderr + proc.stdout

    out = speech_run / "stage1"
    AutoModelForCausalLM.from_pretrained(str(out / "hf"))
    with open(out / "logs" / "metrics.csv") as f:
        steps = {int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")}
    assert max(steps) == 5
    # 6 optimizer steps x 2 ranks: each rank consumed its own 6 batches
    import torch

    last = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 6 and last["MixtureDataModule"]["position"] == 6
