"""HuBERT k-means on a tiny randomly initialised HubertModel saved locally (no network): ids,
the template + Griffin-Lim decoder, and resynthesis of a real recording."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from most.audio import read_audio
from most.ctc.model import MEL
from most.mel import LogMel
from most.run import Run
from most.stages.units import TokenizerConfig, units
from most.units import load_tokenizer
from most.units.hubert_kmeans import (
    HubertKMeansConfig,
    HubertKMeansTokenizer,
    fit_templates,
    layer_features,
)


@pytest.fixture(scope="module")
def hubert_dir(tmp_path_factory):
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 16),  # 320 samples per frame = 50 Hz, like HuBERT base
        conv_kernel=(10, 8, 16),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    path = tmp_path_factory.mktemp("tiny-hubert")
    HubertModel(config).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def hubert_tok(hubert_dir, train_wavs):
    return HubertKMeansTokenizer.fit(train_wavs[:6], model_path=hubert_dir, layer=1, k=8)


def test_encode_shapes_and_rate(hubert_tok, train_wavs):
    assert hubert_tok.frame_rate == 50.0 and hubert_tok.vocab_size == 8
    ids = hubert_tok.encode(train_wavs[0], 16_000)
    assert ids.dtype == torch.long and ids.dim() == 1 and len(ids) > 0
    assert int(ids.max()) < 8
    assert bool((ids[1:] != ids[:-1]).all())  # de-duplicated
    assert len(ids) <= len(train_wavs[0]) // 320


def test_batch_equals_single(hubert_tok, train_wavs):
    wavs = train_wavs[:3]
    for ids, wav in zip(hubert_tok.encode_batch(wavs, 16_000), wavs, strict=True):
        assert torch.equal(ids, hubert_tok.encode(wav, 16_000))


def test_save_load_and_hash(tmp_path, hubert_tok, hubert_dir, train_wavs):
    hubert_tok.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "unit_tokenizer.json").read_text())
    assert meta["kind"] == "hubert_kmeans" and meta["vocab_size"] == 8
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.hash == hubert_tok.hash
    assert torch.equal(
        loaded.encode(train_wavs[1], 16_000), hubert_tok.encode(train_wavs[1], 16_000)
    )
    decoder = (hubert_tok.templates, hubert_tok.durations)
    other_layer = HubertKMeansTokenizer(hubert_dir, 2, hubert_tok.centroids, *decoder)
    assert other_layer.hash != hubert_tok.hash
    no_dedup = HubertKMeansTokenizer(hubert_dir, 1, hubert_tok.centroids, *decoder, dedup=False)
    assert no_dedup.hash != hubert_tok.hash


def test_stage_with_hubert(run_dir, hubert_dir):
    hubert = HubertKMeansConfig(model_path=hubert_dir, layer=1, k=8)
    cfg = TokenizerConfig(kind="hubert_kmeans", fit_seconds=10, hubert_kmeans=hubert)
    out = units(run=run_dir, tokenizer=cfg, part_rows=8)
    tok = load_tokenizer(out)
    assert tok.kind == "hubert_kmeans"
    train = Run(run_dir).load_units("speech", tok.hash)["train"]
    assert all(len(r["units"]) > 0 for r in train)


def test_hubert_fit_needs_a_model(run_dir):
    with pytest.raises(ValueError, match=r"tokenizer\.hubert_kmeans\.model_path"):
        units(run=run_dir, tokenizer=TokenizerConfig(kind="hubert_kmeans"))


def test_decode_length_finite_and_checked(hubert_tok, hubert_dir, train_wavs):
    wav = train_wavs[0]
    audio = hubert_tok.decode(hubert_tok.encode(wav, 16_000))
    assert audio.dtype == torch.float32 and bool(torch.isfinite(audio).all())
    assert 0.01 < float(audio.abs().max()) <= 1.0  # audible, never clipping
    assert abs(len(audio) - len(wav)) < 0.3 * len(wav)  # dedup durations restore the length
    frames = HubertKMeansTokenizer(
        hubert_dir, 1, hubert_tok.centroids, hubert_tok.templates, hubert_tok.durations, False
    )
    ids = frames.encode(wav, 16_000)  # one id per 20 ms frame = 2 mel frames of 160 samples
    assert len(frames.decode(ids)) == (2 * len(ids) - 1) * 160
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        hubert_tok.decode(torch.tensor([8]))
    assert hubert_tok.decode(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_templates_are_the_mel_frames_under_each_model_frame(hubert_dir):
    wav = torch.randn(16_000, generator=torch.Generator().manual_seed(0))
    model = HubertKMeansTokenizer.fit([wav.numpy()], model_path=hubert_dir, layer=1, k=4).model
    n = layer_features(model, 1, [wav])[0].shape[0]  # 49 frames of 320 samples
    mel = LogMel(MEL)(wav)  # 101 frames of 160 samples
    # Each model frame its own unit, plus one unit never seen.
    templates = fit_templates([wav], [torch.arange(n)], n + 1, 2)
    assert torch.allclose(templates[:n].reshape(-1, MEL.n_mels), mel[: 2 * n], atol=1e-5)
    assert torch.allclose(templates[n], mel[: 2 * n].reshape(n, 2, -1).mean(0), atol=1e-4)
    # The last model frame is filled up when the mel frames run out.
    short = fit_templates([wav[:640]], [torch.arange(3)], 3, 2)
    assert torch.equal(short[2, 0], short[2, 1])


def test_resynthesis_of_real_speech_keeps_the_log_mel(hubert_dir, realdata):
    corpus = realdata / "speechocean762"
    scp = (corpus / "train" / "wav.scp").read_text().split("\n")[:12]
    fit = [read_audio(corpus / line.split()[1]) for line in scp]
    tok = HubertKMeansTokenizer.fit(fit, model_path=hubert_dir, layer=1, k=32, dedup=False)
    wav = read_audio(realdata / "whisper" / "jfk.flac")  # not in the fitting audio
    ids = tok.encode(wav, 16_000)
    logmel = LogMel(MEL)
    target = logmel(torch.as_tensor(wav))

    def distance(units: torch.Tensor) -> float:
        got = logmel(tok.decode(units))
        n = min(len(got), len(target))
        a, b = got[:n], target[:n]
        # Level-free: the vocoder's output level is not the recording's.
        return float(((a - a.mean()) - (b - b.mean())).abs().mean())

    resynth = distance(ids)
    gen = torch.Generator().manual_seed(0)
    shuffled = [distance(ids[torch.randperm(len(ids), generator=gen)]) for _ in range(3)]
    assert resynth < 0.95 * min(shuffled), (resynth, shuffled)


def test_save_load_decodes_the_same(tmp_path, hubert_tok, train_wavs):
    ids = hubert_tok.encode(train_wavs[2], 16_000)
    hubert_tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert torch.equal(loaded.templates, hubert_tok.templates)
    assert torch.equal(loaded.decode(ids), hubert_tok.decode(ids))


def test_hash_covers_ids_not_the_decoder(tmp_path, hubert_tok, hubert_dir):
    other = HubertKMeansTokenizer(
        hubert_dir,
        1,
        hubert_tok.centroids,
        hubert_tok.templates * 0.5,
        hubert_tok.durations + 1,
        gl_iters=2,
    )
    assert other.hash == hubert_tok.hash
    with pytest.raises(ValueError, match=r"templates must be \(K, 2, 80\)"):
        HubertKMeansTokenizer(
            hubert_dir, 1, hubert_tok.centroids, hubert_tok.templates[:, :1], hubert_tok.durations
        )
    hubert_tok.save(tmp_path / "tok")
    weights = tmp_path / "tok" / "unit_tokenizer.safetensors"
    tensors = load_file(str(weights))
    del tensors["templates"]
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match="without this version's decoder templates"):
        load_tokenizer(tmp_path / "tok")


def test_vocoder_json(hubert_tok, vocoder_json):
    settings = vocoder_json(hubert_tok, MEL)
    assert settings["templates"]["shape"] == [8, 2, 80]
