"""Real spoken-QA sets scored S->T and S->S on a set of espeak-ng recordings in the published
layouts, broken records counted and named, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from most.eval.report import flat_metrics
from most.eval.sqa import evaluate_qa_sets
from most.generate import Sampling, SpeechLM
from most.testing import Ear, speak

#: (record, question spoken, voice); None = a broken record (no recording is made for it)
QUESTIONS = [
    ({"question": "what is the capital of velmora", "answer": "Tarsk", "audio": "q0.wav"}, "en-us+m3"),
    ({"question": "who found the map", "answers": ["brother", "his brother"], "audio_path": "q1.wav"}, "en-us+f3"),
    ("{not json", None),
    ({"question": "where is the gate", "answer": "north", "audio": "missing.wav"}, None),
    ({"question": "when do the bells ring", "audio": "q4.wav"}, "en-gb+m1"),
    ({"question": "what keeps the key", "answer": "box", "audio": "noise.wav"}, None),
    ([1, 2], None),
    ({"Question": "which river did the sailors cross",
      "Answer": {"Value": "Silver River", "Aliases": ["the silver"]}, "audio_filepath": "q7.wav"},
     "en-us+f3"),
]  # fmt: skip


@pytest.fixture(scope="module")
def qa_set(tmp_path_factory) -> tuple[Path, dict[int, np.ndarray]]:
    """A .jsonl set of 8 records, 3 usable, each question spoken by espeak-ng; -> (folder,
    {record index: its audio at 16 kHz})."""
    folder = tmp_path_factory.mktemp("qa_set")
    wavs, lines = {}, []
    for i, (record, voice) in enumerate(QUESTIONS):
        lines.append(record if isinstance(record, str) else json.dumps(record))
        if voice is not None:
            question = record.get("question") or record["Question"]
            wavs[i] = speak(question, voice, folder / f"q{i}.wav")
    (folder / "noise.wav").write_bytes(b"RIFF not really a wav")
    (folder / "set.jsonl").write_text("\n".join(lines) + "\n")
    return folder, wavs


class Answering:
    """Enough of ``SpeechLM`` for ``evaluate_qa_sets``: knows each recording (``encode`` finds
    which one it is given) and answers it with fixed text (S->T) and fixed speech (S->S)."""

    class units:
        has_decoder = True

    def __init__(self, wavs: dict[int, np.ndarray], s2t: dict, s2s: dict) -> None:
        self.wavs, self.s2t, self.s2s = wavs, s2t, s2s

    def encode(self, wavs) -> list[list[int]]:
        return [[next(i for i, w in self.wavs.items() if np.array_equal(w, x))] for x in wavs]

    def s2t_units(self, units, sampling=None) -> list[str]:
        return [self.s2t[u[0]] for u in units]

    def s2s_units(self, units, sampling=None) -> list[tuple[str, list[int]]]:
        return [self.s2s[u[0]] for u in units]

    def vocode(self, units) -> np.ndarray:
        return np.asarray(units, dtype=np.float32)


def test_s2t_and_s2s_on_a_real_layout_with_broken_records(qa_set) -> None:
    folder, wavs = qa_set
    lm = Answering(
        wavs,
        s2t={0: "It is Tarsk.", 1: "a sailor", 7: "the Silver river"},
        s2s={0: ("tarsk", [10]), 1: ("his brother", [11]), 7: ("", [17])},
    )
    # the judge hears Tarsk and the Silver River, but not the brother
    ear = Ear({(10.0,): "it is tarsk", (11.0,): "his mother", (17.0,): "the silver river"})
    out = evaluate_qa_sets(lm, {"llama_q": folder}, 10, None, ear)["llama_q"]
    assert (out["n"], out["accuracy"]) == (3, 2 / 3)
    assert (out["s2s"]["accuracy"], out["s2s"]["text_accuracy"], out["s2s"]["judge"]) == (
        2 / 3,
        2 / 3,
        "ear",
    )
    assert out["rejects"] == 5
    f = folder / "set.jsonl"
    assert [m.split(": ")[0] for m in out["rejected"]] == [f"{f}:{k}" for k in (3, 4, 5, 6, 7)]
    assert "missing.wav: file not found" in out["rejected"][1]
    assert out["rejected"][2].endswith("no answer")
    metrics = flat_metrics({"qa_sets": {"llama_q": out}})
    assert metrics == {
        "qa_sets.llama_q.accuracy": 2 / 3,
        "qa_sets.llama_q.s2s.accuracy": 2 / 3,
        "qa_sets.llama_q.s2s.text_accuracy": 2 / 3,
        "qa_sets.llama_q.rejects": 5,
    }
    # n counts usable records; without a judge S->S falls back to the written text
    first = evaluate_qa_sets(lm, {"q": folder}, 1, None, None)["q"]
    assert (first["n"], first["rejects"], first["s2s"]["judge"]) == (1, 0, None)


def test_a_real_model_and_judge_score_the_set(qa_set, eval_run) -> None:
    """The tiny untrained run's model, unit vocoder and CTC judge, end to end (plumbing only)."""
    from most.eval.judges import load_judge

    folder, _ = qa_set
    lm = SpeechLM.load(eval_run / "stage2" / "hf", units=eval_run / "units", device="cpu")
    judge = load_judge("ctc", eval_run)
    sampling = Sampling(max_new_tokens=6, batch_size=4)
    out = evaluate_qa_sets(lm, {"set": folder}, 10, sampling, judge)["set"]
    assert (out["n"], out["rejects"], out["s2s"]["judge"]) == (3, 5, "ctc")
    for score in (out["accuracy"], out["s2s"]["accuracy"], out["s2s"]["text_accuracy"]):
        assert 0.0 <= score <= 1.0
    assert [e["answer"] for e in out["s2s"]["examples"]] == ["Tarsk", "brother", "Silver River"]
