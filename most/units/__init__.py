"""Speech units: discrete tokens the LLM reads and writes for audio.

Public API for training, data and eval code::

    from most.units import load_tokenizer, decode
    tok = load_tokenizer("runs/demo")              # or RUN/units/tokenizer
    ids = tok.encode(wav, 16_000)                   # (T,) long
    wav = decode(tok, ids)                          # (n,) float32 at 16 kHz (kinds with a decoder)

See :mod:`most.units.base` for the interface, :mod:`most.units.kinds` for the kinds and
:mod:`most.stages.units` for ``most units``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from most.units.base import TOKENIZER_FILE, UnitTokenizer
from most.units.kinds import load_tokenizer

__all__ = ["TOKENIZER_FILE", "UnitTokenizer", "decode", "load_tokenizer"]


def decode(
    tokenizer: UnitTokenizer | str | Path, units: torch.Tensor | list[int] | np.ndarray
) -> np.ndarray:
    """Unit ids ``(T,)`` -> float32 audio ``(n,)`` at ``tokenizer.sample_rate`` (TTS eval)."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer
    if not tok.has_decoder:
        raise ValueError(f"{tok.kind} tokenizer has no decoder")
    return tok.decode(torch.as_tensor(np.asarray(units), dtype=torch.long)).numpy()
