"""The tokenizer interface on the default mel k-means tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from most.audio import AudioError
from most.units import decode, load_tokenizer
from most.units.base import TOKENIZER_FILE, UnitTokenizer
from most.units.dedup import collapse_repeats, expand
from most.units.mel_kmeans import MelKMeansTokenizer


def test_round_trip_shapes(mel_tok, train_wavs):
    assert isinstance(mel_tok, UnitTokenizer)
    wav = train_wavs[0]
    ids = mel_tok.encode(wav, 16_000)
    assert ids.dtype == torch.long and ids.dim() == 1
    assert int(ids.min()) >= 0 and int(ids.max()) < mel_tok.vocab_size
    # De-duplicated: no two neighbours equal, and fewer ids than frames.
    assert bool((ids[1:] != ids[:-1]).all())
    frames = len(wav) // 320 + 1
    assert len(ids) < frames
    audio = mel_tok.decode(ids)
    assert audio.dtype == torch.float32 and audio.dim() == 1
    assert torch.isfinite(audio).all() and audio.abs().max() <= 1.0
    # The repeat model restores roughly the original length.
    assert 0.6 < len(audio) / len(wav) < 1.6


def test_no_dedup_gives_one_id_per_frame(train_wavs):
    tok = MelKMeansTokenizer.fit(train_wavs[:6], k=16, frame_rate=100, dedup=False)
    ids = tok.encode(train_wavs[0], 16_000)
    assert len(ids) == len(train_wavs[0]) // 160 + 1
    assert len(tok.decode(ids)) == (len(ids) - 1) * 160


def test_fit_is_deterministic(train_wavs, mel_tok):
    again = MelKMeansTokenizer.fit(train_wavs, k=32, frame_rate=50, dedup=True, seed=0, gl_iters=8)
    assert again.hash == mel_tok.hash
    assert torch.equal(again.centroids, mel_tok.centroids)
    assert torch.equal(again.decode(torch.arange(5)), mel_tok.decode(torch.arange(5)))


@pytest.mark.parametrize(
    "change", [dict(k=24), dict(frame_rate=100), dict(dedup=False), dict(seed=1)]
)
def test_hash_changes_with_settings(train_wavs, mel_tok, change):
    settings = dict(k=32, frame_rate=50, dedup=True, seed=0, gl_iters=8) | change
    other = MelKMeansTokenizer.fit(train_wavs, **settings)
    assert other.hash != mel_tok.hash


def test_hash_ignores_decoder_only_settings(mel_tok):
    tok = MelKMeansTokenizer(mel_tok.spec, mel_tok.centroids, mel_tok.durations, True, gl_iters=2)
    assert tok.hash == mel_tok.hash


def test_save_load_identity(tmp_path, mel_tok, train_wavs):
    mel_tok.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / TOKENIZER_FILE).read_text())
    assert {"kind", "vocab_size", "frame_rate", "sample_rate", "hash"} <= meta.keys()
    assert meta["vocab_size"] == 32 and meta["hash"] == mel_tok.hash
    assert not list((tmp_path / "tok").glob("*.pt")) and not list((tmp_path / "tok").glob("*.pkl"))
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.hash == mel_tok.hash
    for wav in train_wavs[:3]:
        ids = mel_tok.encode(wav, 16_000)
        assert torch.equal(loaded.encode(wav, 16_000), ids)
        assert np.array_equal(decode(tmp_path / "tok", ids), mel_tok.decode(ids).numpy())


def test_tampered_tokenizer_is_refused(tmp_path, mel_tok):
    mel_tok.save(tmp_path / "tok")
    path = tmp_path / "tok" / TOKENIZER_FILE
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(meta | {"dedup": not meta["dedup"]}))
    with pytest.raises(ValueError, match="hash"):
        load_tokenizer(tmp_path / "tok")
    path.write_text(json.dumps(meta | {"kind": "nope"}))
    with pytest.raises(ValueError, match="kind"):
        load_tokenizer(tmp_path / "tok")


def test_batch_equals_single(mel_tok, train_wavs):
    wavs = [train_wavs[i] for i in (0, 3, 5, 1)]  # different lengths: padding must not leak
    batch = mel_tok.encode_batch(wavs, 16_000)
    for wav, ids in zip(wavs, batch, strict=True):
        assert torch.equal(ids, mel_tok.encode(wav, 16_000))


def test_resampled_input_matches(mel_tok, train_wavs):
    """A 22.05 kHz copy of the same audio gives (nearly) the same units."""
    import soxr

    wav = train_wavs[2]
    up = soxr.resample(wav, 16_000, 22_050)
    a, b = mel_tok.encode(wav, 16_000), mel_tok.encode(up, 22_050)
    n = min(len(a), len(b))
    assert abs(len(a) - len(b)) <= max(3, len(a) // 10)
    assert (a[:n] == b[:n]).float().mean() > 0.5


@pytest.mark.parametrize(
    "wav,reason",
    [
        (np.zeros(0, np.float32), "empty_audio"),
        (np.full(4000, np.nan, np.float32), "non_finite"),
        (np.zeros(4000, np.float32), "empty_audio"),
        (np.ones(10, np.float32), "too_short"),
    ],
)
def test_bad_audio_raises_audio_error(mel_tok, wav, reason):
    with pytest.raises(AudioError) as e:
        mel_tok.encode(wav, 16_000)
    assert e.value.reason == reason


def test_decode_rejects_out_of_range(mel_tok):
    with pytest.raises(ValueError):
        mel_tok.decode(torch.tensor([0, mel_tok.vocab_size]))
    assert mel_tok.decode(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_expand_restores_lengths():
    ids = torch.tensor([3, 3, 3, 1, 1, 3, 3, 3, 0])
    short, runs = collapse_repeats(ids)
    assert short.tolist() == [3, 1, 3, 0] and runs.tolist() == [3, 2, 3, 1]
    durations = torch.tensor([1.0, 2.0, 0.0, 3.0])
    assert expand(short, durations).tolist() == ids.tolist()
    # Sub-frame durations still give every unit at least one frame.
    assert expand(torch.tensor([2, 2, 2]), durations).tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "name",
    [
        "robustness/1272-128104-0004-8k.wav",
        "robustness/1272-141231-0002.mp3",
        "librispeech/LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac",
    ],
)
def test_real_recordings_encode(mel_tok, realdata, name):
    wav, sr = sf.read(str(realdata / name), dtype="float32")
    ids = mel_tok.encode(wav, sr)
    seconds = len(wav) / sr
    assert 5 < len(ids) / seconds <= 50
    assert len(mel_tok.decode(ids)) > 0


def test_stereo_44k_encodes(mel_tok, realdata):
    stereo = [p for p in realdata.rglob("*.flac") if sf.info(str(p)).channels == 2]
    assert stereo, "realdata should hold the 44.1 kHz stereo jfk.flac"
    wav, sr = sf.read(str(stereo[0]), dtype="float32")
    ids = mel_tok.encode(wav, sr)
    assert len(ids) > 0 and int(ids.max()) < mel_tok.vocab_size


def test_vocoder_json(mel_tok, vocoder_json):
    settings = vocoder_json(mel_tok, mel_tok.spec)
    assert settings["templates"]["shape"] == [32, 80]
