"""HuBERT-family units (``hubert_kmeans``): hidden states of one transformer layer of a local ``HubertModel`` -> k-means.

This is MoST's tokenizer family (mHuBERT 25 Hz, layer 11, K=500, de-duplicated). The model is read
from a local HF folder (no downloads) and never modified; the k-means centroids and the decoder
are fitted on the same audio and saved with the tokenizer. Its hash covers the model's config and
weight bytes, the layer and the centroids (everything that can change an id), so swapping the
checkpoint behind the same path is noticed.

Decoding (training-free, as the ``ctc_*`` kinds): a HuBERT frame (20 ms at 50 Hz, 40 ms at 25 Hz)
covers ``r = hop / 160`` frames of the 100 Hz log-mel of :data:`most.ctc.model.MEL`; every unit has
a template of those ``r`` frames, the mean over all fitting frames assigned to it, and a mean run
length. Ids are expanded by the run lengths, replaced by their templates and inverted by
Griffin-Lim. Templates average the voices, so decoded speech has one neutral voice.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE
from most.ctc.model import MEL
from most.mel import TARGET_RMS, LogMel
from most.units.base import (
    base_meta,
    check_vocab,
    content_hash,
    differing,
    read_tokenizer,
    tensor_source,
    to_waveform,
    write_tokenizer,
)
from most.units.dedup import collapse_repeats, fit_durations, frame_ids
from most.units.kmeans import assign, fit_kmeans
from most.units.sample import Utterances, fit_audio
from most.units.vocoder import GriffinLim

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
    """Units = k-means clusters of one layer of a local HF ``HubertModel``.

    Args:
        model_path: local HF folder of the model.
        layer: ``hidden_states`` index (0 = CNN + projection output).
        centroids: ``(K, hidden)`` k-means centroids.
        templates: ``(K, r, n_mels)`` log-mel frames (100 Hz) each unit decodes to,
            ``r = hop / 160`` with ``hop`` the model's samples per frame.
        durations: ``(K,)`` mean run length (model frames) per unit, used when ``dedup``.
        dedup: collapse consecutive repeats in ``encode``.
        gl_iters: Griffin-Lim iterations in ``decode`` (does not change ids).
    """

    kind = "hubert_kmeans"
    has_decoder = True

    def __init__(
        self,
        model_path: str | Path,
        layer: int,
        centroids: torch.Tensor,
        templates: torch.Tensor,
        durations: torch.Tensor,
        dedup: bool = True,
        gl_iters: int = 24,
    ):
        self.model_path = Path(model_path)
        self.model = load_model(self.model_path)
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= layer <= n_layers:
            raise ValueError(f"layer {layer} not in [0, {n_layers}] for {model_path}")
        k, r = centroids.shape[0], mel_frames_per_unit(self.model, self.model_path)
        if centroids.shape != (k, self.model.config.hidden_size):
            raise ValueError(
                f"centroids must be (K, {self.model.config.hidden_size}), got {tuple(centroids.shape)}"
            )
        if templates.shape != (k, r, MEL.n_mels) or durations.shape != (k,):
            raise ValueError(f"templates must be (K, {r}, {MEL.n_mels}) and durations (K,)")
        self.layer, self.dedup, self.gl_iters = layer, dedup, gl_iters
        self.centroids = centroids.float().contiguous()
        self.templates = templates.float().contiguous()
        self.durations = durations.float()
        self.vocab_size = k
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = SAMPLE_RATE / math.prod(self.model.config.conv_stride)
        self.fingerprint = model_fingerprint(self.model_path)
        self._vocoder = GriffinLim(MEL, n_iter=gl_iters)
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
        gl_iters: int = 24,
    ) -> HubertKMeansTokenizer:
        """Fit k-means, templates and durations on the layer features of ``(n_i,)`` 16 kHz
        training utterances."""
        model = load_model(Path(model_path))
        r = mel_frames_per_unit(model, Path(model_path))
        audio = [torch.tensor(w, dtype=torch.float32) for w in wavs]
        feats = layer_features(model, layer, audio)
        centroids = torch.as_tensor(fit_kmeans(torch.cat(feats).numpy(), k, seed)).float()
        ids = [assign(f, centroids) for f in feats]
        templates = fit_templates(audio, ids, k, r)
        durations = fit_durations([collapse_repeats(u) for u in ids], k)
        return cls(model_path, layer, centroids, templates, durations, dedup, gl_iters)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        return self.encode_batch([wav], sr)[0]

    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        audio = [to_waveform(w, sr, self.sample_rate) for w in wavs]
        ids = [assign(f, self.centroids) for f in layer_features(self.model, self.layer, audio)]
        return [collapse_repeats(i)[0] for i in ids] if self.dedup else ids

    @torch.no_grad()
    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U,)`` ids -> ``(n,)`` float32 audio at 16 kHz."""
        units = frame_ids(units, self.vocab_size, self.durations if self.dedup else None)
        if units.numel() == 0:
            return torch.zeros(0)
        return self._vocoder(self.templates[units].reshape(-1, MEL.n_mels))

    def decoder_settings(self) -> dict[str, Any]:
        r = self.templates.shape[1]
        return {
            **self._vocoder.settings(),
            "templates": tensor_source(
                "templates", self.templates, f"mean log-mel of the {r} mel frames under each unit"
            ),
            "durations": tensor_source("durations", self.durations, "mean run length per unit"),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "gl_iters": self.gl_iters,
            "layer": self.layer,
            "model_path": str(self.model_path.resolve()),
            "model_fingerprint": self.fingerprint,
            "mel": MEL.to_dict(),
            "target_rms": TARGET_RMS,
            "version": FORMAT_VERSION,
        }
        tensors = {
            "centroids": self.centroids,
            "templates": self.templates,
            "durations": self.durations,
        }
        return write_tokenizer(directory, meta, tensors)

    @classmethod
    def load(cls, directory: str | Path) -> HubertKMeansTokenizer:
        meta, tensors = read_tokenizer(directory)
        if "templates" not in tensors or meta.get("mel") != MEL.to_dict():
            raise ValueError(
                f"{directory}: hubert_kmeans tokenizer without this version's decoder "
                "templates; fit it again (most units --force)"
            )
        tok = cls(
            meta["model_path"],
            meta["layer"],
            tensors["centroids"],
            tensors["templates"],
            tensors["durations"],
            dedup=meta["dedup"],
            gl_iters=meta["gl_iters"],
        )
        if tok.fingerprint != meta["model_fingerprint"]:
            raise ValueError(
                f"{directory}: the model at {meta['model_path']} changed since the tokenizer was fitted"
            )
        return tok


