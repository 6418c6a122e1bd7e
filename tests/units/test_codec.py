"""Neural-codec units on tiny randomly initialised EnCodec, DAC and Mimi models saved locally (no
network): code shapes and rates, determinism, the flat ids, decoding, the hash, bad folders and
the ``units`` stage."""

from __future__ import annotations

import json

import pytest
import torch

from most.run import Run
from most.stages.units import TokenizerConfig, units
from most.units import load_tokenizer
from most.units.codebooks import flatten, unflatten
from most.units.codec import CodecConfig, CodecTokenizer

K = 16


def _random_codebooks(model):
    """Mimi initialises its codebooks to zeros (a trained model fills them), which would give
    every frame code 0: draw them at random, about as large as the tiny encoder's output."""
    for name, buf in model.named_buffers():
        if name.endswith("codebook.embed_sum"):
            buf.normal_(std=0.05)
    return model


@torch.no_grad()
def _codebooks_from_frames(model):
    """The tiny random EnCodec's encoder output barely moves over time (0.1 % of its level), so
    random codebooks give every frame the same codes. Draw each codebook's entries from the
    residual frames of noise bursts instead (k-means' usual start), as training would place them."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 48_000, generator=gen) * torch.linspace(0, 1, 48_000).sin().abs()
    residual = model.encoder(noise)[0].T  # (frames, dim)
    for layer in model.quantizer.layers:
        book = residual[torch.randperm(len(residual), generator=gen)[:K]].clone()
        layer.codebook.embed.copy_(book)
        layer.codebook.embed_avg.copy_(book)
        residual = residual - book[layer.codebook.quantize(residual)]
    return model


def _encodec(seed: int = 0):
    from transformers import EncodecConfig, EncodecModel

    torch.manual_seed(seed)
    # hop 320 at 24 kHz = 75 Hz like the real 24 kHz model; 4-bit codes: 2/4/8 codebooks.
    config = EncodecConfig(
        sampling_rate=24_000,
        num_filters=4,
        hidden_size=16,
        codebook_size=K,
        upsampling_ratios=[8, 5, 4, 2],
        num_lstm_layers=1,
        target_bandwidths=[0.6, 1.2, 2.4],
    )
    return _codebooks_from_frames(EncodecModel(config))


def _dac(seed: int = 0):
    from transformers import DacConfig, DacModel

    torch.manual_seed(seed)
    config = DacConfig(
        encoder_hidden_size=4,
        downsampling_ratios=[2, 4, 5, 8],  # hop 320 at 16 kHz = 50 Hz
        decoder_hidden_size=16,
        n_codebooks=6,
        codebook_size=K,
        codebook_dim=4,
        sampling_rate=16_000,
    )
    return DacModel(config)


def _mimi(seed: int = 0):
    from transformers import MimiConfig, MimiModel

    torch.manual_seed(seed)
    config = MimiConfig(
        hidden_size=16,
        num_filters=4,
        codebook_size=K,
        codebook_dim=8,
        num_quantizers=6,
        vector_quantization_hidden_dimension=8,
        upsample_groups=16,
        num_hidden_layers=1,
        intermediate_size=32,
        num_attention_heads=2,
        num_key_value_heads=2,
        sliding_window=16,
    )
    return _random_codebooks(MimiModel(config))


BUILDERS = {"encodec": _encodec, "dac": _dac, "mimi": _mimi}
RATES = {"encodec": 75.0, "dac": 50.0, "mimi": 12.5}


@pytest.fixture(scope="module")
def codec_dirs(tmp_path_factory) -> dict:
    out = {}
    for name, build in BUILDERS.items():
        path = tmp_path_factory.mktemp(f"tiny-{name}")
        build().save_pretrained(str(path))
        out[name] = path
    return out


@pytest.fixture(scope="module")
def toks(codec_dirs) -> dict:
    return {name: CodecTokenizer(path, n_codebooks=4) for name, path in codec_dirs.items()}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_round_trip_shapes(name, toks, train_wavs):
    tok, wav = toks[name], train_wavs[0]
    assert tok.frame_rate == RATES[name] and tok.vocab_size == 4 * K and tok.sample_rate == 16_000
    codes = tok.encode_codes(wav, 16_000)
    seconds = len(wav) / 16_000
    assert codes.shape[1] == 4 and abs(codes.shape[0] - seconds * tok.frame_rate) <= 2
    assert codes.dtype == torch.long and int(codes.min()) >= 0 and int(codes.max()) < K
    assert all(len(codes[:, c].unique()) > 1 for c in range(4))  # the codes follow the audio
    ids = tok.encode(wav, 16_000)
    assert torch.equal(ids, flatten(codes, K)) and torch.equal(unflatten(ids, 4, K), codes)
    audio = tok.decode(ids)
    assert audio.dtype == torch.float32 and bool(torch.isfinite(audio).all())
    # The codec's frames cover the input: decoded audio is as long to within two frames.
    assert abs(len(audio) - len(wav)) <= 2 * 16_000 / tok.frame_rate, (len(audio), len(wav))
    fewer = tok.decode_codes(codes[:, :2])
    assert fewer.shape == audio.shape and not torch.equal(fewer, audio)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_codes_are_deterministic_and_nested(name, toks, codec_dirs, train_wavs):
    tok, wav = toks[name], train_wavs[1]
    codes = tok.encode_codes(wav, 16_000)
    assert torch.equal(tok.encode_codes(wav, 16_000), codes)
    # Residual quantisation: fewer codebooks are a prefix of more.
    two = CodecTokenizer(codec_dirs[name], n_codebooks=2)
    assert torch.equal(two.encode_codes(wav, 16_000), codes[:, :2])
    assert two.hash != tok.hash
    batch = tok.encode_batch(train_wavs[:2], 16_000)
    assert all(
        torch.equal(b, tok.encode(w, 16_000)) for b, w in zip(batch, train_wavs, strict=False)
    )


def test_save_load_and_hash_follows_the_weights(tmp_path, toks, train_wavs):
    tok = toks["encodec"]
    loaded = load_tokenizer(tok.save(tmp_path / "tok"))
    assert isinstance(loaded, CodecTokenizer) and loaded.hash == tok.hash
    ids = tok.encode(train_wavs[2], 16_000)
    assert torch.equal(loaded.encode(train_wavs[2], 16_000), ids)
    assert torch.equal(loaded.decode(ids), tok.decode(ids))
    other = tmp_path / "other"
    _encodec(seed=1).save_pretrained(str(other))
    assert CodecTokenizer(other, n_codebooks=4).hash != tok.hash
    # The model behind a saved tokenizer changed: refused on load.
    meta_path = tmp_path / "tok" / "unit_tokenizer.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"model_path": str(other)}))
    with pytest.raises(ValueError, match="changed since"):
        CodecTokenizer.load(tmp_path / "tok")


def test_missing_and_bad_folders_fail_on_one_line(tmp_path, codec_dirs):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no config.json"):
        CodecTokenizer(tmp_path / "nowhere", n_codebooks=2)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"bad/config.json: not valid JSON"):
        CodecTokenizer(bad, n_codebooks=2)
    (bad / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(
        ValueError, match=r"model_type 'hubert' is not a codec here; supported: enc"
    ):
        CodecTokenizer(bad, n_codebooks=2)
    (bad / "config.json").write_text((codec_dirs["dac"] / "config.json").read_text())
    with pytest.raises(ValueError) as err:  # config but no weights
        CodecTokenizer(bad, n_codebooks=2)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"n_codebooks must be in \[1, 6\], got 7"):
        CodecTokenizer(codec_dirs["dac"], n_codebooks=7)
    with pytest.raises(ValueError, match=r"n_codebooks must be in \[1, 8\], got 9"):
        CodecTokenizer(codec_dirs["encodec"], n_codebooks=9)


def test_decode_checks_its_ids(toks):
    tok = toks["mimi"]
    with pytest.raises(ValueError, match="not a whole number of 4-code frames"):
        tok.decode(torch.tensor([0, K, 2 * K]))
    with pytest.raises(ValueError, match="position 1 is not in codebook 1"):
        tok.decode(torch.tensor([0, 0, 2 * K, 3 * K]))
    with pytest.raises(ValueError, match="codes must be"):
        tok.decode_codes(torch.zeros(3, 5, dtype=torch.long))


def test_dedup_durations_restore_the_length(codec_dirs, train_wavs):
    import numpy as np

    tok = CodecTokenizer.fit(
        train_wavs[:4], model_path=codec_dirs["dac"], n_codebooks=1, dedup=True
    )
    wav = np.concatenate([train_wavs[0], np.zeros(8000, np.float32)])
    codes = tok.encode_codes(wav, 16_000)
    assert bool((codes[1:] != codes[:-1]).any(dim=1).all())  # no two equal frames in a row
    audio = tok.decode(tok.encode(wav, 16_000))
    assert 0.6 * len(wav) < len(audio) < 1.4 * len(wav)


def test_stage_with_a_codec(run_dir, codec_dirs):
    codec = CodecConfig(model_path=codec_dirs["encodec"], n_codebooks=2)
    cfg = TokenizerConfig(kind="codec", dedup=False, fit_seconds=10, codec=codec)
    tok = load_tokenizer(units(run=run_dir, tokenizer=cfg, part_rows=8))
    assert tok.kind == "codec" and tok.vocab_size == 2 * K
    info = Run(run_dir).unit_info()
    assert (info["n_codebooks"], info["codebook_size"]) == (2, K)
    train = Run(run_dir).load_units("speech", tok.hash)["train"]
    row = train[0]
    assert unflatten(torch.tensor(row["units"]), 2, K).shape[0] > 0
    assert cfg.differences(tok) == {}
    with pytest.raises(ValueError, match=r"tokenizer\.codec\.model_path"):
        units(run=run_dir, tokenizer=TokenizerConfig(kind="codec"), force=True)
