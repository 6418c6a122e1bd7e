"""Turn the world's facts into the embedded default's task data.

* speech sentences for ASR/TTS, split so that test sentences never occur in training,
* question/answer items (one per fact) for spoken QA,
* general text instructions for stage 2 (repeat, answer, continue, spell).

Held-out facts never appear in anything spoken or in any instruction: the model may only learn
them from the text corpus, which is exactly what the spoken-QA transfer test measures.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from most.corpora.world import CLASS_WORDS, Fact, World, invented_names

MIN_WORDS, MAX_WORDS = 4, 20


@dataclass(frozen=True)
class QAItem:
    id: str
    fact_id: str
    question: str
    answer: str
    answer_sentence: str


def _words(text: str) -> int:
    return len(text.split())


def _sentence(facts: list[Fact], rng: random.Random) -> str:
    """One or two statements about the same subject, 4-20 words."""
    first = rng.choice(facts)
    text = first.statement(rng)
    if rng.random() < 0.35 and len(facts) > 1:
        second = rng.choice([f for f in facts if f is not first])
        joined = f"{text} {second.statement(rng)}"
        if _words(joined) <= MAX_WORDS:
            text = joined
    return text


def _draw(
    by_subject: dict[str, list[Fact]],
    pool: list[str],
    n: int,
    exclude: set[str],
    rng: random.Random,
) -> list[str]:
    """Up to ``n`` distinct sentences (not in ``exclude``) about random subjects of ``pool``."""
    out: list[str] = []
    seen = set(exclude)
    tries = 0
    while len(out) < n and tries < 50 * n + 1000:
        tries += 1
        text = _sentence(by_subject[rng.choice(pool)], rng)
        if MIN_WORDS <= _words(text) <= MAX_WORDS and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def speech_sentences(
    world: World, spoken_facts: list[Fact], sizes: dict[str, int], seed: int
) -> dict[str, list[str]]:
    """Sentences per split (``train``, ``dev``, ``test``) from ``spoken_facts``.

    A slice of subjects is reserved for dev/test so their sentences state facts never spoken in
    training; any sentence that still equals a training sentence is dropped from dev/test.
    """
    rng = random.Random(seed)
    by_subject: dict[str, list[Fact]] = {}
    for fact in spoken_facts:
        by_subject.setdefault(fact.subject, []).append(fact)
    subjects = sorted(by_subject)
    rng.shuffle(subjects)
    n_eval = max(2, len(subjects) // 8)
    eval_subjects, train_subjects = subjects[:n_eval], subjects[n_eval:]

    train = _draw(by_subject, train_subjects, sizes["train"], set(), rng)
    dev = _draw(by_subject, eval_subjects, sizes["dev"], set(train), rng)
    test = _draw(by_subject, eval_subjects, sizes["test"], set(train) | set(dev), rng)
    return {"train": train, "dev": dev, "test": test}


def short_utterances(world: World, sentences: Sequence[str], n: int, seed: int) -> list[str]:
    """``n`` one- or two-word utterances cut from ``sentences`` ("Forty eight.", "Was built."),
    none with an invented name or a word of :data:`CLASS_WORDS`.

    Why: a speech LM trained on sentences only expects every utterance to open like a sentence, so
    a word said alone (what sWUGGY-style pairs score) looks unlikely whether it is a word or not.
    These teach that an utterance may be one word, with words that are neither invented (they would
    sound like the pseudo-words) nor the pairs' own words (that would train on the test). Spans are
    drawn uniformly over the distinct ones, so rare words are heard as often as "the".
    """
    names = {name.lower() for name in invented_names(world)}
    banned = {w.lower() for w in CLASS_WORDS}

    def usable(word: str) -> bool:
        return word not in banned and word not in names and word.removesuffix("ish") not in names

    spans: set[str] = set()
    for sentence in sentences:
        for clause in re.split(r"[.,;:?!]", sentence.lower()):
            words = clause.split()
            for i, word in enumerate(words):
                if usable(word):
                    spans.add(word)
                    if i + 1 < len(words) and usable(words[i + 1]):
                        spans.add(f"{word} {words[i + 1]}")
    if n and not spans:
        raise ValueError("no sentence has a word usable alone (all names or class words)")
    rng = random.Random(seed)
    pool = sorted(spans)
    return [f"{span[0].upper()}{span[1:]}." for span in (rng.choice(pool) for _ in range(n))]


def qa_items(facts: list[Fact], seed: int) -> list[QAItem]:
    rng = random.Random(seed)
    return [
        QAItem(f"qa-{f.id}", f.id, f.question(rng), f.answer, f.answer_sentence()) for f in facts
    ]


def _spell(word: str) -> str:
    return " ".join(word.lower())


def instructions(world: World, train_facts: list[Fact], n: int, seed: int) -> list[dict[str, str]]:
    """General text instructions: ``{"task", "prompt", "response"}`` dicts, ``n`` of them."""
    rng = random.Random(seed)
    names = [name for kind in ("country", "city", "river") for name in world.entities[kind]]
    out: list[dict[str, str]] = []
    for i in range(n):
        task = ("repeat", "answer", "continue", "spell")[i % 4]
        fact = rng.choice(train_facts)
        if task == "repeat":
            text = fact.statement(rng)
            out.append({"task": task, "prompt": f"Repeat after me: {text}", "response": text})
        elif task == "answer":
            prompt = fact.question(rng)
            out.append({"task": task, "prompt": prompt, "response": fact.answer_sentence()})
        elif task == "continue":
            words = fact.statement(rng).split()
            cut = max(1, len(words) // 2)
            out.append(
                {
                    "task": task,
                    "prompt": f"Continue the sentence: {' '.join(words[:cut])}",
                    "response": " ".join(words[cut:]),
                }
            )
        else:
            name = rng.choice(names)
            out.append(
                {"task": task, "prompt": f"Spell the name {name}.", "response": _spell(name)}
            )
    return out
