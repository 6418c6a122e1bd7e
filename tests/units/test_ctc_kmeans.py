"""CTC-encoder k-means units on the fixture corpus (8 sentences x 2 espeak-ng voices)."""

from __future__ import annotations

import json
from dataclasses import replace

import datasets
import numpy as np
import pytest
import torch
from rapidfuzz.distance import Levenshtein

from most.ctc.model import MEL, CTCModelConfig
from most.ctc.train import CTCSchedule
from most.io import read_json
from most.run import Run
from most.stages.units import TokenizerConfig, units
from most.testing import voice_ratio
from most.units import load_tokenizer
from most.units.ctc_kmeans import CTCKMeansConfig, CTCKMeansTokenizer
from most.units.encoder import EncoderConfig
from most.units.mel_kmeans import MelKMeansTokenizer
from most.units.sample import transcribed_audio

# Small and bounded by epochs only (no time cap), so the fitted tokenizer is the same everywhere.
SCHEDULE = CTCSchedule(epochs=60, lr=3e-3, batch_frames=2_000)
ENCODER = CTCModelConfig(width=64, layers=2, heads=2, ff=128, dropout=0.0)


@pytest.fixture(scope="module")
def texts(data_dir) -> list[str]:
    return list(datasets.load_from_disk(str(data_dir / "speech"))["train"]["text"])


@pytest.fixture(scope="module")
def ctc_tok(train_wavs, texts) -> CTCKMeansTokenizer:
    return CTCKMeansTokenizer.fit(
        train_wavs, texts, k=16, layer=2, encoder=ENCODER, schedule=SCHEDULE, gl_iters=4
    )


def test_encode_shapes_rate_and_decode_length(ctc_tok, train_wavs):
    assert ctc_tok.kind == "ctc_kmeans" and ctc_tok.frame_rate == 25.0
    assert ctc_tok.vocab_size == 16 and ctc_tok.has_decoder
    wav = train_wavs[0]
    ids = ctc_tok.encode(wav, 16_000)
    assert ids.dtype == torch.long and ids.dim() == 1 and 0 < len(ids) <= len(wav) / 640 + 1
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    assert bool((ids[1:] != ids[:-1]).all())  # de-duplicated
    audio = ctc_tok.decode(ids)
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    # Mean run lengths restore the duration of the utterance to within a third.
    assert 0.67 < len(audio) / len(wav) < 1.5
    with pytest.raises(ValueError, match="unit ids"):
        ctc_tok.decode(torch.tensor([16]))


def test_training_learned_the_transcripts(ctc_tok, train_wavs, texts):
    """The encoder is a working recogniser of what it was trained on (greedy CTC)."""
    from most.ctc.model import features, greedy_decode, pad

    x, lengths = pad(features(train_wavs[:4]))
    with torch.no_grad():
        logp, out_len = ctc_tok.encoder(x, lengths)
    hyps = greedy_decode(logp, out_len)
    errors = [Levenshtein.normalized_distance(h, r) for h, r in zip(hyps, texts[:4], strict=True)]
    assert np.mean(errors) < 0.5, hyps


def test_units_are_less_voice_dependent_than_mel_kmeans(ctc_tok, train_wavs):
    """The point of this tokenizer: one sentence read by two voices gives closer unit sequences
    (relative to two different sentences) than log-mel k-means with the same K does."""
    mel_tok = MelKMeansTokenizer.fit(train_wavs, k=16, frame_rate=25, seed=0, gl_iters=4)
    assert voice_ratio(ctc_tok, train_wavs) < voice_ratio(mel_tok, train_wavs) - 0.1


def test_batch_equals_single(ctc_tok, train_wavs):
    wavs = train_wavs[:3]
    for ids, wav in zip(ctc_tok.encode_batch(wavs, 16_000), wavs, strict=True):
        assert torch.equal(ids, ctc_tok.encode(wav, 16_000))


