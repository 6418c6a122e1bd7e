"""TTS: speak test sentences with the model and let independent judges transcribe them.

For each judge three WERs on the same sentences (``speech/test``, first ``n`` rows):

- ``wer_original``: the original recordings (how good the judge is);
- ``wer_resynth``: the true units of those recordings through the vocoder (the ceiling any TTS
  with this unit tokenizer and vocoder can reach);
- ``wer_model``: the model's own units for the text, through the same vocoder.

And, without vocoder or judge, the model's own ASR reading the true units and its TTS units
(``_self_asr``: ``wer_true_units``, ``wer_model_units``): when the second is far above the first the
model speaks the wrong words (content drift), not unclear audio. With ``sampling.best_of`` > 1
the model's units are the readings its own ASR heard best (:attr:`most.generate.Sampling.best_of`),
so ``wer_model_units`` is then the check's own criterion, not an independent score; the judges
never take part in the choice.

A few model outputs are written as wavs to ``samples/`` beside the report for listening.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np

from eval.judges import Judge, audible
from eval.metrics import wer
from most.audio import write_wav
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
    wavs = [np.asarray(a["array"], dtype=np.float32) for a in rows["audio"]]
    return ids, wavs, [by_id[i] for i in ids], [str(t) for t in rows["text"]]


def evaluate_tts(
    lm: SpeechLM,
    judges: Sequence[Judge],
    audio_split: datasets.Dataset,
    units_split: datasets.Dataset,
    n: int,
    sampling: Sampling,
    samples_dir: Path | None = None,
) -> dict:
    """``{judge.name: {"wer_original", "wer_resynth", "wer_model"}, "_self_asr": {"wer_true_units",
    "wer_model_units"}, "_n": n}``. With ``sampling.best_of`` > 1 each judge also scores the first
    readings (``wer_model_first``, what the model says without the read-back check), and
    ``_self_asr`` gets ``wer_first_units``."""
    ids, original, true_units, texts = aligned_rows(audio_split, units_split, n)
    check = sampling.best_of > 1
    with progress() as bar:
        task = bar.add_task("tts: model speech", total=len(texts))
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        first = lm.tts_units(texts, replace(sampling, best_of=1), on_batch=advance)
        model_units = first
        if check:
            task = bar.add_task("tts: read-back check", total=1)
            model_units = lm.read_back(texts, first, sampling)
            bar.advance(task)
        task = bar.add_task("tts: vocoder", total=len(texts))
        resynth, spoken, said_first = [], [], []
        for i, true in enumerate(true_units):
            resynth.append(lm.vocode(true))
            spoken.append(audible(lm.vocode(model_units[i])))
            if check:
                said_first.append(audible(lm.vocode(first[i])))
            bar.advance(task)
        task = bar.add_task("tts: model's own ASR", total=(3 if check else 2) * len(texts))
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        heard = {"wer_true_units": lm.asr_units(true_units, sampling, on_batch=advance)}
        heard["wer_model_units"] = lm.asr_units(model_units, sampling, on_batch=advance)
        if check:
            heard["wer_first_units"] = lm.asr_units(first, sampling, on_batch=advance)
    if samples_dir is not None:
        for i in range(min(N_SAMPLES, len(ids))):
            write_wav(samples_dir / f"tts_{ids[i]}.wav", spoken[i])
    sets = {"wer_original": original, "wer_resynth": resynth, "wer_model": spoken}
    if check:
        sets["wer_model_first"] = said_first
    out: dict = {}
    with progress() as bar:
        for judge in judges:
            task = bar.add_task(f"tts: judge {judge.name}", total=len(sets))
            scores = {}
            for key, wavs in sets.items():
                scores[key] = wer(texts, judge.transcribe(wavs))
                bar.advance(task)
            out[judge.name] = scores
    out["_self_asr"] = {key: wer(texts, said) for key, said in heard.items()}
    out["_n"] = len(texts)
    return out
