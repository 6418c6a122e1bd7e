"""Atomic writes: complete or absent, files follow the umask, leftovers of killed writers are removed."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from most.io import atomic_dir, atomic_write_json, read_json, remove_stale


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_atomic_dir_replaces_only_on_success(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("killed halfway")
    assert (dest / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        atomic_write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert read_json(tmp_path / "m.json") == {"a": 1}


def test_leftovers_of_a_dead_writer_are_removed(tmp_path: Path) -> None:
    import socket

    host = socket.gethostname().replace("-", "_")
    dead = tmp_path / f".out.tmp-{host}-{dead_pid()}-abc"
    dead.mkdir()
    (dead / "half.bin").write_bytes(b"x" * 10)
    old = tmp_path / f".out.old-{host}-{dead_pid()}-1"
    old.mkdir()
    live = tmp_path / f".out.tmp-{host}-{os.getpid()}-def"  # a writer still running: kept
    live.mkdir()
    foreign = tmp_path / ".out.tmp-otherhost-1-ghi"  # another host's, recent: kept
    foreign.mkdir()
    stale_file = tmp_path / f".m.json.tmp-{host}-{dead_pid()}-x"
    stale_file.write_text("{")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("a")
    atomic_write_json(tmp_path / "m.json", {})
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"out", "m.json", live.name, foreign.name}
    os.utime(foreign, (0, 0))  # a day old: removed too
    assert remove_stale(tmp_path / "out") == [foreign]
