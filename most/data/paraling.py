"""Paralinguistic questions about an utterance, asked and answered in text.

The embedded corpus knows how every utterance was spoken: its ``voice`` column is espeak-ng's
``variant:rate:pitch`` (:mod:`most.corpora.speech`). That gives labels for free, and questions that
units (which keep what was said, not how) should answer worse than continuous features:

=======  ======================================  ==============================================
task     question                                answer
=======  ======================================  ==============================================
voice    which voice is speaking                 the espeak variant, e.g. ``en-us+m3``
rate     how fast is the speaker talking         ``slow`` / ``medium`` / ``fast`` (words/min)
pitch    how high is the speaker's voice         ``low`` / ``mid`` / ``high`` (espeak pitch)
accent   which accent does the speaker have      ``american``, ``british``, ``scottish``, ...
noise    is the recording clean or noisy         ``clean`` / ``noisy``
=======  ======================================  ==============================================

Half of the utterances (chosen by a hash of the id, so always the same ones) are heard noisy:
white noise at 5-15 dB SNR, seeded by the id. The noise is part of the utterance for every task.
"""

from __future__ import annotations

import hashlib

import numpy as np

from most.noise import add_noise

PARALING_TASKS: tuple[str, ...] = ("voice", "rate", "pitch", "accent", "noise")

QUESTIONS: dict[str, str] = {
    "voice": "which voice is speaking",
    "rate": "how fast is the speaker talking",
    "pitch": "how high is the speaker's voice",
    "accent": "which accent does the speaker have",
    "noise": "is the recording clean or noisy",
}

#: Upper bounds (exclusive) of the rate bands, words per minute: slow < 155 <= medium < 170 <= fast.
RATE_BANDS = ((155, "slow"), (170, "medium"))
#: Upper bounds (exclusive) of the pitch bands on espeak's 0-99 scale.
PITCH_BANDS = ((45, "low"), (60, "mid"))
#: espeak-ng language part of a variant -> accent name (others: the language code itself).
ACCENTS = {
    "en-us": "american",
    "en-gb": "british",
    "en-gb-x-rp": "british",
    "en-gb-scotland": "scottish",
    "en-gb-x-gbclan": "lancastrian",
    "en-gb-x-gbcwmd": "west midlands",
    "en-029": "caribbean",
}


def _band(value: int, bands: tuple[tuple[int, str], ...], top: str) -> str:
    for bound, name in bands:
        if value < bound:
            return name
    return top


#: What a bare variant (a voice column without ``:rate:pitch``) was spoken at: espeak-ng's defaults.
ESPEAK_DEFAULT_RATE, ESPEAK_DEFAULT_PITCH = 175, 50


def voice_labels(voice: str) -> dict[str, str]:
    """``variant:rate:pitch`` (or a bare ``variant``: espeak-ng's default rate and pitch) ->
    answers of the voice, rate, pitch and accent tasks."""
    if ":" not in voice and voice.strip():
        voice = f"{voice}:{ESPEAK_DEFAULT_RATE}:{ESPEAK_DEFAULT_PITCH}"
    try:
        variant, rate, pitch = voice.split(":")
        rate_wpm, pitch_value = int(rate), int(pitch)
    except ValueError:
        raise ValueError(
            f"voice {voice!r} is not 'variant:rate:pitch' (the espeak corpus metadata)"
        ) from None
    language = variant.split("+")[0]
    return {
        "voice": variant,
        "rate": _band(rate_wpm, RATE_BANDS, "fast"),
        "pitch": _band(pitch_value, PITCH_BANDS, "high"),
        "accent": ACCENTS.get(language, language),
    }


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def is_noisy(utterance_id: str) -> bool:
    """Whether the utterance is heard noisy (half of them, fixed by the id)."""
    return _hash(utterance_id + "/noisy") % 2 == 1


def heard(wav: np.ndarray, utterance_id: str) -> np.ndarray:
    """The utterance as the paralinguistic tasks hear it: with white noise at 5-15 dB SNR when
    :func:`is_noisy`, else unchanged."""
    wav = np.asarray(wav, dtype=np.float32)
    if not is_noisy(utterance_id) or wav.size == 0:
        return wav
    rng = np.random.default_rng(_hash(utterance_id + "/noise"))
    return add_noise(wav, rng.uniform(5.0, 15.0), rng)


def answer(task: str, voice: str, utterance_id: str) -> str:
    """The answer to ``task``'s question about an utterance."""
    if task == "noise":
        return "noisy" if is_noisy(utterance_id) else "clean"
    if task not in QUESTIONS:
        raise ValueError(f"unknown paralinguistic task {task!r}; known: {list(PARALING_TASKS)}")
    return voice_labels(voice)[task]
