"""De-duplication of repeated units and the repeat model that restores durations on decode.

MoST feeds the LLM de-duplicated units (``5 5 5 9 9 -> 5 9``): shorter sequences, and the model
spends its capacity on *which* sound comes next rather than on how long it lasts. The decoder then
needs durations back; the simplest model that works is per-unit: each unit lasts, on average, as
many frames as it did in the training data.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def collapse_repeats(units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T,)`` ids -> ``(U,)`` ids with consecutive repeats collapsed, and ``(U,)`` run lengths."""
    if units.numel() == 0:
        return units, units.new_zeros(0)
    out, counts = torch.unique_consecutive(units, return_counts=True)
    return out, counts


def fit_durations(
    runs: Iterable[tuple[torch.Tensor, torch.Tensor]], vocab_size: int
) -> torch.Tensor:
    """Mean run length per unit from ``(ids, run_lengths)`` pairs -> ``(vocab_size,)`` float32.

    Units never seen keep a duration of 1 frame.
    """
    total = torch.zeros(vocab_size, dtype=torch.float64)
    count = torch.zeros(vocab_size, dtype=torch.float64)
    for ids, lengths in runs:
        total.index_add_(0, ids.long(), lengths.double())
        count.index_add_(0, ids.long(), torch.ones_like(lengths, dtype=torch.float64))
    return torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total)).float()


def expand(units: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Restore frame-rate ids from de-duplicated ``(U,)`` ids using per-unit mean durations.

    Fractional durations are carried forward (error diffusion), so a long utterance keeps the
    right total length instead of drifting by the rounding of every unit.
    """
    if units.numel() == 0:
        return units
    want = torch.cumsum(durations[units.long()].double(), 0)
    ends = torch.round(want).long()
    starts = torch.cat([ends.new_zeros(1), ends[:-1]])
    # Every unit is heard for at least one frame, or its sound would vanish.
    reps = torch.clamp(ends - starts, min=1)
    return torch.repeat_interleave(units, reps)


def frame_ids(units: torch.Tensor, vocab_size: int, durations: torch.Tensor | None) -> torch.Tensor:
    """Decoder input: ``(U,)`` ids checked against ``vocab_size`` and, when ``durations`` is given
    (de-duplicated units), expanded back to frame rate with :func:`expand`."""
    units = torch.as_tensor(units).long().flatten()
    if units.numel() and (units.min() < 0 or units.max() >= vocab_size):
        raise ValueError(f"unit ids must be in [0, {vocab_size})")
    return expand(units, durations) if durations is not None and units.numel() else units
