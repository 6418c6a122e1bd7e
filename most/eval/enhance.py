"""Speech enhancement quality: SI-SDR and STOI (torchmetrics; STOI through pystoi) of the enhanced
speech and, as their baselines, of the noisy input, all against the clean reference.

Signals of unequal length (decoded units rarely match the reference sample for sample) are compared
over their common start. SI-SDR is scale-invariant, so a decoder's level does not count; it does
count timing, so a unit decoder whose output drifts against the reference scores low even when it
sounds clean: read it beside the input's value, not as an absolute. STOI (short-time objective
intelligibility, 0-1) correlates envelopes over ~384-ms windows, so a small drift costs it less.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.audio import (
    scale_invariant_signal_distortion_ratio,
    short_time_objective_intelligibility,
)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SI-SDR of ``estimate`` against ``reference`` (mono), in dB, over their common length."""
    n = min(len(estimate), len(reference))
    if n == 0:
        raise ValueError("SI-SDR of an empty signal")
    est = torch.as_tensor(np.asarray(estimate[:n], dtype=np.float64))
    ref = torch.as_tensor(np.asarray(reference[:n], dtype=np.float64))
    return float(scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True))


def stoi(estimate: np.ndarray, reference: np.ndarray, sr: int = 16_000) -> float:
    """STOI of ``estimate`` against ``reference`` (mono, ``sr`` Hz), 0-1, over their common
    length."""
    n = min(len(estimate), len(reference))
    if n == 0:
        raise ValueError("STOI of an empty signal")
    est = torch.as_tensor(np.asarray(estimate[:n], dtype=np.float64))
    ref = torch.as_tensor(np.asarray(reference[:n], dtype=np.float64))
    return float(short_time_objective_intelligibility(est, ref, sr))


def enhancement_scores(
    enhanced: Sequence[np.ndarray], noisy: Sequence[np.ndarray], clean: Sequence[np.ndarray]
) -> dict[str, float]:
    """``{"si_sdr", "si_sdr_input", "si_sdr_gain", "stoi", "stoi_input"}``: means over the
    utterances (SI-SDR in dB)."""
    if not len(enhanced) == len(noisy) == len(clean) or not clean:
        raise ValueError("enhancement scores need as many enhanced, noisy and clean signals (> 0)")
    out = float(np.mean([si_sdr(e, c) for e, c in zip(enhanced, clean, strict=True)]))
    base = float(np.mean([si_sdr(n, c) for n, c in zip(noisy, clean, strict=True)]))
    return {
        "si_sdr": out,
        "si_sdr_input": base,
        "si_sdr_gain": out - base,
        "stoi": float(np.mean([stoi(e, c) for e, c in zip(enhanced, clean, strict=True)])),
        "stoi_input": float(np.mean([stoi(n, c) for n, c in zip(noisy, clean, strict=True)])),
    }
