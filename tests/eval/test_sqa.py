"""Spoken QA scoring: the S->S breakdown (the judge on the true answer recorded, resynthesised and
spoken by the model, matched to the questions by id: the audio data may hold rows in another
order), counterfactual answers, the judge fill-in check and the held-out leak check."""

from __future__ import annotations

import shutil

import datasets
import numpy as np

from most.corpora.schema import audio_value
from most.eval.sqa import _spoken_truth, counterfactuals, heldout_leaks, judge_fill_in
from most.testing import Ear, Voice


def test_breakdown_scores_each_step_on_the_right_rows() -> None:
    rows = datasets.Dataset.from_dict(
        {
            "id": ["a", "b"],
            "text": ["What is the capital?", "Which river is it?"],  # asked differently
            "answer": ["Tarsk", "Vel"],
            "answer_sentence": ["The capital is Tarsk.", "The river is Vel."],
            "answer_units": [[1, 2], [3, 4]],
        }
    )
    answers = ["Tarsk", "Vel"]
    # The recordings are stored b-first: a (wrong) positional match would swap them.
    audio = datasets.DatasetDict(
        qa_heldout=datasets.Dataset.from_dict(
            {"id": ["b", "a"], "answer_audio": [audio_value(np.array([0.25], np.float32)),
                                                audio_value(np.array([0.5], np.float32))],
             "answer_voice": ["en-us+m3:160:50"] * 2}
        )
    )  # fmt: skip
    ear = Ear(
        {
            (0.5,): "the capital is tarsk",  # recording of a: heard
            (0.25,): "the river is well",  # recording of b: missed
            (1.0, 2.0): "the capital is tarsk",  # resynthesis of a: heard
            (3.0, 4.0): "the river is vel",  # resynthesis of b: heard
            (5.0,): "the capital is tusk",  # the model saying a: missed
            (6.0,): "the river is vel",  # the model saying b: heard
        }
    )
    voice = Voice({"The capital is Tarsk.": [5], "The river is Vel.": [6]})
    ticks: list[int] = []
    out = _spoken_truth(voice, ear, rows, answers, None, audio, "qa_heldout", ticks.append)
    assert out == {"resynth_accuracy": 1.0, "tts_accuracy": 0.5, "original_accuracy": 0.5}
    assert ticks == [2]
    # No recordings (or not for these rows): the other two steps are still scored.
    assert "original_accuracy" not in _spoken_truth(
        voice, ear, rows, answers, None, None, "x", print
    )
    other = datasets.DatasetDict(qa_heldout=audio["qa_heldout"].select([0]))
    assert "original_accuracy" not in _spoken_truth(
        voice, ear, rows, answers, None, other, "qa_heldout", print
    )


class SpeakingLM(Voice):
    """Enough of ``SpeechLM`` for ``evaluate_sqa``: writes "tarsk", then says units [7]."""

    class units:
        has_decoder = True

    class prompts:
        @staticmethod
        def instruct_prompt(q: str) -> list[int]:
            return [0]

        @staticmethod
        def stop_ids() -> list[int]:
            return []

    def s2t_units(self, units, sampling=None, on_batch=None) -> list[str]:
        return ["tarsk"] * len(units)

    def s2s_units(self, units, sampling=None, on_batch=None) -> list[tuple[str, list[int]]]:
        return [("tarsk", [7])] * len(units)

    def generate(self, prompts, stops, sampling=None) -> list[list[int]]:
        return [[0]] * len(prompts)

    def text_of(self, ids) -> str:
        return "tarsk"


def test_s2s_is_scored_on_what_the_judge_hears_with_or_without_answer_sentences() -> None:
    from most.eval.sqa import evaluate_sqa

    qa = {"units": [[1]], "text": ["What is the capital?"], "answer": ["Tarsk"]}
    truth = {"id": ["a"], "answer_sentence": ["It is Tarsk."], "answer_units": [[1, 2]]}
    lm = SpeakingLM({"It is Tarsk.": [5]})
    ear = Ear({(7.0,): "it is task", (1.0, 2.0): "it is tarsk", (5.0,): "it is tarsk"})
    for data, breakdown in ((qa, False), ({**qa, **truth}, True)):
        units = datasets.DatasetDict(qa_heldout=datasets.Dataset.from_dict(data))
        s2s = evaluate_sqa(lm, units, 1, None, ear)["s2s"]["heldout"]
        # The model wrote the answer but the judge did not hear it in its speech.
        assert (s2s["text_accuracy"], s2s["accuracy"], s2s["judge"]) == (1.0, 0.0, "ear")
        assert ("tts_accuracy" in s2s) == breakdown
        if breakdown:
            assert (s2s["resynth_accuracy"], s2s["tts_accuracy"]) == (1.0, 1.0)


def test_counterfactual_answers_come_from_questions_asked_alike() -> None:
    questions = [
        "What is the capital of Velm?",
        "Who built the gipos kettle?",
        "What is the capital of Sazer?",
        "What is the capital of Drin?",
        "How many thousand people live in Mazel?",
        "How many thousand people live in Tob?",
    ]
    answers = ["Tarsk", "Zenem Brodol", "Tarsk", "Drabu", "two hundred and six", "six"]
    sentences = [
        "The capital of Velm is Tarsk.",
        "Zenem Brodol built the gipos kettle.",
        "The capital of Sazer is Tarsk.",
        "The capital of Drin is Drabu.",
        "Mazel has two hundred and six thousand people.",
        "Tob has six thousand people.",
    ]
    got = counterfactuals(questions, answers, sentences)
    # Velm takes Drin's answer (Sazer's is the same word); nobody else is asked about a kettle;
    # Mazel and Tob share "six", so neither takes the other's
    assert got == [
        (0, 3, "The capital of Velm is Drabu."),
        (2, 3, "The capital of Sazer is Drabu."),
        (3, 0, "The capital of Drin is Tarsk."),
    ]


class Parrot:
    """A judge that writes one fixed transcript, whatever it hears."""

    name = "parrot"

    def __init__(self, text: str) -> None:
        self.text = text

    def transcribe(self, wavs) -> list[str]:
        assert all(len(w) > 1000 for w in wavs)  # real speech went in
        return [self.text] * len(wavs)


def test_judge_fill_in_counts_true_answers_in_counterfactual_speech() -> None:
    rows = datasets.Dataset.from_dict(
        {
            "text": ["What is the capital of Velm?", "What is the capital of Drin?"],
            "answer": ["Tarsk", "Drabu"],
            "answer_sentence": ["The capital of Velm is Tarsk.", "The capital of Drin is Drabu."],
        }
    )
    answers = [["Tarsk"], ["Drabu"]]
    voices = ["en-us+m3:160:50"] * 2
    # a judge that always writes "tarsk": fills in the truth for Velm (said: Drabu), and hears
    # the spoken answer for Drin (said: Tarsk)
    out = judge_fill_in(Parrot("the capital is tarsk"), rows, voices, answers)
    assert out == {"judge_fill_in": 0.5, "counterfactual_heard": 0.5, "counterfactual_n": 2}
    assert judge_fill_in(Parrot("nothing"), rows, voices, answers)["judge_fill_in"] == 0.0


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
