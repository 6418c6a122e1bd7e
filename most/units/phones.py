"""Phoneme transcripts of the run's speech: what the ``ctc_phones`` encoder learns to recognise.

Each word of a transcript is looked up once per accent with espeak-ng (``-x``: its phoneme
mnemonics, stress dropped; :func:`most.corpora.speech.phonemes`), and words are joined by a word
boundary symbol: ``"the cat"`` read by an ``en-us`` voice -> ``["D", "@", " ", "k", "a", "t"]``.
The accent comes from the utterance's ``voice`` column when it is an espeak-ng voice spec
(``en-gb+m1:150:40`` -> ``en-gb``), else :data:`DEFAULT_VARIANT` (LibriSpeech speaker ids, ...).
Looked up per word, not per sentence, so a word's phonemes never depend on its neighbours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from most.corpora.numbers import number_words
from most.corpora.speech import phonemes

#: The word-boundary symbol between two words' phonemes.
BOUNDARY = " "
#: The accent of transcripts whose voice is not an espeak-ng voice spec.
DEFAULT_VARIANT = "en-us"
_SPEC = re.compile(r"([a-z]{2,3}(?:-[a-z0-9]+)*)(?:\+[\w-]+)?(?::\d+:\d+)?")


def variant_of(voice: str | None) -> str:
    """``"en-gb+m1:150:40"`` -> ``"en-gb"``; anything that is not a voice spec -> ``en-us``."""
    match = _SPEC.fullmatch(voice or "")
    return match.group(1) if match else DEFAULT_VARIANT


def words(text: str) -> list[str]:
    """Lower-case words of ``text``, apostrophes dropped and digits spelt out:
    ``"Don't pay 12 coins!"`` -> ``["dont", "pay", "twelve", "coins"]``."""
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text.lower())
    return re.findall(r"[a-z]+", text.replace("'", ""))


def transcribe(texts: Sequence[str], voices: Sequence[str | None]) -> list[list[str]]:
    """Phoneme sequences (words separated by :data:`BOUNDARY`), one per text.

    One espeak-ng call per accent for all the distinct words read in it.
    """
    if len(texts) != len(voices):
        raise ValueError(f"transcribe: {len(texts)} texts but {len(voices)} voices")
    split = [(variant_of(v), words(t)) for t, v in zip(texts, voices, strict=True)]
    wanted: dict[str, set[str]] = {}
    for variant, ws in split:
        wanted.setdefault(variant, set()).update(ws)
    lexicon: dict[tuple[str, str], tuple[str, ...]] = {}
    for variant, ws in sorted(wanted.items()):
        ordered = sorted(ws)
        for word, phones in zip(ordered, phonemes(ordered, variant), strict=True):
            lexicon[variant, word] = phones
    out = []
    for variant, ws in split:
        seq: list[str] = []
        for w in ws:
            if seq:
                seq.append(BOUNDARY)
            seq += lexicon[variant, w]
        out.append(seq)
    return out