def test_save_load_identity_and_tampering(tmp_path, ctc_tok, train_wavs):
    ctc_tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, CTCKMeansTokenizer) and loaded.hash == ctc_tok.hash
    ids = ctc_tok.encode(train_wavs[1], 16_000)
    assert torch.equal(loaded.encode(train_wavs[1], 16_000), ids)
    assert torch.allclose(loaded.decode(ids), ctc_tok.decode(ids))
    # The encoder weights are part of the id mapping: editing one is caught on load.
    from safetensors.torch import load_file, save_file

    path = tmp_path / "tok" / "unit_tokenizer.safetensors"
    tensors = load_file(str(path))
    tensors["encoder.inp.bias"] = tensors["encoder.inp.bias"] + 0.1
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="hash"):
        load_tokenizer(tmp_path / "tok")


def test_hash_ignores_decoder_only_settings(ctc_tok):
    other = CTCKMeansTokenizer(
        ctc_tok.encoder,
        ctc_tok.layer,
        ctc_tok.centroids,
        ctc_tok.templates * 0.5,
        ctc_tok.durations + 1,
        gl_iters=2,
    )
    assert other.hash == ctc_tok.hash
    layer1 = CTCKMeansTokenizer(
        ctc_tok.encoder, 1, ctc_tok.centroids, ctc_tok.templates, ctc_tok.durations
    )
    assert layer1.hash != ctc_tok.hash


def test_bad_layer_is_refused(ctc_tok):
    with pytest.raises(ValueError, match="layer"):
        CTCKMeansTokenizer(
            ctc_tok.encoder, 3, ctc_tok.centroids, ctc_tok.templates, ctc_tok.durations
        )
    with pytest.raises(ValueError, match=r"tokenizer\.ctc_kmeans\.layer"):
        CTCKMeansConfig(layer=11)
    with pytest.raises(ValueError, match=r"encoder\.minutes"):
        EncoderConfig(minutes=0)
    with pytest.raises(ValueError, match=r"encoder\.window"):
        EncoderConfig(window=0)
    with pytest.raises(ValueError, match=r"attn_window"):
        CTCModelConfig(attn_window=0)


def test_attention_window_limits_what_a_step_hears():
    """With ``attn_window`` w, layer l's state at a step depends only on the input within l x w
    steps of it: changing the audio far away leaves it bit-identical (whole-utterance attention
    changes every step)."""
    from most.ctc.model import STACK, CTCRecognizer

    torch.manual_seed(0)
    cfg = CTCModelConfig(width=32, layers=2, heads=2, ff=64, dropout=0.0)
    x, lengths = torch.randn(2, 60 * STACK, 80), torch.tensor([60 * STACK, 50 * STACK])
    far = x.clone()
    far[:, 40 * STACK :] += 3.0  # steps 40.. change
    for window, untouched in ((None, 0), (3, 40 - 2 * 3)):
        torch.manual_seed(0)
        model = CTCRecognizer(replace(cfg, attn_window=window)).eval()
        with torch.no_grad():
            h, _ = model.hidden(x, lengths, 2)
            h_far, _ = model.hidden(far, lengths, 2)
        same = (h - h_far).abs().amax(-1)[0] == 0
        assert same[:untouched].all() and not same[untouched:].any(), window
        # The short row, padded by far more than the window, is finite and matches it alone.
        with torch.no_grad():
            alone, _ = model.hidden(x[1:, : 50 * STACK], lengths[1:], 2)
        assert torch.isfinite(h).all(), window
        torch.testing.assert_close(h[1, :50], alone[0], atol=1e-5, rtol=1e-5)


def test_window_is_saved_and_hashed(tmp_path, ctc_tok):
    """A whole-utterance encoder saves its config without the key (tokenizer hashes made before
    the window existed still verify); a windowed one saves and reloads it, and its hash differs
    from the same weights attending to the whole utterance."""
    assert "attn_window" not in ctc_tok.encoder.cfg.to_dict()
    from most.ctc.model import CTCRecognizer

    windowed = CTCRecognizer(replace(ctc_tok.encoder.cfg, attn_window=4))
    windowed.load_state_dict(ctc_tok.encoder.state_dict())
    tok = CTCKMeansTokenizer(
        windowed, ctc_tok.layer, ctc_tok.centroids, ctc_tok.templates, ctc_tok.durations
    )
    assert tok.hash != ctc_tok.hash
    tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert loaded.encoder.cfg.attn_window == 4 and loaded.hash == tok.hash


