"""Phoneme units from a CTC recogniser on the fixture corpus (8 sentences x 2 espeak-ng voices)."""

from __future__ import annotations

from dataclasses import replace

import datasets
import numpy as np
import pytest
import torch
from rapidfuzz.distance import Levenshtein

from most.ctc.model import MEL, STACK, CTCModelConfig, CTCRecognizer
from most.ctc.train import CTCSchedule
from most.io import read_json
from most.mel import LogMel
from most.run import Run
from most.stages.units import TokenizerConfig, units
from most.testing import voice_ratio
from most.units import load_tokenizer
from most.units.ctc_phones import (
    CONTEXT_STEPS,
    MIN_COUNT,
    CTCPhonesConfig,
    CTCPhonesTokenizer,
    _fit_decoder,
    _spans,
)
from most.units.encoder import EncoderConfig
from most.units.mel_kmeans import MelKMeansConfig, MelKMeansTokenizer
from most.units.phones import BOUNDARY, transcribe, variant_of, words

# Small and bounded by epochs only (no time cap), so the fitted tokenizer is the same everywhere.
SCHEDULE = CTCSchedule(epochs=60, lr=3e-3, batch_frames=2_000)
ENCODER = CTCModelConfig(width=64, layers=2, heads=2, ff=128, dropout=0.0)


@pytest.fixture(scope="module")
def train_rows(data_dir) -> tuple[list[str], list[str]]:
    train = datasets.load_from_disk(str(data_dir / "speech"))["train"]
    return list(train["text"]), list(train["voice"])


@pytest.fixture(scope="module")
def tok(train_wavs, train_rows) -> CTCPhonesTokenizer:
    texts, voices = train_rows
    return CTCPhonesTokenizer.fit(
        train_wavs, texts, voices, encoder=ENCODER, schedule=SCHEDULE, gl_iters=4
    )


def test_transcripts_follow_words_and_accent():
    assert variant_of("en-gb+m1:150:40") == "en-gb"
    assert variant_of("en-gb-scotland+m4:155:42") == "en-gb-scotland"
    assert variant_of("en-us+f3") == "en-us"
    assert variant_of("1089") == variant_of(None) == "en-us"  # LibriSpeech speaker ids
    assert words("Don't pay 12 coins!") == ["dont", "pay", "twelve", "coins"]
    sentence, alone, gb = transcribe(
        ["The cat.", "cat", "water"], ["en-us+m3:160:50", "1089", "en-gb+m1:150:40"]
    )
    assert sentence.count(BOUNDARY) == 1 and sentence[-3:] == alone == ["k", "a", "t"]
    (us,) = transcribe(["water"], [None])
    assert gb != us  # the accent's own phonemes: en-gb drops the r
    with pytest.raises(ValueError, match="2 texts but 1 voices"):
        transcribe(["a", "b"], ["en-us"])


def test_spans_are_the_best_path():
    # blank = 0; classes are unit id + 1
    path = torch.tensor([0, 3, 3, 0, 0, 5, 5, 0, 5, 2])
    ids, starts = _spans(path, dedup=False)
    assert ids.tolist() == [2, 4, 4, 1] and starts.tolist() == [1, 5, 8, 9]
    ids, starts = _spans(path, dedup=True)  # the phoneme doubled across a blank joins
    assert ids.tolist() == [2, 4, 1] and starts.tolist() == [1, 5, 9]
    ids, starts = _spans(torch.zeros(7, dtype=torch.long), dedup=True)
    assert ids.numel() == 0 and starts.numel() == 0


