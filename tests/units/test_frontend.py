"""Frozen audio frontends of the continuous input path: shapes, frame rates, padding masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from most.units.frontend import AudioFrontend, FrontendConfig, pad_features


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(16_000 * seconds)).astype(np.float32)


def test_mel_frontend_frames_at_100_hz_and_batch_mask():
    fe = AudioFrontend(FrontendConfig())
    assert (fe.dim, fe.frame_rate) == (80, 100.0)
    one = fe.features(noise(0.5))
    assert one.shape == (51, 80)
    feats, mask = fe.batch([noise(0.5), noise(0.3, 1)])
    assert feats.shape == (2, 51, 80) and mask.sum(1).tolist() == [51, 31]
    torch.testing.assert_close(feats[0], one)
    assert feats[1, 31:].abs().sum() == 0


def test_ctc_frontend_reads_the_unit_tokenizers_encoder(tmp_path):
    from most.ctc.model import MEL, STACK, CTCModelConfig, CTCRecognizer
    from most.units.ctc_phones import CONTEXT_STEPS, CTCPhonesTokenizer

    torch.manual_seed(0)
    k = 3
    enc = CTCRecognizer(CTCModelConfig(width=16, layers=2, heads=2, ff=32, n_symbols=k))
    templates = torch.zeros(k + 1, k, CONTEXT_STEPS, STACK, MEL.n_mels)
    CTCPhonesTokenizer(enc, [" ", "a", "b"], templates, torch.ones(k + 1, k)).save(tmp_path)
    fe = AudioFrontend(FrontendConfig(kind="ctc", path=str(tmp_path), layer=1))
    assert (fe.dim, fe.frame_rate) == (16, 25.0)
    x = fe.features(noise(0.4))
    assert x.shape == (11, 16)  # ceil(41 mel frames / 4)
    mel = AudioFrontend(FrontendConfig()).features(noise(0.4))
    ref, _ = enc.eval().hidden(mel[None], torch.tensor([41]), layer=1)
    torch.testing.assert_close(x, ref[0])


def test_hubert_and_whisper_encoder_folders(tmp_path):
    from transformers import HubertConfig, HubertModel, WhisperConfig, WhisperModel

    torch.manual_seed(0)
    hubert = HubertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_stride=(5, 4, 16), conv_kernel=(10, 8, 16),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    )  # fmt: skip
    HubertModel(hubert).save_pretrained(tmp_path / "hubert")
    fe = AudioFrontend(FrontendConfig(kind="hf", path=str(tmp_path / "hubert"), layer=1))
    assert (fe.dim, fe.frame_rate) == (32, 50.0)
    assert fe.features(noise(0.5)).shape == (24, 32)
    whisper = WhisperConfig(
        vocab_size=16, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=50, max_target_positions=16, pad_token_id=0, bos_token_id=0,
        eos_token_id=0, decoder_start_token_id=0,
    )  # fmt: skip
    WhisperModel(whisper).save_pretrained(tmp_path / "whisper")
    fe = AudioFrontend(FrontendConfig(kind="hf", path=str(tmp_path / "whisper")))
    assert (fe.dim, fe.frame_rate) == (16, 50.0)
    assert fe.features(noise(0.5)).shape == (25, 16)
    assert fe.features(noise(3.0)).shape == (50, 16)  # cut at the encoder's window


def test_bad_frontend_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="needs adapter"):
        FrontendConfig(kind="ctc")
    with pytest.raises(ValueError, match="mel, ctc or hf"):
        FrontendConfig(kind="wav")
    with pytest.raises(FileNotFoundError, match="no config"):
        AudioFrontend(FrontendConfig(kind="hf", path=str(tmp_path)))
    with pytest.raises(ValueError, match="empty audio"):
        AudioFrontend(FrontendConfig()).features(np.zeros(0, np.float32))


def test_pad_features():
    feats, mask = pad_features([torch.ones(3, 2), torch.ones(1, 2)])
    assert feats.shape == (2, 3, 2) and mask.tolist() == [[True] * 3, [True, False, False]]
