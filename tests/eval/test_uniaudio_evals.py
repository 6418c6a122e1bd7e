"""UniAudio evals on real signals: SI-SDR (a wav against itself, noisy copies, noise) and speaker
similarity from the trained encoder (same voice above different voice, held-out utterances)."""

from __future__ import annotations

import numpy as np
import pytest

from most.corpora.speech import Voice, synthesize
from most.eval import speaker as S
from most.eval.enhance import enhancement_scores, si_sdr, stoi
from most.noise import add_noise

VOICES = ["en-us+m3:165:45", "en-us+f2:160:60", "en-gb+m1:150:40", "en-gb+f3:170:65"]
TEXTS = [
    "The capital of Velmora is Tarsk.",
    "A small grey cat sleeps near the door.",
    "Seven ships left the harbour at dawn.",
    "Nobody knew where the old road ended.",
    "The river runs north past the mill.",
    "Her brother plays the violin every night.",
    "We counted forty birds on the wire.",
]


@pytest.fixture(scope="module")
def speech() -> dict[str, list]:
    wavs, voices = [], []
    for v in VOICES:
        for i, t in enumerate(TEXTS):
            wavs.append(synthesize(t, Voice.parse(v), f"{v}/{i}"))
            voices.append(v)
    return {"wavs": wavs, "voices": voices}


def test_si_sdr_orders_itself_noisy_and_noise() -> None:
    rng = np.random.default_rng(0)
    wav = synthesize(TEXTS[0], Voice.parse(VOICES[0]), "k")
    assert si_sdr(wav, wav) > 80
    assert si_sdr(0.3 * wav, wav) > 80  # scale-invariant
    noisy = add_noise(wav, 10.0, rng)
    assert si_sdr(noisy, wav) == pytest.approx(10.0, abs=0.5)
    assert si_sdr(rng.standard_normal(len(wav)), wav) < -20
    scores = enhancement_scores([wav], [noisy], [wav])
    assert scores["si_sdr"] > 80 and scores["si_sdr_input"] == pytest.approx(10.0, abs=0.5)
    assert scores["si_sdr_gain"] == pytest.approx(scores["si_sdr"] - scores["si_sdr_input"])
    assert stoi(wav, wav) > 0.99 > scores["stoi_input"] > stoi(add_noise(wav, -5.0, rng), wav)
    assert scores["stoi"] > 0.99


def test_speaker_encoder_tells_held_out_utterances_apart(speech) -> None:
    wavs, voices = speech["wavs"], speech["voices"]
    train = [i for i in range(len(wavs)) if i % len(TEXTS) < 5]  # 5 sentences a voice
    test = [i for i in range(len(wavs)) if i % len(TEXTS) >= 5]  # 2 unseen sentences a voice
    model = S.fit_speaker_encoder(
        [wavs[i] for i in train], [voices[i] for i in train], S.SpeakerConfig(steps=120)
    )
    assert model.voices == sorted(VOICES)
    acc = S.nearest_voice_accuracy(
        model,
        [wavs[i] for i in train],
        [voices[i] for i in train],
        [wavs[i] for i in test],
        [voices[i] for i in test],
    )
    assert acc >= 0.75
    same, different = S.pair_scores(model, [wavs[i] for i in test], [voices[i] for i in test])
    assert same.mean() > different.mean() + 0.2
    assert S.equal_error_rate(same, different) <= 0.25
    a, b = test[0], test[1]  # one voice, two sentences; and the same sentence in another voice
    other = a + len(TEXTS)
    sim = S.speaker_similarity(model, [wavs[a], wavs[a]], [wavs[b], wavs[other]])
    assert sim[0] > sim[1]


def test_equal_error_rate_of_separated_and_mixed_scores() -> None:
    assert S.equal_error_rate(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 0.0
    assert S.equal_error_rate(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == 1.0
    with pytest.raises(ValueError, match="two voices"):
        S.fit_speaker_encoder([np.zeros(16000, np.float32)], ["a"])
