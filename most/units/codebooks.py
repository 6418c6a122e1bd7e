"""Multi-codebook units: how a ``(frames, codebooks)`` code array becomes one id sequence and back.

A residual quantiser (residual k-means, a neural codec) gives every frame ``C`` codes, each in
``[0, K)``. The LLM reads one sequence over one vocabulary, so codes are *flattened* frame by frame
(UniAudio's layout) with a per-codebook offset::

    ids = [c0(t0), K + c1(t0), ..., (C-1)K + c{C-1}(t0), c0(t1), K + c1(t1), ...]

Codebook ``c`` owns ids ``[cK, (c+1)K)``, so the vocabulary has ``C * K`` units and a position's
codebook is ``position % C``. Both views are one reshape apart: a model that predicts frame by
frame (a global model over frames and a local one over a frame's codebooks) reads
``unflatten(ids)``, a model over the flat sequence reads ``ids``. Unit shards hold the flat ids.

De-duplication for these kinds collapses runs of identical *frames* (all ``C`` codes equal) and
restores them on decode with a mean run length per first-codebook code.
"""

from __future__ import annotations

import torch

from most.units.dedup import expand


def offsets(n_codebooks: int, codebook_size: int) -> torch.Tensor:
    """``(C,)`` first id of each codebook: ``[0, K, 2K, ...]``."""
    return torch.arange(n_codebooks, dtype=torch.long) * codebook_size


def flatten(codes: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(T, C)`` codes in ``[0, K)`` -> ``(T * C,)`` long ids in ``[0, C * K)``, frame-major."""
    codes = torch.as_tensor(codes).long()
    if codes.dim() != 2:
        raise ValueError(f"codes must be (frames, codebooks), got shape {tuple(codes.shape)}")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(f"codes must be in [0, {codebook_size})")
    return (codes + offsets(codes.shape[1], codebook_size)).reshape(-1)


def unflatten(ids: torch.Tensor, n_codebooks: int, codebook_size: int) -> torch.Tensor:
    """``(T * C,)`` flat ids -> ``(T, C)`` codes; a length not a multiple of ``C`` or an id outside
    its position's codebook range raises ``ValueError`` (the first bad position is named)."""
    ids = torch.as_tensor(ids).long().flatten()
    if ids.numel() % n_codebooks:
        raise ValueError(
            f"{ids.numel()} unit ids is not a whole number of {n_codebooks}-code frames"
        )
    codes = ids.reshape(-1, n_codebooks) - offsets(n_codebooks, codebook_size)
    bad = ((codes < 0) | (codes >= codebook_size)).reshape(-1).nonzero()
    if bad.numel():
        p = int(bad[0])
        lo = (p % n_codebooks) * codebook_size
        raise ValueError(
            f"unit id {int(ids[p])} at position {p} is not in codebook {p % n_codebooks}'s "
            f"range [{lo}, {lo + codebook_size})"
        )
    return codes


def collapse_frames(codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(T, C)`` codes -> ``(U, C)`` with runs of identical frames collapsed, and ``(U,)`` run
    lengths."""
    if codes.shape[0] == 0:
        return codes, codes.new_zeros(0)
    return torch.unique_consecutive(codes, dim=0, return_counts=True)


def expand_frames(codes: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """``(U, C)`` de-duplicated codes -> ``(T, C)``: each frame repeated by the mean run length
    ``durations[code of codebook 0]`` (rounding carried forward, see :func:`expand`)."""
    if codes.shape[0] == 0:
        return codes
    frame = torch.arange(codes.shape[0])
    return codes[expand(frame, durations[codes[:, 0]])]
