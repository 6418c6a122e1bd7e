"""Turn the world's facts into the embedded default's task data.

* speech sentences for ASR/TTS, split so that test sentences never occur in training,
* question/answer items (one per fact) for spoken QA,
* general text instructions for stage 2 (repeat, answer, continue, spell).

Held-out facts never appear in anything spoken or in any instruction: the model may only learn
them from the text corpus, which is exactly what the spoken-QA transfer test measures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from data_prep.world import Fact, World, build_world, invented_names

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


def novel_sentences(world: World, n: int, seed: int) -> list[str]:
    """``n`` distinct sentences about a *novel* world: same templates and name generator as
    ``world``, but none of its entities (all names differ) and independently drawn facts.

    Why: trained on the world's own sentences only, stage 1 overfits them (tiny demo, 1500 steps:
    ASR train loss 0.02 against 0.51 on dev; 77 of 135 sentences of its test hypotheses are
    training sentences). Measured, 12,000 of these beside the 6,000 world sentences made ASR worse
    (WER 0.27 / 0.36 -> 0.40 / 0.45, seen / held-out voices): test sentences state true facts of
    the world, which the text prior helps to recognise, so the recipes keep ``n_novel: 0``.
    """
    rng = random.Random(seed)
    novel = build_world(replace(world.config, seed=seed), exclude=invented_names(world))
    by_subject = novel.facts_about()
    return _draw(by_subject, sorted(by_subject), n, set(), rng)


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
