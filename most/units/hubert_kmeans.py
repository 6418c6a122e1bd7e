"""HuBERT-family units (``hubert_kmeans``): hidden states of one transformer layer of a local ``HubertModel`` -> k-means.

This is MoST's tokenizer family (mHuBERT 25 Hz, layer 11, K=500, de-duplicated). The model is read
from a local HF folder (no downloads) and never modified; only the k-means centroids are fitted
and saved with the tokenizer. Its hash covers the model's config and weight bytes, the layer and the
centroids, so swapping the checkpoint behind the same path is noticed.
There is no decoder: unit-to-speech for HuBERT units needs a trained vocoder (a later issue).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE
from most.units.base import (
    base_meta,
    check_vocab,
    content_hash,
    differing,
    read_tokenizer,
    to_waveform,
    write_tokenizer,
)
from most.units.dedup import collapse_repeats
from most.units.kmeans import assign, fit_kmeans
from most.units.sample import Utterances, fit_audio

#: Part of the hash: bump it whenever a code change (features, assignment) can change an id.
FORMAT_VERSION = 1


def model_fingerprint(model_path: Path) -> str:
    """sha256 over the folder's config.json and weight files (16 hex chars)."""
    h = hashlib.sha256()
    files = sorted(
        p
        for p in Path(model_path).iterdir()
        if p.name == "config.json" or p.suffix == ".safetensors"
    )
    if not files:
        raise FileNotFoundError(
            f"{model_path}: no config.json / *.safetensors (a HF model folder?)"
        )
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class HubertKMeansTokenizer:
    """Args: model_path (local HF folder), layer (``hidden_states`` index; 0 = CNN+projection
    output), centroids ``(K, hidden)``, dedup."""

    kind = "hubert_kmeans"
    has_decoder = False

    def __init__(
        self, model_path: str | Path, layer: int, centroids: torch.Tensor, dedup: bool = True
    ):
        from transformers import HubertModel  # imported here: the mel path never needs it

        self.model_path = Path(model_path)
        self.model = HubertModel.from_pretrained(str(self.model_path)).eval()
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise ValueError(f"layer {layer} not in [0, {n_layers}] for {model_path}")
        self.layer, self.dedup = layer, dedup
        self.centroids = centroids.float().contiguous()
        self.vocab_size = centroids.shape[0]
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = SAMPLE_RATE / math.prod(self.model.config.conv_stride)
        self.fingerprint = model_fingerprint(self.model_path)
        settings = {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "layer": layer,
            "dedup": dedup,
            "model": self.fingerprint,
        }
        self._hash = content_hash(settings, {"centroids": self.centroids})

    @property
    def hash(self) -> str:
        return self._hash

    @torch.no_grad()
    def features(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """List of ``(n_i,)`` 16 kHz audio -> list of ``(T_i, hidden)`` layer features.

        Items run one at a time: HuBERT's group-norm feature extractor (base models) mixes
        statistics over padding, so batching with padding would change the ids.
        """
        out = []
        for w in wavs:
            # HuBERT expects zero-mean unit-variance input (the HF feature extractor's normalise).
            x = (w - w.mean()) / (w.std() + 1e-7)
            hidden = self.model(x[None].float(), output_hidden_states=True).hidden_states
            out.append(hidden[self.layer][0])
        return out

    @classmethod
    def fit(
        cls,
        wavs: Sequence[torch.Tensor | np.ndarray],
        *,
        model_path: str | Path,
        layer: int = 11,
        k: int = 500,
        dedup: bool = True,
        seed: int = 0,
    ) -> HubertKMeansTokenizer:
        """Fit k-means on the layer features of ``(n_i,)`` 16 kHz training utterances."""
        probe = cls(model_path, layer, torch.zeros(1, 1), dedup)
        feats = probe.features([torch.tensor(w, dtype=torch.float32) for w in wavs])
        centroids = fit_kmeans(torch.cat(feats).numpy(), k, seed)
        return cls(model_path, layer, centroids, dedup)

    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        return self.encode_batch([wav], sr)[0]

    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        feats = self.features([to_waveform(w, sr, self.sample_rate) for w in wavs])
        ids = [assign(f, self.centroids) for f in feats]
        return [collapse_repeats(i)[0] for i in ids] if self.dedup else ids

    def decode(self, units: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("hubert_kmeans units have no training-free decoder")

    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "layer": self.layer,
            "model_path": str(self.model_path.resolve()),
            "model_fingerprint": self.fingerprint,
            "version": FORMAT_VERSION,
        }
        return write_tokenizer(directory, meta, {"centroids": self.centroids})

    @classmethod
    def load(cls, directory: str | Path) -> HubertKMeansTokenizer:
        meta, tensors = read_tokenizer(directory)
        tok = cls(meta["model_path"], meta["layer"], tensors["centroids"], meta["dedup"])
        if tok.fingerprint != meta["model_fingerprint"]:
            raise ValueError(
                f"{directory}: the model at {meta['model_path']} changed since the tokenizer was fitted"
            )
        return tok


@dataclass
class HubertKMeansConfig:
    """``--tokenizer.hubert_kmeans.*``: features of a local HF ``HubertModel`` (MoST: mHuBERT
    25 Hz, layer 11, K=500), k-means fitted on ``fit_seconds`` of audio."""

    model_path: Path | None = None
    """Local HF folder of a HubertModel (e.g. mHuBERT); needed to fit."""
    layer: int = 11
    """Hidden-state layer whose features are clustered (0 = the CNN + projection output)."""
    k: int = 512
    """Number of k-means clusters = unit vocabulary size."""

    def __post_init__(self) -> None:
        check_vocab(self.k, "hubert_kmeans")

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        if self.model_path is None:
            raise ValueError("fitting hubert_kmeans units needs tokenizer.hubert_kmeans.model_path")
        return fit_audio(speech, fit_seconds, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> HubertKMeansTokenizer:
        assert self.model_path is not None  # checked in sample
        return HubertKMeansTokenizer.fit(
            audio.wavs,
            model_path=self.model_path,
            layer=self.layer,
            k=self.k,
            dedup=dedup,
            seed=seed,
        )

    def fit_settings(self) -> dict:
        return {"model_path": None if self.model_path is None else str(self.model_path)}

    def differences(self, tok: HubertKMeansTokenizer) -> dict:
        return differing(k=(tok.vocab_size, self.k), layer=(tok.layer, self.layer))
