"""The melody generator, its captions and the synth."""

from dataclasses import replace

import numpy as np
import pytest

from most.audio import SAMPLE_RATE
from most.corpora.music import (
    HIGHEST,
    INSTRUMENTS,
    LOWEST,
    MAX_NOTES,
    MIN_NOTES,
    SCALES,
    CaptionError,
    generate_melody,
    name_to_midi,
    parse_caption,
    spell,
)
from most.corpora.synth import GAP_SECONDS, LEAD_SECONDS, TAIL_SECONDS, TIMBRES, render


def test_generator_is_deterministic_and_varied():
    assert generate_melody(3) == generate_melody(3)
    melodies = [generate_melody(s) for s in range(40)]
    assert len({m.caption() for m in melodies}) == 40
    assert {m.instrument for m in melodies} == set(INSTRUMENTS)
    assert {m.mode for m in melodies} == {"major", "minor"}
    assert len({m.key_pc for m in melodies}) >= 10


@pytest.mark.parametrize("seed", range(30))
def test_melody_rules(seed):
    m = generate_melody(seed)
    assert MIN_NOTES <= len(m.pitches) <= MAX_NOTES
    assert all(LOWEST <= p <= HIGHEST for p in m.pitches)
    scale = {(m.key_pc + step) % 12 for step in SCALES[m.mode]}
    assert {p % 12 for p in m.pitches} <= scale  # diatonic
    assert m.pitches[-1] % 12 == m.key_pc  # ends on the tonic
    assert 0.5 in m.beats and all(b in (0.5, 1.0, 1.5, 2.0, 3.0) for b in m.beats)


def test_caption_round_trip():
    for seed in range(50):
        m = generate_melody(seed)
        cap = parse_caption(m.caption())
        assert (cap.tonic, cap.mode, cap.bpm, cap.style, cap.instrument, cap.pitches) == (
            m.tonic,
            m.mode,
            m.bpm,
            m.style,
            m.instrument,
            m.pitches,
        )


def test_caption_reads_like_the_issue_example():
    cap = parse_caption("a slow waltz in D minor at 72 bpm on a violin: D4 F4 A4 C#5 D5")
    assert (cap.tonic, cap.mode, cap.bpm, cap.style, cap.instrument) == (
        "D",
        "minor",
        72,
        "waltz",
        "violin",
    )
    assert cap.pitches == (62, 65, 69, 73, 74)
    free = parse_caption("something calm on an organ")
    assert free.instrument == "organ" and free.pitches is None and free.tonic is None
    with pytest.raises(CaptionError, match="not a note name"):
        parse_caption("a waltz in C major: C4 X9")


def test_spelling_follows_the_key():
    assert spell(66, "G", "minor") == "F#4"  # the leading tone, not Gb
    assert spell(70, "D", "minor") == "Bb4"
    assert spell(61, "D", "minor") == "C#4"
    assert spell(55, "G#", "minor") == "F##3"
    assert name_to_midi("F##3") == 55 and name_to_midi("Cb4") == 59 and name_to_midi("B#3") == 60
    assert spell(59, "Gb", "major") == "Cb4" and name_to_midi(spell(60, "C#", "major")) == 60
    for midi in range(LOWEST, HIGHEST + 1):
        for tonic, mode in (("Eb", "minor"), ("F#", "major"), ("C", "major")):
            assert name_to_midi(spell(midi, tonic, mode)) == midi


def test_render_timing_and_level():
    m = generate_melody(1)
    wav = render(m)
    assert wav.dtype == np.float32 and wav.ndim == 1
    total = LEAD_SECONDS + sum(m.beats) * m.beat_seconds + TAIL_SECONDS
    assert abs(len(wav) / SAMPLE_RATE - total) < 0.01
    assert abs(np.abs(wav).max() - 0.8) < 1e-4
    assert np.array_equal(wav, render(m))  # deterministic, breath noise included
    # silence before the first note and in the gap before the second one
    assert np.abs(wav[: int(0.09 * SAMPLE_RATE)]).max() == 0.0
    second = int((LEAD_SECONDS + m.onsets()[1]) * SAMPLE_RATE)
    gap = wav[second - int(0.8 * GAP_SECONDS * SAMPLE_RATE) : second - 8]
    assert np.abs(gap).max() == 0.0


def test_timbres_differ():
    m = replace(generate_melody(2), pitches=(69,) * 6, beats=(1.0,) * 5 + (2.0,))
    spectra = {}
    for name in TIMBRES:
        wav = render(replace(m, instrument=name))
        mag = np.abs(np.fft.rfft(wav))
        bins = np.fft.rfftfreq(len(wav), 1 / SAMPLE_RATE)
        # energy of partials 1..6 of A4 (440 Hz), normalised
        parts = np.array([mag[np.abs(bins - 440 * k) < 10].sum() for k in range(1, 7)])
        spectra[name] = parts / parts.sum()
        assert np.argmax(parts) == 0  # the fundamental is the strongest partial
    names = list(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(spectra[a] - spectra[b]).sum() > 0.05, (a, b)
    assert spectra["clarinet"][1] < 0.02  # odd partials only


def test_render_rejects_unknown_instrument():
    with pytest.raises(ValueError, match="unknown instrument 'kazoo'"):
        render(replace(generate_melody(0), instrument="kazoo"))
