"""``most judge``: train the embedded default's CTC judge on the run's own speech.

TTS output is scored by transcribing it, so the transcriber must be independent of the model under
test: the judge (:mod:`most.eval.judges.ctc`) reads log-mel frames, never units, and is trained
from scratch on the first ``train.max_utterances`` rows of ``RUN/data/speech/train``
(:func:`most.ctc.train.train_recognizer`, capped by epochs or minutes). The ``ctc_phones`` /
``ctc_kmeans`` unit tokenizers' encoder has the same architecture but is a separate model, never
loaded here.

Decoding (``--decode.*``), best first:

- ``lm=true`` (default): lexicon-constrained beam search over the judge's lexicon (the words of
  the run's text corpus and speech transcripts, a closed world for the embedded default) with a
  word bigram trained on the speech training transcripts only: the judge's own training text, which
  never states a ``qa_heldout`` fact, so the LM cannot supply the answers S->S is scored on. Its
  weight and word score are picked on ``speech/dev`` (a small grid, seconds;
  :mod:`most.eval.judges.beam_fit`).
- ``lexicon=true``: greedy CTC with every unknown word snapped to the nearest lexicon word.
- both false: greedy CTC.

Writes ``RUN/judge/`` atomically: ``model.safetensors``, ``lm.arpa`` (with ``lm=true``) and
``judge.json`` (model config, characters, mel settings, lexicon, beam settings, training log and
WER/CER on ``speech/test`` and ``speech/test_voices`` for each decoding). A finished judge without
an LM gets one without retraining when ``most judge`` runs again with ``lm=true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from most.ctc.model import CTCModelConfig
from most.ctc.train import CTCSchedule, train_recognizer
from most.eval.judges.beam import BeamSettings
from most.eval.judges.beam_fit import fit_beam
from most.eval.judges.ctc import (
    JUDGE_FILE,
    CTCJudge,
    judge_meta,
    read_split,
    save_weights,
    score_splits,
)
from most.eval.judges.lexicon import Lexicon
from most.eval.judges.resynth import resynthesize_share
from most.io import atomic_dir, atomic_write_json, read_json
from most.run import FINGERPRINT_FILE, Run, fingerprint
from most.units import load_tokenizer


@dataclass(frozen=True)
class CTCTrainConfig:
    """How the judge is trained (``--train.*``): the data it reads and the recogniser's schedule."""

    max_utterances: int = 4000
    """Training utterances taken from ``speech/train`` (the first N)."""
    eval_utterances: int = 300
    """Utterances of ``test`` and of ``test_voices`` transcribed for the reported WER."""
    resynth_share: float = 0.0
    """Share of training utterances replaced by their unit-tokenizer resynthesis (encode ->
    vocoder), so the judge can read vocoded speech: without it, the ceiling ``wer_resynth`` and
    the model's TTS are judged by a recogniser that never heard a vocoder. Needs ``RUN/units``."""
    batch_frames: int = 4_000
    """Feature frames (10 ms) per batch, padding included."""
    epochs: float = 4.0
    """Passes over the ``max_utterances``."""
    max_minutes: float | None = None
    """Optional wall-clock cap on training; None trains the full epoch budget (reproducible)."""
    lr: float = 3e-3
    warmup: float = 0.05
    """Share of the progress spent warming up the learning rate."""
    seed: int = 0
    threads: int = 0
    """Torch intra-op threads for training; 0 keeps torch's default (1 on a shared CPU)."""
    precision: str = "auto"
    """``bf16-mixed``, ``32-true`` or ``auto`` (bf16 where this CPU trains faster in it)."""

    def __post_init__(self) -> None:
        self.schedule()  # validates the schedule's fields
        if self.max_utterances <= 0:
            raise ValueError("train.max_utterances must be > 0")
        if not 0.0 <= self.resynth_share <= 1.0:
            raise ValueError("train.resynth_share must be in [0, 1]")

    def schedule(self) -> CTCSchedule:
        """The recogniser's training schedule."""
        return CTCSchedule(
            batch_frames=self.batch_frames,
            epochs=self.epochs,
            max_minutes=self.max_minutes,
            lr=self.lr,
            warmup=self.warmup,
            seed=self.seed,
            threads=self.threads,
            precision=self.precision,
        )


