"""The CTC judge's beam search: the bigram ARPA, the lexicon decoder, and the judge stage's LM."""

import json
import shutil

import numpy as np
import pytest
import torch

from most.ctc.model import BLANK, CHARS, greedy_decode
from most.eval.judges import load_judge
from most.eval.judges.beam import SPACE, BeamSettings, LexiconBeam
from most.eval.judges.ctc import LM_FILE, WEIGHTS_FILE
from most.eval.judges.lexicon import Lexicon
from most.eval.judges.wordlm import BOS, EOS, bigram_arpa
from most.run import Run
from most.stages.judge import CTCDecodeConfig, judge
from most.testing import JUDGE_MODEL, JUDGE_TRAIN

SENTENCES = [
    "two hundred people live in tarsk",
    "velm has two hundred and six people",
    "the river velm flows to the sea",
    "she walks to the river",
    "the river velm is long",
]


def _words(sentences: list[str]) -> list[str]:
    return Lexicon.from_texts(sentences).words


def _kenlm(path, words):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    d = Dictionary()
    for w in [BOS, *words, EOS, "<unk>"]:
        d.add_entry(w)
    return KenLM(str(path), d), d


def test_bigram_is_a_distribution_in_every_context(tmp_path):
    words = [*_words(SENTENCES), "tarskel"]  # a lexicon word the LM text never uses
    (tmp_path / "lm.arpa").write_text(bigram_arpa([s.split() for s in SENTENCES], words))
    lm, d = _kenlm(tmp_path / "lm.arpa", words)
    start = lm.start(False)
    vocab = [*words, EOS, "<unk>"]
    for context in ([], ["the"], ["river"], ["tarskel"], ["sea"]):
        state = start
        for w in context:
            state, _ = lm.score(state, d.get_index(w))
        probs = {w: 10 ** lm.score(state, d.get_index(w))[1] for w in vocab}  # KenLM: log10
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4), context
        assert min(probs.values()) > 0  # the unused word too: every lexicon word can be decoded
    state, _ = lm.score(start, d.get_index("two"))
    after_two = {w: lm.score(state, d.get_index(w))[1] for w in ("hundred", "river", "tarskel")}
    assert after_two["hundred"] > after_two["river"] > -10
    with pytest.raises(ValueError, match="discount"):
        bigram_arpa([["a"]], ["a"], discount=1.0)
    with pytest.raises(ValueError, match="no sentences"):
        bigram_arpa([], ["a"])


def _emissions(spelling: list[tuple[str, float]]) -> torch.Tensor:
    """CTC log-probabilities: per frame one character with its probability, the rest on blank."""
    logp = torch.full((len(spelling), len(CHARS) + 1), -20.0)
    for t, (char, p) in enumerate(spelling):
        k = CHARS.index(char) + 1
        logp[t, k] = float(np.log(p))
        logp[t, BLANK] = float(np.log(1 - p)) if p < 1 else -20.0
    return logp


def _frames(text: str, weak: dict[int, float] | None = None) -> list[tuple[str, float]]:
    weak = weak or {}
    return [(c, weak.get(i, 0.95)) for i, c in enumerate(text)]


@pytest.fixture
def beam(tmp_path) -> LexiconBeam:
    words = _words(SENTENCES)
    (tmp_path / "lm.arpa").write_text(bigram_arpa([s.split() for s in SENTENCES], words))
    return LexiconBeam(words, tmp_path / "lm.arpa", BeamSettings(beam=20, lm_weight=1.0))


def test_beam_follows_word_order_where_greedy_hears_a_homophone(beam):
    # "two hundred" with a faint w: greedy drops it ("to" is a word, so snapping keeps it)
    logp = _emissions(_frames("two hundred people", weak={1: 0.3}))
    assert greedy_decode(logp[None], torch.tensor([len(logp)])) == ["to hundred people"]
    assert beam.decode(logp) == "two hundred people"
    # and the faint w is not invented where the words around it want "to"
    logp = _emissions(_frames("she walks to the river"))
    assert beam.decode(logp) == "she walks to the river"


def test_beam_keeps_clear_words_the_lm_finds_unlikely(beam):
    # after "river" the LM has only seen "velm"; a clearly spoken "tarsk" stays "tarsk"
    logp = _emissions(_frames("the river tarsk"))
    assert beam.decode(logp) == "the river tarsk"
    assert beam.decode(logp[:0]) == ""  # nothing said: no words


def test_beam_refuses_words_outside_its_characters(tmp_path):
    (tmp_path / "lm.arpa").write_text(bigram_arpa([["a"]], ["a"]))
    with pytest.raises(ValueError, match="outside the judge's characters"):
        LexiconBeam(["a", "Ä"], tmp_path / "lm.arpa", BeamSettings())
    with pytest.raises(ValueError, match="beam"):
        BeamSettings(beam=0)
    with pytest.raises(ValueError, match=r"decode\.lm needs decode\.lexicon"):
        CTCDecodeConfig(lexicon=False)
    assert CHARS.index(" ") + 1 == SPACE


def test_judge_stage_fits_the_lm_on_speech_transcripts_and_tunes_on_dev(eval_run):
    meta = json.loads(Run(eval_run).judge_file.read_text())
    assert (Run(eval_run).judge / LM_FILE).is_file()
    fit = meta["beam_fit"]
    assert len(fit["dev_trials"]) == 9 and fit["lm_sentences"] > 0
    best = min(t["wer"] for t in fit["dev_trials"])
    chosen = next(t for t in fit["dev_trials"] if t["wer"] == best)
    assert meta["beam"] == {k: chosen[k] for k in ("beam", "lm_weight", "word_score")}
    for split in meta["metrics"].values():
        assert split["wer"] == split["wer_beam"]
        assert {"wer_greedy", "wer_snapped"} <= set(split)
    scorer = load_judge("ctc", eval_run)
    assert scorer.beam is not None and scorer.beam.settings == BeamSettings(**meta["beam"])
    # the LM's words are the judge's lexicon; transcripts are lexicon words only
    out = scorer.transcribe([np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)])
    assert set(out[0].split()) <= set(meta["lexicon"])


def test_judge_without_lm_gets_one_without_retraining(eval_run, tmp_path):
    run, source = Run(tmp_path / "run"), Run(eval_run)
    run.root.mkdir()
    run.data.symlink_to(source.data)
    run.units.symlink_to(source.units)
    shutil.copytree(source.judge, run.judge)
    meta = json.loads(run.judge_file.read_text())
    old = {k: v for k, v in meta.items() if k not in ("beam", "beam_fit")}
    run.judge_file.write_text(json.dumps(old))
    (run.judge / LM_FILE).unlink()
    weights = (run.judge / WEIGHTS_FILE).read_bytes()
    assert load_judge("ctc", run.root).beam is None  # an old judge still loads: greedy + snapping
    added = judge(run=run.root, model=JUDGE_MODEL, train=JUDGE_TRAIN)
    assert (run.judge / WEIGHTS_FILE).read_bytes() == weights  # not retrained
    assert added["beam"] and added["train"] == meta["train"]
    assert load_judge("ctc", run.root).beam is not None
    assert judge(run=run.root, model=JUDGE_MODEL, train=JUDGE_TRAIN) == added  # now finished
    (run.judge / LM_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=LM_FILE):
        load_judge("ctc", run.root)
