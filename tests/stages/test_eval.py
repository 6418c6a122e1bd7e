"""`most eval` end to end on the tiny run: the report's keys and files, the judges' ceilings, the
quality-bar summary of the report."""

import json

import pytest

from most.eval.summary import print_summary, summarize
from most.generate import Sampling
from most.run import StaleOutput
from most.stages.eval import AudioLM, EvalSettings, Judges, Sizes, evaluate
from most.stages.eval_sections import SECONDS_PER_ITEM, section_items, split_sections


def test_report_keys_and_files(evaluated):
    run, report = evaluated
    m = report["metrics"]
    for key in [
        "asr.test.wer", "asr.test.cer", "asr.test_voices.wer",
        "tts.ctc.wer_original", "tts.ctc.wer_resynth", "tts.ctc.wer_model",
        "tts.pocketsphinx.wer_original", "judge.test.wer",
        "sqa.s2t.accuracy", "sqa.s2s.accuracy", "sqa.text.accuracy", "sqa.s2t.train.accuracy",
        "sqa.s2s.original_accuracy", "sqa.s2s.resynth_accuracy", "sqa.s2s.tts_accuracy",
        "sqa.s2s.train.tts_accuracy",
        "audio_lm.wuggy.accuracy", "audio_lm.blimp.accuracy",
        "text.ppl_base", "text.ppl_model",
        "router.1.speech.load", "router.1.text.entropy",
    ]:  # fmt: skip
        assert key in m, key
    assert m["sqa.heldout_leaks.fact_overlap"] == 0
    assert m["asr.test.wer"] >= 0 and m["text.ppl_model"] > 1
    assert sum(m["router.1.speech.load"]) == pytest.approx(1.0, abs=1e-3)
    assert report["details"]["asr"]["test"]["n"] == 3
    md = (run / "eval" / "report.md").read_text()
    assert "![router_heatmap](router_heatmap.png)" in md and "asr.test.wer" in md
    assert (run / "eval" / "router_heatmap.png").stat().st_size > 1000
    assert json.loads((run / "eval" / "report.json").read_text())["metrics"] == m
    # a finished eval is not redone with the same settings, and refused with others (it names them)
    meta = report["meta"]
    same = dict(sizes=Sizes(**meta["sizes"]), sampling=Sampling(**meta["sampling"]))
    assert evaluate(run=run, **same)["meta"] == report["meta"]
    with pytest.raises(StaleOutput, match=r"\(sizes.asr 3 -> 5\); pass --force to redo eval"):
        evaluate(run=run, **{**same, "sizes": Sizes(**{**report["meta"]["sizes"], "asr": 5})})


def test_judge_ceilings_computed(evaluated):
    _, report = evaluated
    for judge in ("ctc", "pocketsphinx"):
        scores = report["details"]["tts"][judge]
        assert set(scores) == {"wer_original", "wer_resynth", "wer_model"}
        assert all(v >= 0 for v in scores.values())
    own = report["details"]["tts"]["_self_asr"]
    assert set(own) == {"wer_true_units", "wer_model_units"} and all(v >= 0 for v in own.values())
    assert report["metrics"]["tts.self_asr.wer_model_units"] == own["wer_model_units"]


def test_summary_rows(evaluated):
    _, report = evaluated
    rows = {r.name: r for r in summarize(report)}
    asr = rows["ASR WER, seen voices"]
    assert asr.value == report["metrics"]["asr.test.wer"] and asr.passed == (asr.value <= 0.10)
    assert summarize({"asr.test.wer": 0.05})[0].passed is True
    assert summarize({})[0].passed is None
    tts = {"tts.ctc.wer_model": 0.3, "tts.ctc.wer_resynth": 0.2}
    assert summarize(tts)[2].value == pytest.approx(1.5) and summarize(tts)[2].passed
    # a judge that cannot read the resynthesised truth gives no ceiling: n/a, not a pass
    assert summarize({"tts.ctc.wer_model": 1.0, "tts.ctc.wer_resynth": 1.0})[2].passed is None
    print_summary(report)


def test_sections_in_two_processes_score_what_one_process_scores(evaluated, tmp_path):
    run, report = evaluated
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("data", "units", "base", "stage2", "judge"):
        (copy / name).symlink_to(run / name)
    meta = report["meta"]
    settings = dict(sizes=Sizes(**meta["sizes"]), sampling=Sampling(**meta["sampling"]))
    two = evaluate(run=copy, **settings, judges=Judges(), audio_lm=AudioLM(), workers=2)
    assert two["meta"]["workers"] == 2 and meta["workers"] == 1
    assert list(two["metrics"].items()) == list(report["metrics"].items())  # values and order
    assert two["details"] == report["details"]
    assert set(two["meta"]["seconds"]) == set(meta["seconds"])
    assert (copy / "eval" / "router_heatmap.png").stat().st_size > 1000
    assert sorted(p.name for p in (copy / "eval" / "samples").iterdir()) == sorted(
        p.name for p in (run / "eval" / "samples").iterdir()
    )


def test_sections_split_by_estimated_time():
    settings = EvalSettings(sizes=Sizes(asr=300, tts=300, sqa=144, text=100, wuggy=300, blimp=60))
    names = ["asr", "tts", "sqa", "audio_lm", "text", "router"]
    lanes = split_sections(names, settings, 2)
    assert sorted(n for lane in lanes for n in lane) == sorted(names)  # each section once
    assert all(lane == sorted(lane, key=names.index) for lane in lanes)  # report order kept
    cost = [sum(SECONDS_PER_ITEM[n] * section_items(n, settings) for n in lane) for lane in lanes]
    assert max(cost) < 0.6 * sum(cost)
    assert split_sections(names, settings, 1) == [names]
    assert split_sections(["asr"], settings, 4) == [["asr"]]  # no idle process
