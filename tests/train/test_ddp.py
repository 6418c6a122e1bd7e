"""DDP with 2 CPU processes (gloo): both ranks train on different batches, rank 0 exports once."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

from transformers import AutoModelForCausalLM


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes(speech_run: Path) -> None:
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
