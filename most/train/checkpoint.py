"""Checkpoint files written atomically beside their destination, and the resume point chosen by
reading them.

:class:`AtomicCheckpointIO` streams ``torch.save`` into a temporary file in the checkpoint folder
itself, fsyncs it and renames it over the destination, so a kill or a full disk leaves the previous
checkpoint intact on any filesystem (Lightning's default stages the file in the system temp folder
and moves it, which is a copy over the real file when the run folder is on another filesystem).
:func:`resume_point` picks the newest checkpoint that reads back whole.
"""

from __future__ import annotations

import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from most.io import fsync_dir, remove_stale, temp_prefix

STEP_FILE = re.compile(r"step=(\d+)(?:-v\d+)?\.ckpt$")
DCP_META, LIGHTNING_META = ".metadata", "meta.pt"  # the files a whole FSDP sharded checkpoint holds


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose save is temp file in the same folder -> fsync -> rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_atomic(checkpoint, Path(path))


def save_atomic(obj: Any, path: Path) -> Path:
    """``torch.save(obj)`` to ``path`` so that ``path`` is the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            sink = _Sink(f)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:  # torch's zip writer hides the OSError (ENOSPC, EIO)
                    raise sink.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class _Sink:
    """A binary file that remembers the first OSError of a write, for :func:`save_atomic`."""

    def __init__(self, f) -> None:
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name: str):
        return getattr(self.f, name)


def readable(path: Path) -> bool:
    """Whether ``path`` is a whole checkpoint: a zip archive whose every member passes its CRC."""
    if path.is_dir():  # sharded checkpoints are folders
        if (path / DCP_META).exists() or (path / LIGHTNING_META).exists():  # FSDP (torch DCP)
            return (path / DCP_META).is_file() and (path / LIGHTNING_META).is_file()
        return any(path.iterdir())  # DeepSpeed
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError):
        return False


def resume_point(ckpt_dir: Path) -> tuple[Path | None, list[Path]]:
    """The newest whole checkpoint in ``ckpt_dir`` (``last.ckpt``, else ``step=N.ckpt`` by step) and
    the broken ones found on the way, newest first."""
    candidates = []
    last = ckpt_dir / "last.ckpt"
    if last.exists():
        candidates.append(last)
    steps = [
        (int(m.group(1)), p)
        for p in ckpt_dir.glob("step=*.ckpt")
        if (m := STEP_FILE.search(p.name))
    ]
    candidates += [p for _, p in sorted(steps, reverse=True)]
    broken = []
    for path in candidates:
        if readable(path):
            return path, broken
        broken.append(path)
    return None, broken
