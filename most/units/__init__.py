"""Speech units: discrete tokens the LLM reads and writes for audio.

Public API for training, data and eval code::

    from most.units import load_tokenizer, load_units, decode
    tok = load_tokenizer("runs/demo")              # or RUN/units/tokenizer
    ids = tok.encode(wav, 16_000)                   # (T,) long
    wav = decode(tok, ids)                          # (n,) float32 at 16 kHz (mel_kmeans)
    dd = load_units("runs/demo", "speech", expected_hash=layout.unit_tokenizer_hash)

See :mod:`most.units.base` for the interface and :mod:`most.units.stage` for ``most units``.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import torch

from most.io import read_json
from most.units.base import TOKENIZER_FILE, UnitTokenizer, load_tokenizer

__all__ = ["TOKENIZER_FILE", "UnitTokenizer", "decode", "load_tokenizer", "load_units"]


def load_units(
    run: str | Path, dataset: str, expected_hash: str | None = None
) -> datasets.DatasetDict:
    """``RUN/units/<hash>/<dataset>`` of the run's current tokenizer.

    ``expected_hash`` (e.g. ``TokenLayout.unit_tokenizer_hash``) must match the tokenizer that
    encoded the data, else ``ValueError``: a model never trains or evaluates on foreign ids.
    """
    units_dir = Path(run) / "units"
    meta = read_json(units_dir / "tokenizer" / TOKENIZER_FILE)
    manifest = read_json(units_dir / "manifest.json")
    h = meta["hash"]
    if manifest.get("hash") != h or not manifest.get("complete"):
        raise ValueError(f"{units_dir}: units are not complete for tokenizer {h}; run `most units`")
    if expected_hash is not None and expected_hash != h:
        raise ValueError(
            f"{units_dir}: units were made by tokenizer {h}, expected {expected_hash}; "
            "re-run `most units` with the matching tokenizer or `most adapt`"
        )
    path = units_dir / h / dataset
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no units for dataset {dataset!r}")
    return datasets.load_from_disk(str(path))


def decode(
    tokenizer: UnitTokenizer | str | Path, units: torch.Tensor | list[int] | np.ndarray
) -> np.ndarray:
    """Unit ids ``(T,)`` -> float32 audio ``(n,)`` at ``tokenizer.sample_rate`` (TTS eval)."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str | Path) else tokenizer
    if not tok.has_decoder:
        raise ValueError(f"{tok.kind} tokenizer has no decoder")
    return tok.decode(torch.as_tensor(np.asarray(units), dtype=torch.long)).numpy()
