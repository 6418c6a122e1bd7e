"""Inverted dropout with a cheap mask, for training on CPUs.

torch's CPU dropout draws one float per element with ``bernoulli_``: ~6 ns an element on one core,
100x the multiply it gates. :func:`dropout` draws 16 random bits per element (four per 64-bit
draw), a quarter of that cost (``benchmarks/dropout.py``). The decoder's residual dropout
(:mod:`most.train.regularize`) and the CTC recogniser's training forward (:mod:`most.ctc.model`)
use it.
"""

from __future__ import annotations

import torch
from torch import Tensor

_LEVELS = 1 << 16  # a 16-bit draw per element: the drop rate is p rounded to 1/65536


def dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout of ``x`` (training semantics of ``F.dropout``) with a cheaper mask.

    Each element keeps with probability ``1 - p'`` and is scaled by ``1 / (1 - p')``, where ``p'``
    is ``p`` rounded to a multiple of 1/65536 (0.1 -> 0.100006), so the expectation is ``x`` (up
    to the rounding of the scale in ``x``'s dtype, as with ``F.dropout``). The draws come from
    torch's default generator (of ``x``'s device): ``torch.manual_seed`` makes them reproducible.
    ``p == 0`` returns ``x`` itself.
    """
    if p == 0.0:
        return x
    n = x.numel()
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
    bits = words.view(torch.int16)[:n].view(x.shape)  # uniform in [-32768, 32767]
    dropped = min(round(p * _LEVELS), _LEVELS - 1)
    keep = bits >= dropped - _LEVELS // 2
    return x * (keep.to(x.dtype) * (_LEVELS / (_LEVELS - dropped)))
