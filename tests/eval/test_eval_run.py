"""`most eval` end to end on the tiny run, `most release` on its output, and the held-out check."""

import hashlib
import json
import shutil

import datasets
import pytest
import yaml

from most.eval.report import flat_metrics
from most.eval.sqa import heldout_leaks
from most.eval.summary import print_summary, summarize
from most.generate import Sampling
from most.stages.eval import AudioLM, Judges, Sizes, evaluate
from most.stages.release import ReleaseSource, release

SIZES = Sizes(asr=3, tts=2, sqa=1, text=1, wuggy=3, blimp=2, router=2)
SAMPLING = Sampling(max_new_tokens=8, batch_size=4)


@pytest.fixture(scope="module")
def evaluated(eval_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("evaluated")
    for name in ("data", "units", "base", "stage2", "judge"):
        (run / name).symlink_to(eval_run / name)
    report = evaluate(run=run, sizes=SIZES, sampling=SAMPLING, judges=Judges(), audio_lm=AudioLM())
    return run, report


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
    # a finished eval is not redone
    assert evaluate(run=run, sizes=SIZES)["meta"] == report["meta"]


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
    from most.eval.summary import main

    assert main([str(evaluated[0] / "eval" / "report.json")]) in (0, 1)
    assert main([str(evaluated[0] / "missing.json")]) == 2


def test_summary_wall_time_row(tmp_path):
    from most.eval.summary import read_timings

    tsv = tmp_path / "timings.tsv"
    tsv.write_text("data\t120\nbase\t400\nbase\t420\nstage1\t1500\n")
    times = read_timings(tsv)
    assert times == {"data": 120.0, "base": 420.0, "stage1": 1500.0}  # the last run of a stage
    row = summarize({}, times)[0]
    assert row.name.startswith("demo wall time") and row.value == pytest.approx(34.0)
    assert row.passed is True
    assert summarize({}, {"stage1": 50 * 60})[0].passed is False
    tsv.write_text("data 120\n")
    with pytest.raises(ValueError, match=r"timings\.tsv:1"):
        read_timings(tsv)


def test_flat_metrics_shape():
    results = {"asr": {"test": {"wer": 0.1, "cer": 0.05}}, "text": {"ppl_model": 3.0}}
    assert flat_metrics(results) == {
        "asr.test.wer": 0.1,
        "asr.test.cer": 0.05,
        "text.ppl_model": 3.0,
    }


def test_heldout_never_trained_on(eval_run, tmp_path):
    assert heldout_leaks(eval_run)["fact_overlap"] == 0
    # a leaked copy is caught: the held-out question inserted into qa_train and the instructions
    leaked = tmp_path / "leaked"
    shutil.copytree(eval_run / "data", leaked / "data")
    sqa = datasets.load_from_disk(str(eval_run / "data" / "sqa"))
    both = datasets.concatenate_datasets([sqa["qa_train"], sqa["qa_heldout"]])
    datasets.DatasetDict(qa_train=both, qa_heldout=sqa["qa_heldout"]).save_to_disk(
        str(leaked / "data" / "sqa2")
    )
    shutil.rmtree(leaked / "data" / "sqa")
    (leaked / "data" / "sqa2").rename(leaked / "data" / "sqa")
    leaks = heldout_leaks(leaked)
    assert leaks["fact_overlap"] == 1 and leaks["question_in_qa_train"] == 1


def test_release_reload_identity(evaluated):
    run, _ = evaluated
    out = release(run=run, source=ReleaseSource())
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                 "token_layout.json", "unit_tokenizer/unit_tokenizer.json", "vocoder.json",
                 "README.md", "eval/report.json", "SHA256SUMS"):  # fmt: skip
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))
    check = json.loads((out / "eval" / "reload_check.json").read_text())
    assert check == {"examples": 3, "identical": True}
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0") and "asr.test.wer" in card
    meta = yaml.safe_load(card.split("---")[1])
    names = {m["name"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert {"asr.test.wer", "tts.ctc.wer_model", "sqa.s2t.accuracy"} <= names
    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
