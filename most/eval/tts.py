"""TTS: speak test sentences with the model and let independent judges transcribe them.

For each judge three WERs on the same sentences (``speech/test``, first ``n`` rows):

- ``wer_original``: the original recordings (how good the judge is);
- ``wer_resynth``: the true units of those recordings through the vocoder (the ceiling any TTS
  with this unit tokenizer and vocoder can reach);
- ``wer_model``: the model's own units for the text, through the same vocoder.

And, without vocoder or judge, the model's own ASR reading the true units and its TTS units
(``_self_asr``: ``wer_true_units``, ``wer_model_units``): when the second is far above the first the
model speaks the wrong words (content drift), not unclear audio.

A few model outputs are written as wavs to ``samples/`` beside the report for listening.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from most.audio import write_wav
from most.corpora.schema import decode_audio
from most.eval.judges import Judge, audible
from most.eval.metrics import wer, word_errors
from most.generate import Sampling, SpeechLM
from most.progress import progress

N_SAMPLES = 3


def aligned_rows(
    audio_split: datasets.Dataset, units_split: datasets.Dataset, n: int
) -> tuple[list[str], list[np.ndarray], list[list[int]], list[str]]:
    """The first ``n`` utterances present in both (the units stage may have rejected some):
    ``ids``, original audio ``(n_i,)``, true units and texts."""
    units = units_split.select_columns(["id", "units"])
    by_id = dict(zip(units["id"], units["units"], strict=True))
    picked = [i for i, id_ in enumerate(audio_split["id"]) if id_ in by_id][:n]
    rows = audio_split.select(picked).select_columns(["id", "audio", "text"]).with_format("numpy")
    ids = [str(i) for i in rows["id"]]
    wavs = [decode_audio(a) for a in rows["audio"]]
    return ids, wavs, [by_id[i] for i in ids], [str(t) for t in rows["text"]]


@dataclass(frozen=True)
class TTSReference:
    """What the model's speech is scored against, the same for every model of one run: the first
    ``n`` test sentences (ids, texts, true units) and each judge's ``wer_original`` and
    ``wer_resynth`` on them. Built once by :func:`tts_reference`; a learning curve reuses it."""

    ids: list[str]
    texts: list[str]
    true_units: list[list[int]]
    judged: dict[str, dict[str, float]]


def tts_reference(
    lm: SpeechLM,
    judges: Sequence[Judge],
    audio_split: datasets.Dataset,
    units_split: datasets.Dataset,
    n: int,
) -> TTSReference:
    """Each judge on the original recordings and on their true units through ``lm``'s vocoder."""
    ids, original, true_units, texts = aligned_rows(audio_split, units_split, n)
    judged = {}
    with progress() as bar:
        task = bar.add_task("tts: vocoder (true units)", total=len(texts))
        resynth = []
        for true in true_units:
            resynth.append(lm.vocode(true))
            bar.advance(task)
        for judge in judges:
            task = bar.add_task(f"tts: judge {judge.name} (references)", total=2)
            scores = {}
            for key, wavs in (("wer_original", original), ("wer_resynth", resynth)):
                scores[key] = wer(texts, judge.transcribe(wavs))
                bar.advance(task)
            judged[judge.name] = scores
    return TTSReference(ids, texts, true_units, judged)


def evaluate_tts(
    lm: SpeechLM,
    judges: Sequence[Judge],
    reference: TTSReference,
    sampling: Sampling,
    samples_dir: Path | None = None,
) -> dict:
    """``{judge.name: {"wer_original", "wer_resynth", "wer_model"}, "_self_asr": {"wer_true_units",
    "wer_model_units"}, "_word_errors": {judge.name: [[edits, words], ...]}, "_n": n}``
    (``_word_errors``: per sentence of ``wer_model``, for its standard error); ``reference`` from
    :func:`tts_reference` with these judges."""
    missing = [j.name for j in judges if j.name not in reference.judged]
    if missing:
        raise ValueError(f"tts: the reference was not judged by {', '.join(missing)}")
    texts, true_units = reference.texts, reference.true_units
    with progress() as bar:
        task = bar.add_task("tts: model speech", total=len(texts))
        model_units = lm.tts_units(texts, sampling, on_batch=lambda k: bar.advance(task, k))
        task = bar.add_task("tts: vocoder", total=len(texts))
        spoken = []
        for mine in model_units:
            spoken.append(audible(lm.vocode(mine)))
            bar.advance(task)
        task = bar.add_task("tts: model's own ASR", total=2 * len(texts))
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        heard_true = lm.asr_units(true_units, sampling, on_batch=advance)
        heard_model = lm.asr_units(model_units, sampling, on_batch=advance)
    if samples_dir is not None:
        for i in range(min(N_SAMPLES, len(reference.ids))):
            write_wav(samples_dir / f"tts_{reference.ids[i]}.wav", spoken[i])
    out: dict = {"_word_errors": {}}
    with progress() as bar:
        for judge in judges:
            task = bar.add_task(f"tts: judge {judge.name}", total=1)
            heard = judge.transcribe(spoken)
            out[judge.name] = {**reference.judged[judge.name], "wer_model": wer(texts, heard)}
            out["_word_errors"][judge.name] = word_errors(texts, heard)
            bar.advance(task)
    out["_self_asr"] = {
        "wer_true_units": wer(texts, heard_true),
        "wer_model_units": wer(texts, heard_model),
    }
    out["_n"] = len(texts)
    return out
