"""Log-mel features: the representation the default tokenizer clusters and its vocoder inverts.

One :class:`MelSpec` fixes every STFT/mel parameter, so the encoder (frames -> k-means) and the
Griffin-Lim decoder (centroid mel -> audio) always agree on what a mel frame means.
Frame ``i`` covers samples centred on ``i * hop_length`` (``center=True`` convention), so an
utterance of ``n`` samples gives ``n // hop_length + 1`` frames whether it is encoded alone or
inside a padded batch.
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


def n_frames(n_samples: int, hop_length: int) -> int:
    return n_samples // hop_length + 1


class LogMel:
    """Waveforms -> natural-log mel magnitude frames.

    Single and batched calls give identical frames: every item is reflect-padded on its own and
    only then zero-padded to the batch length, and frames past an item's end are cut off.
    """

    def __init__(self, spec: MelSpec):
        self.spec = spec
        self.fb = mel_filterbank(spec)
        self.window = torch.hann_window(spec.win_length)

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        """``(n,)`` float audio at ``spec.sample_rate`` -> ``(T, n_mels)``."""
        return self.batch([wav])[0]

    def batch(self, wavs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """List of ``(n_i,)`` audio -> list of ``(T_i, n_mels)`` with ``T_i = n_i // hop + 1``."""
        pad = self.spec.n_fft // 2
        padded = []
        for w in wavs:
            w = normalise_level(w.float())
            # Reflection needs more samples than the pad; very short clips fall back to zeros.
            mode = "reflect" if w.numel() > pad else "constant"
            padded.append(torch.nn.functional.pad(w[None, None], (pad, pad), mode=mode)[0, 0])
        longest = max(p.numel() for p in padded)
        x = torch.stack([torch.nn.functional.pad(p, (0, longest - p.numel())) for p in padded])
        stft = torch.stft(
            x,
            n_fft=self.spec.n_fft,
            hop_length=self.spec.hop_length,
            win_length=self.spec.win_length,
            window=self.window,
            center=False,
            return_complex=True,
        )  # (B, F, T)
        mel = stft.abs().transpose(1, 2) @ self.fb  # (B, T, n_mels)
        logmel = torch.log(torch.clamp(mel, min=LOG_FLOOR))
        return [logmel[i, : n_frames(w.numel(), self.spec.hop_length)] for i, w in enumerate(wavs)]


def spec_for_frame_rate(frame_rate: float, sample_rate: int = 16_000, n_mels: int = 80) -> MelSpec:
    """The default :class:`MelSpec` for a frame rate (50 or 100 Hz at 16 kHz)."""
    hop = sample_rate / frame_rate
    if not math.isclose(hop, round(hop)):
        raise ValueError(f"frame_rate {frame_rate} does not divide sample_rate {sample_rate}")
    return MelSpec(sample_rate=sample_rate, n_mels=n_mels, hop_length=round(hop))
