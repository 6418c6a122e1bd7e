"""Log-mel k-means units (``mel_kmeans``): 80-bin log-mel frames -> k-means ids, decoded by Griffin-Lim.

Needs nothing downloaded: it is fitted on the run's own training audio in seconds. Each frame's
log-mel vector is replaced by its nearest centroid id; with ``dedup`` repeats are collapsed (as in
MoST) and a per-unit mean duration, fitted on the same audio, expands them again before decoding.
The decoder looks up centroid log-mels and inverts them with :class:`~most.units.vocoder.GriffinLim`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from most.audio import SAMPLE_RATE
from most.mel import TARGET_RMS, LogMel, MelSpec, spec_for_frame_rate
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


class MelKMeansTokenizer:
    """Log-mel k-means units.

    Args:
        spec: mel analysis settings (its ``hop_length`` sets the frame rate).
        centroids: ``(K, n_mels)`` log-mel centroids; ``K`` is the vocabulary size.
        durations: ``(K,)`` mean frames per de-duplicated unit (used by ``decode`` when ``dedup``).
        dedup: collapse consecutive repeats in ``encode``.
        gl_iters: Griffin-Lim iterations in ``decode`` (quality/speed; does not change ids).
    """

    kind = "mel_kmeans"
    has_decoder = True

    def __init__(
        self,
        spec: MelSpec,
        centroids: torch.Tensor,
        durations: torch.Tensor | None = None,
        dedup: bool = True,
        gl_iters: int = 24,
    ):
        if centroids.dim() != 2 or centroids.shape[1] != spec.n_mels:
            raise ValueError(f"centroids must be (K, {spec.n_mels}), got {tuple(centroids.shape)}")
        self.spec = spec
        self.centroids = centroids.float().contiguous()
        k = centroids.shape[0]
        self.durations = torch.ones(k) if durations is None else durations.float()
        self.dedup = dedup
        self.gl_iters = gl_iters
        self.vocab_size = k
        self.frame_rate = spec.frame_rate
        self.sample_rate = spec.sample_rate
        self._mel = LogMel(spec)
        self._vocoder = GriffinLim(spec, n_iter=gl_iters)
        self._hash = content_hash(self._id_settings(), {"centroids": self.centroids})

    def _id_settings(self) -> dict:
        """Every setting that can change an id (the hash input besides the centroids)."""
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "dedup": self.dedup,
            "target_rms": TARGET_RMS,
        }

    @property
    def hash(self) -> str:
        return self._hash

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        wavs: Sequence[torch.Tensor | np.ndarray],
        *,
        k: int = 512,
        frame_rate: float = 50.0,
        dedup: bool = True,
        n_mels: int = 80,
        seed: int = 0,
        gl_iters: int = 24,
    ) -> MelKMeansTokenizer:
        """Fit centroids (and unit durations) on ``(n_i,)`` 16 kHz training utterances.

        The caller picks the utterances (the ``units`` stage samples them from the train split
        with ``seed``); all their frames are used, so fitting is deterministic given the inputs.
        """
        spec = spec_for_frame_rate(frame_rate, SAMPLE_RATE, n_mels)
        mel = LogMel(spec)
        feats = [mel(torch.tensor(w, dtype=torch.float32)) for w in wavs]
        frames = torch.cat(feats).numpy()
        centroids = fit_kmeans(frames, k, seed)
        runs = [collapse_repeats(assign(f, centroids)) for f in feats]
        durations = fit_durations(runs, k)
        return cls(spec, centroids, durations, dedup=dedup, gl_iters=gl_iters)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        return self.encode_batch([wav], sr)[0]

    @torch.no_grad()
    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        audio = [to_waveform(w, sr, self.sample_rate) for w in wavs]
        out = []
        for feats in self._mel.batch(audio):
            ids = assign(feats, self.centroids)
            out.append(collapse_repeats(ids)[0] if self.dedup else ids)
        return out

    @torch.no_grad()
    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U,)`` ids -> ``(n,)`` float32 audio at 16 kHz."""
        units = frame_ids(units, self.vocab_size, self.durations if self.dedup else None)
        if units.numel() == 0:
            return torch.zeros(0)
        return self._vocoder(self.centroids[units])

    def decoder_settings(self) -> dict[str, Any]:
        return {
            **self._vocoder.settings(),
            "templates": tensor_source("centroids", self.centroids, "log-mel frame of each unit"),
            "durations": tensor_source("durations", self.durations, "mean run length per unit"),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "gl_iters": self.gl_iters,
            "spec": self.spec.to_dict(),
            "version": FORMAT_VERSION,
        }
        return write_tokenizer(
            directory, meta, {"centroids": self.centroids, "durations": self.durations}
        )

    @classmethod
    def load(cls, directory: str | Path) -> MelKMeansTokenizer:
        meta, tensors = read_tokenizer(directory)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported mel_kmeans version {meta.get('version')}")
        return cls(
            MelSpec(**meta["spec"]),
            tensors["centroids"],
            tensors["durations"],
            dedup=meta["dedup"],
            gl_iters=meta["gl_iters"],
        )


@dataclass
class MelKMeansConfig:
    """``--tokenizer.mel_kmeans.*``: no training, fitted in seconds on ``fit_seconds`` of audio."""

    k: int = 512
    """Number of k-means clusters = unit vocabulary size."""
    frame_rate: float = 50.0
    """Frames per second before de-duplication (50 or 100)."""
    n_mels: int = 80

    def __post_init__(self) -> None:
        check_vocab(self.k, "mel_kmeans")

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        return fit_audio(speech, fit_seconds, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> MelKMeansTokenizer:
        return MelKMeansTokenizer.fit(
            audio.wavs,
            k=self.k,
            frame_rate=self.frame_rate,
            dedup=dedup,
            n_mels=self.n_mels,
            seed=seed,
            gl_iters=gl_iters,
        )

    def fit_settings(self) -> dict:
        return {"n_mels": self.n_mels}

    def differences(self, tok: MelKMeansTokenizer) -> dict:
        return differing(k=(tok.vocab_size, self.k), frame_rate=(tok.frame_rate, self.frame_rate))
