"""Speak text with espeak-ng (a Debian package): the embedded default's only source of audio.

A voice is ``variant:rate:pitch`` (e.g. ``en-us+m3:160:50``). Each utterance jitters rate and pitch
slightly (seeded from its id) so no two readings are identical. espeak-ng renders at 22.05 kHz;
we resample to the pipeline rate with soxr.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from most.audio import SAMPLE_RATE, AudioError, check_audio

ESPEAK = "espeak-ng"


@dataclass(frozen=True)
class Voice:
    name: str  # the spec string, used as the ``voice`` column
    variant: str
    rate: int  # words per minute
    pitch: int  # 0-99

    @classmethod
    def parse(cls, spec: str) -> Voice:
        try:
            variant, rate, pitch = spec.split(":")
            voice = cls(spec, variant, int(rate), int(pitch))
        except ValueError:
            raise ValueError(
                f"voice {spec!r} is not 'variant:rate:pitch' (e.g. en-us+m3:160:50)"
            ) from None
        if not 80 <= voice.rate <= 450 or not 0 <= voice.pitch <= 99:
            raise ValueError(f"voice {spec!r}: rate must be 80-450 and pitch 0-99")
        return voice


def require_espeak() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise FileNotFoundError(
            "espeak-ng is not installed; run `make setup` (or `apt-get install -y espeak-ng sox`)"
        )
    return path


def _jitter(key: str, span: int) -> int:
    """A deterministic offset in ``[-span, span]`` derived from ``key``."""
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=4).digest(), "little")
    return h % (2 * span + 1) - span


def synthesize(text: str, voice: Voice, key: str, max_seconds: float | None = None) -> np.ndarray:
    """``text`` spoken by ``voice`` -> float32 mono at :data:`SAMPLE_RATE`. ``key`` seeds the jitter."""
    rate = voice.rate + _jitter(key + "/rate", 8)
    pitch = min(99, max(0, voice.pitch + _jitter(key + "/pitch", 5)))
    # `--` ends the options: a text starting with "-" is spoken, never read as an option.
    cmd = [ESPEAK, "-v", voice.variant, "-s", str(rate), "-p", str(pitch), "--stdout", "--", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise AudioError("unreadable", f"espeak-ng failed for {key}: {proc.stderr.decode()[:200]}")
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    return check_audio(wav, sr, target_sr=SAMPLE_RATE, max_seconds=max_seconds, where=key)


def phonemes(words: Sequence[str], variant: str = "en-us") -> list[tuple[str, ...]]:
    """espeak-ng's phonemes for each word (``variant`` picks the accent, e.g. ``en-gb``), stress
    marks dropped: ``["stone", "fone"] -> [("s", "t", "oU", "n"), ("f", "oU", "n")]``.

    One espeak-ng call for all words: each is its own clause, and espeak-ng writes one line of
    ``_``-separated phonemes per clause.
    """
    words = list(words)
    bad = [w for w in words if not w.isalpha()]
    if bad:
        raise ValueError(f"phonemes: {bad[0]!r} is not a word (letters only)")
    if not words:
        return []
    cmd = [require_espeak(), "-q", "-x", "--sep=_", "-v", variant]
    text = "".join(f"{w}.\n" for w in words)
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True, check=False)
    lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or len(lines) != len(words):
        raise RuntimeError(
            f"espeak-ng -x gave {len(lines)} lines for {len(words)} words: "
            f"{proc.stderr.strip()[:200]}"
        )
    return [tuple(p for p in line.translate(_STRESS).split("_") if p) for line in lines]


_STRESS = str.maketrans("", "", "',")
