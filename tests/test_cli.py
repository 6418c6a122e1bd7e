"""The CLI convention: bad keys and values fail in one line; shell-style arguments are expanded.
(That every recipe parses against its command is tests/test_recipes.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from most.cli import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--world.bogus=1"], "--world.bogus"),
        (["--world.n_people=abc"], "world.n_people"),
        (["--world.n_people=1"], "world.n_people"),
    ],
)
def test_bad_keys_and_values_fail_in_one_line(args, needle, capsys, tmp_path):
    assert main(["data", "--run", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "data").exists()


def test_unknown_command():
    proc = subprocess.run(
        [sys.executable, "-m", "most.cli", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "unknown command 'nope'" in proc.stderr


def test_shell_style_arguments_are_expanded():
    from most.cli import expand_argv

    assert expand_argv("asr", ["a.wav", "--model", "m", "b.flac"]) == [
        '["a.wav", "b.flac"]',
        "--model",
        "m",
    ]
    assert expand_argv("tts", ["hello", "-o", "x.wav"]) == ["hello", "--output", "x.wav"]
    assert expand_argv("data", ["--world.seed=3"]) == ["--world.seed=3"]
    flags = frozenset({"force", "dry_run"})
    assert expand_argv("stage1", ["--dry-run", "--num-proc", "2"], flags) == [
        "--dry_run=true",
        "--num_proc",
        "2",
    ]
    assert expand_argv("stage1", ["--force", "false"], flags) == ["--force", "false"]
    named = frozenset({"files", "text"})
    assert expand_argv("asr", ['--files=["a.wav"]', "-m", "m"], positional=named) == [
        '["a.wav"]',
        "--model",
        "m",
    ]
    assert expand_argv("tts", ["--text", "hi", "-o", "x.wav"], positional=named) == [
        "hi",
        "--output",
        "x.wav",
    ]
