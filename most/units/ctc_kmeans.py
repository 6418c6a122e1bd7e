"""Phonetic units from a small supervised encoder (``ctc_kmeans``): CTC-recogniser hidden states -> k-means.

Why: k-means on log-mel frames clusters *voices* as much as sounds. A recogniser trained with
character CTC on the run's own transcribed speech learns features that keep the sounds and drop
the voice, so clustering its states gives units that depend less on who speaks (the recipe of
supervised speech tokenizers: an ASR encoder + vector quantisation, e.g. CosyVoice's S3 tokenizer).

Encoding: per-utterance normalised log-mel (100 Hz) -> :class:`~most.ctc.model.CTCRecognizer`
up to ``layer`` (frames stacked x4: 25 Hz) -> L2-normalised states -> nearest centroid (cosine)
-> repeats collapsed. Each utterance is encoded on its own, so ids never depend on batch padding.

Decoding (training-free): every unit has a log-mel template of its 4 frames (40 ms), the mean over
all fitting frames assigned to it, and a mean run length; ids are expanded by the run lengths,
replaced by their templates and inverted by Griffin-Lim. Templates average the voices, so decoded
speech has one neutral voice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from most.audio import SAMPLE_RATE
from most.ctc.model import MEL, STACK, CTCModelConfig, CTCRecognizer, features, stack_steps
from most.ctc.train import CTCSchedule, train_recognizer
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
from most.units.encoder import EncoderConfig
from most.units.kmeans import assign, fit_kmeans
from most.units.sample import Utterances
from most.units.vocoder import GriffinLim

#: Part of the hash: bump it whenever a code change (features, assignment) can change an id.
FORMAT_VERSION = 1
ENCODER_PREFIX = "encoder."


class CTCKMeansTokenizer:
    """Units = k-means clusters of a CTC recogniser's hidden states.

    Args:
        encoder: the trained recogniser (only layers ``1..layer`` are used).
        layer: encoder layer whose output is clustered (1-based).
        centroids: ``(K, width)`` unit-norm centroids.
        templates: ``(K, 4, n_mels)`` log-mel frames each unit decodes to.
        durations: ``(K,)`` mean run length (25 Hz frames) per unit, used when ``dedup``.
        dedup: collapse consecutive repeats in ``encode``.
        gl_iters: Griffin-Lim iterations in ``decode`` (does not change ids).
    """

    kind = "ctc_kmeans"
    has_decoder = True

    def __init__(
        self,
        encoder: CTCRecognizer,
        layer: int,
        centroids: torch.Tensor,
        templates: torch.Tensor,
        durations: torch.Tensor,
        dedup: bool = True,
        gl_iters: int = 24,
    ):
        n_layers = encoder.cfg.layers
        if not 1 <= layer <= n_layers:
            raise ValueError(f"layer must be in [1, {n_layers}] for this encoder, got {layer}")
        k = centroids.shape[0]
        if centroids.shape != (k, encoder.cfg.width):
            raise ValueError(f"centroids must be (K, {encoder.cfg.width}), got {centroids.shape}")
        if templates.shape != (k, STACK, MEL.n_mels) or durations.shape != (k,):
            raise ValueError("templates must be (K, 4, n_mels) and durations (K,)")
        self.encoder = encoder.eval()
        self.layer = layer
        self.centroids = centroids.float().contiguous()
        self.templates = templates.float().contiguous()
        self.durations = durations.float()
        self.dedup = dedup
        self.gl_iters = gl_iters
        self.vocab_size = k
        self.sample_rate = SAMPLE_RATE
        self.frame_rate = MEL.frame_rate / STACK
        self._vocoder = GriffinLim(MEL, n_iter=gl_iters)
        self._hash = content_hash(self._id_settings(), self._id_tensors())

    def _id_settings(self) -> dict:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "encoder": self.encoder.cfg.to_dict(),
            "layer": self.layer,
            "mel": MEL.to_dict(),
            "dedup": self.dedup,
        }

    def _id_tensors(self) -> dict[str, torch.Tensor]:
        return {"centroids": self.centroids, **self.encoder.prefixed_state(ENCODER_PREFIX)}

    @property
    def hash(self) -> str:
        return self._hash

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        wavs: Sequence[np.ndarray],
        texts: Sequence[str],
        *,
        k: int = 256,
        layer: int = 2,
        fit_seconds: float = 1800.0,
        encoder: CTCModelConfig | None = None,
        schedule: CTCSchedule | None = None,
        dedup: bool = True,
        seed: int = 0,
        gl_iters: int = 24,
    ) -> CTCKMeansTokenizer:
        """Train the encoder on 16 kHz ``wavs`` with their ``texts``, then fit centroids,
        templates and durations on the first ``fit_seconds`` of those utterances."""
        if len(wavs) != len(texts) or not wavs:
            raise ValueError("fit needs the same number (> 0) of utterances and transcripts")
        model, _ = train_recognizer(
            wavs, texts, encoder or CTCModelConfig(), schedule or CTCSchedule(seed=seed), "units"
        )
        n_fit = int(np.searchsorted(np.cumsum([len(w) for w in wavs]), fit_seconds * SAMPLE_RATE))
        fit_wavs = [torch.tensor(w, dtype=torch.float32) for w in wavs[: n_fit + 1]]
        states = [_states(model, layer, w) for w in fit_wavs]
        centroids = torch.as_tensor(fit_kmeans(torch.cat(states).numpy(), k, seed))
        centroids = nn.functional.normalize(centroids.float(), dim=-1)
        ids = [assign(s, centroids) for s in states]
        templates = _templates(fit_wavs, ids, k)
        durations = fit_durations([collapse_repeats(u) for u in ids], k)
        return cls(model, layer, centroids, templates, durations, dedup=dedup, gl_iters=gl_iters)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        return self.encode_batch([wav], sr)[0]

    @torch.no_grad()
    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        out = []
        for w in wavs:
            ids = assign(_states(self.encoder, self.layer, to_waveform(w, sr)), self.centroids)
            out.append(collapse_repeats(ids)[0] if self.dedup else ids)
        return out

    @torch.no_grad()
    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U,)`` ids -> ``(n,)`` float32 audio at 16 kHz."""
        units = frame_ids(units, self.vocab_size, self.durations if self.dedup else None)
        if units.numel() == 0:
            return torch.zeros(0)
        return self._vocoder(self.templates[units].reshape(-1, MEL.n_mels))

    def decoder_settings(self) -> dict[str, Any]:
        return {
            **self._vocoder.settings(),
            "templates": tensor_source(
                "templates", self.templates, f"mean log-mel of the {STACK} mel frames of each unit"
            ),
            "durations": tensor_source("durations", self.durations, "mean run length per unit"),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "gl_iters": self.gl_iters,
            "layer": self.layer,
            "encoder": self.encoder.cfg.to_dict(),
            "mel": MEL.to_dict(),
            "target_rms": TARGET_RMS,
            "version": FORMAT_VERSION,
        }
        tensors = {
            **self._id_tensors(),
            "templates": self.templates,
            "durations": self.durations,
        }
        return write_tokenizer(directory, meta, tensors)

    @classmethod
    def load(cls, directory: str | Path) -> CTCKMeansTokenizer:
        meta, tensors = read_tokenizer(directory)
        if meta.get("version") != FORMAT_VERSION or meta.get("mel") != MEL.to_dict():
            raise ValueError(f"{directory}: unsupported ctc_kmeans version or mel settings")
        encoder = CTCRecognizer.from_prefixed(meta["encoder"], tensors, ENCODER_PREFIX)
        return cls(
            encoder,
            meta["layer"],
            tensors["centroids"],
            tensors["templates"],
            tensors["durations"],
            dedup=meta["dedup"],
            gl_iters=meta["gl_iters"],
        )


