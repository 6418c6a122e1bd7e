"""HuBERT k-means on a tiny randomly initialised HubertModel saved locally (no network)."""

from __future__ import annotations

import json

import pytest
import torch

from most.run import Run
from most.stages.units import TokenizerConfig, units
from most.units import load_tokenizer
from most.units.hubert_kmeans import HubertKMeansConfig, HubertKMeansTokenizer


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
    assert hubert_tok.has_decoder is False
    with pytest.raises(NotImplementedError):
        hubert_tok.decode(ids)


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
    other_layer = HubertKMeansTokenizer(hubert_dir, 2, hubert_tok.centroids)
    assert other_layer.hash != hubert_tok.hash
    no_dedup = HubertKMeansTokenizer(hubert_dir, 1, hubert_tok.centroids, dedup=False)
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
