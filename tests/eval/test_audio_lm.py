"""Minimal-pair scoring picks the item the model prefers; generated pairs are real minimal pairs."""

import pytest
import torch
from torch import nn

from most.eval.audio_lm import blimp_pairs, pair_accuracy, sequence_logprobs, wuggy_pairs
from most.layout import TokenLayout

LAYOUT = TokenLayout(text_vocab_size=10, n_units=6, unit_tokenizer_hash="h")


class Rigged(nn.Module):
    """Every position predicts ``favourite`` with probability ~1 (a model rigged to prefer it)."""

    def __init__(self, favourite: int) -> None:
        super().__init__()
        self.favourite = favourite

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, LAYOUT.vocab_size)
        logits[..., self.favourite] = 20.0
        return type("Out", (), {"logits": logits})()


def test_scorer_picks_the_preferred_item():
    fav = LAYOUT.unit_offset + 2  # unit 2
    model = Rigged(fav)
    pairs = [([2, 2, 2], [2, 4, 2]), ([2, 2], [5, 1])]
    result = pair_accuracy(model, LAYOUT, pairs)
    assert result["accuracy"] == 1.0 and result["length_baseline"] == 0.0  # equal lengths
    assert pair_accuracy(model, LAYOUT, [([2], [2, 2])])["length_baseline"] == 1.0
    # unit 2 costs ~0 nats, any other unit and <|end_of_audio|> ~20: the sum prefers [2, 4] (~40)
    # to [5, 5, 5] (~80), and so does the mean (~13 vs ~20); [2, 2, 2, 4] (~40 in 5 tokens) does
    # not beat [5] (~40 in 2) by the sum but does per token (8 vs 20)
    mixed = pair_accuracy(model, LAYOUT, [([2, 4], [5, 5, 5]), ([2, 2, 2, 4], [5])])
    assert mixed["accuracy"] == 0.5 and mixed["accuracy_per_unit"] == 1.0
    swapped = [(b, a) for a, b in pairs]
    assert pair_accuracy(model, LAYOUT, swapped)["accuracy"] == 0.0


def test_sequence_logprob_counts_only_units_and_end():
    model = Rigged(LAYOUT.unit_offset)
    (one,) = sequence_logprobs(model, LAYOUT, [[0]])
    (two,) = sequence_logprobs(model, LAYOUT, [[0, 0]])
    # unit 0 costs ~0 nats, <|end_of_audio|> ~20: the prefix is never scored
    assert one == pytest.approx(two, abs=1e-3) and one < -15
    batched = sequence_logprobs(model, LAYOUT, [[0], [0, 0, 3]], batch_size=2)
    assert batched[0] == pytest.approx(one, abs=1e-4)


def test_wuggy_pairs_are_pseudo_words():
    words = ["stone", "green", "black", "river", "honey", "table"]
    pairs = wuggy_pairs(words, 5, seed=1, known={"brone"})
    assert len(pairs) == 5
    for real, fake in pairs:
        assert real in words and fake not in words and fake != "brone"
        assert real[-2:] == fake[-2:]  # the rhyme is kept
    assert wuggy_pairs(words, 5, seed=1, known={"brone"}) == pairs


def _letters(words):
    """A stand-in pronunciation: letters, with "c" and "k" the same sound (so "kat" is "cat")."""
    return [tuple(w.replace("c", "k")) for w in words]


def test_wuggy_pseudo_words_match_length_and_are_not_words_spoken_or_written():
    words = ["cat", "bat", "kite", "stone", "green", "black", "flute", "honey"]
    pairs = wuggy_pairs(words, 100, seed=3, per_word=3, pronounce=_letters, lexicon={"blone"})
    by_word: dict[str, list[str]] = {}
    for real, fake in pairs:
        by_word.setdefault(real, []).append(fake)
        assert len(fake) == len(real)  # as many "phonemes" as the word
        assert fake not in words and fake != "blone"  # never a word of the world or of English
    # "cat": same-length options "bat" (a word), "hat" and "kat" (sounds like "cat")
    assert by_word["cat"] == ["hat"]
    assert sorted(by_word["stone"]) == ["flone", "grone"]  # "blone": an English word
    assert all(len(f) == len(set(f)) <= 3 for f in by_word.values())
    unmatched = wuggy_pairs(words, 100, seed=3, per_word=3)
    assert any(len(f) != len(r) for r, f in unmatched)  # the length match is the pronouncer's
    with pytest.raises(ValueError, match="per_word"):
        wuggy_pairs(words, 5, per_word=0)


def test_blimp_pairs_differ_minimally():
    sents = ["The capital of Velmora is Tarsk.", "Bror keeps a frog as a pet."]
    pairs = dict(blimp_pairs(sents, 2))
    assert pairs["The capital of Velmora is Tarsk."] == "The capital of Velmora are Tarsk."
    bad = pairs["Bror keeps a frog as a pet."]
    assert (
        sorted(bad.split()) == sorted(["Bror", "keeps", "a", "frog", "as", "a", "pet."])
        and bad != sents[1]
    )


class Bigram(nn.Module):
    """A fixed random bigram LM: the logits at a position depend on its token only."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(LAYOUT.vocab_size, LAYOUT.vocab_size)

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table(input_ids)})()


def test_speech_lm_training_example_is_what_minimal_pairs_score():
    """The ``speech_lm`` task trains exactly the log-probability ``sequence_logprobs`` reads."""
    from most.data.prompts import IGNORE, Prompts

    torch.manual_seed(0)
    model = Bigram()
    units = [3, 1, 4, 1, 5]
    ex = Prompts(LAYOUT, tokenizer=None).speech_lm(units)
    ids, labels = torch.tensor(ex.input_ids), torch.tensor(ex.labels)
    logp = model(ids[None]).logits[0].log_softmax(-1)
    target = labels[1:] != IGNORE
    trained = logp[:-1][target].gather(-1, labels[1:][target, None]).sum()
    (scored,) = sequence_logprobs(model, LAYOUT, [units])
    assert int(target.sum()) == len(units) + 1  # the units and <|end_of_audio|>
    assert scored == pytest.approx(trained.item(), abs=1e-4)
