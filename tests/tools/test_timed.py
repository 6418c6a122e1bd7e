"""`make demo`'s per-stage runner: recipe + overlay configs, extra arguments, timings."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from most.eval import summary
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


def _lane_most(tmp_path: Path, fail: str = "", sleep: float = 0.6) -> str:
    """A stand-in `most` that records, per stage, its threads, cores and start/end times, sleeps
    ``sleep`` s (a failing ``fail`` stage exits 3 at once), and prints a last line."""
    script = tmp_path / "lane_most.py"
    script.write_text(
        "import json, os, sys, time, pathlib\n"
        "stage, t0 = sys.argv[1], time.time()\n"
        f"if stage == {fail!r}:\n"
        "    print('boom in', stage, flush=True)\n"
        "    sys.exit(3)\n"
        f"time.sleep({sleep})\n"
        "rec = {'omp': os.environ.get('OMP_NUM_THREADS'), 'cores': sorted(os.sched_getaffinity(0)),\n"
        "       'start': t0, 'end': time.time()}\n"
        f"pathlib.Path({str(tmp_path)!r}, stage + '.json').write_text(json.dumps(rec))\n"
        "print('most', stage, 'done')\n"
    )
    return f"{sys.executable} {script}"


def _lane_args(tmp_path: Path, most: str) -> tuple[list[str], Path]:
    base = tmp_path / "tiny"
    base.mkdir()
    for stage in ("judge", "base", "adapt"):
        (base / f"{stage}.yaml").write_text("{}\n")
    run = tmp_path / "run"
    return ["--most", most, "--recipe", str(base), "--run", str(run)], run


def _one_core_twice(monkeypatch) -> int:
    """Two lanes on one real core, so the test runs on any machine."""
    core = timed.available_cores()[0]
    monkeypatch.setattr(timed, "available_cores", lambda: [core, core])
    return core


def test_beside_runs_the_side_stage_on_its_own_cores_while_the_others_run_in_turn(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("ARGS", raising=False)
    core = _one_core_twice(monkeypatch)
    common, run = _lane_args(tmp_path, _lane_most(tmp_path, sleep=0.8))
    assert timed.main([*common, "--beside", "judge", "base", "adapt"]) == 0
    rec = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in ("judge", "base", "adapt")}
    for r in rec.values():
        assert r["omp"] == "1" and r["cores"] == [core]
    assert rec["judge"]["start"] < rec["base"]["end"]  # side by side
    assert rec["base"]["end"] <= rec["adapt"]["start"]  # in turn
    # its output (unbuffered, though not flushed by the stage) is in its log, and its end shown
    assert "most judge done" in (run / "logs" / "judge.log").read_text()
    assert "most judge done" in capsys.readouterr().out
    lines = [line.split("\t") for line in (run / "timings.tsv").read_text().splitlines()]
    assert [parts[0] for parts in lines] == ["base", "adapt", "judge"]
    assert all(len(parts) == 3 for parts in lines)
    stages = summary.read_timings(run / "timings.tsv")
    assert summary.wall_seconds(run / "timings.tsv") < sum(stages.values())


def test_a_failing_side_stage_stops_the_other_lane(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ARGS", raising=False)
    _one_core_twice(monkeypatch)
    common, run = _lane_args(tmp_path, _lane_most(tmp_path, fail="judge", sleep=5.0))
    start = time.monotonic()
    assert timed.main([*common, "--beside", "judge", "base", "adapt"]) == 3
    assert time.monotonic() - start < 4.0  # base was stopped, not waited for
    assert not (tmp_path / "base.json").exists() and not (tmp_path / "adapt.json").exists()
    assert "boom in judge" in capsys.readouterr().out
    assert not (run / "timings.tsv").exists()


def test_a_failing_main_stage_stops_the_side_stage(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGS", raising=False)
    _one_core_twice(monkeypatch)
    common, run = _lane_args(tmp_path, _lane_most(tmp_path, fail="base", sleep=5.0))
    start = time.monotonic()
    assert timed.main([*common, "--beside", "judge", "base", "adapt"]) == 3
    assert time.monotonic() - start < 4.0
    assert not (tmp_path / "judge.json").exists() and not (tmp_path / "adapt.json").exists()
    assert not (run / "timings.tsv").exists()


def test_beside_on_one_core_runs_everything_in_turn(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    core = timed.available_cores()[0]
    monkeypatch.setattr(timed, "available_cores", lambda: [core])
    common, run = _lane_args(tmp_path, _lane_most(tmp_path, sleep=0.2))
    assert timed.main([*common, "--beside", "judge", "base", "adapt"]) == 0
    rec = {s: json.loads((tmp_path / f"{s}.json").read_text()) for s in ("judge", "base", "adapt")}
    assert rec["judge"]["end"] <= rec["base"]["start"] <= rec["adapt"]["start"]
    assert rec["judge"]["omp"] is None  # torch's own default, as without --beside
    assert not (run / "logs").exists()


def test_wall_time_counts_overlapping_stages_once(tmp_path):
    tsv = tmp_path / "timings.tsv"
    tsv.write_text(
        "data\t100\nunits\t50\t1000\njudge\t300\t1050\nbase\t200\t1051\nadapt\t5\t1251\n"
    )
    # data has no start (an older demo): in full; the rest covers 1000-1350 once
    assert summary.wall_seconds(tsv) == 100 + 350
    assert summary.read_timings(tsv)["judge"] == 300
    tsv.write_text("data\t100\t5\t7\n")
    with pytest.raises(ValueError, match=r"timings.tsv:1: expected"):
        summary.read_timings(tsv)


def test_a_side_stage_that_ends_first_records_its_own_time(tmp_path, monkeypatch):
    monkeypatch.delenv("ARGS", raising=False)
    _one_core_twice(monkeypatch)
    script = tmp_path / "timed_most.py"  # judge 0.2 s, base and adapt 1.2 s each
    script.write_text("import sys, time\ntime.sleep(0.2 if sys.argv[1] == 'judge' else 1.2)\n")
    common, run = _lane_args(tmp_path, f"{sys.executable} {script}")
    assert timed.main([*common, "--beside", "judge", "base", "adapt"]) == 0
    times = summary.read_timings(run / "timings.tsv")
    assert times["judge"] <= 1 < times["base"] + times["adapt"]
