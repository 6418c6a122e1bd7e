"""Residual k-means units (``rvq``): log-mel frames -> ``C`` codebooks of ``K`` codes, decoded by Griffin-Lim.

The embedded stand-in for a neural codec's residual vector quantiser (UniAudio tokenises audio with
one): codebook 0 is k-means over the 80-bin log-mel frames, codebook ``c`` is k-means over what the
codebooks before it left unexplained. A frame is encoded greedily, codebook by codebook (nearest
centroid of the current residual), and reconstructed as the sum of its codes' centroids, so every
codebook added refines the same frame and a prefix of the codebooks is a coarser encoding of it.
Nothing is trained beyond k-means: it fits in seconds on the run's own audio.

Ids: ``encode`` returns the flat sequence of :mod:`most.units.codebooks` (``C`` ids per frame,
codebook ``c`` owning ids ``[cK, (c+1)K)``, vocabulary ``C * K``); :meth:`RVQTokenizer.encode_codes`
returns the same units as a ``(frames, C)`` array. ``frame_rate`` counts frames, so the sequence
has ``frame_rate * n_codebooks`` ids per second.
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
from most.units.codebooks import collapse_frames, expand_frames, flatten, offsets, unflatten
from most.units.dedup import fit_durations
from most.units.kmeans import assign, fit_kmeans
from most.units.sample import Utterances, fit_audio
from most.units.vocoder import GriffinLim

#: Part of the hash: bump it whenever a code change (features, assignment) can change an id.
FORMAT_VERSION = 1


def fit_residual_kmeans(frames: torch.Tensor, n_codebooks: int, k: int, seed: int) -> torch.Tensor:
    """``(N, D)`` frames -> ``(C, K, D)`` centroids: codebook ``c`` is k-means (seed ``seed + c``)
    over the residual the codebooks before it leave."""
    residual = frames.float().clone()
    books = []
    for c in range(n_codebooks):
        centroids = fit_kmeans(residual.numpy(), k, seed + c)
        residual -= centroids[assign(residual, centroids)]
        books.append(centroids)
    return torch.stack(books)


def residual_assign(features: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(T, D)`` features, ``(C, K, D)`` centroids -> ``(T, C)`` greedy residual codes."""
    residual = features.float().clone()
    codes = []
    for book in centroids:
        ids = assign(residual, book)
        residual -= book[ids]
        codes.append(ids)
    return torch.stack(codes, dim=1) if codes else residual.new_zeros(len(residual), 0).long()


