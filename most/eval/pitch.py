"""Pitch tracking (YIN) and note segmentation: audio -> the notes a listener would write down.

YIN (de Cheveigné & Kawahara 2002) in vectorised numpy: the cumulative-mean-normalised difference
function of every frame at once (its cross term by FFT), the first dip under a threshold, parabolic
interpolation. It is written here rather than taken from librosa's pYIN because librosa brings
numba and llvmlite (~100 MB, a JIT compile of several seconds per process on this 2-core machine)
for what is 40 lines of numpy; on the monophonic melodies scored here plain YIN with an energy gate
is as exact, and the HMM smoothing of pYIN is done by the note segmentation below.

Notes: frames are rounded to the nearest semitone; runs of one semitone separated by unvoiced
frames or a pitch change are notes; runs shorter than ``min_note`` are absorbed by their neighbours
(attack transients, vibrato that crosses a semitone boundary for a frame or two).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from most.audio import SAMPLE_RATE

HOP_SECONDS = 0.01
SILENCE_RMS = 10 ** (-70 / 20)  # frames quieter than -70 dBFS are never voiced


@dataclass(frozen=True)
class Note:
    """A tracked note: MIDI number, start and length in seconds."""

    midi: int
    start: float
    seconds: float


def yin(
    wav: np.ndarray,
    sr: int = SAMPLE_RATE,
    fmin: float = 60.0,
    fmax: float = 1200.0,
    threshold: float = 0.15,
    gate_db: float = -35.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-wise f0 of ``wav`` ``(samples,)`` every :data:`HOP_SECONDS`.

    Returns ``(f0, voiced)``, both ``(frames,)``: f0 in Hz (0 where unvoiced) and a bool mask.
    A frame is voiced when its normalised difference dips under ``threshold`` and its energy is
    within ``gate_db`` of the loudest frame (and above :data:`SILENCE_RMS`).
    """
    wav = np.asarray(wav, dtype=np.float64)
    hop = round(HOP_SECONDS * sr)
    max_tau = int(np.ceil(sr / fmin))
    min_tau = max(2, int(np.floor(sr / fmax)))
    w = max_tau  # integration window: one period of the lowest pitch
    frame = w + max_tau
    pad = np.pad(wav, (frame // 2, frame))
    n_frames = 1 + len(wav) // hop
    idx = np.arange(n_frames)[:, None] * hop + np.arange(frame)[None, :]
    x = pad[idx]  # (frames, frame)
    nfft = 1 << int(np.ceil(np.log2(2 * frame)))
    spec = np.fft.rfft(x, nfft)
    head = np.fft.rfft(x[:, :w], nfft)
    cross = np.fft.irfft(np.conj(head) * spec, nfft)[:, : max_tau + 1]  # r(tau), tau=0..max_tau
    sq = np.cumsum(np.pad(x**2, ((0, 0), (1, 0))), axis=1)
    taus = np.arange(max_tau + 1)
    energy_tau = sq[:, taus + w] - sq[:, taus]  # sum of x[j+tau]^2 over the window
    d = energy_tau[:, :1] + energy_tau - 2 * cross
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1)
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] * taus[1:] / np.maximum(cum, 1e-12)
    cmnd[:, :min_tau] = 1.0

    below = cmnd < threshold
    first = np.where(below.any(axis=1), below.argmax(axis=1), 0)
    f0 = np.zeros(n_frames)
    for i in np.flatnonzero(first):
        t = first[i]
        while t + 1 <= max_tau and cmnd[i, t + 1] < cmnd[i, t]:  # walk down to the dip's bottom
            t += 1
        if 0 < t < max_tau:  # parabolic interpolation of the minimum
            a, b, c = cmnd[i, t - 1], cmnd[i, t], cmnd[i, t + 1]
            denom = a - 2 * b + c
            t = t + (0.5 * (a - c) / denom if denom > 0 else 0.0)
        f0[i] = sr / t
    rms = np.sqrt(energy_tau[:, 0] / w)
    loud = 20 * np.log10(np.maximum(rms, 1e-10) / max(rms.max(), 1e-10)) > gate_db
    loud &= rms > SILENCE_RMS
    voiced = (f0 > 0) & loud
    return np.where(voiced, f0, 0.0), voiced


def hz_to_midi(hz: np.ndarray) -> np.ndarray:
    return 69.0 + 12.0 * np.log2(np.maximum(hz, 1e-6) / 440.0)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """``(label, start, end)`` of each run of equal labels."""
    if len(labels) == 0:
        return []
    cut = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [len(labels)]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def segment_notes(
    f0: np.ndarray, voiced: np.ndarray, min_note: float = 0.05, hop: float = HOP_SECONDS
) -> list[Note]:
    """Frame-wise f0 -> notes. Unvoiced frames are label -1; short runs join a neighbour."""
    labels = np.where(voiced, np.rint(hz_to_midi(f0)), -1).astype(int)
    min_frames = max(1, round(min_note / hop))
    # absorb short voiced runs sitting between two runs (transients, vibrato blips): they take
    # the label of the longer voiced neighbour, or become unvoiced when both are silence
    changed = True
    while changed:
        changed = False
        runs = _runs(labels)
        for i, (label, s, e) in enumerate(runs):
            if label < 0 or e - s >= min_frames:
                continue
            neighbours = [runs[j] for j in (i - 1, i + 1) if 0 <= j < len(runs)]
            voiced_nb = [r for r in neighbours if r[0] >= 0]
            new = max(voiced_nb, key=lambda r: r[2] - r[1])[0] if voiced_nb else -1
            labels[s:e] = new
            changed = True
            break
    return [
        Note(midi=label, start=s * hop, seconds=(e - s) * hop)
        for label, s, e in _runs(labels)
        if label >= 0
    ]


def transcribe(wav: np.ndarray, sr: int = SAMPLE_RATE) -> list[Note]:
    """``wav`` -> the notes in it (monophonic)."""
    f0, voiced = yin(wav, sr)
    return segment_notes(f0, voiced)