def test_schedule_is_epochs_unless_capped(train_wavs, texts):
    """Without a time cap the recogniser trains exactly its epoch budget, and two runs with one
    seed give identical weights (so the units do not depend on the machine's speed); a cap ends
    training early and says so in the log."""
    from most.ctc.train import train_recognizer

    tiny = CTCModelConfig(width=32, layers=1, heads=2, ff=64, dropout=0.0)
    schedule = CTCSchedule(epochs=2, batch_frames=2_000)
    a, log_a = train_recognizer(train_wavs[:8], texts[:8], tiny, schedule)
    b, _ = train_recognizer(train_wavs[:8], texts[:8], tiny, schedule)
    assert log_a["steps"] == log_a["planned_steps"] > 1 and not log_a["capped"]
    for (name, wa), wb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(wa, wb), name
    capped = CTCSchedule(epochs=50, batch_frames=2_000, max_minutes=1e-6)
    _, log_c = train_recognizer(train_wavs[:8], texts[:8], tiny, capped)
    assert log_c["capped"] and log_c["steps"] < log_c["planned_steps"]
    with pytest.raises(ValueError, match="max_minutes"):
        CTCSchedule(max_minutes=0)


def test_precision_is_the_schedules(train_wavs, texts):
    """bf16-mixed autocasts the training forward (other weights than 32-true from one seed) and
    still learns; the log says which precision trained; an unknown precision is refused."""
    from most.ctc.train import train_recognizer

    tiny = CTCModelConfig(width=32, layers=1, heads=2, ff=64, dropout=0.0)
    logs, weights = {}, {}
    for precision in ("32-true", "bf16-mixed"):
        schedule = CTCSchedule(epochs=8, batch_frames=2_000, precision=precision)
        model, logs[precision] = train_recognizer(train_wavs[:8], texts[:8], tiny, schedule)
        weights[precision] = model.head.weight
        assert logs[precision]["precision"] == precision
    assert not torch.equal(weights["32-true"], weights["bf16-mixed"])
    assert logs["bf16-mixed"]["final_loss"] < 0.9 * logs["bf16-mixed"]["first_loss"]
    with pytest.raises(ValueError, match="precision"):
        CTCSchedule(precision="bf16")


def _ctc_kmeans(k: int = 8, layer: int = 2, **encoder) -> TokenizerConfig:
    """The stage trains the default encoder; keep it to a few steps here."""
    enc = EncoderConfig(**{"utterances": 16, "epochs": 0.5, **encoder})
    return TokenizerConfig(
        kind="ctc_kmeans", fit_seconds=20, ctc_kmeans=CTCKMeansConfig(k, layer, encoder=enc)
    )


