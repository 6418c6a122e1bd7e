"""Where each stage's examples come from: ``RUN/data`` and ``RUN/units`` datasets -> mixture sources.

Column contracts (see :mod:`most.corpora.schema` and the ``units`` stage): unit datasets replace ``audio``
by ``units`` (list[int]) and ``answer_audio`` by ``answer_units``; every other column is kept.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np

from most.data.augment import crop, substitute
from most.data.prompts import Prompts, SpeechMode
from most.layout import TokenLayout
from most.run import Run
from most.train.mixing import Source


def check_layout(run: Path, layout: TokenLayout) -> None:
    """Refuse unit data encoded by another unit tokenizer than the model's layout expects."""
    info = Run(run).unit_info()
    layout.check_units(info["hash"], where=str(Run(run).units))
    if int(info["vocab_size"]) != layout.n_units:
        raise ValueError(f"unit vocab {info['vocab_size']} != layout n_units {layout.n_units}")


def _cols(ds: datasets.Dataset, *names: str) -> datasets.Dataset:
    # Reading a row decodes every column; keep only what the prompt needs.
    return ds.select_columns(list(names))


def text_lm(p: Prompts, ds: datasets.Dataset) -> Source:
    return Source("text_lm", _cols(ds, "text"), lambda r: p.text_lm(r["text"]))


def text_qa(p: Prompts, ds: datasets.Dataset, sentences: bool = True) -> Source:
    """``qa_train`` questions asked and answered in text, in the instruct format: replayed during the
    speech stages so the model keeps the skill of answering questions about facts it learnt from
    text (without it the facts stay, but answering questions about them is lost)."""
    col = answer_column(ds, sentences)
    return Source("text_qa", _cols(ds, "text", col), lambda r: p.instruct(r["text"], r[col]))


def asr(p: Prompts, ds: datasets.Dataset) -> Source:
    return Source("asr", _cols(ds, "units", "text"), lambda r: p.asr(r["units"], r["text"]))


def speech_lm_train(speech: datasets.DatasetDict) -> datasets.Dataset:
    """Speech-LM (unit continuation) rows: ``train`` plus, when the data has it, ``train_short``
    (one- and two-word utterances: a word may be all an utterance says). ASR and TTS read
    ``train`` alone: short utterances in TTS made its readings of sentences worse."""
    if "train_short" not in speech:
        return speech["train"]
    return datasets.concatenate_datasets(
        [_cols(speech[s], "units", "text") for s in ("train", "train_short")]
    )


def tts(p: Prompts, ds: datasets.Dataset, history_noise: float = 0.0, frame: int = 1) -> Source:
    """``history_noise``: share of the units the model writes from replaced by random ones, the
    targets kept (:func:`most.data.augment.substitute`; training only); ``frame``: the units'
    codebooks, whose frames the noise keeps whole."""
    if not 0.0 <= history_noise <= 1.0:
        raise ValueError(f"TTS history noise must be in [0, 1], got {history_noise}")
    augment = None
    if history_noise > 0.0:
        if p.layout is None:
            raise ValueError("TTS history noise needs a token layout; this is a text-only model")
        n_units = p.layout.n_units

        def augment(row: dict, rng: np.random.Generator) -> dict:
            noisy = substitute(row["units"], history_noise, n_units, rng, frame)
            return {**row, "history": noisy}

    return Source(
        "tts",
        _cols(ds, "units", "text"),
        lambda r: p.tts(r["text"], r["units"], r.get("history")),
        augment,
    )


def speech_lm(p: Prompts, ds: datasets.Dataset, span: float = 0.0, frame: int = 1) -> Source:
    """Unit continuation in the ASR prompt's context: the model learns which unit sequences are
    speech (what sWUGGY/sBLIMP-style minimal pairs score), not only how to read or write them.
    ``span``: share of examples cut to a random span of the utterance (:func:`crop`), between
    frames of ``frame`` ids."""
    if not 0.0 <= span <= 1.0:
        raise ValueError(f"speech_lm span share must be in [0, 1], got {span}")

    def spans(row: dict, rng: np.random.Generator) -> dict:
        return {**row, "units": crop(row["units"], span, rng, frame=frame)}

    return Source(
        "speech_lm",
        _cols(ds, "units"),
        lambda r: p.speech_lm(r["units"]),
        spans if span > 0.0 else None,
    )


def answer_column(ds: datasets.Dataset, sentences: bool = True) -> str:
    """Which column a text answer is trained on: ``answer_sentence`` (the fact stated subject first,
    "The capital of Velmora is Tarsk.") where the data has it and ``sentences``, else ``answer``.

    A sentence answer continues a statement the text LM learnt, so a question about a fact known
    only from text can be answered by the same completion."""
    return "answer_sentence" if sentences and "answer_sentence" in ds.column_names else "answer"


def s2t(p: Prompts, ds: datasets.Dataset, sentences: bool = True) -> Source:
    col = answer_column(ds, sentences)
    return Source("s2t", _cols(ds, "units", col), lambda r: p.s2t(r["units"], r[col]))


def s2s(
    p: Prompts,
    ds: datasets.Dataset,
    mode: SpeechMode,
    sentences: bool = True,
) -> Source:
    """The spoken answer is ``answer_units`` (the embedded default speaks ``answer_sentence``);
    with ``text_then_units`` the text written first follows :func:`answer_column`."""
    col = answer_column(ds, sentences)
    return Source(
        "s2s",
        _cols(ds, "units", col, "answer_units"),
        lambda r: p.s2s(r["units"], r[col], r["answer_units"], mode),
    )


def instruct(p: Prompts, ds: datasets.Dataset) -> Source:
    return Source(
        "instruct",
        _cols(ds, "prompt", "response"),
        lambda r: p.instruct(r["prompt"], r["response"]),
    )


def mixture(sources: list[Source], defaults: dict[str, float], overrides: dict[str, float]):
    """``(sources, ratios)`` for the recipe's ``data.ratios``; unknown task names are refused and
    tasks with ratio 0 are dropped."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"data.ratios: unknown tasks {sorted(unknown)}; known: {sorted(defaults)}")
    ratios = {**defaults, **overrides}
    kept = [s for s in sources if ratios[s.task] > 0]
    return kept, [ratios[s.task] for s in kept]


def ttm(p: Prompts, ds: datasets.Dataset) -> Source:
    """Text to music: the caption (key, tempo, style, instrument and notes) -> its music units."""
    return Source("ttm", _cols(ds, "text", "units"), lambda r: p.ttm(r["text"], r["units"]))


def music_continue(
    p: Prompts, ds: datasets.Dataset, low: float = 0.25, high: float = 0.75
) -> Source:
    """Music continuation: the first ``low``-``high`` share of a melody's units (drawn per
    example) is the prompt, the rest the answer."""
    if not 0.0 < low <= high < 1.0:
        raise ValueError(
            f"music continuation shares must satisfy 0 < low <= high < 1: {low}, {high}"
        )

    def cut(row: dict, rng: np.random.Generator) -> dict:
        n = len(row["units"])
        start = round(n * rng.uniform(low, high))
        return {**row, "start": min(max(start, 1), n - 1)}

    return Source(
        "music_continue",
        _cols(ds, "units"),
        lambda r: p.music_continue(r["units"], r.get("start", len(r["units"]) // 2)),
        cut,
    )