def load_model(model_path: Path):
    """The ``HubertModel`` in a local HF folder, in eval mode."""
    from transformers import HubertModel  # imported here: the other kinds never need it

    return HubertModel.from_pretrained(str(model_path)).eval()


def mel_frames_per_unit(model, model_path: Path) -> int:
    """100 Hz log-mel frames under one model frame (2 at 50 Hz, 4 at 25 Hz)."""
    hop = math.prod(model.config.conv_stride)
    if hop % MEL.hop_length:
        raise ValueError(
            f"{model_path}: {hop} samples per frame is not a multiple of the decoder's "
            f"{MEL.hop_length}-sample mel hop"
        )
    return hop // MEL.hop_length


@torch.no_grad()
def layer_features(model, layer: int, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """List of ``(n_i,)`` 16 kHz audio -> list of ``(T_i, hidden)`` features of ``layer``.

    Items run one at a time: HuBERT's group-norm feature extractor (base models) mixes statistics
    over padding, so batching with padding would change the ids.
    """
    out = []
    for w in wavs:
        # HuBERT expects zero-mean unit-variance input (the HF feature extractor's normalise).
        x = (w - w.mean()) / (w.std() + 1e-7)
        hidden = model(x[None].float(), output_hidden_states=True).hidden_states
        out.append(hidden[layer][0])
    return out


def fit_templates(
    wavs: Sequence[torch.Tensor], ids: Sequence[torch.Tensor], k: int, r: int
) -> torch.Tensor:
    """Mean log-mel ``(K, r, n_mels)`` of the ``r`` mel frames under each model frame of each unit.

    Model frame ``i`` (receptive field from sample ``i * hop``) is paired with mel frames
    ``r*i .. r*i + r - 1`` (centred on samples ``i * hop + j * 160``); the last frames are filled
    up by repeating the last mel frame. Units never assigned get the mean over all frames, so any
    id decodes to something audible.
    """
    logmel = LogMel(MEL)
    total = torch.zeros(k, r, MEL.n_mels, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    for wav, u in zip(wavs, ids, strict=True):
        m = logmel(wav)
        need = u.shape[0] * r
        m = torch.cat([m[:need], m[-1:].expand(max(need - m.shape[0], 0), -1)])
        total.index_add_(0, u.long(), m.reshape(-1, r, MEL.n_mels).double())
        count.index_add_(0, u.long(), torch.ones(u.shape[0], dtype=torch.float64))
    mean_all = total.sum(0) / count.sum().clamp(min=1)
    out = torch.where(count[:, None, None] > 0, total / count.clamp(min=1)[:, None, None], mean_all)
    return out.float()


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
            gl_iters=gl_iters,
        )

    def fit_settings(self) -> dict:
        return {"model_path": None if self.model_path is None else str(self.model_path)}

    def differences(self, tok: HubertKMeansTokenizer) -> dict:
        return differing(k=(tok.vocab_size, self.k), layer=(tok.layer, self.layer))
