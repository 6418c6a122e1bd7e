"""Melodies for the music modality: a seeded generator, their captions, and caption parsing.

A :class:`Melody` is a key (tonic + major/minor), a tempo in bpm, a style word that fixes the metre
(waltz 3/4, march 2/4, ...), an instrument (one of the synth's timbres, :mod:`most.corpora.synth`)
and 6-16 notes, each a MIDI number with a duration in beats. Its caption says all of it in one
English line that the scorer can read back exactly::

    a slow waltz in D minor at 72 bpm on a violin: D4 F4 A4 C#5 D5 A4 F4 D4

The generator writes melodies that state their key the way simple tunes do (start on a tonic-triad
note, move mostly by step in the scale, end long on the tonic; minor keys are harmonic minor, whose
raised 7th tells them from the relative major) and that hold at least one pair of half-beat notes,
so the tempo is the slowest beat whose half-beat grid explains every inter-onset interval (see
:func:`most.eval.music.estimate_tempo`). Everything is a pure function of the seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

PITCH_CLASSES_SHARP = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
PITCH_CLASSES_FLAT = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_PC = {name: i for i, name in enumerate(PITCH_CLASSES_SHARP)} | {
    name: i for i, name in enumerate(PITCH_CLASSES_FLAT)
}
#: Tonic spellings used in captions (the usual key names: Bb major, F# minor, ...).
MAJOR_TONICS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MINOR_TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
MODES = ("major", "minor")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 11)}  # harmonic minor
#: Keys whose notes are spelled with flats (the others with sharps).
FLAT_KEYS = {("F", "major"), ("Bb", "major"), ("Eb", "major"), ("Ab", "major"), ("Db", "major")}
FLAT_KEYS |= {("D", "minor"), ("G", "minor"), ("C", "minor"), ("F", "minor"), ("Bb", "minor")}
FLAT_KEYS |= {("Eb", "minor")}

#: Style word -> beats per bar (the metre the synth accents).
STYLES = {"waltz": 3, "march": 2, "ballad": 4, "hymn": 4, "dance": 2, "song": 4}
#: The synth's timbres (:data:`most.corpora.synth.TIMBRES` holds their recipes).
INSTRUMENTS = ("piano", "violin", "flute", "clarinet", "organ")
TEMPO_WORDS = (("slow", 0, 84), ("moderate", 84, 120), ("fast", 120, 1000))
MIN_BPM, MAX_BPM = 60, 160
MIN_NOTES, MAX_NOTES = 6, 16
LOWEST, HIGHEST = 48, 84  # C3 .. C6: what the pitch tracker is set up for


class CaptionError(ValueError):
    """A caption that does not say what a melody needs."""


@dataclass(frozen=True)
class Melody:
    """One melody. ``pitches`` are MIDI numbers, ``beats`` their durations in beats."""

    tonic: str
    mode: str
    bpm: int
    style: str
    instrument: str
    pitches: tuple[int, ...]
    beats: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise CaptionError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.tonic not in _PC:
            raise CaptionError(f"unknown tonic {self.tonic!r}")
        if len(self.pitches) != len(self.beats):
            raise CaptionError(f"{len(self.pitches)} pitches but {len(self.beats)} durations")
        if self.bpm <= 0:
            raise CaptionError(f"bpm must be > 0, got {self.bpm}")

    @property
    def key_pc(self) -> int:
        """Pitch class (0 = C) of the tonic."""
        return _PC[self.tonic]

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.bpm

    @property
    def beats_per_bar(self) -> int:
        return STYLES.get(self.style, 4)

    def onsets(self) -> np.ndarray:
        """``(n,)`` note start times in seconds (from the first note)."""
        starts = np.concatenate([[0.0], np.cumsum(self.beats)[:-1]])
        return starts * self.beat_seconds

    def note_names(self) -> list[str]:
        """Scientific pitch names spelled in the key (D minor: Bb and C#, never A# or Db)."""
        return [spell(p, self.tonic, self.mode) for p in self.pitches]

    def caption(self) -> str:
        article = "an" if self.instrument[0] in "aeiou" else "a"
        notes = " ".join(self.note_names())
        return (
            f"a {tempo_word(self.bpm)} {self.style} in {self.tonic} {self.mode} at {self.bpm} bpm "
            f"on {article} {self.instrument}: {notes}"
        )


def tempo_word(bpm: float) -> str:
    return next(word for word, lo, hi in TEMPO_WORDS if lo <= bpm < hi)


def midi_to_name(midi: int, flats: bool = False) -> str:
    """``62 -> "D4"``, ``70 -> "A#4"`` (``"Bb4"`` with ``flats``); scientific pitch notation."""
    names = PITCH_CLASSES_FLAT if flats else PITCH_CLASSES_SHARP
    return f"{names[midi % 12]}{midi // 12 - 1}"


LETTERS = "CDEFGAB"
_NATURAL = {letter: _PC[letter] for letter in LETTERS}


def spell(midi: int, tonic: str, mode: str) -> str:
    """``midi`` named as a note of the key ``tonic`` ``mode``: a scale note takes the letter of
    its degree (F# in G minor, not Gb); a note outside the scale is spelled as the key's
    accidentals go (flats in flat keys)."""
    offset = (midi - _PC[tonic]) % 12
    scale = SCALES[mode]
    if offset not in scale:
        return midi_to_name(midi, (tonic, mode) in FLAT_KEYS)
    letter = LETTERS[(LETTERS.index(tonic[0]) + scale.index(offset)) % 7]
    alter = (midi % 12 - _NATURAL[letter] + 6) % 12 - 6  # -2 .. 2
    octave = (midi - alter) // 12 - 1  # B#3 is C4's pitch, Cb4 is B3's
    return f"{letter}{'#' * alter if alter > 0 else 'b' * -alter}{octave}"


_NOTE = re.compile(r"^([A-Ga-g])(#{0,2}|b{0,2})(-?\d)$")


def name_to_midi(name: str) -> int:
    """``"D4" -> 62``, ``"Bb3" -> 58``, ``"C#5" -> 73``."""
    m = _NOTE.match(name)
    if m is None:
        raise CaptionError(f"{name!r} is not a note name like D4, Bb3 or C#5")
    letter, accidental, octave = m.groups()
    pc = _NATURAL[letter.upper()] + accidental.count("#") - accidental.count("b")
    return 12 * (int(octave) + 1) + pc


@dataclass(frozen=True)
class MusicCaption:
    """What a caption says; each part is None when the caption leaves it out."""

    text: str
    tonic: str | None = None
    mode: str | None = None
    bpm: int | None = None
    style: str | None = None
    instrument: str | None = None
    pitches: tuple[int, ...] | None = None

    @property
    def key_pc(self) -> int | None:
        return None if self.tonic is None else _PC[self.tonic]


_KEY = re.compile(r"\bin ([A-G][#b]?) (major|minor)\b")
_BPM = re.compile(r"\bat (\d+(?:\.\d+)?) bpm\b")
_INSTRUMENT = re.compile(r"\bon an? ([a-z]+)\b")


def parse_caption(text: str) -> MusicCaption:
    """Read key, tempo, style, instrument and notes back from a caption (any part may be missing;
    the words around them are free). Notes follow the first ``:``.

    Raises :class:`CaptionError` for a note list with a token that is not a note name.
    """
    head, _, tail = text.partition(":")
    key = _KEY.search(head)
    bpm = _BPM.search(head)
    instrument = _INSTRUMENT.search(head)
    style = next((s for s in STYLES if re.search(rf"\b{s}\b", head)), None)
    pitches = tuple(name_to_midi(tok) for tok in tail.split()) if tail.strip() else None
    return MusicCaption(
        text=text,
        tonic=key.group(1) if key else None,
        mode=key.group(2) if key else None,
        bpm=round(float(bpm.group(1))) if bpm else None,
        style=style,
        instrument=instrument.group(1) if instrument else None,
        pitches=pitches,
    )


# ---- the generator ----------------------------------------------------------------------------


def _durations(n: int, rng: np.random.Generator) -> list[float]:
    """``n`` durations in beats: quarters mostly, one or more eighth pairs, a long last note."""
    out: list[float] = []
    while len(out) < n - 1:
        r = rng.random()
        if r < 0.25 and len(out) <= n - 3:
            out += [0.5, 0.5]
        elif r < 0.75:
            out.append(1.0)
        elif r < 0.9:
            out.append(2.0)
        else:
            out.append(1.5)
    if 0.5 not in out:  # the tempo estimate needs one half-beat interval
        at = int(rng.integers(0, max(1, n - 2)))
        out[at : at + 2] = [0.5, 0.5]
    return [*out[: n - 1], float(rng.choice([2.0, 3.0]))]


def _degrees(n: int, rng: np.random.Generator) -> list[int]:
    """Scale degrees (0 = tonic, 7 = octave): a stepwise walk from a tonic-triad note to the tonic."""
    degree = int(rng.choice([0, 2, 4]))
    out = [degree]
    for i in range(1, n - 1):
        left = n - 1 - i  # steps left before the final tonic
        step = int(rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]))
        degree = int(np.clip(degree + step, -3, 9))
        # head home: stay within reach of the tonic (0 or 7) for the last notes
        home = 0 if abs(degree) <= abs(degree - 7) else 7
        if abs(degree - home) > 2 * left:
            degree += int(np.sign(home - degree)) * 2
        out.append(degree)
    home = 0 if abs(out[-1]) <= abs(out[-1] - 7) else 7
    if not any(d % 7 == 2 for d in out):  # the third tells major from minor: sound it once
        out[1] = min((-5, 2, 9), key=lambda third: abs(third - out[0]))
    return [*out, home]


