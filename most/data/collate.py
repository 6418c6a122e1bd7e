"""Turn a list of :class:`~most.data.prompts.Example` into a batch of tensors: padded or packed.

Batch keys (``B`` rows, ``T`` = longest row, at most ``max_len``; packed batches given ``max_len``
round ``T`` up to a multiple of :data:`PACK_MULTIPLE`, at most ``max_len``):

- ``input_ids``  ``(B, T)`` long: token ids, ``pad_id`` on padding.
- ``labels``     ``(B, T)`` long: target ids (unshifted), ``-100`` on prompt and padding tokens.
- ``position_ids`` ``(B, T)`` long: restart at 0 at every example.
- ``task_ids``   ``(B, T)`` long: index into :data:`~most.data.prompts.TASKS` per token, -1 on padding
  (per-task losses for logging).
- ``attention_mask`` ``(B, T)`` long, padded batches only.
- with continuous audio (examples carrying ``features``; padded batches only):
  ``input_features`` ``(B, F, D)`` float, zero-padded frames (rows without audio: all padding);
  ``input_features_mask`` ``(B, F)`` bool; ``audio_mask`` ``(B, T)`` bool, the placeholder positions
  the adapter's tokens replace.

Packing puts several examples in one row without an ``attention_mask``: ``transformers`` detects the
restarting ``position_ids`` and builds a block-diagonal causal mask, so no token attends across an
example boundary (tested against unpacked forwards). It does so only without a KV cache: call the
model with ``use_cache=False``. The first token of every example is a prompt
token (``labels == -100``), so no loss term predicts one example from the tail of another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from most.data.prompts import IGNORE, TASKS, Example

#: Packed batches are padded to a multiple of this many tokens: compiled layers see a few widths,
#: not a new one (a recompile) whenever no row is quite full.
PACK_MULTIPLE = 64


def truncate(ex: Example, max_len: int) -> Example:
    if len(ex) <= max_len:
        return ex
    if ex.audio_span is not None and ex.audio_span[1] > max_len:
        raise ValueError(
            f"a {ex.task} example's audio ends at token {ex.audio_span[1]}, past data.max_len "
            f"{max_len}: raise data.max_len (or the adapter's stack)"
        )
    return Example(ex.input_ids[:max_len], ex.labels[:max_len], ex.task, ex.features, ex.audio_span)


def pad_batch(examples: Sequence[Example], pad_id: int, max_len: int) -> dict[str, torch.Tensor]:
    """One example per row, right-padded to the longest (truncated to ``max_len``)."""
    rows = [[truncate(ex, max_len)] for ex in examples]
    batch = _rows_to_tensors(rows, pad_id)
    batch["attention_mask"] = (batch["task_ids"] >= 0).long()
    if any(ex.features is not None for ex in examples):
        batch |= _audio_tensors([row[0] for row in rows], batch["input_ids"].shape[1])
    return batch


def _audio_tensors(examples: Sequence[Example], width: int) -> dict[str, torch.Tensor]:
    """``input_features``, ``input_features_mask`` and ``audio_mask`` of one-example rows."""
    dims = {ex.features.shape[1] for ex in examples if ex.features is not None}
    if len(dims) != 1:
        raise ValueError(f"examples in one batch carry features of widths {sorted(dims)}")
    frames = max(ex.features.shape[0] for ex in examples if ex.features is not None)
    feats = torch.zeros(len(examples), frames, dims.pop())
    fmask = torch.zeros(len(examples), frames, dtype=torch.bool)
    amask = torch.zeros(len(examples), width, dtype=torch.bool)
    for r, ex in enumerate(examples):
        if ex.features is None:
            continue
        n = ex.features.shape[0]
        feats[r, :n], fmask[r, :n] = ex.features, True
        amask[r, ex.audio_span[0] : ex.audio_span[1]] = True
    return {"input_features": feats, "input_features_mask": fmask, "audio_mask": amask}


def best_fit(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped in rows of at most ``max_len`` tokens, best fit decreasing:
    longest first, each into the fullest row with room for it, a new row where none has; each
    row's indices in their original order. A length over ``max_len`` counts as ``max_len``."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        n = min(lengths[i], max_len)
        fits = [r for r, f in enumerate(free) if f >= n]
        if fits:
            r = min(fits, key=free.__getitem__)
        else:
            r = len(rows)
            rows.append([])
            free.append(max_len)
        rows[r].append(i)
        free[r] -= n
    return [sorted(row) for row in rows]


def fit_rows(
    lengths: Sequence[int], max_len: int, n_rows: int, rng: np.random.Generator
) -> list[int]:
    """Indices of ``lengths`` that :func:`best_fit` packs into ``n_rows`` rows: while it needs
    more, one index drawn by ``rng`` leaves, so what is left out is not biased towards long or
    short lengths."""
    keep = list(range(len(lengths)))
    while len(best_fit([lengths[i] for i in keep], max_len)) > n_rows:
        del keep[int(rng.integers(len(keep)))]
    return keep


def pack_rows(examples: Sequence[Example], max_len: int) -> list[list[Example]]:
    """Rows of :func:`best_fit`, each example truncated to ``max_len``."""
    exs = [truncate(ex, max_len) for ex in examples]
    return [[exs[i] for i in row] for row in best_fit([len(ex) for ex in exs], max_len)]


def pack_batch(
    rows: Sequence[Sequence[Example]], pad_id: int, max_len: int | None = None
) -> dict[str, torch.Tensor]:
    """Several examples per row (see :func:`pack_rows`); no attention mask (see module doc).
    Given ``max_len``, the width is rounded up to a multiple of :data:`PACK_MULTIPLE` (at most
    ``max_len``)."""
    if any(ex.features is not None for row in rows for ex in row):
        raise ValueError("examples with audio features cannot be packed: set data.pack false")
    return _rows_to_tensors(rows, pad_id, max_len)


def _rows_to_tensors(
    rows: Sequence[Sequence[Example]], pad_id: int, max_len: int | None = None
) -> dict[str, torch.Tensor]:
    width = max(sum(len(ex) for ex in row) for row in rows)
    if max_len is not None:
        width = max(width, min(-(-width // PACK_MULTIPLE) * PACK_MULTIPLE, max_len))
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE, dtype=torch.long)
    task_ids = torch.full(shape, -1, dtype=torch.long)
    # Padding continues counting from 0 so it reads as one more (ignored) packed segment.
    position_ids = torch.zeros(shape, dtype=torch.long)
    for r, row in enumerate(rows):
        col = 0
        for ex in row:
            n = len(ex)
            input_ids[r, col : col + n] = torch.tensor(ex.input_ids)
            labels[r, col : col + n] = torch.tensor(ex.labels)
            labels[r, col] = IGNORE
            task_ids[r, col : col + n] = TASKS.index(ex.task)
            position_ids[r, col : col + n] = torch.arange(n)
            col += n
        position_ids[r, col:] = torch.arange(width - col)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "task_ids": task_ids,
    }


def audio_inputs(
    ids: torch.Tensor, feats: Sequence[torch.Tensor | None], placeholder: int
) -> dict[str, torch.Tensor]:
    """The continuous-audio keys of a generation batch ``ids (B, T)`` (any padding side): row r's
    frames ``feats[r] (F_r, D)`` (None: no audio) replace its ``placeholder`` ids."""
    dim = next(f.shape[1] for f in feats if f is not None)
    frames = max(f.shape[0] for f in feats if f is not None)
    x = torch.zeros(len(feats), frames, dim)
    fmask = torch.zeros(len(feats), frames, dtype=torch.bool)
    amask = torch.zeros_like(ids, dtype=torch.bool)
    for r, f in enumerate(feats):
        if f is not None:
            x[r, : f.shape[0]], fmask[r, : f.shape[0]] = f, True
            amask[r] = ids[r] == placeholder
    return {"input_features": x, "input_features_mask": fmask, "audio_mask": amask}
