"""English text normalisation and word-error counts, shared by inference (TTS read-back checks,
:mod:`most.generate`) and evaluation (:mod:`eval.metrics`).

whisper-normalizer's ``EnglishTextNormalizer``: lower case, punctuation removed, British -> American
spelling, numbers written as digits, "mr" -> "mister" (the normalisation most published English
WERs use).
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


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> list[int]:
    """Substitutions + deletions + insertions of each hypothesis against its reference, both
    normalised (an empty reference counts every hypothesis word)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    out = []
    for ref, hyp in zip(refs, hyps, strict=True):
        r, h = normalize(ref), normalize(hyp)
        if not r:  # jiwer refuses an empty reference
            out.append(len(h.split()))
            continue
        o = jiwer.process_words(r, h)
        out.append(o.substitutions + o.deletions + o.insertions)
    return out
