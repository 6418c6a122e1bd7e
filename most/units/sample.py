"""The utterances a unit tokenizer is fitted on: seeded samples of a run's ``speech`` train split.

Two samples, both deterministic given the data and the seed: about ``seconds`` of audio (what the
k-means kinds cluster) and ``n`` transcribed utterances (what the CTC kinds' encoder learns from).
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets
import numpy as np

from most.audio import SAMPLE_RATE, AudioError
from most.corpora.schema import decode_audio
from most.units.base import to_waveform


@dataclass
class Utterances:
    """16 kHz audio ``(n_i,)`` with its text and voice (``None`` where the data has no column)."""

    wavs: list[np.ndarray]
    texts: list[str | None]
    voices: list[str | None]

    @property
    def seconds(self) -> float:
        return sum(len(w) for w in self.wavs) / SAMPLE_RATE

    def __add__(self, other: Utterances) -> Utterances:
        return Utterances(
            self.wavs + other.wavs, self.texts + other.texts, self.voices + other.voices
        )

    def reorder(self, order: list[int] | np.ndarray) -> Utterances:
        return Utterances(
            [self.wavs[i] for i in order],
            [self.texts[i] for i in order],
            [self.voices[i] for i in order],
        )


def read_rows(split: datasets.Dataset, rows: list[int]) -> Utterances:
    """Audio, text and voice of ``rows``; unreadable audio is skipped here (the encoding pass
    reports it)."""
    columns = [c for c in ("audio", "text", "voice") if c in split.column_names]
    out = Utterances([], [], [])
    for row in split.select(rows).select_columns(columns).with_format("numpy"):
        try:
            wav = to_waveform(decode_audio(row["audio"]), SAMPLE_RATE)
        except AudioError:
            continue
        out.wavs.append(wav.numpy())
        out.texts.append(str(row["text"]) if "text" in row else None)
        out.voices.append(str(row["voice"]) if "voice" in row else None)
    return out


def fit_audio(speech: datasets.DatasetDict, seconds: float, seed: int) -> Utterances:
    """A seeded random sample of ``train`` utterances totalling about ``seconds``."""
    train = speech["train"]
    order = np.random.default_rng(seed).permutation(len(train))
    durations = np.asarray(train["duration"], dtype=np.float64)
    take = order[: int(np.searchsorted(np.cumsum(durations[order]), seconds)) + 1]
    return read_rows(train, sorted(take.tolist()))


def transcribed_audio(
    speech: datasets.DatasetDict, n: int, seed: int, short: bool = False
) -> Utterances:
    """A seeded random sample of ``n`` ``train`` utterances with their texts; with ``short``,
    every ``train_short`` utterance too, all shuffled by ``seed``.

    The judge reads the *first* rows of the split, so the tokenizer's encoder and the judge learn
    from different (overlapping) samples.
    """
    train = speech["train"]
    if "text" not in train.column_names:
        raise ValueError("speech/train has no 'text' column: the units encoder needs transcripts")
    if short and "train_short" not in speech:
        raise ValueError(
            "the encoder's `short` setting needs a speech/train_short split "
            "(build the data with speech.n_short > 0)"
        )
    rng = np.random.default_rng(seed)
    out = read_rows(train, sorted(rng.permutation(len(train))[:n].tolist()))
    if short:
        extra = speech["train_short"]
        out = out + read_rows(extra, list(range(len(extra))))
        out = out.reorder(rng.permutation(len(out.wavs)))
    return out