def test_stage_with_ctc_kmeans(run_dir):
    cfg = _ctc_kmeans()
    units(run_dir, tokenizer=cfg)
    manifest = read_json(Run(run_dir).units_manifest)
    assert manifest["complete"] and manifest["tokenizer"]["kind"] == "ctc_kmeans"
    assert manifest["tokenizer"]["frame_rate"] == 25.0
    tok = load_tokenizer(run_dir)
    speech = Run(run_dir).load_units("speech", tok.hash)
    assert len(speech["train"]) == 16
    assert max(max(u) for u in speech["train"]["units"]) < 8
    # Re-running is a no-op; asking for another layer is refused rather than mixing ids.
    units(run_dir, tokenizer=cfg)
    with pytest.raises(
        ValueError, match=r"other settings or inputs \(tokenizer.ctc_kmeans.layer 2 -> 1\)"
    ):
        units(run_dir, tokenizer=_ctc_kmeans(layer=1))
    with pytest.raises(ValueError, match=r"\(tokenizer.ctc_kmeans.encoder.window None -> 6\)"):
        units(run_dir, tokenizer=_ctc_kmeans(window=6))
    # A run made before fingerprints has only the tokenizer's own records to go by: its saved
    # settings and fit.json still refuse another layer or encoder budget.
    Run(run_dir).record_path("units").unlink()
    with pytest.raises(ValueError, match=r"other settings \(ctc_kmeans.layer: 2 -> 1\)"):
        units(run_dir, tokenizer=_ctc_kmeans(layer=1))
    # Settings the tokenizer file does not hold (how its encoder was trained) are kept beside it
    # and checked too: another encoder budget would silently reuse the old units otherwise.
    fit_file = Run(run_dir).unit_tokenizer / "fit.json"
    fit = read_json(fit_file)
    assert fit == {
        "seed": 0,
        "fit_seconds": 20,
        "encoder_utterances": 16,
        "encoder_epochs": 0.5,
        "encoder_minutes": None,
        "encoder_short": False,
        "encoder_batch_frames": 4000,
        "encoder_lr": 0.003,
        "encoder_precision": "auto",
    }
    with pytest.raises(
        ValueError, match=r"fitted with other settings \(encoder_epochs: 0.5 -> 1.0\)"
    ):
        units(run_dir, tokenizer=_ctc_kmeans(epochs=1.0))
    with pytest.raises(ValueError, match=r"\(encoder_short: False -> True\)"):
        units(run_dir, tokenizer=_ctc_kmeans(short=True))
    # A fit.json from before encoder_short existed was fitted without it, and one from when
    # encoder_warp existed holds it at 0.0: both still a match; another warp is refused.
    del fit["encoder_short"]
    fit_file.write_text(json.dumps({**fit, "encoder_warp": 0.0}))
    units(run_dir, tokenizer=cfg)
    with pytest.raises(ValueError, match=r"\(encoder_short: False -> True\)"):
        units(run_dir, tokenizer=_ctc_kmeans(short=True))
    fit_file.write_text(json.dumps({**fit, "encoder_warp": 0.1}))
    with pytest.raises(ValueError, match=r"\(encoder_warp: 0.1 -> 0.0\)"):
        units(run_dir, tokenizer=cfg)
    # A fit.json from before encoder_precision existed was trained in fp32: a match for 32-true
    # only, not for auto (bf16 where this CPU trains faster in it).
    del fit["encoder_precision"]
    fit_file.write_text(json.dumps(fit))
    units(run_dir, tokenizer=_ctc_kmeans(precision="32-true"))
    with pytest.raises(ValueError, match=r"\(encoder_precision: 32-true -> auto\)"):
        units(run_dir, tokenizer=cfg)


def test_encoder_short_adds_every_short_utterance(tmp_path, data_dir):
    # The encoder may also learn from speech/train_short (words said alone): all of them, shuffled
    # in with the same seeded train sample; asked for without that split, it says what to build.
    speech = datasets.load_from_disk(str(data_dir / "speech"))
    short = speech["test"].select(range(2)).map(lambda r: {"text": r["text"].split()[0]})
    with_short = tmp_path / "speech"
    datasets.DatasetDict({"train": speech["train"], "train_short": short}).save_to_disk(
        str(with_short)
    )
    with_short = datasets.load_from_disk(str(with_short))
    base = transcribed_audio(with_short, 6, seed=3)
    both = transcribed_audio(with_short, 6, seed=3, short=True)
    wavs, texts, voices = both.wavs, both.texts, both.voices
    assert len(base.texts) == 6 and len(texts) == len(voices) == 6 + len(short)
    assert sorted(texts) == sorted(base.texts + list(short["text"]))
    # Each utterance keeps its own voice through the shuffle (ctc_phones reads its accent).
    pairs = set(zip(speech["train"]["text"], speech["train"]["voice"], strict=True))
    pairs |= set(zip(short["text"], short["voice"], strict=True))
    assert set(zip(texts, voices, strict=True)) <= pairs and set(base.voices) <= set(voices)
    assert transcribed_audio(with_short, 6, seed=3, short=True).texts == texts  # reproducible
    assert texts[: len(base.texts)] != base.texts  # shuffled, not appended
    assert all(any(np.array_equal(b, w) for w in wavs) for b in base.wavs)
    with pytest.raises(ValueError, match=r"`short` setting needs a speech/train_short split"):
        transcribed_audio(speech, 6, seed=3, short=True)


def test_vocoder_json(ctc_tok, vocoder_json):
    settings = vocoder_json(ctc_tok, MEL)
    assert settings["templates"]["shape"] == [16, 4, 80]
