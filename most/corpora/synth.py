"""Render a :class:`~most.corpora.music.Melody` to audio with a small additive synth (numpy only).

Each timbre is a recipe: harmonic amplitudes, an attack/decay/sustain/release envelope, vibrato and
a breath-noise level. That is enough for five instruments a listener (and a pitch tracker) tells
apart, with no system package (a General-MIDI soundfont through fluidsynth would sound better, but
adds a Debian dependency and a 100+ MB soundfont to a pipeline that must run from a bare machine).
The output is a pure function of the melody: float32 mono at the pipeline's 16 kHz.

Every note stops a little before the next one starts (a short silence between notes), so repeated
notes stay separate notes for the pitch tracker, as they are for a listener; the first beat of each
bar is accented so the metre can be heard.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from most.audio import SAMPLE_RATE
from most.corpora.music import Melody

LEAD_SECONDS = 0.1  # silence before the first note
TAIL_SECONDS = 0.2  # silence after the last note
GAP_SECONDS = 0.05  # silence between notes (at most a quarter of the note)
PEAK = 0.8


@dataclass(frozen=True)
class Timbre:
    """How one instrument sounds.

    Attributes:
        harmonics: amplitude of partial 1, 2, ... (relative to the fundamental).
        attack: seconds to full level.
        decay: seconds (time constant) from full level towards ``sustain``.
        sustain: level held after the decay (0: the note dies away, like a struck string).
        release: seconds of fade at the note's end.
        vibrato_hz: vibrato rate (0: none).
        vibrato_depth: vibrato depth as a frequency ratio (0.006 = about 10 cents).
        noise: level of breath noise relative to the tone.
        brightness_decay: upper partials decay this much faster (struck and plucked sounds).
    """

    harmonics: tuple[float, ...]
    attack: float
    decay: float
    sustain: float
    release: float
    vibrato_hz: float = 0.0
    vibrato_depth: float = 0.0
    noise: float = 0.0
    brightness_decay: float = 0.0


TIMBRES: dict[str, Timbre] = {
    "piano": Timbre((1.0, 0.5, 0.3, 0.2, 0.1, 0.05), 0.005, 0.6, 0.0, 0.03, brightness_decay=1.5),
    "violin": Timbre(tuple(1.0 / n for n in range(1, 9)), 0.06, 0.2, 0.85, 0.04, 5.5, 0.006, 0.01),
    "flute": Timbre((1.0, 0.25, 0.1), 0.04, 0.2, 0.9, 0.04, 4.5, 0.004, 0.03),
    "clarinet": Timbre((1.0, 0.0, 0.5, 0.0, 0.3, 0.0, 0.15), 0.03, 0.2, 0.9, 0.03),
    "organ": Timbre((1.0, 0.6, 0.4, 0.0, 0.25, 0.0, 0.0, 0.15), 0.01, 0.1, 1.0, 0.02),
}


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _envelope(n: int, t: Timbre, sr: int) -> np.ndarray:
    time = np.arange(n) / sr
    attack = np.minimum(1.0, time / max(t.attack, 1e-4))
    level = t.sustain + (1.0 - t.sustain) * np.exp(-np.maximum(time - t.attack, 0.0) / t.decay)
    release = np.minimum(1.0, (n - 1 - np.arange(n)) / max(1, int(t.release * sr)))
    return attack * level * release


def _note(hz: float, seconds: float, t: Timbre, sr: int, rng: np.random.Generator) -> np.ndarray:
    n = max(1, round(seconds * sr))
    time = np.arange(n) / sr
    inst = hz * (1.0 + t.vibrato_depth * np.sin(2 * np.pi * t.vibrato_hz * time))
    phase = 2 * np.pi * np.cumsum(inst) / sr
    tone = np.zeros(n)
    for k, amp in enumerate(t.harmonics, start=1):
        if amp == 0.0 or k * hz >= 0.45 * sr:
            continue
        fade = np.exp(-t.brightness_decay * (k - 1) * time) if t.brightness_decay else 1.0
        tone += amp * fade * np.sin(k * phase)
    tone /= sum(abs(a) for a in t.harmonics)
    if t.noise:
        tone += t.noise * rng.standard_normal(n)
    return tone * _envelope(n, t, sr)


def render(melody: Melody, sr: int = SAMPLE_RATE) -> np.ndarray:
    """``melody`` -> float32 mono ``(samples,)`` at ``sr``; peak :data:`PEAK`."""
    if melody.instrument not in TIMBRES:
        raise ValueError(f"unknown instrument {melody.instrument!r}; one of {sorted(TIMBRES)}")
    timbre = TIMBRES[melody.instrument]
    seed = int.from_bytes(hashlib.blake2b(melody.caption().encode(), digest_size=4).digest())
    rng = np.random.default_rng(seed)
    onsets = melody.onsets() + LEAD_SECONDS
    lengths = np.asarray(melody.beats) * melody.beat_seconds
    total = onsets[-1] + lengths[-1] + TAIL_SECONDS
    out = np.zeros(int(np.ceil(total * sr)) + 1)
    position = 0.0  # in beats, for the accent on each bar's first beat
    for pitch, start, length, beats in zip(
        melody.pitches, onsets, lengths, melody.beats, strict=True
    ):
        sounding = length - min(GAP_SECONDS, 0.25 * length)
        accent = 1.0 if position % melody.beats_per_bar == 0 else 0.7
        note = accent * _note(float(midi_to_hz(pitch)), sounding, timbre, sr, rng)
        i = round(start * sr)
        out[i : i + len(note)] += note
        position += beats
    out *= PEAK / max(np.abs(out).max(), 1e-9)
    return out.astype(np.float32)