@torch.no_grad()
def _states(model: CTCRecognizer, layer: int, wav: torch.Tensor) -> torch.Tensor:
    """One 16 kHz utterance -> ``(T/4, width)`` unit-norm states of ``layer``."""
    feats = features([wav])[0]
    h, _ = model.hidden(feats[None], torch.tensor([feats.shape[0]]), layer)
    return nn.functional.normalize(h[0], dim=-1)


def _templates(wavs: Sequence[torch.Tensor], ids: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Mean raw log-mel ``(K, 4, n_mels)`` of the 4 frames under each encoder step of each unit.

    Units never assigned get the mean over all steps, so any id decodes to something audible.
    """
    logmel = LogMel(MEL)
    total = torch.zeros(k, STACK, MEL.n_mels, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    for wav, u in zip(wavs, ids, strict=True):
        m = stack_steps(logmel(wav))[: u.shape[0]]
        total.index_add_(0, u.long(), m.double())
        count.index_add_(0, u.long(), torch.ones(u.shape[0], dtype=torch.float64))
    mean_all = total.sum(0) / count.sum().clamp(min=1)
    out = torch.where(count[:, None, None] > 0, total / count.clamp(min=1)[:, None, None], mean_all)
    return out.float()


@dataclass
class CTCKMeansConfig:
    """``--tokenizer.ctc_kmeans.*``: an encoder trained on the letters of the transcripts, its
    states clustered."""

    k: int = 512
    """Number of k-means clusters = unit vocabulary size."""
    layer: int = 2
    """Encoder layer whose states are clustered (1-3)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_vocab(self.k, "ctc_kmeans")
        n_layers = CTCModelConfig().layers
        if not 1 <= self.layer <= n_layers:
            raise ValueError(f"tokenizer.ctc_kmeans.layer must be in [1, {n_layers}]")

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        return self.encoder.sample(speech, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> CTCKMeansTokenizer:
        return CTCKMeansTokenizer.fit(
            audio.wavs,
            [str(t) for t in audio.texts],
            k=self.k,
            layer=self.layer,
            seed=seed,
            fit_seconds=fit_seconds,
            encoder=self.encoder.model(),
            schedule=self.encoder.schedule(seed),
            dedup=dedup,
            gl_iters=gl_iters,
        )

    def fit_settings(self) -> dict:
        return self.encoder.fit_settings()

    def differences(self, tok: CTCKMeansTokenizer) -> dict:
        return differing(
            k=(tok.vocab_size, self.k),
            layer=(tok.layer, self.layer),
            **{"encoder.window": (tok.encoder.cfg.attn_window, self.encoder.window)},
        )
