"""Paralinguistic questions: labels from the espeak voice metadata, the noisy half, the examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from most.data.paraling import PARALING_TASKS, answer, heard, is_noisy, voice_labels
from most.data.prompts import Prompts
from most.layout import BEGIN_OF_AUDIO, TokenLayout
from most.train.paraling import build_example, paraling
from most.units.frontend import AudioFrontend, FrontendConfig


class Words:
    eos_token_id = 2

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [10 + len(w) for w in text.split()]


class FixedUnits:
    """A unit tokenizer stand-in: one unit per 1000 samples."""

    def encode(self, wav, sr):
        return torch.arange(len(wav) // 1000) % 4


P = Prompts(TokenLayout(text_vocab_size=64, n_units=8, unit_tokenizer_hash="x"), Words())


def test_labels_from_the_voice_spec():
    assert voice_labels("en-us+m3:165:45") == {
        "voice": "en-us+m3", "rate": "medium", "pitch": "mid", "accent": "american",
    }  # fmt: skip
    assert voice_labels("en-gb-scotland+m4:150:40") == {
        "voice": "en-gb-scotland+m4", "rate": "slow", "pitch": "low", "accent": "scottish",
    }  # fmt: skip
    assert voice_labels("en-029+f1:180:70")["accent"] == "caribbean"
    assert voice_labels("en-029+f1:180:70")["pitch"] == "high"
    assert voice_labels("en-029+f1:180:70")["rate"] == "fast"
    bare = voice_labels("en-us+f3")  # espeak-ng's defaults: 175 words/min, pitch 50
    assert (bare["rate"], bare["pitch"], bare["accent"]) == ("fast", "mid", "american")
    with pytest.raises(ValueError, match="variant:rate:pitch"):
        voice_labels("en-us:fast")
    with pytest.raises(ValueError, match="unknown paralinguistic task"):
        answer("emotion", "en-us+m3:165:45", "u1")


def test_half_the_utterances_are_noisy_at_a_fixed_snr():
    ids = [f"u{i}" for i in range(400)]
    share = np.mean([is_noisy(i) for i in ids])
    assert 0.4 < share < 0.6
    wav = np.sin(np.arange(16_000) / 10).astype(np.float32) * 0.3
    noisy_id = next(i for i in ids if is_noisy(i))
    clean_id = next(i for i in ids if not is_noisy(i))
    assert np.array_equal(heard(wav, clean_id), wav)
    once, again = heard(wav, noisy_id), heard(wav, noisy_id)
    assert np.array_equal(once, again)  # the same noise every time
    snr = 10 * np.log10(np.mean(wav**2) / np.mean((once - wav) ** 2))
    assert 4.5 < snr < 15.5
    assert answer("noise", "en-us+m3:165:45", noisy_id) == "noisy"


def test_examples_through_the_adapter_and_as_units():
    row = {"id": "u3", "voice": "en-gb+f3:170:65"}
    wav = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    fe = AudioFrontend(FrontendConfig())
    ex = build_example(P, "accent", row, wav, fe, 4, None)
    assert ex.task == "paraling" and ex.features.shape == (51, 80)
    start, end = ex.audio_span
    assert end - start == 13 and ex.input_ids[start - 1] == P.sp(BEGIN_OF_AUDIO)
    answer_ids = [i for i, label in zip(ex.input_ids, ex.labels, strict=True) if label != -100]
    assert answer_ids[:-1] == Words().encode("british")
    as_units = build_example(P, "accent", row, wav, None, 4, FixedUnits())
    assert as_units.features is None
    assert as_units.input_ids[: start - 1] == ex.input_ids[: start - 1]  # same question
    with pytest.raises(ValueError, match="frontend or a unit tokenizer"):
        build_example(P, "accent", row, wav, None, 4, None)


def test_source_draws_every_task():
    from most.corpora.schema import SPEECH_FEATURES, audio_value

    rows = [
        {"id": f"u{i}", "audio": audio_value(np.full(3000, 0.1, np.float32)), "text": "x",
         "voice": "en-us+m3:165:45", "task": "asr", "duration": 0.2}
        for i in range(3)
    ]  # fmt: skip
    import datasets

    ds = datasets.Dataset.from_list(rows, features=SPEECH_FEATURES)
    src = paraling(P, ds, units=FixedUnits())
    rng = np.random.default_rng(0)
    asked = {src.augment(ds[0], rng)["ptask"] for _ in range(60)}
    assert asked == set(PARALING_TASKS)
    assert src.build(src.augment(ds[1], rng)).task == "paraling"
    with pytest.raises(ValueError, match="some of"):
        paraling(P, ds, tasks=["emotion"])


def test_a_corpus_without_espeak_voices_is_refused_at_once():
    import datasets

    ds = datasets.Dataset.from_list([{"id": "a", "audio": {}, "voice": "speaker:7"}])
    with pytest.raises(ValueError, match="speaker:7"):
        paraling(P, ds, units=FixedUnits())
