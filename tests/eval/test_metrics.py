"""Normaliser, WER/CER and answer matching on pairs whose results are known by hand."""

import pytest

from most.eval.metrics import cer, wer, word_errors
from most.text import accuracy, answer_forms, contains_answer, normalize


def test_normalizer_whisper_conventions():
    # Whisper expands "'s" to " is" on both sides alike; it is part of the standard we follow.
    assert normalize("Mr. Smith's colour!") == "mister smith is color"
    assert normalize("Forty-five thousand") == normalize("45000")
    assert normalize("  The   CAT, sat. ") == "the cat sat"


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", 0.0),
        ("the cat sat on the mat", "the cat sit on mat", 2 / 6),  # 1 sub + 1 del
        ("hello world", "hello big world", 1 / 2),  # 1 insertion
        ("The Cat.", "the cat", 0.0),  # normalised away
        ("a b", "", 1.0),
    ],
)
def test_wer_known_pairs(ref, hyp, expected):
    assert wer([ref], [hyp]) == pytest.approx(expected)


def test_wer_is_corpus_level():
    # 1 error in 1 word + 0 errors in 3 words = 1/4, not the mean of 1.0 and 0.0
    assert wer(["a", "b c d"], ["x", "b c d"]) == pytest.approx(0.25)


def test_word_errors_are_what_the_corpus_wer_sums():
    refs = ["the cat sat on the mat", "hello world", "a b", "The Cat."]
    hyps = ["the cat sit on mat", "hello big world", "", "the cat"]
    items = word_errors(refs, hyps)
    assert items == [[2, 6], [1, 2], [2, 2], [0, 2]]
    assert sum(e for e, _ in items) / sum(w for _, w in items) == pytest.approx(wer(refs, hyps))


def test_cer_known_pair():
    assert cer(["abcd"], ["abed"]) == pytest.approx(0.25)


def test_empty_references_are_refused():
    with pytest.raises(ValueError, match="empty"):
        wer(["", "  "], ["a", "b"])
    with pytest.raises(ValueError, match="hypotheses"):
        wer(["a"], [])


def test_containment_on_word_boundaries():
    assert contains_answer("The capital is Tarsk.", "tarsk")
    assert contains_answer("about eighty six", "Eighty-six")  # numbers become digits first
    assert not contains_answer("tarskel", "Tarsk")
    assert not contains_answer("anything", "")
    assert accuracy(["tarsk", "no", "kalo city"], ["Tarsk", "yes", "Kalo"]) == pytest.approx(2 / 3)


def test_a_count_asked_in_thousands_matches_the_full_sentence():
    """The world's "How many thousand people live in X?" has the answer "two hundred and six";
    the answer sentence says "... two hundred and six thousand people", which normalises to
    206000, so plain containment could never credit it. The unit form can; another number that
    merely ends in the same words still fails."""
    question = "How many thousand people live in Mazel?"
    said = "Mazel has two hundred and six thousand people."
    assert not contains_answer(said, "two hundred and six")
    forms = answer_forms("two hundred and six", question)
    assert forms == ["two hundred and six", "two hundred and six thousand"]
    assert accuracy(
        [said, "two hundred and six", "Mazel has six thousand people."], [forms] * 3
    ) == (pytest.approx(2 / 3))
    twenty_four = answer_forms("twenty four", "How many thousand people live in Kelebon?")
    assert (
        accuracy(["Kelebon has one hundred and twenty four thousand people."], [twenty_four]) == 0
    )
    assert answer_forms("sixty two", "How old is Trozo Zotren?") == ["sixty two"]
