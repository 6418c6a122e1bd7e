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
    # positionals given by name reach the parser in signature order, whatever the order given
    run_source = ("run", "source")
    assert expand_argv("ablation", ["--source", "a", "--run", "b"], positional=run_source) == [
        "b",
        "a",
    ]


def test_abbreviated_options_are_refused(tmp_path, capsys):
    assert main(["stage1", "--run", str(tmp_path), "--trainer.max_step=3"]) == 2
    assert "unrecognized arguments: --trainer.max_step=3" in capsys.readouterr().err


def test_run_is_required(capsys):
    assert main(["data", "--world.seed=3"]) == 2
    assert "required: run" in capsys.readouterr().err


ADAPT = ["--layout.n_units=16", "--layout.unit_tokenizer_hash=0123456789abcdef"]


@pytest.mark.parametrize("fault", ["read_only", "disk_full"])
def test_machine_faults_are_one_line_and_leave_nothing(fault, base_dirs, tmp_path, capsys):
    """`most adapt` into a read-only folder or a full disk (a tmpfs of each kind): exit 2, one line
    naming the path and the reason, nothing left behind. Skips (saying why) where mounting fails."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    opts = "ro,size=1m" if fault == "read_only" else "size=64k"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        argv = ["adapt", "--run", str(mnt / "run"), f"--source.model={base_dirs['qwen3_moe']}"]
        assert main([*argv, *ADAPT]) == 2
        err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("most adapt")]
        reason = "Read-only file system" if fault == "read_only" else "No space left on device"
        assert len(err) == 1 and err[0].endswith(reason) and str(mnt) in err[0], err
        assert not [p for p in mnt.rglob("*") if p.is_file()]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A ValueError a library raises inside a stage is a bug, not the user's: it propagates."""
    import most.stages.data as stage

    def broken(*args, **kwargs):
        return int("not a number")  # raised by a builtin, not by a check of ours

    monkeypatch.setattr(stage, "fingerprint", broken)
    with pytest.raises(ValueError, match="invalid literal"):
        main(["data", "--run", "/tmp/unused-most-run"])


def test_an_interrupt_names_the_command_that_resumes(monkeypatch, capsys):
    import most.stages.data as stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "fingerprint", interrupted)
    assert main(["data", "--run", "/tmp/r", "--world.seed=3", "--force=true"]) == 130
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("to resume, run: most data --run /tmp/r --world.seed=3")
    )


def test_run_after_the_recipe_overrides_the_recipes_run(tmp_path):
    from most.cli import parse_command

    recipe = "recipes/qwen3-30b-a3b/stage1.yaml"  # its `run:` is a cluster path
    args = parse_command("stage1", ["--config", recipe, "--run", str(tmp_path), "--dry-run"])
    assert args["run"] == tmp_path