def test_decoder_templates_use_context_and_back_off():
    """Two units, three utterances: unit 1 after unit 0 always follows a tone, unit 0 opens each
    utterance. Seen contexts get their exact mean log-mel per step; unseen ones back off to the
    unit; durations are the median span in steps."""
    rng = np.random.default_rng(0)
    n = 10 * STACK * MEL.hop_length  # about 10 encoder steps
    wavs = [torch.tensor(rng.normal(0, 0.1, n), dtype=torch.float32) for _ in range(MIN_COUNT)]
    spans = [(torch.tensor([0, 1]), torch.tensor([0, 4]))] * MIN_COUNT  # unit 1 from step 4 on
    k = 2
    templates, durations = _fit_decoder(wavs, spans, k)
    assert templates.shape == (k + 1, k, CONTEXT_STEPS, STACK, MEL.n_mels)
    steps = []  # each utterance's log-mel as encoder steps, the last one padded by repetition
    for w in wavs:
        m = LogMel(MEL)(w)
        pad = -len(m) % STACK
        steps.append(torch.cat([m, m[-1:].expand(pad, -1)]).reshape(-1, STACK, MEL.n_mels))
    n_steps = len(steps[0])
    assert durations[k, 0] == 4 and durations[0, 1] == n_steps - 4
    assert durations[1, 1] == n_steps - 4  # unseen after itself: the unit's median
    want = torch.stack([m[4 + 2] for m in steps]).mean(0)  # unit 1, its third step
    torch.testing.assert_close(templates[0, 1, 2], want, atol=1e-4, rtol=1e-4)
    # Unit 1 never opens an utterance: that context backs off to unit 1's own step mean.
    torch.testing.assert_close(templates[k, 1, 2], want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(templates[k, 0, 2], want, atol=1e-2)  # unit 0 has its own
    # Steps from CONTEXT_STEPS - 1 on share the last template.
    last = torch.cat([m[4 + CONTEXT_STEPS - 1 :] for m in steps]).mean(0)
    torch.testing.assert_close(templates[0, 1, CONTEXT_STEPS - 1], last, atol=1e-4, rtol=1e-4)


def test_encode_and_decode(tok, train_wavs):
    assert tok.kind == "ctc_phones" and tok.frame_rate == 25.0 and tok.has_decoder
    assert tok.vocab_size == len(tok.symbols) == tok.encoder.cfg.n_symbols
    assert tok.symbols[0] == BOUNDARY and len(set(tok.symbols)) == tok.vocab_size
    wav = train_wavs[0]
    ids = tok.encode(wav, 16_000)
    assert ids.dtype == torch.long and ids.dim() == 1 and 0 < len(ids) <= len(wav) / 640 + 1
    assert int(ids.min()) >= 0 and int(ids.max()) < tok.vocab_size
    assert bool((ids[1:] != ids[:-1]).all())  # de-duplicated
    audio = tok.decode(ids)
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    # Median unit lengths restore the utterance's duration to within a half.
    assert 0.5 < len(audio) / len(wav) < 1.5
    with pytest.raises(ValueError, match="unit ids"):
        tok.decode(torch.tensor([tok.vocab_size]))
    assert tok.decode(torch.tensor([], dtype=torch.long)).numel() == 0


def test_units_are_the_transcripts_phonemes(tok, train_wavs, train_rows):
    """The encoder's best path reads back the espeak-ng phonemes it was trained on."""
    texts, voices = train_rows
    refs = transcribe(texts, voices)
    errors = [
        Levenshtein.normalized_distance(
            [tok.symbols[i] for i in tok.encode(w, 16_000).tolist()], ref
        )
        for w, ref in zip(train_wavs, refs, strict=True)
    ]
    assert np.mean(errors) < 0.3, np.mean(errors)


def test_units_are_less_voice_dependent_than_mel_kmeans(tok, train_wavs):
    mel_tok = MelKMeansTokenizer.fit(train_wavs, k=16, frame_rate=25, seed=0, gl_iters=4)
    assert voice_ratio(tok, train_wavs) < voice_ratio(mel_tok, train_wavs) - 0.2


def test_batch_equals_single(tok, train_wavs):
    wavs = train_wavs[:3]
    for ids, wav in zip(tok.encode_batch(wavs, 16_000), wavs, strict=True):
        assert torch.equal(ids, tok.encode(wav, 16_000))


def test_save_load_identity_and_tampering(tmp_path, tok, train_wavs):
    tok.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert isinstance(loaded, CTCPhonesTokenizer) and loaded.hash == tok.hash
    assert loaded.symbols == tok.symbols
    ids = tok.encode(train_wavs[1], 16_000)
    assert torch.equal(loaded.encode(train_wavs[1], 16_000), ids)
    assert torch.allclose(loaded.decode(ids), tok.decode(ids))
    from safetensors.torch import load_file, save_file

    path = tmp_path / "tok" / "unit_tokenizer.safetensors"
    tensors = load_file(str(path))
    tensors["encoder.head.bias"] = tensors["encoder.head.bias"] + 0.1
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match="hash"):
        load_tokenizer(tmp_path / "tok")


