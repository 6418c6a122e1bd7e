"""The S->S breakdown: the judge on the true answer recorded, resynthesised and spoken by the model,
matched to the questions by id (the audio data may hold rows in another order)."""

from __future__ import annotations

import datasets
import numpy as np

from eval.sqa import _spoken_truth


class Voice:
    """A vocoder/TTS stand-in: a "wav" is the unit list as floats."""

    def __init__(self, says: dict[str, list[int]]) -> None:
        self.says = says

    def vocode(self, units) -> np.ndarray:
        return np.asarray(units, dtype=np.float32)

    def tts_units(self, texts, sampling=None, on_batch=None) -> list[list[int]]:
        if on_batch:
            on_batch(len(texts))
        return [self.says[t] for t in texts]


class Ear:
    """A judge stand-in: knows which "wav" means which words."""

    name = "ear"

    def __init__(self, hears: dict[tuple, str]) -> None:
        self.hears = hears

    def transcribe(self, wavs) -> list[str]:
        return [self.hears.get(tuple(np.asarray(w).tolist()), "") for w in wavs]


def test_breakdown_scores_each_step_on_the_right_rows() -> None:
    rows = datasets.Dataset.from_dict(
        {
            "id": ["a", "b"],
            "answer_sentence": ["The capital is Tarsk.", "The river is Vel."],
            "answer_units": [[1, 2], [3, 4]],
        }
    )
    answers = ["Tarsk", "Vel"]
    # The recordings are stored b-first: a (wrong) positional match would swap them.
    audio = datasets.DatasetDict(
        qa_heldout=datasets.Dataset.from_dict(
            {"id": ["b", "a"], "answer_audio": [{"array": [9.0], "sampling_rate": 16_000},
                                                {"array": [8.0], "sampling_rate": 16_000}]}
        )
    )  # fmt: skip
    ear = Ear(
        {
            (8.0,): "the capital is tarsk",  # recording of a: heard
            (9.0,): "the river is well",  # recording of b: missed
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
