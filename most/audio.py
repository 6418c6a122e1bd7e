"""Reading and checking audio: every waveform that enters the pipeline passes through here.

All audio is float32 mono at the pipeline's rate (16 kHz by default). Stereo is downmixed and
other rates are resampled (soxr, high quality); problems that cannot be repaired raise
:class:`AudioError` with a short machine-readable ``reason`` so callers can count and list skips.
Audio is stored encoded (:func:`encode_flac`) and decoded when read (:func:`decode_audio`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000

#: Reasons an item can be rejected; the data stage counts skips by these keys.
REASONS = (
    "unreadable",
    "empty_audio",
    "non_finite",
    "too_long",
    "too_short",
    "empty_text",
    "bad_text",
    "missing_file",
    "bad_sample_rate",
)

MIN_SAMPLE_RATE = 4_000
"""Lowest sample rate accepted: below it there is no speech band left to resample."""


class AudioError(ValueError):
    """Audio that cannot be used. ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def to_mono(wav: np.ndarray) -> np.ndarray:
    """``(n,)`` or ``(n, channels)`` -> ``(n,)`` by averaging channels."""
    wav = np.asarray(wav)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    elif wav.ndim != 1:
        raise AudioError("unreadable", f"audio has {wav.ndim} dimensions, expected 1 or 2")
    return wav


def resample(wav: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    if sr == target_sr:
        return wav.astype(np.float32, copy=False)
    return soxr.resample(wav.astype(np.float32, copy=False), sr, target_sr, quality="HQ")


def check_audio(
    wav: np.ndarray,
    sr: int,
    *,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    min_seconds: float = 0.05,
    where: str = "audio",
    allow_silence: bool = False,
) -> np.ndarray:
    """Validate, downmix and resample a waveform; return float32 mono at ``target_sr``.

    ``allow_silence``: an all-zero recording is valid (it transcribes as empty text) rather than
    rejected as empty."""
    wav = to_mono(wav)
    if sr < MIN_SAMPLE_RATE:
        raise AudioError(
            "bad_sample_rate", f"{where}: sample rate {sr} Hz is under {MIN_SAMPLE_RATE} Hz"
        )
    if wav.size == 0:
        raise AudioError("empty_audio", f"{where}: no samples")
    if not np.all(np.isfinite(wav)):
        raise AudioError("non_finite", f"{where}: contains NaN or inf samples")
    seconds = wav.shape[0] / sr
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            "too_long", f"{where}: {seconds:.1f}s is over the {max_seconds:.1f}s limit"
        )
    if seconds < min_seconds:
        raise AudioError("too_short", f"{where}: {seconds:.3f}s is under {min_seconds}s")
    if np.issubdtype(wav.dtype, np.integer):
        wav = wav.astype(np.float32) / np.iinfo(wav.dtype).max
    wav = resample(wav, sr, target_sr)
    if not allow_silence and not np.any(wav):
        raise AudioError("empty_audio", f"{where}: all samples are zero")
    return wav


def read_audio(
    path: str | Path,
    *,
    target_sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    min_seconds: float = 0.05,
    allow_silence: bool = False,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Read any format libsndfile knows (wav, flac, ogg, mp3) -> float32 mono at ``target_sr``
    (``allow_silence``: see :func:`check_audio`); ``start``/``end`` (seconds) read a segment."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("missing_file", f"{path}: file not found")
    try:
        if start or end is not None:
            rate = sf.info(str(path)).samplerate
            stop = None if end is None else round(end * rate)
            wav, sr = sf.read(
                str(path), start=round(start * rate), stop=stop, dtype="float32", always_2d=False
            )
        else:
            wav, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # libsndfile raises several types for broken files
        raise AudioError("unreadable", f"{path}: cannot decode audio ({e})") from None
    return check_audio(
        wav,
        sr,
        target_sr=target_sr,
        max_seconds=max_seconds,
        min_seconds=min_seconds,
        where=str(path),
        allow_silence=allow_silence,
    )


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM wav (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), np.clip(wav, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    tmp.replace(path)
    return path


def encode_flac(wav: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Mono float32 ``wav`` -> the bytes of a 16-bit FLAC file, encoded in memory.

    Samples are clipped to [-1, 1) and rounded to multiples of 1/32768, the scale libsndfile reads
    16-bit audio at: audio that came from a 16-bit file is stored without loss."""
    pcm = np.clip(np.rint(np.asarray(wav, dtype=np.float32) * 32768.0), -32768, 32767)
    buf = io.BytesIO()
    sf.write(buf, pcm.astype(np.int16), sr, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def decode_audio(value: Mapping, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """A stored audio struct (:mod:`most.corpora.schema`) -> float32 mono at ``target_sr``.

    ``{"bytes", "sampling_rate"}`` holds an encoded file (FLAC, or any format libsndfile reads);
    ``{"array", "sampling_rate"}`` holds decoded samples. Bytes that cannot be decoded raise
    :class:`AudioError` (``unreadable``). The samples are not validated: see :func:`check_audio`."""
    data = value.get("bytes")
    if data is not None:
        try:
            wav, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except Exception as e:  # libsndfile raises several types for broken data
            raise AudioError("unreadable", f"stored audio cannot be decoded ({e})") from None
    elif value.get("array") is not None:
        wav, sr = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    else:
        raise AudioError("unreadable", "stored audio has neither bytes nor samples")
    return resample(to_mono(wav), sr, target_sr)
