"""How a CTC unit kind trains its encoder on the run's speech (``--tokenizer.<kind>.encoder.*``).

The ``ctc_phones`` and ``ctc_kmeans`` tokenizers both contain a :class:`~most.ctc.model.CTCRecognizer`
trained from scratch by the ``units`` stage; this is which utterances it learns from, for how long,
and how far each step attends.
"""

from __future__ import annotations

from dataclasses import dataclass

import datasets

from most.ctc.model import CTCModelConfig
from most.ctc.train import PRECISIONS, CTCSchedule
from most.units.sample import Utterances, transcribed_audio


@dataclass
class EncoderConfig:
    """The CTC encoder's training data, budget and attention window."""

    utterances: int = 4000
    """Transcribed ``speech/train`` utterances (a seeded sample) the encoder learns from; the
    decoder templates (and ``ctc_kmeans``' k-means) use the first ``fit_seconds`` of them."""
    epochs: float = 6.5
    """Epoch budget of the encoder's CTC training (~3 min on 2 cores for 4000 utterances)."""
    minutes: float | None = None
    """Optional wall-clock cap on that training (ends it early; the units then depend on the
    machine's speed). None trains the full budget."""
    short: bool = False
    """Also train the encoder on every ``speech/train_short`` utterance (one- and two-word; the
    data needs ``speech.n_short`` > 0), shuffled in with the ``train`` sample. Trained on sentences
    alone, the encoder mishears a word said alone (what the audio-LM minimal pairs speak), so
    those words get units the speech LM never read in sentences."""
    batch_frames: int = 4000
    """Feature frames (10 ms) per batch: on an hour or two of speech, smaller batches give the
    CTC training the updates it needs to leave its all-blank start within the same compute."""
    lr: float = 3e-3
    """Peak learning rate of the encoder's CTC training."""
    window: int | None = None
    """Encoder steps (25 per second) each step attends to on either side
    (:attr:`most.ctc.model.CTCModelConfig.attn_window`); None = the whole utterance. Stored in
    the tokenizer (its hash includes it)."""
    precision: str = "auto"
    """``bf16-mixed``, ``32-true`` or ``auto`` (bf16 where this CPU trains faster in it)."""

    def __post_init__(self) -> None:
        if min(self.utterances, self.epochs, self.batch_frames, self.lr) <= 0:
            raise ValueError(
                "tokenizer encoder.utterances, .epochs, .batch_frames and .lr must be > 0"
            )
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError("tokenizer encoder.minutes must be > 0 or null (no cap)")
        if self.window is not None and self.window < 1:
            raise ValueError("tokenizer encoder.window must be >= 1 or null (whole utterance)")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"tokenizer encoder.precision must be one of {PRECISIONS}, got {self.precision!r}"
            )

    def sample(self, speech: datasets.DatasetDict, seed: int) -> Utterances:
        """The transcribed utterances the encoder trains on."""
        return transcribed_audio(speech, self.utterances, seed, self.short)

    def model(self) -> CTCModelConfig:
        return CTCModelConfig(attn_window=self.window)

    def schedule(self, seed: int) -> CTCSchedule:
        return CTCSchedule(
            batch_frames=self.batch_frames,
            epochs=self.epochs,
            max_minutes=self.minutes,
            lr=self.lr,
            seed=seed,
            precision=self.precision,
        )

    def fit_settings(self) -> dict:
        """This part of ``fit.json`` (the window is stored in the tokenizer itself)."""
        return {
            "encoder_utterances": self.utterances,
            "encoder_epochs": self.epochs,
            "encoder_minutes": self.minutes,
            "encoder_short": self.short,
            "encoder_batch_frames": self.batch_frames,
            "encoder_lr": self.lr,
            "encoder_precision": self.precision,
        }
