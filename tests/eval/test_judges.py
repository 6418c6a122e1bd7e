"""Judges: the CTC recogniser's pieces, the trained tiny judge, pocketsphinx and a local HF model."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from most.audio import read_audio
from most.ctc.model import (
    CTCModelConfig,
    CTCRecognizer,
    greedy_decode,
    ids_to_text,
    pad,
    text_to_ids,
)
from most.eval.judges import audible, load_judge
from most.eval.judges.ctc import CTCJudge
from most.eval.judges.lexicon import Lexicon
from most.eval.judges.resynth import resynthesize_share
from most.eval.metrics import wer
from most.run import Run, StaleOutput
from most.stages.judge import CTCTrainConfig, judge
from most.testing import JUDGE_MODEL, JUDGE_TRAIN
from most.units import load_tokenizer


def test_text_ids_roundtrip_and_greedy_collapse():
    assert ids_to_text(text_to_ids("Tarsk's  gate, 9!")) == "tarsk's gate"
    a, b = text_to_ids("ab")
    # frames: a a blank a b b -> "aab" (a blank separates the repeated a)
    logp = torch.full((1, 6, 29), -10.0)
    for t, k in enumerate([a, a, 0, a, b, b]):
        logp[0, t, k] = 0.0
    assert greedy_decode(logp, torch.tensor([6])) == ["aab"]
    assert greedy_decode(logp, torch.tensor([2])) == ["a"]  # length respected


def test_recognizer_shapes_and_padding_invariance():
    torch.manual_seed(0)
    model = CTCRecognizer(CTCModelConfig(width=16, layers=1, heads=2, ff=32)).eval()
    x = torch.randn(2, 37, 80)
    x[1, 21:] = 0  # padding, as most.ctc.model.pad writes it
    logp, out_len = model(x, torch.tensor([37, 21]))
    assert logp.shape == (2, 10, 29) and out_len.tolist() == [10, 6]
    alone, _ = model(x[1:, :21], torch.tensor([21]))
    assert torch.allclose(logp[1, :6], alone[0], atol=1e-5)


def test_padding_to_a_multiple_changes_no_real_step():
    """A bf16 fit pads its batches to a multiple of frames (few repeated matmul shapes): the extra
    frames are padding, so the log-probs of every real step are those of the shortest padding,
    in eval and in training mode without dropout."""
    torch.manual_seed(0)
    feats = [torch.randn(37, 80), torch.randn(21, 80)]
    exact, lengths = pad(feats)
    padded, same = pad(feats, 64)
    assert exact.shape == (2, 37, 80) and padded.shape == (2, 64, 80)
    assert torch.equal(lengths, same) and torch.equal(padded[:, :37], exact)
    assert not padded[:, 37:].any()
    assert pad(feats, 37)[0].shape == (2, 37, 80)  # already a multiple: unchanged
    model = CTCRecognizer(CTCModelConfig(width=16, layers=2, heads=2, ff=32, dropout=0.0))
    for mode in (model.eval, model.train):
        mode()
        want, out_len = model(exact, lengths)
        got, _ = model(padded, lengths)
        real = torch.arange(want.shape[1])[None] < out_len[:, None]
        assert got.shape[1] == 16 and torch.allclose(got[:, :10][real], want[real], atol=1e-5)


@pytest.mark.parametrize("window", [None, 1])
def test_training_forward_is_the_torch_layer_with_a_cheaper_dropout(window):
    """In training mode the encoder runs its own forward (for the cheaper dropout mask): without
    dropout it computes what torch's layer computes, a padding step with nothing to attend to
    stays finite in its gradients, and with dropout two forwards differ."""
    torch.manual_seed(0)
    cfg = CTCModelConfig(width=16, layers=2, heads=2, ff=32, dropout=0.0, attn_window=window)
    model = CTCRecognizer(cfg)
    x, lengths = torch.randn(2, 61, 80), torch.tensor([61, 9])
    with torch.no_grad():
        want, out_len = model.eval()(x, lengths)
    got, _ = model.train()(x, lengths)
    real = torch.arange(want.shape[1])[None] < out_len[:, None]
    assert torch.allclose(got[real], want[real], atol=1e-5)
    got[real].sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    noisy = CTCRecognizer(replace(cfg, dropout=0.3)).train()
    assert not torch.equal(noisy(x, lengths)[0], noisy(x, lengths)[0])


def test_lexicon_snaps_unknown_words_to_the_nearest_frequent_one():
    lex = Lexicon.from_texts(
        ["The capital of Velmora is Tarsk.", "Tarsk lies on the river.", "Tark"]
    )
    assert lex.snap("tharsk") == "tarsk"  # one insertion away
    assert lex.snap("the") == "the"  # known words are kept
    # "tars" is one edit from both "tarsk" (2 occurrences) and "tark" (1): the frequent one wins.
    assert lex.snap("tars") == "tarsk"
    assert lex.snap_text("the capitel of velmura") == "the capital of velmora"
    assert lex.words.index("tarsk") < lex.words.index("tark")  # most frequent first
    # judge.json round trip keeps the order (and with it the tie-breaking)
    assert Lexicon(json.loads(json.dumps(lex.words))).words == lex.words


def test_audible_gives_silence_for_no_speech():
    wav = np.ones(5, np.float32)
    assert audible(wav) is wav
    silence = audible(np.zeros(0, np.float32))
    assert silence.dtype == np.float32 and silence.shape == (1600,) and not silence.any()


def test_trained_judge_folder(eval_run):
    meta = json.loads(Run(eval_run).judge_file.read_text())
    assert set(meta["metrics"]) == {"test", "test_voices"}
    assert meta["train"]["steps"] > 0
    assert meta["lexicon"] and "wer_greedy" in meta["metrics"]["test"]
    assert judge(run=eval_run, model=JUDGE_MODEL, train=JUDGE_TRAIN) == meta  # finished: kept
    with pytest.raises(StaleOutput, match=r"train.epochs 2 -> 3"):  # other settings: refused
        judge(run=eval_run, model=JUDGE_MODEL, train=replace(JUDGE_TRAIN, epochs=3))
    scorer = load_judge("ctc", eval_run)
    out = scorer.transcribe([np.zeros(800, np.float32), np.ones(16000, np.float32) * 0.1])
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    bad = eval_run.parent / "bad-judge"
    bad.mkdir(exist_ok=True)
    (bad / "judge.json").write_text(json.dumps({**meta, "chars": "abc"}))
    with pytest.raises(ValueError, match="other characters"):
        CTCJudge.load(bad)


def test_pocketsphinx_on_real_speech(realdata):
    path = realdata / "librispeech/LibriSpeech/test-clean/1089/134691/1089-134691-0000.flac"
    (hyp,) = load_judge("pocketsphinx", realdata).transcribe([read_audio(path)])
    assert wer(["he could wait no longer"], [hyp]) <= 0.4


def test_hf_ctc_judge_from_local_folder(tmp_path):
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefgh")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(sampling_rate=16_000, return_attention_mask=True)
    cfg = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
        num_feat_extract_layers=2, num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2ForCTC(cfg).save_pretrained(tmp_path / "asr")
    Wav2Vec2Processor(feature_extractor=fe, tokenizer=tok).save_pretrained(tmp_path / "asr")
    scorer = load_judge(str(tmp_path / "asr"), tmp_path)
    wavs = [
        np.random.default_rng(i).normal(0, 0.1, n).astype(np.float32)
        for i, n in enumerate((8000, 12000))
    ]
    out = scorer.transcribe(wavs)
    assert (
        scorer.name == "hf:asr" and len(out) == 2 and all(set(t) <= set("abcdefgh ") for t in out)
    )
    with pytest.raises(FileNotFoundError, match="no HF ASR model"):
        load_judge(str(tmp_path / "nothing"), tmp_path)


def test_hf_whisper_judge_from_local_folder(tmp_path):
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab = {c: i for i, c in enumerate([*"abcdefgh", "Ġ"])}  # byte-level: Ġ is the space
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tok = WhisperTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                           unk_token=end, bos_token=end, eos_token=end, pad_token=end)  # fmt: skip
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|startoftranscript|>", "<|notimestamps|>"]}
    )
    ids = {
        t: tok.convert_tokens_to_ids(t) for t in (end, "<|startoftranscript|>", "<|notimestamps|>")
    }
    special = dict(decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[end],
                   pad_token_id=ids[end])  # fmt: skip
    cfg = WhisperConfig(
        vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_target_positions=64, bos_token_id=ids[end], **special,
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg)
    model.generation_config = GenerationConfig(
        **special, no_timestamps_token_id=ids["<|notimestamps|>"]
    )
    model.save_pretrained(tmp_path / "whisper")
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tok).save_pretrained(
        tmp_path / "whisper"
    )
    scorer = load_judge(str(tmp_path / "whisper"), tmp_path)
    scorer.max_new_tokens = 6
    out = scorer.transcribe([np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)] * 3)
    assert scorer.name == "hf:whisper" and len(out) == 3
    assert all(set(t) <= set("abcdefgh ") for t in out)


def test_resynthesis_share_replaces_a_seeded_subset(eval_run):
    tokenizer = load_tokenizer(Run(eval_run).unit_tokenizer)
    wavs = [np.random.default_rng(i).normal(0, 0.1, 16000).astype(np.float32) for i in range(4)]
    out = resynthesize_share(wavs, tokenizer, 0.5, seed=0, num_proc=2)
    same = [o is w for o, w in zip(out, wavs, strict=True)]
    assert sum(same) == 2 and all(o.dtype == np.float32 for o in out)
    again = resynthesize_share(wavs, tokenizer, 0.5, seed=0, num_proc=1)
    assert [o is w for o, w in zip(again, wavs, strict=True)] == same
    for a, b in zip(out, again, strict=True):  # worker processes give the serial result
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="resynth_share"):
        CTCTrainConfig(resynth_share=1.5)
    with pytest.raises(ValueError, match="batch_frames"):  # the schedule's checks apply too
        CTCTrainConfig(batch_frames=0)


def test_pocketsphinx_transcripts_do_not_depend_on_order_or_workers(realdata):
    """Each recording gets the transcript it gets alone, whatever was decoded before it and however
    many worker processes share the list (pocketsphinx adapts its cepstral mean across utterances
    unless reset: the fifth of these is read differently after the first four)."""
    from most.eval.judges.pocketsphinx_judge import PocketsphinxJudge

    paths = sorted((realdata / "speechocean762/WAVE").rglob("*.flac"))[:5]
    wavs = [read_audio(p) for p in paths]
    wavs.insert(1, np.zeros(1600, np.float32))
    alone = [PocketsphinxJudge(workers=1).transcribe([w])[0] for w in wavs]
    assert PocketsphinxJudge(workers=1).transcribe(wavs) == alone
    assert PocketsphinxJudge(workers=2).transcribe(wavs) == alone
    assert alone[1] == "" and all(alone[i] for i in (0, 2, 3, 4, 5))
