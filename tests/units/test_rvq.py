"""Residual k-means units on the espeak fixture: the flat id layout, round trips through codes,
features and audio, the error falling with every codebook, the hash, save/load and the stage."""

from __future__ import annotations

from itertools import pairwise

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch

from most.audio import decode_audio, read_audio
from most.cli import main
from most.layout import TokenLayout
from most.run import Run
from most.units import load_tokenizer
from most.units.codebooks import collapse_frames, expand_frames, flatten, unflatten
from most.units.rvq import RVQConfig, RVQTokenizer, reconstruct

C, K = 4, 16


@pytest.fixture(scope="module")
def rvq_tok(train_wavs) -> RVQTokenizer:
    return RVQTokenizer.fit(train_wavs, n_codebooks=C, k=K, dedup=False, seed=0, gl_iters=4)


def test_flatten_unflatten_round_trip_and_offsets():
    codes = torch.tensor([[0, 15, 3], [7, 0, 15]])
    ids = flatten(codes, 16)
    assert ids.tolist() == [0, 31, 35, 7, 16, 47]
    assert torch.equal(unflatten(ids, 3, 16), codes)
    assert torch.equal(ids.view(-1, 3) // 16, torch.arange(3).expand(2, 3))  # codebook = pos % C
    with pytest.raises(ValueError, match="whole number of 3-code frames"):
        unflatten(ids[:-1], 3, 16)
    swapped = ids.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    with pytest.raises(ValueError, match=r"position 0 is not in codebook 0's range \[0, 16\)"):
        unflatten(swapped, 3, 16)
    with pytest.raises(ValueError, match=r"in \[0, 16\)"):
        flatten(torch.tensor([[16]]), 16)


def test_collapse_and_expand_frames():
    codes = torch.tensor([[1, 2], [1, 2], [1, 3], [0, 0], [0, 0], [0, 0]])
    short, runs = collapse_frames(codes)
    assert short.tolist() == [[1, 2], [1, 3], [0, 0]] and runs.tolist() == [2, 1, 3]
    durations = torch.tensor([3.0, 1.5])  # by codebook-0 code
    assert expand_frames(short, durations).tolist() == [[1, 2], [1, 2], [1, 3]] + [[0, 0]] * 3


def test_encode_shapes_and_vocabulary(rvq_tok, train_wavs):
    wav = train_wavs[0]
    assert rvq_tok.vocab_size == C * K and rvq_tok.frame_rate == 50.0
    codes = rvq_tok.encode_codes(wav, 16_000)
    frames = len(wav) // 320 + 1
    assert codes.shape == (frames, C) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < K
    ids = rvq_tok.encode(wav, 16_000)
    assert torch.equal(ids, flatten(codes, K)) and ids.shape == (frames * C,)
    assert torch.equal(ids.view(-1, C) // K, torch.arange(C).expand(frames, C))
    batch = rvq_tok.encode_batch(train_wavs[:3], 16_000)
    assert all(
        torch.equal(b, rvq_tok.encode(w, 16_000))
        for b, w in zip(batch, train_wavs[:3], strict=True)
    )


def _errors(tok: RVQTokenizer, wavs) -> list[float]:
    feats = torch.cat([tok.features(w, 16_000) for w in wavs])
    return [float((tok.quantise(feats, n) - feats).pow(2).mean()) for n in range(1, C + 1)]


def test_error_falls_with_every_codebook(rvq_tok, train_wavs, data_dir):
    train = _errors(rvq_tok, train_wavs)
    assert all(a > b for a, b in pairwise(train)), train
    assert train[-1] < 0.6 * train[0], train
    # Held-out voice (the fixture's dev split): still falls with every codebook.
    dev = datasets.load_from_disk(str(data_dir / "speech"))["dev"].with_format("numpy")
    held_out = _errors(rvq_tok, [decode_audio(r["audio"]) for r in dev])
    assert all(a > b for a, b in pairwise(held_out)), held_out


def test_decode_of_encode_is_close_to_the_features(rvq_tok, train_wavs):
    wav = train_wavs[1]
    feats = rvq_tok.features(wav, 16_000)
    codes = rvq_tok.encode_codes(wav, 16_000)
    rebuilt = reconstruct(codes, rvq_tok.centroids)
    err = float((rebuilt - feats).pow(2).mean())
    spread = float((feats - feats.mean(0)).pow(2).mean())
    assert err < 0.35 * spread, (err, spread)
    audio = rvq_tok.decode(rvq_tok.encode(wav, 16_000))
    assert audio.dtype == torch.float32 and bool(torch.isfinite(audio).all())
    # One hop per frame: the audio is as long as the input to within a frame.
    assert abs(len(audio) - len(wav)) <= 320, (len(audio), len(wav))
    # Its own features sit nearer the input's than the features of another utterance do.
    again = rvq_tok.features(audio.numpy(), 16_000)
    n = min(len(again), len(feats))
    other = rvq_tok.features(train_wavs[4], 16_000)
    m = min(n, len(other))
    assert (again[:m] - feats[:m]).pow(2).mean() < (other[:m] - feats[:m]).pow(2).mean()


def test_fewer_codebooks_decode_coarser_audio(rvq_tok, train_wavs):
    codes = rvq_tok.encode_codes(train_wavs[0], 16_000)
    full, coarse = rvq_tok.decode_codes(codes), rvq_tok.decode_codes(codes[:, :1])
    assert full.shape == coarse.shape and not torch.equal(full, coarse)
    with pytest.raises(ValueError, match="unit id"):
        rvq_tok.decode(torch.tensor([K, 0, 0, 0]))  # codebook 1's id in codebook 0's place


def test_dedup_collapses_repeated_frames_and_keeps_length(train_wavs):
    tok = RVQTokenizer.fit(train_wavs, n_codebooks=2, k=8, dedup=True, seed=0, gl_iters=2)
    # Half a second of near-silence between two words: its frames repeat and are collapsed.
    wav = np.concatenate([train_wavs[0], np.zeros(8000, np.float32), train_wavs[1]])
    codes = tok.encode_codes(wav, 16_000)
    frames = len(wav) // 320 + 1
    assert codes.shape[1] == 2 and codes.shape[0] < frames
    assert bool((codes[1:] != codes[:-1]).any(dim=1).all())  # no two equal frames in a row
    audio = tok.decode(tok.encode(wav, 16_000))
    assert 0.7 * len(wav) < len(audio) < 1.3 * len(wav)


@pytest.mark.parametrize(
    "change", [{"n_codebooks": 3}, {"k": 8}, {"seed": 1}, {"frame_rate": 100.0}, {"dedup": True}]
)
def test_hash_changes_with_config(rvq_tok, train_wavs, change):
    settings = {"n_codebooks": C, "k": K, "dedup": False, "seed": 0, "gl_iters": 4} | change
    assert RVQTokenizer.fit(train_wavs, **settings).hash != rvq_tok.hash


def test_fit_is_deterministic_and_gl_iters_do_not_change_the_hash(rvq_tok, train_wavs):
    again = RVQTokenizer.fit(train_wavs, n_codebooks=C, k=K, dedup=False, seed=0, gl_iters=2)
    assert again.hash == rvq_tok.hash and torch.equal(again.centroids, rvq_tok.centroids)


def test_save_load_identity(tmp_path, rvq_tok, train_wavs):
    loaded = load_tokenizer(rvq_tok.save(tmp_path / "tok"))
    assert isinstance(loaded, RVQTokenizer) and loaded.hash == rvq_tok.hash
    assert (loaded.n_codebooks, loaded.codebook_size) == (C, K)
    ids = rvq_tok.encode(train_wavs[2], 16_000)
    assert torch.equal(loaded.encode(train_wavs[2], 16_000), ids)
    assert torch.equal(loaded.decode(ids), rvq_tok.decode(ids))


def test_config_checks_and_differences(rvq_tok):
    with pytest.raises(ValueError, match=r"n_codebooks \* k must be <= 65536"):
        RVQConfig(n_codebooks=32, k=4096)
    with pytest.raises(ValueError, match="n_codebooks must be in"):
        RVQConfig(n_codebooks=0)
    assert RVQConfig(n_codebooks=C, k=K).differences(rvq_tok) == {}
    assert RVQConfig(n_codebooks=2, k=K).differences(rvq_tok) == {"n_codebooks": (C, 2)}


def test_vocoder_json_describes_the_codebooks(rvq_tok, vocoder_json):
    settings = vocoder_json(rvq_tok, rvq_tok.spec)
    assert settings["codebooks"]["n_codebooks"] == C
    assert settings["templates"]["shape"] == [C, K, 80]


def test_stage_writes_flat_ids_the_layout_maps(run_dir):
    """``most units --tokenizer.kind=rvq`` writes flat ids (one list per utterance, ``C`` per
    frame); the token layout gives them ``C * K`` speech tokens and maps them both ways."""
    argv = ["units", "--run", str(run_dir), "--tokenizer.kind=rvq", "--tokenizer.fit_seconds=20"]
    argv += ["--tokenizer.rvq.n_codebooks=3", "--tokenizer.rvq.k=8", "--part_rows=8"]
    assert main(argv) == 0
    tok = load_tokenizer(run_dir)
    assert tok.kind == "rvq" and tok.vocab_size == 24
    info = Run(run_dir).unit_info()
    assert (info["n_codebooks"], info["codebook_size"], info["vocab_size"]) == (3, 8, 24)
    speech = Run(run_dir).load_units("speech", tok.hash)
    for row in speech["train"]:
        codes = unflatten(torch.tensor(row["units"]), 3, 8)  # frames x codebooks, checked
        assert codes.shape[0] > 0
    sqa = Run(run_dir).load_units("sqa")["qa_train"][0]
    assert len(sqa["answer_units"]) % 3 == 0

    layout = TokenLayout(
        text_vocab_size=100, n_units=info["vocab_size"], unit_tokenizer_hash=tok.hash
    )
    units_ = torch.tensor(speech["train"][0]["units"])
    ids = layout.units_to_ids(units_)
    start, stop = layout.unit_range()
    assert stop - start == 24 and bool(layout.is_unit(ids).all())
    assert torch.equal(layout.ids_to_units(ids), units_)
    table = layout.modality_table()
    assert bool((table[ids] == layout.modality_id("speech")).all())
    # A token's codebook is its unit id // K; frames are C consecutive tokens.
    assert torch.equal((ids.view(-1, 3) - start) // 8, torch.arange(3).expand(len(ids) // 3, 3))


def test_real_speech_error_falls_with_every_codebook(realdata):
    """Fitted on 30 speechocean762 train utterances, measured on 8 test ones (other speakers)."""
    root = realdata / "speechocean762"

    def wavs(split: str, n: int) -> list[np.ndarray]:
        lines = (root / split / "wav.scp").read_text().split("\n")
        return [read_audio(root / line.split()[1]) for line in lines if line.strip()][:n]

    tok = RVQTokenizer.fit(wavs("train", 30), n_codebooks=C, k=64, dedup=False, seed=0)
    errors = _errors(tok, wavs("test", 8))
    assert all(a > b for a, b in pairwise(errors)), errors
    assert errors[-1] < 0.6 * errors[0], errors
    # The 44.1 kHz stereo recording encodes too: C ids per 20 ms frame.
    wav, sr = sf.read(str(realdata / "whisper" / "jfk.flac"), dtype="float32")
    ids = tok.encode(wav, sr)
    assert len(ids) % C == 0 and abs(len(ids) // C - len(wav) / sr * 50) <= 2
