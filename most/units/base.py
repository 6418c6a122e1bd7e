"""The unit-tokenizer interface every kind follows, and the helpers they share to save and hash.

A unit tokenizer turns 16 kHz speech into a sequence of discrete ids the LLM reads as
``<|u0|>`` ... tokens, and (where it has a decoder) turns ids back into audio. It is saved as a
folder holding :data:`TOKENIZER_FILE` (JSON: ``kind``, ``vocab_size``, ``frame_rate``,
``sample_rate``, ``hash`` and the settings) plus :data:`WEIGHTS_FILE` (safetensors). No pickle.

``hash`` identifies the mapping audio -> ids: it changes whenever anything that can change an id
changes (settings, centroids, the feature model). Unit shards are stored under it and the token
layout records it, so a model never silently reads ids from a different tokenizer.

The kinds, each a tokenizer class with its config, are listed in :mod:`most.units.kinds`, which
also loads a saved tokenizer of any kind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from most.audio import SAMPLE_RATE, check_audio
from most.io import atomic_write_json
from most.run import UNIT_TOKENIZER_FILE

TOKENIZER_FILE = UNIT_TOKENIZER_FILE
WEIGHTS_FILE = "unit_tokenizer.safetensors"


@runtime_checkable
class UnitTokenizer(Protocol):
    """What training, data and eval code may rely on."""

    kind: str
    vocab_size: int
    frame_rate: float
    sample_rate: int
    dedup: bool
    has_decoder: bool

    @property
    def hash(self) -> str: ...

    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(n,)`` audio at ``sr`` -> ``(T,)`` long ids in ``[0, vocab_size)``."""
        ...

    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        """Several utterances at once; item ``i`` equals ``encode(wavs[i], sr)``."""
        ...

    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(T,)`` ids -> ``(n,)`` float32 audio at ``sample_rate`` (if ``has_decoder``)."""
        ...

    def decoder_settings(self) -> dict[str, Any]:
        """How ``decode`` makes audio, for the release's ``vocoder.json``: the vocoder and its
        settings, and which saved tensors (:func:`tensor_source`) it reads."""
        ...

    def save(self, directory: str | Path) -> Path: ...


def to_waveform(
    wav: torch.Tensor | np.ndarray, sr: int, target_sr: int = SAMPLE_RATE
) -> torch.Tensor:
    """Any mono/stereo array at ``sr`` -> ``(n,)`` float32 tensor at ``target_sr``.

    Goes through :func:`most.audio.check_audio`, so empty, non-finite or silent audio raises
    :class:`most.audio.AudioError` with a reason the ``units`` stage counts.
    """
    if isinstance(wav, torch.Tensor):
        wav = wav.detach().cpu().numpy()
    # torch.tensor copies: arrays from datasets/soundfile may be read-only views.
    return torch.tensor(check_audio(np.asarray(wav), sr, target_sr=target_sr), dtype=torch.float32)


def content_hash(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> str:
    """16 hex chars of sha256 over settings (canonical JSON) and tensor bytes (sorted by name)."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous().cpu()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def base_meta(tok: UnitTokenizer) -> dict[str, Any]:
    """The JSON fields every tokenizer saves (each kind adds its own settings)."""
    return {
        "kind": tok.kind,
        "vocab_size": tok.vocab_size,
        "frame_rate": tok.frame_rate,
        "sample_rate": tok.sample_rate,
        "hash": tok.hash,
        "dedup": tok.dedup,
    }


def tensor_source(name: str, tensor: torch.Tensor, what: str) -> dict[str, Any]:
    """A decoder tensor saved in :data:`WEIGHTS_FILE`: ``{"tensor", "shape", "what"}``."""
    return {"tensor": name, "shape": list(tensor.shape), "what": what}


def write_tokenizer(
    directory: str | Path, meta: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    """Write ``meta`` as JSON and ``tensors`` as safetensors into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(directory / WEIGHTS_FILE)
    # JSON last: a folder with a JSON file is a complete tokenizer.
    atomic_write_json(directory / TOKENIZER_FILE, meta)
    return directory


def read_tokenizer(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    directory = Path(directory)
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no unit tokenizer ({TOKENIZER_FILE} missing)")
    meta = json.loads(path.read_text())
    return meta, load_file(str(directory / WEIGHTS_FILE))


def check_vocab(k: int, kind: str) -> None:
    """Raise ``ValueError`` unless ``k`` (clusters = unit vocabulary) is in [2, 65536]."""
    if not 2 <= k <= 65_536:
        raise ValueError(f"tokenizer.{kind}.k must be in [2, 65536], got {k}")


def differing(**pairs: tuple[Any, Any]) -> dict[str, tuple[Any, Any]]:
    """``name=(saved, wanted)`` pairs -> those whose two values differ."""
    return {name: (a, b) for name, (a, b) in pairs.items() if a != b}
