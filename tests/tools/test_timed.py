"""`make demo`'s per-stage runner: recipe + overlay configs, extra arguments, timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from most.tools import timed


def _fake_most(tmp_path: Path) -> str:
    """A stand-in for the `most` command that records its argv as JSON."""
    script = tmp_path / "fake_most.py"
    script.write_text(
        "import json, sys, pathlib\n"
        f"pathlib.Path({str(tmp_path / 'argv.json')!r}).write_text(json.dumps(sys.argv[1:]))\n"
    )
    return f"{sys.executable} {script}"


def _recipes(tmp_path: Path) -> tuple[Path, Path]:
    base, over = tmp_path / "tiny", tmp_path / "music"
    base.mkdir()
    over.mkdir()
    for stage in ("data", "stage1"):
        (base / f"{stage}.yaml").write_text("{}\n")
    (over / "stage1.yaml").write_text("{}\n")
    return base, over


def test_overlay_config_follows_the_recipe_where_the_overlay_has_the_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGS", raising=False)
    monkeypatch.setenv("ARGS_stage1", "--trainer.max_steps=7")
    base, over = _recipes(tmp_path)
    run, most = tmp_path / "run", _fake_most(tmp_path)
    common = ["--most", most, "--recipe", str(base), "--run", str(run), "--overlay", str(over)]
    assert timed.main([*common, "stage1"]) == 0
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == [
        "stage1", "--config", str(base / "stage1.yaml"), "--config", str(over / "stage1.yaml"),
        "--run", str(run), "--trainer.max_steps=7",
    ]  # fmt: skip
    assert timed.main([*common, "data"]) == 0  # no music/data.yaml: the recipe alone
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == ["data", "--config", str(base / "data.yaml"), "--run", str(run)]
    assert [line.split("\t")[0] for line in (run / "timings.tsv").read_text().splitlines()] == [
        "stage1",
        "data",
    ]


def test_overlays_apply_in_order(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGS", raising=False)
    monkeypatch.delenv("ARGS_stage1", raising=False)
    base, over = _recipes(tmp_path)
    second = tmp_path / "second"
    second.mkdir()
    (second / "stage1.yaml").write_text("{}\n")
    run, most = tmp_path / "run", _fake_most(tmp_path)
    common = ["--most", most, "--recipe", str(base), "--run", str(run)]
    assert timed.main([*common, "--overlay", str(over), "--overlay", str(second), "stage1"]) == 0
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv == [
        "stage1", "--config", str(base / "stage1.yaml"), "--config", str(over / "stage1.yaml"),
        "--config", str(second / "stage1.yaml"), "--run", str(run),
    ]  # fmt: skip


def test_a_missing_overlay_folder_is_refused(tmp_path):
    base, _ = _recipes(tmp_path)
    args = ["--recipe", str(base), "--run", str(tmp_path / "run"), "--most", _fake_most(tmp_path)]
    with pytest.raises(SystemExit, match=r"OVERLAY .*nope is not a folder"):
        timed.main([*args, "--overlay", str(tmp_path / "nope"), "data"])
    assert not (tmp_path / "argv.json").exists()
