"""``most curriculum_ablation`` (stages replaced by a fake that writes what they would): both
variants get the same total steps, seeds run in order, the noise comes from the seed spread and
decides the verdicts, a finished pair is skipped and other settings are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import most.tools.curriculum_ablation as T
from most.cli import parse_command
from most.eval.curriculum_ablation import summarize
from most.io import atomic_write_json

STEPS = {"text": 2, "speech": 3, "music": 2, "integrate": 1, "joint": 4}
# (variant, seed) -> ASR WER and music note accuracy the fake eval reports
SCORES = {
    ("curriculum", 1234): (0.30, 0.50),
    ("joint", 1234): (0.50, 0.52),
    ("joint", 1235): (0.45, 0.49),
}


def _source(tmp: Path) -> Path:
    src = tmp / "source"
    for name in ("data", "units", "judge", "base", "adapt/hf"):
        (src / name).mkdir(parents=True)
    (src / "adapt" / "hf" / "config.json").write_text("{}")
    return src


def _fake_most(calls: list):
    def fake(command: str, args: list[str], log: Path) -> None:
        vdir = Path(args[args.index("--run") + 1])
        calls.append((vdir.name, command, args))
        if command == "curriculum":
            steps = json.loads(next(a for a in args if a.startswith("--steps="))[8:])
            for phase, n in steps.items():
                where = (
                    vdir / "stage1" if phase == "joint" else vdir / "curriculum" / phase / "stage1"
                )
                atomic_write_json(where / "metrics.json", {"steps": n, "wall_s": 6.0 * n})
            return
        variant, _, seed = vdir.name.rpartition("_s")
        wer, note = SCORES[(variant, int(seed))]
        metrics = {"asr.test.wer": wer, "music.note_acc": note, "text.ppl_model": 10.0}
        atomic_write_json(vdir / "eval" / "report.json", {"metrics": metrics})

    return fake


def test_curriculum_against_joint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    monkeypatch.setattr(T, "_most", _fake_most(calls))
    src, out = _source(tmp_path), tmp_path / "ablation"
    report = T.curriculum_ablation(run=out, source=src, steps=STEPS)
    assert [(v, c) for v, c, _ in calls] == [
        ("curriculum_s1234", "curriculum"),
        ("curriculum_s1234", "eval"),
        ("joint_s1234", "curriculum"),
        ("joint_s1234", "eval"),
        ("joint_s1235", "curriculum"),
        ("joint_s1235", "eval"),
    ]
    joint_args = calls[2][2]
    assert '--steps={"joint": 12}' in joint_args and "--specialists={}" in joint_args
    assert "--data.seed=1234" in joint_args and "--integrate=null" in joint_args
    assert "--specialists={}" not in calls[0][2]
    assert (out / "joint_s1234" / "adapt").resolve() == (src / "adapt").resolve()
    for _, command, args in calls[:4]:  # the real parsers take every command the tool gives
        kwargs = parse_command(command, args)
        if command == "curriculum":
            assert sum(kwargs["steps"].values()) == 12 and kwargs["data"].seed == 1234
    assert parse_command("curriculum", joint_args)["specialists"] == {}
    rows = report["rows"]
    assert {r["steps"] for seeds in rows.values() for r in seeds.values()} == {12}
    assert rows["curriculum"]["1234"]["phases"] == 5 and rows["joint"]["1235"]["phases"] == 1
    s = report["summary"]
    assert s["noise"]["asr"] == pytest.approx(0.05)
    assert s["verdicts"]["asr"]["verdict"] == "better"  # 0.30 vs 0.475: gain 0.175 > 0.05
    assert s["verdicts"]["music_note"]["verdict"] == "within noise"  # 0.50 vs 0.505, noise 0.03
    md = (out / "report.md").read_text()
    assert "noise" in md and "| `joint` | 1235 | 0.450 |" in md
    # a second call skips every finished pair; other settings are refused
    calls.clear()
    T.curriculum_ablation(run=out, source=src, steps=STEPS)
    assert calls == []
    with pytest.raises(ValueError, match="other settings"):
        T.curriculum_ablation(run=out, source=src, steps={**STEPS, "joint": 5})
    with pytest.raises(ValueError, match="unknown variants"):
        T.curriculum_ablation(run=out, source=src, steps=STEPS, seeds={"vanilla": [1]})


def test_no_noise_estimate_with_one_seed_each() -> None:
    row = {"metrics": {"asr": 0.3, "text_ppl": 9.0}}
    other = {"metrics": {"asr": 0.4, "text_ppl": 9.0}}
    s = summarize({"curriculum": {1: row}, "joint": {1: other}})
    assert s["noise"]["asr"] is None
    assert s["verdicts"]["asr"]["verdict"] == "no noise estimate"
    assert s["verdicts"]["asr"]["gain"] == pytest.approx(0.1)
