"""Additive noise at a chosen signal-to-noise ratio: the noisy inputs of speech enhancement.

One place for it, so the data stage (noisy copies of utterances) and the tests add noise the same
way. The noise is Gaussian, white or low-passed ("brown-ish": cumulative sum, DC removed), drawn
from the caller's generator so a noisy copy is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

COLOURS = ("white", "brown")


def noise_like(wav: np.ndarray, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Zero-mean noise of ``wav``'s shape (float32, unit RMS)."""
    if colour not in COLOURS:
        raise ValueError(f"noise colour {colour!r}: expected one of {COLOURS}")
    n = rng.standard_normal(wav.shape[-1])
    if colour == "brown":
        n = np.cumsum(n)
        n -= np.linspace(n[0], n[-1], n.shape[0])  # no drift: a random walk ends where it began
    n -= n.mean()
    rms = np.sqrt(np.mean(n**2))
    return (n / max(rms, 1e-12)).astype(np.float32)


def add_noise(
    wav: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white"
) -> np.ndarray:
    """``wav`` (float mono ``(T,)``) plus noise ``snr_db`` decibels below its power, float32;
    rescaled only if the sum would clip outside [-1, 1]."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1 or wav.size == 0:
        raise ValueError(f"add_noise needs a non-empty mono signal, got shape {wav.shape}")
    power = float(np.mean(wav.astype(np.float64) ** 2))
    noisy = wav + noise_like(wav, rng, colour) * np.float32(np.sqrt(power / 10 ** (snr_db / 10)))
    peak = float(np.abs(noisy).max())
    return (noisy / peak * 0.99).astype(np.float32) if peak > 1.0 else noisy.astype(np.float32)


def snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    """The SNR of ``noisy`` against ``clean`` (same length, no rescaling), in dB."""
    clean = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(noisy, dtype=np.float64) - clean
    return float(10 * np.log10(np.sum(clean**2) / max(np.sum(noise**2), 1e-20)))
