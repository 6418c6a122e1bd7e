"""The unit-tokenizer interface every implementation follows, and loading one from disk.

A unit tokenizer turns 16 kHz speech into a sequence of discrete ids the LLM reads as
``<|u0|>`` ... tokens, and (where it has a decoder) turns ids back into audio. It is saved as a
folder holding :data:`TOKENIZER_FILE` (JSON: ``kind``, ``vocab_size``, ``frame_rate``,
``sample_rate``, ``hash`` and the settings) plus :data:`WEIGHTS_FILE` (safetensors). No pickle.

``hash`` identifies the mapping audio -> ids: it changes whenever anything that can change an id
changes (settings, centroids, the feature model). Unit shards are stored under it and the token
layout records it, so a model never silently reads ids from a different tokenizer.

Implementations: :mod:`most.units.ctc_phones` (embedded default: the phonemes a small CTC
encoder trained on the run's speech hears; decodes with Griffin-Lim), :mod:`most.units.ctc_kmeans`
(that encoder trained on letters, its states clustered; decodes with Griffin-Lim), :mod:`most.units.mel_kmeans` (log-mel
k-means, no training, decodes with Griffin-Lim) and :mod:`most.units.hubert_kmeans` (HuBERT/mHuBERT features from a local folder, encode only).
Neural codecs (several ids per frame from residual codebooks) will be a third ``kind``; they
will return ``(T, n_codebooks)`` ids and report ``n_codebooks`` in their JSON.
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

TOKENIZER_FILE = "unit_tokenizer.json"
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


def load_tokenizer(path: str | Path) -> UnitTokenizer:
    """Load any saved unit tokenizer; the JSON's ``kind`` picks the class.

    ``path`` is the tokenizer folder, ``RUN/units`` or ``RUN`` (``RUN/units/tokenizer`` is used).
    The stored hash is recomputed and must match, so an edited file is caught here.
    """
    path = Path(path)
    for candidate in (path / "tokenizer", path / "units" / "tokenizer"):
        if not (path / TOKENIZER_FILE).is_file() and (candidate / TOKENIZER_FILE).is_file():
            path = candidate
    meta, _ = read_tokenizer(path)
    kind = meta.get("kind")
    # Imported lazily so the mel path never imports transformers.
    if kind == "mel_kmeans":
        from most.units.mel_kmeans import MelKMeansTokenizer as cls
    elif kind == "ctc_kmeans":
        from most.units.ctc_kmeans import CTCKMeansTokenizer as cls
    elif kind == "ctc_phones":
        from most.units.ctc_phones import CTCPhonesTokenizer as cls
    elif kind == "hubert_kmeans":
        from most.units.hubert_kmeans import HubertKMeansTokenizer as cls
    else:
        raise ValueError(f"{path}: unknown unit tokenizer kind {kind!r}")
    tok = cls.load(path)
    if tok.hash != meta.get("hash"):
        raise ValueError(f"{path}: stored hash {meta.get('hash')} != recomputed {tok.hash}")
    return tok
