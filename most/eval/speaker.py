"""Speaker similarity: cosine of speaker embeddings from a small encoder trained on the run's voices.

Why our own encoder: the package-shipped GE2E encoder (resemblyzer) needs the ``typing`` backport and
``webrtcvad`` (an sdist that needs a compiler), and pretrained speaker models need weights from the
network. The voices to tell apart here are the run's own (espeak-ng ``variant:rate:pitch`` voices,
or a real corpus's speakers), so a classifier over them, fitted in seconds on CPU, is enough:

    log-mel (80, 50 frames/s) -> 2 x Conv1d + GRU -> mean and std over time -> Linear (embedding)
    -> ReLU -> Linear (one logit per training voice)

The embedding is the penultimate layer; similarity is the cosine of two embeddings. How well it
tells voices apart is measured on held-out utterances (:func:`nearest_voice_accuracy`, and
:func:`equal_error_rate` of same- vs different-voice pairs), and reported beside any similarity.
Unseen voices get embeddings too (the head is dropped), which is what conversion to a held-out
voice needs; their separation is weaker than the training voices'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from most.mel import LogMel, MelSpec

SPEC = MelSpec()  # 80 mels, 50 frames a second
CROP_FRAMES = 100  # 2-s training crops: a voice, not a sentence


@dataclass
class SpeakerConfig:
    """Attributes:
    dim: embedding size.
    steps: optimiser steps.
    batch: crops a step.
    lr: Adam learning rate.
    seed: initial weights and crops.
    """

    dim: int = 64
    steps: int = 300
    batch: int = 32
    lr: float = 3e-3
    seed: int = 0


class SpeakerEncoder(nn.Module):
    """``(B, T, n_mels)`` log-mel -> ``(B, dim)`` embeddings; ``head`` gives voice logits."""

    def __init__(self, voices: Sequence[str], n_mels: int = SPEC.n_mels, dim: int = 64) -> None:
        super().__init__()
        self.voices = list(voices)
        self.conv = nn.Sequential(
            nn.Conv1d(n_mels, dim, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(dim, dim, 5, padding=2),
            nn.ReLU(),
        )
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.embed = nn.Linear(2 * dim, dim)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, len(self.voices)))
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = (mel - self.mean) / self.std
        x = self.conv(x.transpose(1, 2)).transpose(1, 2)
        x, _ = self.gru(x)
        return self.embed(torch.cat([x.mean(1), x.std(1)], dim=-1))


def log_mels(wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
    mel = LogMel(SPEC)
    return [mel(torch.as_tensor(np.asarray(w, dtype=np.float32))) for w in wavs]


def _crops(mels: list[torch.Tensor], idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for i in idx:
        m = mels[i]
        if m.shape[0] < CROP_FRAMES:
            m = torch.cat([m] * (CROP_FRAMES // m.shape[0] + 1))
        start = int(rng.integers(m.shape[0] - CROP_FRAMES + 1))
        out.append(m[start : start + CROP_FRAMES])
    return torch.stack(out)


def fit_speaker_encoder(
    wavs: Sequence[np.ndarray], voices: Sequence[str], cfg: SpeakerConfig = SpeakerConfig()
) -> SpeakerEncoder:
    """Train the encoder to name the voice of ``wavs`` (16 kHz mono) from 2-s crops."""
    names = sorted(set(voices))
    if len(names) < 2:
        raise ValueError(f"a speaker encoder needs at least two voices, got {names}")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    mels = log_mels(wavs)
    labels = torch.tensor([names.index(v) for v in voices])
    model = SpeakerEncoder(names, dim=cfg.dim)
    frames = torch.cat(mels)
    model.mean.copy_(frames.mean(0))
    model.std.copy_(frames.std(0).clamp(min=1e-3))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    for _ in range(cfg.steps):
        idx = rng.integers(len(mels), size=cfg.batch)
        loss = nn.functional.cross_entropy(model.head(model(_crops(mels, idx, rng))), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def embed(model: SpeakerEncoder, wavs: Sequence[np.ndarray]) -> torch.Tensor:
    """``(N, dim)`` unit-length embeddings of whole utterances."""
    out = [model(m[None]) for m in log_mels(wavs)]
    return nn.functional.normalize(torch.cat(out), dim=-1)


def speaker_similarity(
    model: SpeakerEncoder, wavs: Sequence[np.ndarray], refs: Sequence[np.ndarray]
) -> np.ndarray:
    """``(N,)`` cosine of each ``wavs[i]``'s embedding with ``refs[i]``'s."""
    if len(wavs) != len(refs):
        raise ValueError(f"{len(wavs)} utterances but {len(refs)} references")
    return (embed(model, wavs) * embed(model, refs)).sum(-1).numpy()


def nearest_voice_accuracy(
    model: SpeakerEncoder,
    enrol: Sequence[np.ndarray],
    enrol_voices: Sequence[str],
    test: Sequence[np.ndarray],
    test_voices: Sequence[str],
) -> float:
    """Share of ``test`` utterances whose nearest voice centroid (of ``enrol``) is their voice."""
    e, t = embed(model, enrol), embed(model, test)
    names = sorted(set(enrol_voices))
    cent = torch.stack([e[[v == n for v in enrol_voices]].mean(0) for n in names])
    pred = (t @ nn.functional.normalize(cent, dim=-1).T).argmax(-1)
    return float(np.mean([names[int(p)] == v for p, v in zip(pred, test_voices, strict=True)]))


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> float:
    """EER of a threshold on similarity: where false accepts equal false rejects."""
    scores = np.concatenate([same, different])
    best = 1.0
    for th in np.unique(scores):
        far, frr = float(np.mean(different >= th)), float(np.mean(same < th))
        best = min(best, max(far, frr))
    return best


def pair_scores(model: SpeakerEncoder, wavs: Sequence[np.ndarray], voices: Sequence[str]):
    """Cosines of all same-voice and all different-voice pairs of ``wavs``: ``(same, different)``."""
    e = embed(model, wavs)
    sim = (e @ e.T).numpy()
    v = np.asarray(voices)
    same_mask = v[:, None] == v[None, :]
    upper = np.triu(np.ones_like(sim, dtype=bool), 1)
    return sim[same_mask & upper], sim[~same_mask & upper]
