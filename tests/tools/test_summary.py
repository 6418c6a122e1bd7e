"""`most summary`: the quality-bar table of a run, and an exit status that says whether it passed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from most.cli import main
from most.io import atomic_write_json
from most.run import Run
from most.tools.summary import summary

PASSING = {
    "asr.test.wer": 0.05,
    "asr.test_voices.wer": 0.15,
    "tts.ctc.wer_model": 0.3,
    "tts.ctc.wer_resynth": 0.2,
    "audio_lm.wuggy.accuracy": 0.8,
}


def write_run(root: Path, metrics: dict, timings: str | None = None) -> Path:
    run = Run(root)
    atomic_write_json(run.report, {"metrics": metrics, "details": {}, "meta": {}})
    if timings is not None:
        run.timings.write_text(timings)
    return root


def test_a_passing_run_exits_0(tmp_path, capsys):
    run = write_run(tmp_path, PASSING, timings="data\t120\nstage1\t1500\n")
    assert summary(run) is True
    assert main(["summary", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "quality bar" in out and "ASR WER, seen voices" in out
    assert "demo wall time" in out and "data 2.0, stage1 25.0" in out
    # checks without inputs (no spoken QA here) are n/a, not failures
    assert "n/a" in out
    assert f"report: {run / 'eval' / 'report.md'}" in out and "release:" not in out  # none yet


@pytest.mark.parametrize(
    ("metrics", "timings"),
    [
        ({**PASSING, "asr.test.wer": 0.5}, None),  # one metric misses its target
        (PASSING, "data\t120\nstage1\t3000\n"),  # the demo took 52 min
    ],
)
def test_a_missed_target_exits_1(tmp_path, metrics, timings):
    run = write_run(tmp_path, metrics, timings)
    assert summary(run) is False
    assert main(["summary", "--run", str(run)]) == 1


def test_the_process_exit_status(tmp_path):
    """What make and CI see: `most summary` as a process."""
    failing = write_run(tmp_path / "fail", {**PASSING, "asr.test_voices.wer": 0.5})
    cmd = [sys.executable, "-m", "most.cli", "summary", "--run"]
    assert subprocess.run([*cmd, str(failing)], capture_output=True).returncode == 1
    passing = write_run(tmp_path / "pass", PASSING)
    assert subprocess.run([*cmd, str(passing)], capture_output=True).returncode == 0


def test_a_run_without_report_exits_2(tmp_path, capsys):
    assert main(["summary", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no eval report" in err and "most eval" in err
    Run(tmp_path).timings.write_text("data 120\n")  # a malformed timings file, too
    write_run(tmp_path, PASSING)
    assert main(["summary", "--run", str(tmp_path)]) == 2
    assert "timings.tsv:1" in capsys.readouterr().err


def test_a_time_cap_cut_fails_its_stage_row(tmp_path, capsys):
    """A training stage whose time cap cut its step budget fails the summary, loudly."""
    run = write_run(tmp_path, PASSING)
    r = Run(run)
    for stage, steps, cut in (("base", 400, False), ("stage1", 1700, True)):
        r.stage(stage).mkdir()
        atomic_write_json(r.stage(stage) / "metrics.json", {"steps": steps, "cut_by_time_cap": cut})
    assert main(["summary", "--run", str(run)]) == 1
    out = capsys.readouterr().out
    assert "stage1 steps trained" in out and "1700" in out and "base steps trained" in out
    atomic_write_json(r.stage("stage1") / "metrics.json", {"steps": 2100, "cut_by_time_cap": False})
    assert main(["summary", "--run", str(run)]) == 0
