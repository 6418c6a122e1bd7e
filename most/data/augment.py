"""Unit noise: random edits of the speech units a model *reads* (ASR and spoken-question inputs).

Stage 1 of the embedded default memorises its utterances (train ASR loss ~0.02 against ~0.5 on
dev): each sentence is heard in one voice, always as the same unit sequence. Another voice, or the
same one on another day, gives a slightly different sequence — a unit swapped for a neighbour, one
dropped, one split in two. :func:`perturb` makes such edits at random, so the model cannot key its
transcript on an exact sequence. It is the discrete analogue of SpecAugment: only inputs are
edited, targets (the transcript) never are, and validation data is left alone.

Each input unit independently, with probability ``p`` in all, is deleted, replaced by a random
unit, or followed by a random unit (a third of ``p`` each). Draws come from a generator the mixture
seeds per batch, apart from the one that picks rows (:mod:`most.train.mixing`), so a batch stays a
pure function of ``(seed, index)`` and noise changes the audio, not which rows are drawn.

:func:`substitute` swaps units of the history a TTS example is written from, targets untouched.
:func:`crop` cuts the utterances of unit-continuation examples to random spans (from the same
per-batch generator).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def perturb(units: Sequence[int], p: float, n_units: int, rng: np.random.Generator) -> list[int]:
    """``units`` with each unit deleted, substituted or followed by an insertion with prob. ``p``.

    Never returns an empty sequence for a non-empty input (an utterance cannot vanish).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"unit noise p must be in [0, 1], got {p}")
    units = [int(u) for u in units]
    if p == 0.0 or not units:
        return units
    edit = rng.random(len(units)) < p
    kind = rng.integers(0, 3, size=len(units))  # 0 delete, 1 substitute, 2 insert after
    random_units = rng.integers(0, n_units, size=len(units))
    out: list[int] = []
    for u, e, k, r in zip(units, edit, kind, random_units, strict=True):
        if not e:
            out.append(u)
        elif k == 1:
            out.append(int(r))
        elif k == 2:
            out += [u, int(r)]
    return out or units[:1]


def substitute(units: Sequence[int], p: float, n_units: int, rng: np.random.Generator) -> list[int]:
    """``units`` with each one replaced by a random unit with probability ``p`` (same length).

    For the unit history a model *writes* from (TTS): fed in place of the true units while the
    targets stay true, it teaches the model to recover from a wrong unit of its own by reading the
    text again instead of continuing what its wrong units sound like (exposure bias). Lengths
    must not change, so that each input still lines up with its target.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"history noise p must be in [0, 1], got {p}")
    units = [int(u) for u in units]
    if p == 0.0 or not units:
        return units
    edit = rng.random(len(units)) < p
    random_units = rng.integers(0, n_units, size=len(units))
    return [int(r) if e else u for u, e, r in zip(units, edit, random_units, strict=True)]


def crop(units: Sequence[int], p: float, rng: np.random.Generator, min_len: int = 4) -> list[int]:
    """With probability ``p``, a random contiguous span of ``units`` (at least ``min_len`` long,
    start and end uniform); otherwise all of them.

    For unit continuation (``speech_lm``): a speech LM that only ever sees whole template
    sentences learns that audio starts with "The ..." and gives anything else, a word said on its
    own included, near-uniform probabilities. Spans starting and ending anywhere teach it to model
    speech from any point, as speech LMs trained on chunks of long recordings do.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"crop p must be in [0, 1], got {p}")
    units = [int(u) for u in units]
    if p == 0.0 or len(units) <= min_len or rng.random() >= p:
        return units
    start = int(rng.integers(0, len(units) - min_len + 1))
    end = int(rng.integers(start + min_len, len(units) + 1))
    return units[start:end]
