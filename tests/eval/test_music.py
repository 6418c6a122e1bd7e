"""The music scorer: a rendered melody scores ~1.0 against its own caption, a wrong one low."""

from dataclasses import replace

import numpy as np
import pytest

from most.audio import SAMPLE_RATE
from most.corpora.music import INSTRUMENTS, generate_melody
from most.corpora.synth import render
from most.eval.music import (
    edit_distance,
    estimate_key,
    estimate_tempo,
    note_accuracy,
    score_audio,
    summarize,
)
from most.eval.pitch import Note, transcribe, yin


def test_yin_on_pure_tones():
    for hz in (65.4, 220.0, 440.0, 1046.5):
        t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
        f0, voiced = yin(np.sin(2 * np.pi * hz * t).astype(np.float32))
        inner = f0[5:-5]
        assert voiced[5:-5].all() and np.abs(inner / hz - 1).max() < 0.003
    f0, voiced = yin(np.zeros(SAMPLE_RATE // 4, dtype=np.float32))
    assert not voiced.any() and not f0.any()


def test_own_caption_scores_one():
    scores = []
    for seed in range(12):
        m = generate_melody(seed)
        scores.append(score_audio(render(m), m.caption()))
    summary = summarize(scores)
    assert summary["n"] == 12
    assert summary["note_acc"] == 1.0 and summary["tempo_acc"] == 1.0
    assert summary["key_acc"] >= 11 / 12  # the key estimate is a profile fit: ~97% over seeds


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_each_timbre_scores_one(instrument):
    m = replace(generate_melody(4), instrument=instrument)
    s = score_audio(render(m), m.caption())
    assert (s.note_acc, s.key_acc, s.tempo_acc) == (1.0, 1.0, 1.0), s
    assert s.notes == m.pitches and abs(s.bpm - m.bpm) < 1.5


def test_wrong_caption_scores_low():
    audio = [render(generate_melody(s)) for s in range(6)]
    notes, keys, tempi = [], [], []
    for i, wav in enumerate(audio):
        other = generate_melody(i + 100)
        s = score_audio(wav, other.caption())
        notes.append(s.note_acc)
        keys.append(s.key_acc)
        tempi.append(s.tempo_acc)
    assert max(notes) < 0.5 and np.mean(notes) < 0.3
    assert np.mean(keys) <= 0.2 and np.mean(tempi) <= 0.2


def test_each_error_is_caught():
    m = generate_melody(4)
    own = m.caption()
    up = replace(m, pitches=tuple(p + 2 for p in m.pitches), tonic="C")  # a tone higher
    s = score_audio(render(up), own)
    assert s.note_acc == 0.0 and s.key_acc == 0.0 and s.tempo_acc == 1.0
    slow = replace(m, bpm=round(m.bpm * 0.8))
    s = score_audio(render(slow), own)
    assert s.note_acc == 1.0 and s.tempo_acc == 0.0
    short = replace(m, pitches=m.pitches[:-3], beats=m.beats[:-3])
    s = score_audio(render(short), own)
    assert s.note_acc == pytest.approx(1 - 3 / len(m.pitches))
    s = score_audio(np.zeros(SAMPLE_RATE, dtype=np.float32), own)
    assert (s.note_acc, s.key_acc, s.tempo_acc, s.bpm) == (0.0, 0.0, 0.0, None)


def test_repeated_notes_stay_separate():
    m = replace(generate_melody(0), pitches=(67,) * 5, beats=(0.5, 0.5, 1.0, 1.0, 2.0))
    assert [n.midi for n in transcribe(render(m))] == [67] * 5


def test_pieces():
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 5]) == 2
    assert note_accuracy([60, 62, 64, 65], (60, 62, 64)) == pytest.approx(2 / 3)
    assert note_accuracy([1] * 10, (60, 62)) == 0.0
    onsets = np.cumsum([0, 0.5, 0.5, 1, 2, 1, 0.5]) * 60 / 97  # beats at 97 bpm
    assert estimate_tempo(onsets) == pytest.approx(97, abs=0.1)
    assert estimate_tempo(np.array([1.0])) is None
    c_major = [Note(p, 0.0, 0.5) for p in (60, 64, 67, 65, 62, 59, 60)]
    assert estimate_key(c_major) == (0, "major")
    a_minor = [Note(p, 0.0, 0.5) for p in (69, 72, 76, 74, 71, 68, 69)]
    assert estimate_key(a_minor) == (9, "minor")
    assert summarize([])["note_acc"] is None
