"""Text normalisation, WER/CER and answer matching: the arithmetic every score in the report uses.

Transcripts and references pass through whisper-normalizer's ``EnglishTextNormalizer`` (lower case,
punctuation removed, British -> American spelling, numbers written as digits, "mr" -> "mister"), the
normalisation most published English WERs use, so our numbers compare to theirs. Error rates are
corpus-level (total edits / total reference words or characters), computed with jiwer.

Spoken-QA answers are matched by *normalised containment*: a prediction is correct when the
normalised reference answer appears in the normalised prediction as a whole-word sequence ("tarsk"
matches "the capital is tarsk" but not "tarskel"). That accepts full-sentence answers and refuses
partial names; an empty reference never matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import jiwer


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation, whitespace collapsed."""
    return " ".join(_normalizer()(text).split())


def _pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps, strict=True)]
    kept = [(r, h) for r, h in pairs if r]  # an empty reference has no defined error rate
    if not kept:
        raise ValueError("every reference is empty after normalisation")
    return [r for r, _ in kept], [h for _, h in kept]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate after normalisation (references empty after normalising are skipped)."""
    r, h = _pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate after normalisation."""
    r, h = _pairs(refs, hyps)
    return float(jiwer.cer(r, h))


def contains_answer(prediction: str, answer: str) -> bool:
    """Whether the normalised ``answer`` occurs in the normalised ``prediction`` on word boundaries."""
    a, p = normalize(answer), normalize(prediction)
    if not a:
        return False
    return f" {a} " in f" {p} "


def accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Share of predictions that contain their answer (:func:`contains_answer`); 0 for no items."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    hits = sum(contains_answer(p, a) for p, a in zip(predictions, answers, strict=True))
    return hits / len(answers) if answers else 0.0
