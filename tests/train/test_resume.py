"""A run killed with SIGKILL mid-run and resumed ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ARGS = [
    "--trainer.max_steps=30",
    "--trainer.ckpt_every=4",
    "--trainer.val_every=0",
    "--trainer.progress=false",
    "--trainer.threads=1",
    "--data.batch_size=4",
    "--data.max_len=48",
    "--optim.warmup_steps=3",
]


def most(run: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
    cmd = [sys.executable, "-m", "most.cli", "stage1", "--run", str(run), *ARGS, *extra]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]


def test_resume_after_sigkill_matches_uninterrupted(speech_run: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    shutil.copytree(speech_run, straight, ignore=shutil.ignore_patterns("straight"))
    reference = most(straight)

    killed = most(speech_run)
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

    finish(most(speech_run))  # same command: resumes from last.ckpt
    finish(reference)
    a = load_file(speech_run / "stage1" / "hf" / "model.safetensors")
    b = load_file(straight / "stage1" / "hf" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # and the resumed run did not simply start over
    metrics = (speech_run / "stage1" / "metrics.json").read_text()
    assert '"resumed": true' in metrics
