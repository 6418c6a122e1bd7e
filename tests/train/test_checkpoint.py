"""Checkpoints survive kill -9 mid-write, a full disk and a torn file, on a filesystem other than TMPDIR.

The fault tests mount a small tmpfs (root only); where mounting is impossible they skip and say why.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from most.train.checkpoint import readable, resume_point, save_atomic


@contextlib.contextmanager
def tmpfs(size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` (e.g. ``"8m"``) mounted on a new folder; skips when not possible."""
    where = Path(tempfile.mkdtemp(prefix="most-tmpfs-"))
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def state(mib: int, value: float) -> dict:
    return {"w": torch.full((mib * 262_144,), value), "global_step": int(value)}


def test_save_is_all_or_nothing(tmp_path: Path) -> None:
    path = save_atomic(state(1, 1.0), tmp_path / "last.ckpt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("fails halfway through the write")

    with pytest.raises(RuntimeError, match="halfway"):
        save_atomic({**state(1, 2.0), "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_resume_point_skips_torn_checkpoints(tmp_path: Path) -> None:
    for step in (4, 8):
        save_atomic(state(1, step), tmp_path / f"step={step}.ckpt")
    save_atomic(state(1, 8), tmp_path / "last.ckpt")
    assert resume_point(tmp_path) == (tmp_path / "last.ckpt", [])
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: len(data) // 3])  # cut short by a crash
    (tmp_path / "step=8.ckpt").write_bytes(data[:100])
    start, broken = resume_point(tmp_path)
    assert start == tmp_path / "step=4.ckpt"
    assert broken == [tmp_path / "last.ckpt", tmp_path / "step=8.ckpt"]
    assert resume_point(tmp_path / "empty") == (None, [])


def test_sharded_folders_are_whole_only_with_their_metadata(tmp_path: Path) -> None:
    """An FSDP sharded checkpoint (torch DCP) is whole once both its ``.metadata`` and Lightning's
    ``meta.pt`` exist; a DeepSpeed folder once it holds anything."""
    fsdp = tmp_path / "step=4.ckpt"
    fsdp.mkdir()
    (fsdp / "__0_0.distcp").write_bytes(b"shard")
    (fsdp / "meta.pt").write_bytes(b"meta")
    assert not readable(fsdp)  # the shards' index is written last
    (fsdp / ".metadata").write_bytes(b"index")
    assert readable(fsdp)
    assert resume_point(tmp_path) == (fsdp, [])
    deepspeed = tmp_path / "last.ckpt"
    deepspeed.mkdir()
    assert not readable(deepspeed)
    (deepspeed / "latest").write_text("global_step4")
    assert readable(deepspeed)


WRITER = """
import sys, torch
from pathlib import Path
from most.train.checkpoint import save_atomic
path = Path(sys.argv[1])
for i in range(1, 10_000):
    save_atomic({"w": torch.full((6 * 262_144,), float(i)), "global_step": i}, path)
    print(i, flush=True)
"""


def test_kill_during_write_on_another_filesystem(tmp_path: Path) -> None:
    """SIGKILL while a 6 MiB checkpoint is being written to a tmpfs (TMPDIR is elsewhere): the
    file is always a whole earlier checkpoint, and the killed writer's temporary goes next time."""
    with tmpfs("64m") as mnt:
        assert os.stat(mnt).st_dev != os.stat(tempfile.gettempdir()).st_dev
        path = mnt / "ckpt" / "last.ckpt"
        for attempt in range(3):
            proc = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
            )
            assert proc.stdout is not None
            saved = int(proc.stdout.readline())  # at least one whole save
            time.sleep(0.05 + 0.03 * attempt)  # then kill at varying points of later writes
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            assert readable(path)
            assert torch.load(path, weights_only=True)["global_step"] >= saved
        leftovers = [p for p in path.parent.iterdir() if p.name != "last.ckpt"]
        save_atomic(state(1, 0), path)  # the next write clears the dead writers' temporaries
        assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
        assert len(leftovers) <= 3


def test_disk_full_keeps_the_previous_checkpoint() -> None:
    with tmpfs("4m") as mnt:
        path = save_atomic(state(1, 1.0), mnt / "last.ckpt")
        with pytest.raises(OSError) as err:
            save_atomic(state(3, 2.0), path)  # 1 + 3 MiB + overhead > 4 MiB
        assert err.value.errno == 28  # ENOSPC
        assert torch.load(path, weights_only=True)["global_step"] == 1
        assert sorted(p.name for p in mnt.iterdir()) == ["last.ckpt"]


def test_stage_resumes_from_the_newest_whole_checkpoint(speech_run: Path, capsys) -> None:
    """A torn ``last.ckpt`` (and a torn newest step file) is reported and skipped; training
    resumes from the newest whole checkpoint and reaches the new step budget."""
    from most.run import Run
    from most.stages.stage1 import stage1
    from most.train.config import TrainerConfig
    from most.train.datamodule import DataConfig

    data = DataConfig(batch_size=4, max_len=48)
    stage1(run=speech_run, data=data, trainer=TrainerConfig(max_steps=8, val_every=0, ckpt_every=4, progress=False, threads=1))  # fmt: skip
    stage = Run(speech_run).stage("stage1")
    ckpt = stage / "ckpt"
    assert {"last.ckpt", "step=4.ckpt", "step=8.ckpt"} <= {p.name for p in ckpt.iterdir()}
    import shutil

    shutil.rmtree(stage / "hf")  # the run "crashed" before its export
    for name in ("last.ckpt", "step=8.ckpt"):
        data_ = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data_[: len(data_) // 2])
    capsys.readouterr()
    stage1(run=speech_run, data=data, trainer=TrainerConfig(max_steps=10, val_every=0, ckpt_every=4, progress=False, threads=1))  # fmt: skip
    out = capsys.readouterr().out
    assert "last.ckpt is not a whole checkpoint" in out and "step=8.ckpt is not a whole" in out
    assert f"resuming from {ckpt / 'step=4.ckpt'}" in out
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["resumed"] is True and metrics["steps"] == 10, (metrics, out[-3000:])
    assert (ckpt / "last.ckpt.broken").is_file()
    assert torch.load(ckpt / "last.ckpt", weights_only=False)["global_step"] == 8  # rewritten whole