@dataclass(frozen=True)
class CTCDecodeConfig:
    """How the judge turns CTC outputs into words (``--decode.*``; see the module doc)."""

    lexicon: bool = True
    """Keep the lexicon (words of ``RUN/data/text`` train and the speech training transcripts):
    snapping for greedy decoding, the spellings for beam search."""
    lm: bool = True
    """Beam search with a word bigram trained on the speech training transcripts."""
    beam: int = 50
    """Hypotheses kept per step."""
    lm_weights: tuple[float, ...] = (0.5, 1.0, 2.0)
    """LM weights tried on ``speech/dev``; the one with the lowest WER is kept."""
    word_scores: tuple[float, ...] = (-1.0, 0.0, 1.0)
    """Word insertion scores tried with each weight."""
    discount: float = 0.75
    """Kneser-Ney absolute discount of the bigram."""

    def __post_init__(self) -> None:
        if self.lm and not self.lexicon:
            raise ValueError("decode.lm needs decode.lexicon (the beam spells lexicon words)")
        if self.lm and not (self.lm_weights and self.word_scores):
            raise ValueError("decode.lm_weights and decode.word_scores need at least one value")
        BeamSettings(beam=self.beam)  # validates the beam width

    def grid(self) -> list[BeamSettings]:
        """The beam settings tried on ``speech/dev``, weight by weight."""
        return [BeamSettings(self.beam, w, s) for w in self.lm_weights for s in self.word_scores]


_DEFAULT_MODEL = CTCModelConfig()
_DEFAULT_TRAIN = CTCTrainConfig()
_DEFAULT_DECODE = CTCDecodeConfig()


def judge(
    run: Path,
    model: CTCModelConfig = _DEFAULT_MODEL,
    train: CTCTrainConfig = _DEFAULT_TRAIN,
    decode: CTCDecodeConfig = _DEFAULT_DECODE,
    force: bool = False,
) -> dict:
    """Train the embedded-default CTC judge on ``RUN/data/speech/train``; write ``RUN/judge/``.

    Reports its WER/CER on original ``test`` (seen voices) and ``test_voices`` audio for each
    decoding. A finished judge without the requested LM gets one (no retraining).
    """
    r = Run(run)
    inputs = {"data": r.output_id("data")}
    if train.resynth_share > 0:  # trains on audio resynthesised through the unit tokenizer
        inputs["units"] = r.output_id("units")
    current = fingerprint(dict(model=model, train=train, decode=decode), inputs)
    if r.judge_file.is_file() and not force:
        meta = read_json(r.judge_file)
        if decode.lm and not meta.get("beam") and meta.get("lexicon"):
            r.check("judge", current, False, ignore=("decode.",))  # the training must match
            meta = _add_beam(r, meta, train, decode)
            r.record("judge", current)
            return meta
        if r.recorded("judge") is None or r.check("judge", current, False):
            print(f"{r.judge} is up to date (pass --force=true to retrain)")
            return meta
    speech = r.load_data("speech")
    wavs, texts = read_split(speech["train"], train.max_utterances)
    if train.resynth_share > 0:
        tokenizer = load_tokenizer(r.unit_tokenizer)
        wavs = resynthesize_share(wavs, tokenizer, train.resynth_share, train.seed)
    recognizer, log = train_recognizer(wavs, texts, model, train.schedule(), label="judge")
    del wavs
    lexicon = Lexicon.from_texts(texts + _corpus_text(r)) if decode.lexicon else None
    scorer = CTCJudge(recognizer, lexicon)
    meta = judge_meta(model, lexicon, log)
    with atomic_dir(r.judge) as tmp:
        if decode.lm:
            dev = _dev(speech, train.eval_utterances)
            fitted = fit_beam(tmp, scorer, texts, dev, decode.grid(), decode.discount)
            meta |= {"beam": fitted.pop("settings"), "beam_fit": fitted}
        meta["metrics"] = score_splits(scorer, speech, train.eval_utterances)
        save_weights(recognizer, tmp)
        atomic_write_json(tmp / JUDGE_FILE, meta)
        atomic_write_json(tmp / FINGERPRINT_FILE, current)
    print(f"judge: {meta['metrics']}")
    return meta


def _add_beam(r: Run, meta: dict, train: CTCTrainConfig, decode: CTCDecodeConfig) -> dict:
    """Give a judge trained without an LM its beam search: LM, settings and metrics, no training."""
    print(f"{r.judge}: adding the word LM and beam search to the trained judge")
    speech = r.load_data("speech")
    texts = [str(t) for t in speech["train"].select_columns(["text"])["text"]]
    scorer = CTCJudge.load(r.judge)
    dev = _dev(speech, train.eval_utterances)
    lm_texts = texts[: train.max_utterances]
    fitted = fit_beam(r.judge, scorer, lm_texts, dev, decode.grid(), decode.discount)
    meta = meta | {"beam": fitted.pop("settings"), "beam_fit": fitted}
    meta["metrics"] = score_splits(scorer, speech, train.eval_utterances)
    atomic_write_json(r.judge_file, meta)
    print(f"judge: {meta['metrics']}")
    return meta


def _corpus_text(r: Run) -> list[str]:
    """``RUN/data/text`` train paragraphs, if the run has a text corpus (lexicon words)."""
    return list(r.load_data("text")["train"]["text"]) if r.has_data("text") else []


def _dev(speech: datasets.DatasetDict, n: int) -> tuple[list[np.ndarray], list[str]] | None:
    return read_split(speech["dev"], n) if "dev" in speech else None
