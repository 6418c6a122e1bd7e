from __future__ import annotations

import pytest

from most.corpora.numbers import number_words
from most.corpora.tasks import MAX_WORDS, MIN_WORDS, instructions, speech_sentences
from most.corpora.world import (
    RELATIONS,
    WorldConfig,
    build_world,
    invented_names,
    split_facts,
    text_corpus,
)


@pytest.fixture(scope="module")
def default_world():
    return build_world(WorldConfig())


def test_default_world_size(default_world):
    assert (
        sum(len(v) for k, v in default_world.entities.items() if k not in ("river", "language"))
        >= 500
    )
    assert len(default_world.facts) >= 3000
    assert len({f.id for f in default_world.facts}) == len(default_world.facts)


def test_same_seed_same_world_other_seed_differs():
    a, b = build_world(WorldConfig(seed=3)), build_world(WorldConfig(seed=3))
    c = build_world(WorldConfig(seed=4))
    assert a.facts == b.facts and a.entities == b.entities
    assert a.facts != c.facts


def test_names_unique_across_kinds(default_world):
    names = [
        n for kind in ("country", "city", "river", "language") for n in default_world.entities[kind]
    ]
    assert len(names) == len(set(names))
    assert len(set(default_world.entities["person"])) == len(default_world.entities["person"])


def test_fact_split_has_no_leak(default_world):
    train, heldout = split_facts(default_world)
    assert {f.id for f in train}.isdisjoint({f.id for f in heldout})
    assert len(train) + len(heldout) == len(default_world.facts)
    assert {f.relation for f in heldout} == {f.relation for f in default_world.facts}
    # No "answer" instruction asks about a held-out fact, in any question wording.
    heldout_questions = {
        t.format(s=f.subject)[0].upper() + t.format(s=f.subject)[1:]
        for f in heldout
        for t in RELATIONS[f.relation].questions
    }
    asked = [
        r["prompt"]
        for r in instructions(default_world, train, 2000, seed=1)
        if r["task"] == "answer"
    ]
    assert len(asked) == 500
    assert heldout_questions.isdisjoint(asked)


def test_heldout_facts_are_in_the_text_corpus():
    world = build_world(
        WorldConfig(seed=5, n_people=20, n_cities=10, n_countries=4, n_animals=4, n_objects=4)
    )
    _, heldout = split_facts(world)
    corpus = " ".join(text_corpus(world, 20_000, seed=1))
    for fact in heldout:
        assert fact.subject in corpus and fact.answer in corpus


def test_speech_sentences_split_and_length(default_world):
    train_facts, _ = split_facts(default_world)
    s = speech_sentences(default_world, train_facts, {"train": 500, "dev": 50, "test": 80}, seed=2)
    assert len(s["train"]) == 500 and len(s["test"]) == 80
    assert set(s["test"]).isdisjoint(s["train"]) and set(s["dev"]).isdisjoint(s["train"])
    for text in s["train"] + s["test"]:
        assert MIN_WORDS <= len(text.split()) <= MAX_WORDS


def test_answer_sentence_states_the_fact_subject_first(default_world):
    """Every relation has a subject-first statement; the QA answer sentence is one of them."""
    for fact in default_world.facts:
        sentence = fact.answer_sentence()
        assert sentence.lower().index(fact.subject.lower()) < sentence.rindex(fact.answer)
        templates = RELATIONS[fact.relation].statements
        stated = {t.format(s=fact.subject, o=fact.answer) for t in templates}
        assert sentence[0].lower() + sentence[1:] in {x[0].lower() + x[1:] for x in stated}


def test_invented_names_are_every_generated_word(default_world):
    """The names short utterances leave out: capitalised, one word each, language stems included."""
    names = invented_names(default_world)
    assert {"Ish", ""}.isdisjoint(names) and len(names) > 400
    assert all(n[0].isupper() and " " not in n for n in names)
    for person in default_world.entities["person"]:
        assert set(person.split()) <= names
    for language in default_world.entities["language"]:
        assert language.removesuffix("ish") in names


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (412, "four hundred and twelve"),
        (1907, "one thousand nine hundred and seven"),
        (2005, "two thousand and five"),
    ],
)
def test_number_words(n, words):
    assert number_words(n) == words


def test_bad_world_config_names_the_key():
    with pytest.raises(ValueError, match=r"world\.n_people"):
        WorldConfig(n_people=1)
