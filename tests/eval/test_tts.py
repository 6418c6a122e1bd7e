"""``most.eval.tts``: each judge on original / resynthesised / model speech, and the model's own ASR of
the true units and of its TTS units (content drift without vocoder or judge)."""

from __future__ import annotations

import datasets
import numpy as np

from most.corpora.schema import audio_value
from most.eval.tts import evaluate_tts, tts_reference
from most.testing import Ear, Voice


class Reader(Voice):
    """A TTS that drifts into another sentence, with an ASR that reads any units it knows."""

    def __init__(self, says: dict[str, list[int]], reads: dict[tuple, str]) -> None:
        super().__init__(says)
        self.reads = reads

    def asr_units(self, units, sampling=None, on_batch=None) -> list[str]:
        if on_batch:
            on_batch(len(units))
        return [self.reads.get(tuple(u), "") for u in units]


def test_self_asr_separates_wrong_words_from_unclear_audio() -> None:
    texts = ["bral is a fisher", "savek is a hunter"]
    audio = datasets.Dataset.from_dict(
        {
            "id": ["a", "b"],
            "text": texts,
            "audio": [audio_value(np.array([0.5], np.float32)),
                      audio_value(np.array([0.25], np.float32))],
        }
    )  # fmt: skip
    units = datasets.Dataset.from_dict({"id": ["a", "b"], "units": [[1, 2], [3, 4]]})
    # the model reads "a" right but says a memorised sentence for "b"
    lm = Reader(
        says={texts[0]: [1, 2], texts[1]: [5, 6]},
        reads={(1, 2): texts[0], (3, 4): texts[1], (5, 6): "bral keeps a deer"},
    )
    ear = Ear({(0.5,): texts[0], (0.25,): texts[1], (1.0, 2.0): texts[0], (3.0, 4.0): texts[1]})
    out = evaluate_tts(lm, [ear], tts_reference(lm, [ear], audio, units, n=2), sampling=None)
    assert out["ear"] == {"wer_original": 0.0, "wer_resynth": 0.0, "wer_model": 0.5}
    assert out["_self_asr"]["wer_true_units"] == 0.0
    # "savek is a hunter" -> "bral keeps a deer": 3 of the 8 reference words wrong
    assert np.isclose(out["_self_asr"]["wer_model_units"], 3 / 8)
    assert out["_n"] == 2
