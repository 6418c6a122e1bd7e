"""Text normalisation and answer matching: one rule for every score that compares words.

Text passes through whisper-normalizer's ``EnglishTextNormalizer`` (lower case, punctuation removed,
British -> American spelling, numbers written as digits, "mr" -> "mister"), the normalisation most
published English WERs use, so our numbers compare to theirs.

Answers are matched by *normalised containment*: a prediction is correct when the normalised
reference answer appears in the normalised prediction as a whole-word sequence ("tarsk" matches "the
capital is tarsk" but not "tarskel"). That accepts full-sentence answers and refuses partial names;
an empty reference never matches. A count asked in a unit ("How many thousand people live in
Mazel?" -> "two hundred and six") is also matched by the count followed by that unit
(:func:`answer_forms`): the normaliser writes "two hundred and six thousand" as one number, 206000,
so the full-sentence answer "Mazel has two hundred and six thousand people." would never contain 206.
The base stage's text-QA probe and the eval's spoken-QA scores both use :func:`accuracy`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation, whitespace collapsed."""
    return " ".join(_normalizer()(text).split())


def contains_answer(prediction: str, answer: str) -> bool:
    """Whether the normalised ``answer`` occurs in the normalised ``prediction`` on word boundaries."""
    a, p = normalize(answer), normalize(prediction)
    if not a:
        return False
    return f" {a} " in f" {p} "


_COUNT_IN_UNIT = re.compile(r"\bhow many (hundred|thousand|million|billion)\b", re.IGNORECASE)


def answer_forms(answer: str, question: str) -> list[str]:
    """The answers that count as correct: ``answer``, and where ``question`` asks for a count in a
    unit ("How many thousand ...?") the count followed by that unit ("two hundred and six
    thousand"), which normalises to its own number (206000)."""
    unit = _COUNT_IN_UNIT.search(question)
    return [answer, f"{answer} {unit.group(1).lower()}"] if unit else [answer]


def accuracy(predictions: Sequence[str], answers: Sequence[str | Sequence[str]]) -> float:
    """Share of predictions that contain their answer (:func:`contains_answer`); an answer may be a
    list of accepted forms (any one counts). 0 for no items."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answers")
    hits = sum(
        any(contains_answer(p, f) for f in ([a] if isinstance(a, str) else a))
        for p, a in zip(predictions, answers, strict=True)
    )
    return hits / len(answers) if answers else 0.0
