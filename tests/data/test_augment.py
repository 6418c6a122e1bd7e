"""Unit edits (TTS history noise, speech-LM spans): inputs at the asked rate, reproducibly, never the
targets."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from most.data.augment import crop, substitute
from most.data.prompts import IGNORE, Prompts
from most.layout import TokenLayout
from most.testing import Chars
from most.train import sources as S
from most.train.mixing import MixtureStream


def _utterances() -> tuple[TokenLayout, Prompts, datasets.Dataset]:
    """A 64-unit layout, its prompts (one id per character) and 20 random 40-unit utterances."""
    layout = TokenLayout(text_vocab_size=256, n_units=64, unit_tokenizer_hash="h")
    rng = np.random.default_rng(0)
    ds = datasets.Dataset.from_dict(
        {
            "units": [rng.integers(0, 64, size=40).tolist() for _ in range(20)],
            "text": [f"sentence number {i}" for i in range(20)],
        }
    )
    return layout, Prompts(layout, Chars()), ds


def test_crop_spans_are_contiguous_reproducible_and_off_at_zero() -> None:
    units = list(range(100))
    assert crop(units, 0.0, np.random.default_rng(0)) == units
    assert crop(units[:4], 1.0, np.random.default_rng(0)) == units[:4]  # too short to cut
    rng = np.random.default_rng(5)
    spans = [crop(units, 1.0, rng) for _ in range(500)]
    for s in spans:  # a contiguous run of the utterance, never shorter than min_len
        assert len(s) >= 4 and s == list(range(s[0], s[0] + len(s)))
    starts, ends = [s[0] for s in spans], [s[-1] for s in spans]
    assert min(starts) < 10 and max(starts) > 80 and min(ends) < 20 and max(ends) == 99
    assert [crop(units, 1.0, np.random.default_rng(9)) for _ in range(3)] == [
        crop(units, 1.0, np.random.default_rng(9)) for _ in range(3)
    ]
    half = [crop(units, 0.5, np.random.default_rng(s)) == units for s in range(400)]
    assert 0.4 < sum(half) / len(half) < 0.6
    with pytest.raises(ValueError, match="crop p"):
        crop(units, -0.5, np.random.default_rng(0))


def test_speech_lm_spans_cut_the_audio_only_when_asked() -> None:
    layout = TokenLayout(text_vocab_size=256, n_units=64, unit_tokenizer_hash="h")
    p = Prompts(layout, tokenizer=None)
    rng = np.random.default_rng(0)
    ds = datasets.Dataset.from_dict({"units": [rng.integers(0, 64, 60).tolist() for _ in range(8)]})
    assert S.speech_lm(p, ds).augment is None

    def draw(src) -> list[list[int]]:
        return [x.input_ids for x in MixtureStream([src], [1.0], 4, 128, 0, 3).draw(6)]

    whole, cut = draw(S.speech_lm(p, ds)), draw(S.speech_lm(p, ds, 1.0))
    head = p.speech_lm_prompt()
    assert all(len(c) < len(w) for c, w in zip(cut, whole, strict=True))
    for c, w in zip(cut, whole, strict=True):  # same prompt and closing token, a span of the audio
        assert c[: len(head)] == head and c[-1] == w[-1]
        span = c[len(head) : -1]
        body = w[len(head) : -1]
        assert any(body[i : i + len(span)] == span for i in range(len(body)))
    assert draw(S.speech_lm(p, ds, 1.0)) == cut
    with pytest.raises(ValueError, match="speech_lm"):
        S.speech_lm(p, ds, 2.0)


def test_substitute_keeps_length_and_rate() -> None:
    units = np.random.default_rng(0).integers(0, 256, size=20_000).tolist()
    out = substitute(units, 0.2, 256, np.random.default_rng(1))
    assert len(out) == len(units) and all(0 <= u < 256 for u in out)
    changed = sum(a != b for a, b in zip(units, out, strict=True)) / len(units)
    assert abs(changed - 0.2 * 255 / 256) < 0.02, changed
    assert substitute(units, 0.0, 256, np.random.default_rng(1)) == units
    with pytest.raises(ValueError, match="history noise"):
        substitute(units, 1.5, 256, np.random.default_rng(0))


def test_tts_history_noise_edits_inputs_never_targets() -> None:
    layout, p, ds = _utterances()
    assert S.tts(p, ds).augment is None

    def draw(src, seed: int = 3) -> list:
        return MixtureStream([src], [1.0], 4, 256, 0, seed).draw(5)

    clean, noisy = draw(S.tts(p, ds)), draw(S.tts(p, ds, 0.3))
    # Same rows: identical labels and prompts, only unit inputs differ, at about the asked rate.
    assert [x.labels for x in clean] == [x.labels for x in noisy]
    edited = total = 0
    for c, n in zip(clean, noisy, strict=True):
        assert len(c.input_ids) == len(n.input_ids) and c.input_ids[-1] == n.input_ids[-1]
        for a, b, lab in zip(c.input_ids, n.input_ids, c.labels, strict=True):
            if a != b:  # only units of the answer are edited, into units
                assert lab == a and layout.is_unit(torch.tensor([a, b])).all()
            total += lab != IGNORE
            edited += a != b
    assert 0.15 < edited / total < 0.4, edited / total
    assert [x.input_ids for x in draw(S.tts(p, ds, 0.3))] == [x.input_ids for x in noisy]
    with pytest.raises(ValueError, match="history noise"):
        S.tts(p, ds, 1.5)
    with pytest.raises(ValueError, match="history"):
        p.tts("abc", [1, 2, 3], [1, 2])


def test_edits_keep_multi_codebook_frames_whole() -> None:
    """With ``frame`` = C, a substituted id stays in its codebook and a span is whole frames, so
    the frames still read (:func:`most.units.codebooks.unflatten` raises otherwise)."""
    from most.units.codebooks import unflatten

    c, k = 4, 16
    rng = np.random.default_rng(0)
    units = [int(b * k + rng.integers(k)) for _ in range(50) for b in range(c)]
    noisy = substitute(units, 0.5, c * k, np.random.default_rng(1), frame=c)
    assert sum(a != b for a, b in zip(units, noisy, strict=True)) > 50
    unflatten(torch.tensor(noisy), c, k)
    spans = [crop(units, 1.0, np.random.default_rng(s), frame=c) for s in range(20)]
    assert any(len(s) < len(units) for s in spans)
    for s in spans:
        assert len(s) % c == 0 and len(s) >= 4 * c
        unflatten(torch.tensor(s), c, k)
    # one codebook: any unit, drawn as a plain uniform over all of them
    flat = rng.integers(0, 64, size=100).tolist()
    g = np.random.default_rng(2)
    edit, draws = g.random(100) < 0.3, g.integers(0, 64, size=100)
    want = [int(d) if e else u for u, e, d in zip(flat, edit, draws, strict=True)]
    assert substitute(flat, 0.3, 64, np.random.default_rng(2)) == want
    flat_off = substitute(units, 0.5, c * k, np.random.default_rng(1))
    with pytest.raises(ValueError, match="not in codebook"):
        unflatten(torch.tensor(flat_off), c, k)
