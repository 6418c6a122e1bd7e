"""Speech enhancement quality: SI-SDR (torchmetrics) of the enhanced speech and, as its baseline,
of the noisy input, both against the clean reference.

Signals of unequal length (decoded units rarely match the reference sample for sample) are compared
over their common start. SI-SDR is scale-invariant, so a decoder's level does not count; it does
count timing, so a unit decoder whose output drifts against the reference scores low even when it
sounds clean: read it beside the input's value, not as an absolute.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """SI-SDR of ``estimate`` against ``reference`` (mono), in dB, over their common length."""
    n = min(len(estimate), len(reference))
    if n == 0:
        raise ValueError("SI-SDR of an empty signal")
    est = torch.as_tensor(np.asarray(estimate[:n], dtype=np.float64))
    ref = torch.as_tensor(np.asarray(reference[:n], dtype=np.float64))
    return float(scale_invariant_signal_distortion_ratio(est, ref, zero_mean=True))


def enhancement_scores(
    enhanced: Sequence[np.ndarray], noisy: Sequence[np.ndarray], clean: Sequence[np.ndarray]
) -> dict[str, float]:
    """``{"si_sdr", "si_sdr_input", "si_sdr_gain"}``: means over the utterances, dB."""
    if not len(enhanced) == len(noisy) == len(clean) or not clean:
        raise ValueError("enhancement scores need as many enhanced, noisy and clean signals (> 0)")
    out = float(np.mean([si_sdr(e, c) for e, c in zip(enhanced, clean, strict=True)]))
    base = float(np.mean([si_sdr(n, c) for n, c in zip(noisy, clean, strict=True)]))
    return {"si_sdr": out, "si_sdr_input": base, "si_sdr_gain": out - base}
