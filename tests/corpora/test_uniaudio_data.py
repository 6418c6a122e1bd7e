"""UniAudio data splits: parallel sentences in another voice, noisy copies said exactly alike."""

from __future__ import annotations

import numpy as np
import pytest

from most.audio import decode_audio
from most.corpora.ingest import SourceItem, SpokenAudio, load_item
from most.corpora.speech import Voice
from most.corpora.uniaudio import TasksConfig, task_items
from most.noise import add_noise, snr_db

VOICES = ["en-us+m3:165:45", "en-us+f2:160:60", "en-gb+m1:150:40"]


def _items(split: str, n: int) -> list[SourceItem]:
    out = []
    for i in range(n):
        text, voice = f"sentence number {i} is here", VOICES[i % len(VOICES)]
        cols = {"text": text, "voice": voice, "task": "asr_tts"}
        out.append(
            SourceItem(f"{split}-{i:06d}", cols, {"audio": SpokenAudio(text, Voice.parse(voice))})
        )
    return out


def test_parallel_split_says_train_sentences_in_another_voice() -> None:
    speech = {"train": _items("train", 6), "test": _items("test", 2)}
    out = task_items(speech, TasksConfig(n_parallel=4), VOICES)
    assert set(out) == {"train_parallel"}
    par = out["train_parallel"]
    assert [it.columns["text"] for it in par] == [it.columns["text"] for it in speech["train"][:4]]
    for p, t in zip(par, speech["train"], strict=False):
        assert p.columns["voice"] != t.columns["voice"]
        assert p.audio["audio"].voice.name == p.columns["voice"]


def test_noisy_splits_and_their_snr() -> None:
    speech = {"train": _items("train", 5), "test": _items("test", 3)}
    cfg = TasksConfig(n_noisy=2, snr_low=5.0, snr_high=10.0, seed=3)
    out = task_items(speech, cfg, VOICES)
    assert [len(out["train_noisy"]), len(out["test_noisy"])] == [2, 3]
    assert all(5.0 <= it.audio["audio"].snr_db <= 10.0 for it in out["test_noisy"])
    assert task_items(speech, cfg, VOICES) == out  # reproducible from the seed


def _wav(item: SourceItem) -> np.ndarray:
    row, reject = load_item(item, None)
    assert reject is None
    return decode_audio(row["audio"])


def test_a_noisy_copy_is_the_clean_utterance_plus_noise_at_its_snr() -> None:
    speech = {"train": _items("train", 1), "test": _items("test", 1)}
    noisy_item = task_items(speech, TasksConfig(n_noisy=1, snr_low=8.0, snr_high=8.0), VOICES)
    clean, noisy = _wav(speech["train"][0]), _wav(noisy_item["train_noisy"][0])
    assert clean.shape == noisy.shape
    assert snr_db(clean, noisy) == pytest.approx(8.0, abs=0.3)


@pytest.mark.parametrize("colour", ["white", "brown"])
def test_add_noise_hits_the_asked_snr(colour: str) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    for target in (0.0, 10.0, 20.0):
        assert snr_db(wav, add_noise(wav, target, rng, colour)) == pytest.approx(target, abs=0.01)
    with pytest.raises(ValueError, match="colour"):
        add_noise(wav, 5.0, rng, "pink")