def reconstruct(codes: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """``(T, c)`` codes of the first ``c <= C`` codebooks -> ``(T, D)`` sum of their centroids."""
    if codes.shape[1] > centroids.shape[0]:
        raise ValueError(
            f"{codes.shape[1]} codebooks given, the tokenizer has {centroids.shape[0]}"
        )
    out = centroids.new_zeros(codes.shape[0], centroids.shape[2])
    for c in range(codes.shape[1]):
        out += centroids[c][codes[:, c]]
    return out


class RVQTokenizer:
    """Residual k-means units over log-mel frames.

    Args:
        spec: mel analysis settings (its ``hop_length`` sets the frame rate).
        centroids: ``(C, K, n_mels)`` centroids of each codebook (codebook 0 over log-mel frames,
            the others over residuals); the vocabulary is ``C * K``.
        durations: ``(K,)`` mean run length of a de-duplicated frame by its codebook-0 code.
        dedup: collapse runs of identical frames (all codes equal) in ``encode``.
        gl_iters: Griffin-Lim iterations in ``decode`` (quality/speed; does not change ids).
    """

    kind = "rvq"
    has_decoder = True

    def __init__(
        self,
        spec: MelSpec,
        centroids: torch.Tensor,
        durations: torch.Tensor | None = None,
        dedup: bool = True,
        gl_iters: int = 24,
    ):
        if centroids.dim() != 3 or centroids.shape[2] != spec.n_mels:
            raise ValueError(
                f"centroids must be (codebooks, K, {spec.n_mels}), got {tuple(centroids.shape)}"
            )
        self.spec = spec
        self.centroids = centroids.float().contiguous()
        self.n_codebooks, self.codebook_size = centroids.shape[0], centroids.shape[1]
        k = self.codebook_size
        self.durations = torch.ones(k) if durations is None else durations.float()
        if self.durations.shape != (k,):
            raise ValueError(f"durations must be ({k},), got {tuple(self.durations.shape)}")
        self.dedup = dedup
        self.gl_iters = gl_iters
        self.vocab_size = self.n_codebooks * k
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

    @property
    def offsets(self) -> torch.Tensor:
        """``(C,)`` first id of each codebook in the flat vocabulary."""
        return offsets(self.n_codebooks, self.codebook_size)

    # ---- fitting -------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        wavs: Sequence[torch.Tensor | np.ndarray],
        *,
        n_codebooks: int = 4,
        k: int = 256,
        frame_rate: float = 50.0,
        dedup: bool = True,
        n_mels: int = 80,
        seed: int = 0,
        gl_iters: int = 24,
    ) -> RVQTokenizer:
        """Fit the codebooks (and frame durations) on all frames of ``(n_i,)`` 16 kHz utterances."""
        spec = spec_for_frame_rate(frame_rate, SAMPLE_RATE, n_mels)
        mel = LogMel(spec)
        feats = [mel(torch.tensor(w, dtype=torch.float32)) for w in wavs]
        centroids = fit_residual_kmeans(torch.cat(feats), n_codebooks, k, seed)
        runs = [collapse_frames(residual_assign(f, centroids)) for f in feats]
        durations = fit_durations(((codes[:, 0], n) for codes, n in runs), k)
        return cls(spec, centroids, durations, dedup=dedup, gl_iters=gl_iters)

    # ---- features ------------------------------------------------------------------------------
    @torch.no_grad()
    def features(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(T, n_mels)`` log-mel frames the codes quantise."""
        return self._mel(to_waveform(wav, sr, self.sample_rate))

    def quantise(self, features: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """``(T, n_mels)`` -> ``(T, n_mels)`` as encoded by the first ``n_codebooks`` (default all)."""
        codes = residual_assign(features, self.centroids)
        return reconstruct(codes[:, : n_codebooks or self.n_codebooks], self.centroids)

    # ---- encode / decode -----------------------------------------------------------------------
    def encode(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(n,)`` audio -> ``(U * C,)`` flat ids (see :mod:`most.units.codebooks`)."""
        return self.encode_batch([wav], sr)[0]

    def encode_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        return [flatten(c, self.codebook_size) for c in self.encode_codes_batch(wavs, sr)]

    def encode_codes(self, wav: torch.Tensor | np.ndarray, sr: int) -> torch.Tensor:
        """``(n,)`` audio -> ``(U, C)`` codes in ``[0, K)`` (``U`` frames, fewer with ``dedup``)."""
        return self.encode_codes_batch([wav], sr)[0]

    @torch.no_grad()
    def encode_codes_batch(
        self, wavs: Sequence[torch.Tensor | np.ndarray], sr: int
    ) -> list[torch.Tensor]:
        audio = [to_waveform(w, sr, self.sample_rate) for w in wavs]
        out = []
        for feats in self._mel.batch(audio):
            codes = residual_assign(feats, self.centroids)
            out.append(collapse_frames(codes)[0] if self.dedup else codes)
        return out

    def decode(self, units: torch.Tensor) -> torch.Tensor:
        """``(U * C,)`` flat ids -> ``(n,)`` float32 audio at 16 kHz."""
        return self.decode_codes(unflatten(units, self.n_codebooks, self.codebook_size))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """``(U, c)`` codes of the first ``c <= C`` codebooks -> ``(n,)`` float32 audio at 16 kHz
        (fewer codebooks: a coarser spectrum)."""
        codes = torch.as_tensor(codes).long()
        bad = codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size)
        if codes.dim() != 2 or bad:
            raise ValueError(f"codes must be (frames, codebooks) in [0, {self.codebook_size})")
        if self.dedup:
            codes = expand_frames(codes, self.durations)
        if codes.shape[0] == 0:
            return torch.zeros(0)
        return self._vocoder(reconstruct(codes, self.centroids))

    def decoder_settings(self) -> dict[str, Any]:
        return {
            **self._vocoder.settings(),
            "codebooks": {
                "n_codebooks": self.n_codebooks,
                "codebook_size": self.codebook_size,
                "ids": "frame-major, id = codebook * codebook_size + code",
            },
            "templates": tensor_source(
                "centroids", self.centroids, "log-mel of each code; a frame sums its codebooks'"
            ),
            "durations": tensor_source(
                "durations", self.durations, "mean run length of a frame by its codebook-0 code"
            ),
        }

    # ---- persistence ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        meta = {
            **base_meta(self),
            "n_codebooks": self.n_codebooks,
            "codebook_size": self.codebook_size,
            "gl_iters": self.gl_iters,
            "spec": self.spec.to_dict(),
            "version": FORMAT_VERSION,
        }
        return write_tokenizer(
            directory, meta, {"centroids": self.centroids, "durations": self.durations}
        )

    @classmethod
    def load(cls, directory: str | Path) -> RVQTokenizer:
        meta, tensors = read_tokenizer(directory)
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported rvq version {meta.get('version')}")
        return cls(
            MelSpec(**meta["spec"]),
            tensors["centroids"],
            tensors["durations"],
            dedup=meta["dedup"],
            gl_iters=meta["gl_iters"],
        )


@dataclass
class RVQConfig:
    """``--tokenizer.rvq.*``: residual k-means over log-mel, no training, fitted in seconds."""

    n_codebooks: int = 4
    """Codebooks per frame (UniAudio's codec uses 3); each frame becomes this many ids."""
    k: int = 256
    """Codes per codebook; the unit vocabulary is ``n_codebooks * k``."""
    frame_rate: float = 50.0
    """Frames per second (50 or 100)."""
    n_mels: int = 80

    def __post_init__(self) -> None:
        check_vocab(self.k, "rvq")
        if not 1 <= self.n_codebooks <= 32:
            raise ValueError(
                f"tokenizer.rvq.n_codebooks must be in [1, 32], got {self.n_codebooks}"
            )
        if self.k * self.n_codebooks > 65_536:
            raise ValueError(
                f"tokenizer.rvq.n_codebooks * k must be <= 65536, got {self.n_codebooks * self.k}"
            )

    def sample(self, speech: datasets.DatasetDict, seed: int, fit_seconds: float) -> Utterances:
        return fit_audio(speech, fit_seconds, seed)

    def fit(
        self, audio: Utterances, *, seed: int, fit_seconds: float, dedup: bool, gl_iters: int
    ) -> RVQTokenizer:
        return RVQTokenizer.fit(
            audio.wavs,
            n_codebooks=self.n_codebooks,
            k=self.k,
            frame_rate=self.frame_rate,
            dedup=dedup,
            n_mels=self.n_mels,
            seed=seed,
            gl_iters=gl_iters,
        )

    def fit_settings(self) -> dict:
        return {"n_mels": self.n_mels}

    def differences(self, tok: RVQTokenizer) -> dict:
        return differing(
            n_codebooks=(tok.n_codebooks, self.n_codebooks),
            k=(tok.codebook_size, self.k),
            frame_rate=(tok.frame_rate, self.frame_rate),
        )
