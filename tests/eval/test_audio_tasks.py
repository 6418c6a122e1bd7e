"""Audio-task scoring (ASR, S->T, paralinguistic) and the adapter ablation's report."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from most.corpora.schema import SPEECH_FEATURES, SQA_FEATURES, audio_value
from most.data.paraling import PARALING_TASKS, QUESTIONS, answer, heard
from most.eval.audio_tasks import evaluate_audio_tasks, exact, headline
from most.generate import Reply
from most.io import read_json
from most.tools.adapter_ablation import summarize, variant_args, write_report

VOICES = ["en-us+m3:165:45", "en-gb-scotland+f3:150:65", "en-029+m1:175:30"]


def speech_data(n: int = 6) -> datasets.DatasetDict:
    rng = np.random.default_rng(0)
    rows = [
        {"id": f"t{i}", "audio": audio_value(rng.normal(0, 0.1, 3000 + 300 * i).astype(np.float32)),
         "text": f"w{i} w{i + 1}", "voice": VOICES[i % 3], "task": "asr", "duration": 0.2}
        for i in range(n)
    ]  # fmt: skip
    return datasets.DatasetDict(test=datasets.Dataset.from_list(rows, features=SPEECH_FEATURES))


def sqa_data() -> datasets.DatasetDict:
    rows = [
        {**r, "fact_id": "f", "answer": "tarsk", "answer_sentence": "It is Tarsk.",
         "answer_audio": r["audio"], "answer_voice": r["voice"]}
        for r in speech_data(2)["test"]
    ]  # fmt: skip
    return datasets.DatasetDict(qa_heldout=datasets.Dataset.from_list(rows, features=SQA_FEATURES))


class Oracle:
    """A stand-in model that knows every answer from the audio it is given (matched by content)."""

    def __init__(self, speech, wrong_task: str | None = None) -> None:
        self.by_audio = {}
        from most.corpora.schema import decode_audio

        for row in speech:
            wav = np.asarray(decode_audio(row["audio"]), dtype=np.float32)
            self.by_audio[heard(wav, row["id"]).tobytes()] = row
            self.by_audio[wav.tobytes()] = row
        self.wrong_task = wrong_task

    def asr(self, wavs, sampling):
        return [self.by_audio[w.tobytes()]["text"] for w in wavs]

    def chat(self, messages, sampling):
        (m,) = messages
        row = self.by_audio[m["audio"].tobytes()]
        if m.get("text") is None:
            return Reply("Tarsk.")
        task = next(t for t, q in QUESTIONS.items() if q == m["text"])
        said = answer(task, row["voice"], row["id"])
        return Reply("no idea" if task == self.wrong_task else said.capitalize() + ".")


def test_scores_are_right_for_a_model_that_knows_and_wrong_for_one_that_does_not():
    speech = speech_data()
    out = evaluate_audio_tasks(Oracle(speech["test"]), speech, sqa_data(), n=6)
    assert set(out) == {"asr", "s2t", *(f"paraling.{t}" for t in PARALING_TASKS)}
    assert out["asr"] == {"wer": 0.0, "n": 6}
    assert out["s2t"]["accuracy"] == 1.0 and out["s2t"]["n"] == 2
    assert all(out[f"paraling.{t}"]["accuracy"] == 1.0 for t in PARALING_TASKS)
    bad = evaluate_audio_tasks(Oracle(speech["test"], "pitch"), speech, None, n=4)
    assert "s2t" not in bad and bad["paraling.pitch"]["accuracy"] == 0.0
    assert bad["paraling.pitch"]["n"] == 4 and bad["paraling.pitch"]["se"] > 0
    assert headline(bad)["asr"] == 0.0


def test_exact_match_ignores_case_and_end_punctuation_only():
    assert exact(["Noisy.", "clean", "very noisy"], ["noisy", "clean", "noisy"]) == 2 / 3


def test_report_keys_are_variant_dot_task_with_the_seed_spread(tmp_path):
    run = {"asr": {"wer": 0.5, "n": 4}, "paraling.noise": {"accuracy": 0.75, "n": 4, "se": 0.2}}
    other = {"asr": {"wer": 0.3, "n": 4}, "paraling.noise": {"accuracy": 0.25, "n": 4, "se": 0.2}}
    report = summarize({"moe": [run, other], "units": [run]})
    assert report["moe.asr"]["mean"] == pytest.approx(0.4)
    assert report["moe.asr"]["std"] == pytest.approx(np.std([0.5, 0.3], ddof=1))
    assert report["moe.paraling.noise"]["values"] == [0.75, 0.25]
    assert report["units.asr"]["std"] is None
    meta = {"seeds": [1, 2], "n": 4, "frontend": "mel", "max_steps": None, "stage2_steps": 0,
            "runs_done": 3, "majority": {"paraling.noise": 0.5}}  # fmt: skip
    write_report(tmp_path, report, meta)
    saved = read_json(tmp_path / "adapter.json")
    assert saved["moe.asr"]["mean"] == pytest.approx(0.4) and saved["_meta"] == meta
    table = (tmp_path / "adapter.md").read_text()
    assert "3 runs of seeds [1, 2]" in table and "stage-1 steps as the recipe" in table
    assert "stage-2 steps 0." in table
    assert "| paraling.noise | 0.500 ± 0.354 | 0.750 | 0.500 |" in table
    assert "| asr | 0.400 ± 0.141 | 0.500 | - |" in table


def test_variant_arguments():
    args = variant_args("dense", 7, ["--audio_frontend.kind=mel"], 30, 0.2)
    assert "--adapter.kind=dense" in args and "--data.seed=7" in args
    assert "--trainer.max_steps=30" in args and "--data.ratios.paraling=0.2" in args
    units = variant_args("units", 7, ["--audio_frontend.kind=mel"], None, 0.2)
    assert not any(a.startswith(("--adapter", "--audio_frontend")) for a in units)
