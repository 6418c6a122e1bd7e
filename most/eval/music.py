"""Score generated music against its caption: notes, key and tempo, measured from the audio.

* **notes**: the audio is transcribed (:mod:`most.eval.pitch`) and its MIDI sequence aligned to
  the caption's by edit distance; ``note_acc = max(0, 1 - edits / len(caption notes))``, so a
  missing, extra or wrong note each costs one and an octave error is a wrong note.
* **key**: Krumhansl-Kessler key profiles correlated with the duration-weighted pitch-class
  histogram of the transcribed notes (the last note counts four times: tunes end on their tonic);
  ``key_acc`` is 1 when tonic and mode both match the caption.
* **tempo**: the slowest tempo (40-240 bpm) whose half-beat grid explains every inter-onset
  interval of the transcribed notes, refined by least squares; ``tempo_acc`` is 1 within
  :data:`TEMPO_TOLERANCE` (8%, as MIREX's tempo task) of the caption's bpm.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from most.audio import SAMPLE_RATE
from most.corpora.music import MusicCaption, parse_caption
from most.eval.pitch import Note, transcribe

TEMPO_TOLERANCE = 0.08
GRID_TOLERANCE = 0.2  # an onset interval fits a grid when within this share of a grid step

# Krumhansl & Kessler (1982) probe-tone ratings, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class MusicScore:
    """One clip's scores; ``None`` where the caption does not say (no notes, no key, no bpm)."""

    note_acc: float | None
    key_acc: float | None
    tempo_acc: float | None
    notes: tuple[int, ...]
    key: tuple[int, str] | None  # (tonic pitch class, mode)
    bpm: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def edit_distance(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i]
        for j, y in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def note_accuracy(predicted: list[int] | tuple[int, ...], reference: tuple[int, ...]) -> float:
    if not reference:
        raise ValueError("note_accuracy: the reference has no notes")
    return max(0.0, 1.0 - edit_distance(predicted, reference) / len(reference))


def estimate_key(notes: list[Note]) -> tuple[int, str] | None:
    """``(tonic pitch class, "major"|"minor")`` of the notes, or None when there are none."""
    if not notes:
        return None
    hist = np.zeros(12)
    for note in notes:
        hist[note.midi % 12] += note.seconds
    hist[notes[-1].midi % 12] += 3 * notes[-1].seconds  # tunes end on their tonic
    best, key = -np.inf, None
    for mode, profile in (("major", KK_MAJOR), ("minor", KK_MINOR)):
        for tonic in range(12):
            r = np.corrcoef(hist, np.roll(profile, tonic))[0, 1]
            if np.isfinite(r) and r > best:
                best, key = r, (tonic, mode)
    return key


def estimate_tempo(onsets: np.ndarray, lo: float = 40.0, hi: float = 240.0) -> float | None:
    """bpm from note onsets (seconds): the slowest beat whose half-beat grid fits every interval.

    Every interval must be a whole number (>= 1) of half-beats within :data:`GRID_TOLERANCE`; the
    slowest such tempo is taken because any faster multiple fits as well. None with < 2 onsets or
    when no tempo in ``[lo, hi]`` fits.
    """
    ioi = np.diff(np.sort(np.asarray(onsets, dtype=np.float64)))
    ioi = ioi[ioi > 0]
    if len(ioi) == 0:
        return None
    for bpm in np.arange(lo, hi + 1e-9, 0.25):
        step = 30.0 / bpm  # half a beat, in seconds
        k = np.rint(ioi / step)
        if (k >= 1).all() and (np.abs(ioi / step - k) <= GRID_TOLERANCE).all():
            step = float((k * ioi).sum() / (k * k).sum())  # least-squares grid step
            return 30.0 / step
    return None


def score_notes(notes: list[Note], caption: MusicCaption | str) -> MusicScore:
    """Score transcribed ``notes`` against ``caption`` (text or parsed)."""
    cap = parse_caption(caption) if isinstance(caption, str) else caption
    midi = tuple(n.midi for n in notes)
    key = estimate_key(notes)
    bpm = estimate_tempo(np.array([n.start for n in notes]))
    note_acc = None if not cap.pitches else note_accuracy(midi, cap.pitches)
    key_acc = None
    if cap.key_pc is not None:
        key_acc = float(key is not None and key == (cap.key_pc, cap.mode))
    tempo_acc = None
    if cap.bpm is not None:
        tempo_acc = float(bpm is not None and abs(bpm - cap.bpm) <= TEMPO_TOLERANCE * cap.bpm)
    return MusicScore(note_acc, key_acc, tempo_acc, midi, key, bpm)


def score_audio(wav: np.ndarray, caption: MusicCaption | str, sr: int = SAMPLE_RATE) -> MusicScore:
    """Transcribe ``wav`` and score it against ``caption``."""
    return score_notes(transcribe(wav, sr), caption)


def summarize(scores: list[MusicScore]) -> dict:
    """Mean of each score over the clips that have it, and ``n`` (the ``music.*`` report keys)."""
    out: dict = {"n": len(scores)}
    for name in ("note_acc", "key_acc", "tempo_acc"):
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        out[name] = round(float(np.mean(values)), 4) if values else None
    return out