def test_hash_covers_ids_not_the_decoder(tok):
    other = CTCPhonesTokenizer(
        tok.encoder, tok.symbols, tok.templates * 0.5, tok.durations + 1, gl_iters=2
    )
    assert other.hash == tok.hash
    renamed = CTCPhonesTokenizer(
        tok.encoder, [BOUNDARY, *reversed(tok.symbols[1:])], tok.templates, tok.durations
    )
    assert renamed.hash != tok.hash
    assert "n_symbols" in tok.encoder.cfg.to_dict()
    assert "n_symbols" not in CTCModelConfig().to_dict()  # letter encoders hash as before
    with pytest.raises(ValueError, match="outputs for"):
        CTCPhonesTokenizer(tok.encoder, tok.symbols[:-1], tok.templates, tok.durations)
    wrong = CTCRecognizer(replace(ENCODER, n_symbols=tok.vocab_size))
    with pytest.raises(ValueError, match="templates"):
        CTCPhonesTokenizer(wrong, tok.symbols, tok.templates[:, :, :2], tok.durations)


def _ctc_phones(**encoder) -> TokenizerConfig:
    enc = EncoderConfig(**{"utterances": 16, "epochs": 0.5, "window": 3, **encoder})
    return TokenizerConfig(kind="ctc_phones", fit_seconds=20, ctc_phones=CTCPhonesConfig(enc))


def test_stage_with_ctc_phones(run_dir):
    cfg = _ctc_phones()
    units(run_dir, tokenizer=cfg)
    manifest = read_json(Run(run_dir).units_manifest)
    assert manifest["complete"] and manifest["tokenizer"]["kind"] == "ctc_phones"
    tok = load_tokenizer(run_dir)
    assert isinstance(tok, CTCPhonesTokenizer) and tok.encoder.cfg.attn_window == 3
    speech = Run(run_dir).load_units("speech", tok.hash)
    assert len(speech["train"]) == 16
    assert max(max(u) for u in speech["train"]["units"] if u) < tok.vocab_size
    # Other kinds' sections do not apply; re-running is a no-op; another window or encoder
    # budget is refused rather than mixing ids.
    units(run_dir, tokenizer=replace(cfg, mel_kmeans=MelKMeansConfig(k=99)))
    with pytest.raises(ValueError, match=r"\(tokenizer.ctc_phones.encoder.window 3 -> None\)"):
        units(run_dir, tokenizer=_ctc_phones(window=None))
    with pytest.raises(ValueError, match=r"\(tokenizer.ctc_phones.encoder.epochs 0.5 -> 1.0\)"):
        units(run_dir, tokenizer=_ctc_phones(epochs=1.0))
    Run(run_dir).record_path("units").unlink()  # made before fingerprints: fit.json still guards
    with pytest.raises(ValueError, match=r"\(encoder_epochs: 0.5 -> 1.0\)"):
        units(run_dir, tokenizer=_ctc_phones(epochs=1.0))
    with pytest.raises(
        ValueError, match=r"made with other settings \(kind: ctc_phones -> ctc_kmeans"
    ):
        units(run_dir, tokenizer=replace(cfg, kind="ctc_kmeans"))


def test_vocoder_json(tok, vocoder_json):
    settings = vocoder_json(tok, MEL)
    assert settings["templates"]["shape"] == [
        tok.vocab_size + 1,
        tok.vocab_size,
        CONTEXT_STEPS,
        4,
        80,
    ]
