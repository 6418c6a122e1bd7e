"""Between the flat id sequence (unit shards, the flat model) and the multi-scale model's frames.

A multi-codebook kind stores ``C`` unit ids per frame, frame-major, codebook ``c`` owning units
``[cK, (c+1)K)`` (:mod:`most.units.codebooks`). The multi-scale model reads one *position* per frame
instead: the position's id is the frame's codebook-0 unit id (so the layout gives it the speech
modality, and the global head's target for it is that id) and ``codes (C,)`` holds the frame's codes
in ``[0, K)``. Text and special tokens are one position each with ``codes`` all ``-1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from most.layout import TokenLayout
from most.units.codebooks import unflatten

IGNORE = -100


def to_frames(
    ids: Tensor, layout: TokenLayout, n_codebooks: int, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Flat ids ``(S,)`` -> positions ``(S',)``, codes ``(S', C)`` and, with flat ``labels (S,)``
    (``-100`` = not a target), position labels ``(S',)`` (a frame is a target when its first flat
    id is). Every run of unit ids must be whole frames (``ValueError`` otherwise)."""
    ids = torch.as_tensor(ids).long()
    if layout.n_units % n_codebooks:
        raise ValueError(f"the layout's {layout.n_units} units are not {n_codebooks} codebooks")
    k = layout.n_units // n_codebooks
    unit = layout.is_unit(ids).tolist()
    keep: list[int] = []
    codes = torch.full((len(unit), n_codebooks), -1, dtype=torch.long)
    i = 0
    while i < len(unit):
        if not unit[i]:
            keep.append(i)
            i += 1
            continue
        j = i
        while j < len(unit) and unit[j]:
            j += 1
        frames = unflatten(ids[i:j] - layout.unit_offset, n_codebooks, k)
        starts = list(range(i, j, n_codebooks))
        codes[starts] = frames
        keep.extend(starts)
        i = j
    index = torch.tensor(keep, dtype=torch.long)
    out_labels = None if labels is None else torch.as_tensor(labels).long()[index]
    return ids[index], codes[index], out_labels


def cut_to_frames(
    ids: Tensor, labels: Tensor, layout: TokenLayout, n_codebooks: int, max_len: int
) -> tuple[Tensor, Tensor]:
    """Flat ``ids`` and ``labels`` cut to ``max_len`` and then to whole frames: a cut through the
    last frame drops that frame's codes, so :func:`to_frames` reads what remains and a flat model
    trains on the same ids."""
    ids, labels = torch.as_tensor(ids)[:max_len], torch.as_tensor(labels)[:max_len]
    unit = layout.is_unit(ids).tolist()
    tail = len(unit) - next((i for i, u in enumerate(reversed(unit)) if not u), len(unit))
    cut = tail + (len(unit) - tail) // n_codebooks * n_codebooks
    return ids[:cut], labels[:cut]


def from_frames(codes: Tensor, layout: TokenLayout) -> Tensor:
    """``(T, C)`` codes -> ``(T * C,)`` flat unit token ids (the flat model's spelling)."""
    c = codes.shape[1]
    k = layout.n_units // c
    return layout.unit_offset + (codes + torch.arange(c) * k).reshape(-1)


def collate_frames(items: list[tuple[Tensor, Tensor, Tensor]], pad_id: int) -> dict[str, Tensor]:
    """Right-pads ``(ids (S,), codes (S, C), labels (S,))`` items into a batch:

    - ``input_ids (B, S)``: ``pad_id`` after the end;
    - ``codes (B, S, C)``: ``-1`` after the end;
    - ``labels (B, S)``: ``-100`` after the end;
    - ``attention_mask (B, S)``: 1 on real positions.
    """
    s = max(len(ids) for ids, _, _ in items)
    c = items[0][1].shape[1]
    b = len(items)
    out = {
        "input_ids": torch.full((b, s), pad_id, dtype=torch.long),
        "codes": torch.full((b, s, c), -1, dtype=torch.long),
        "labels": torch.full((b, s), IGNORE, dtype=torch.long),
        "attention_mask": torch.zeros((b, s), dtype=torch.long),
    }
    for row, (ids, codes, labels) in enumerate(items):
        n = len(ids)
        out["input_ids"][row, :n] = ids
        out["codes"][row, :n] = codes
        out["labels"][row, :n] = labels
        out["attention_mask"][row, :n] = 1
    return out
