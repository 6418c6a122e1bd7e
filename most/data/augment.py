"""Random edits of the speech units in training examples (training only; targets never change).

:func:`substitute` swaps units of the history a TTS example is written from, targets untouched.
:func:`crop` cuts the utterances of unit-continuation examples to random spans. Draws come from a
generator the mixture seeds per batch, apart from the one that picks rows
(:mod:`most.train.mixing`), so a batch stays a pure function of ``(seed, index)`` and an edit
changes the units, not which rows are drawn.

With units of several codebooks (``frame`` = ``C`` ids a frame, code ``c`` in codebook ``c``'s range,
:mod:`most.units.codebooks`) both keep the frames whole: a substituted id is a random code of its own
codebook, and a span starts and ends between frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def substitute(
    units: Sequence[int], p: float, n_units: int, rng: np.random.Generator, frame: int = 1
) -> list[int]:
    """``units`` with each one replaced by a random unit with probability ``p`` (same length;
    with ``frame`` > 1, a random code of the same codebook).

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
    size = n_units // frame
    book = np.arange(len(units)) % frame
    random_units = book * size + rng.integers(0, size, size=len(units))
    return [int(r) if e else u for u, e, r in zip(units, edit, random_units, strict=True)]


def crop(
    units: Sequence[int], p: float, rng: np.random.Generator, min_len: int = 4, frame: int = 1
) -> list[int]:
    """With probability ``p``, a random contiguous span of ``units`` (at least ``min_len`` long,
    start and end uniform; with ``frame`` > 1 counted in whole frames); otherwise all of them.

    For unit continuation (``speech_lm``): a speech LM that only ever sees whole template
    sentences learns that audio starts with "The ..." and gives anything else, a word said on its
    own included, near-uniform probabilities. Spans starting and ending anywhere teach it to model
    speech from any point, as speech LMs trained on chunks of long recordings do.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"crop p must be in [0, 1], got {p}")
    units = [int(u) for u in units]
    n = len(units) // frame
    if p == 0.0 or n <= min_len or rng.random() >= p:
        return units
    start = int(rng.integers(0, n - min_len + 1))
    end = int(rng.integers(start + min_len, n + 1))
    return units[start * frame : end * frame]
