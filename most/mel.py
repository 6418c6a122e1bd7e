"""Log-mel features: the representation the default tokenizer clusters and its vocoder inverts.

One :class:`MelSpec` fixes every STFT/mel parameter, so the encoder (frames -> k-means) and the
Griffin-Lim decoder (centroid mel -> audio) always agree on what a mel frame means.
Frame ``i`` covers samples centred on ``i * hop_length`` (``center=True`` convention), so an
utterance of ``n`` samples gives ``n // hop_length + 1`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

#: Floor of the mel magnitude before the log: about -100 dB, below any real recording's noise.
LOG_FLOOR = 1e-5
#: Utterances are scaled to this RMS before analysis so k-means clusters spectral shape, not
#: recording level (LibriSpeech, espeak and phone recordings differ by 20 dB or more).
TARGET_RMS = 0.05
#: Never amplify by more than this: near-silent input would otherwise become loud noise.
MAX_GAIN = 100.0


@dataclass(frozen=True)
class MelSpec:
    """STFT + mel parameters. ``hop_length = sample_rate / frame_rate``."""

    sample_rate: int = 16_000
    n_mels: int = 80
    n_fft: int = 1024
    win_length: int = 640
    hop_length: int = 320
    f_min: float = 0.0
    f_max: float = 8_000.0

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= f_min < f_max <= {self.sample_rate / 2}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(spec: MelSpec) -> torch.Tensor:
    """HTK-scale triangular filters with Slaney area normalisation, ``(n_fft//2+1, n_mels)``."""
    n_freq = spec.n_fft // 2 + 1
    freqs = torch.linspace(0, spec.sample_rate / 2, n_freq, dtype=torch.float64)
    lo, hi = _hz_to_mel(torch.tensor(spec.f_min)), _hz_to_mel(torch.tensor(spec.f_max))
    edges = _mel_to_hz(torch.linspace(float(lo), float(hi), spec.n_mels + 2, dtype=torch.float64))
    left, centre, right = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - left) / (centre - left)
    down = (right - freqs[:, None]) / (right - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    # Equal-area filters: wide high bands do not dominate the k-means distance.
    fb = fb * (2.0 / (right - left))
    return fb.float()


def normalise_level(wav: torch.Tensor) -> torch.Tensor:
    """Scale ``(n,)`` audio to :data:`TARGET_RMS` (gain capped at :data:`MAX_GAIN`)."""
    rms = wav.pow(2).mean().sqrt()
    gain = torch.clamp(TARGET_RMS / torch.clamp(rms, min=1e-12), max=MAX_GAIN)
    return wav * gain


class LogMel:
    """Waveforms -> natural-log mel magnitude frames."""

    def __init__(self, spec: MelSpec):
        self.spec = spec
        self.fb = mel_filterbank(spec)
        self.window = torch.hann_window(spec.win_length)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float audio at ``spec.sample_rate`` -> ``(n // hop + 1, n_mels)``."""
        pad = self.spec.n_fft // 2
        w = normalise_level(wav.float())
        # Reflection needs more samples than the pad; very short clips fall back to zeros.
        mode = "reflect" if w.numel() > pad else "constant"
        w = torch.nn.functional.pad(w[None, None], (pad, pad), mode=mode)[0, 0]
        stft = torch.stft(
            w,
            n_fft=self.spec.n_fft,
            hop_length=self.spec.hop_length,
            win_length=self.spec.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (F, T)
        mel = stft.abs().T @ self.fb  # (T, n_mels)
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))

    def batch(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """List of ``(n_i,)`` audio -> list of ``(T_i, n_mels)``.

        Items are analysed one by one on purpose: on CPU a padded batched STFT measured slower
        (padding waste, strided complex abs), and per-item analysis makes batch == single exact.
        """
        return [self(w) for w in wavs]


def spec_for_frame_rate(frame_rate: float, sample_rate: int = 16_000, n_mels: int = 80) -> MelSpec:
    """The default :class:`MelSpec` for a frame rate (50 or 100 Hz at 16 kHz)."""
    hop = sample_rate / frame_rate
    if not math.isclose(hop, round(hop)):
        raise ValueError(f"frame_rate {frame_rate} does not divide sample_rate {sample_rate}")
    return MelSpec(sample_rate=sample_rate, n_mels=n_mels, hop_length=round(hop))