def _degree_to_midi(degree: int, tonic_midi: int, mode: str) -> int:
    octave, step = divmod(degree, 7)
    return tonic_midi + 12 * octave + SCALES[mode][step]


def generate_melody(seed: int) -> Melody:
    """A melody drawn from ``seed`` (the same seed, the same melody, on every machine)."""
    rng = np.random.default_rng(seed)
    mode = str(rng.choice(MODES))
    pc = int(rng.integers(0, 12))
    tonic = (MAJOR_TONICS if mode == "major" else MINOR_TONICS)[pc]
    tonic_midi = 60 + pc if pc <= 7 else 48 + pc  # tonic within G3..G4: room above and below
    n = int(rng.integers(MIN_NOTES, MAX_NOTES + 1))
    degrees = _degrees(n, rng)
    pitches = tuple(
        int(np.clip(_degree_to_midi(d, tonic_midi, mode), LOWEST, HIGHEST)) for d in degrees
    )
    return Melody(
        tonic=tonic,
        mode=mode,
        bpm=int(rng.integers(MIN_BPM, MAX_BPM + 1)),
        style=str(rng.choice(sorted(STYLES))),
        instrument=str(rng.choice(INSTRUMENTS)),
        pitches=pitches,
        beats=tuple(_durations(n, rng)),
    )
