"""Instructions built from plain sentences (a real corpus' training transcripts): chat
conversations a stage-2 run can learn the instruction format from when the corpus has no QA.

Five tasks, in turn: repeat the sentence, continue it from its first half, count its words, name
its last word, spell one of its words. Every answer is computable from the prompt, so a model that
follows the instruction is right and one that does not is wrong.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from most.corpora.numbers import number_words

TASKS = ("repeat", "continue", "count", "last_word", "spell")


def _spell(word: str) -> str:
    return "-".join(ch.upper() for ch in word if ch.isalnum())


def _strip(word: str) -> str:
    return word.strip(".,;:!?\"'")


def sentence_instructions(sentences: Sequence[str], n: int, seed: int) -> list[dict]:
    """``n`` conversations ``{"id", "task", "messages": [user, assistant]}`` about ``sentences``
    (each used with at least two words)."""
    usable = [s for s in sentences if len(s.split()) >= 2]
    if n and not usable:
        raise ValueError("instructions from sentences: no sentence has two words or more")
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task = TASKS[i % len(TASKS)]
        sentence = rng.choice(usable)
        words = sentence.split()
        if task == "repeat":
            prompt, answer = f"Repeat after me: {sentence}", sentence
        elif task == "continue":
            cut = max(1, len(words) // 2)
            prompt = f"Continue the sentence: {' '.join(words[:cut])}"
            answer = " ".join(words[cut:])
        elif task == "count":
            prompt = f"How many words are in this sentence: {sentence}"
            answer = f"It has {number_words(len(words))} words."
        elif task == "last_word":
            prompt = f"What is the last word of this sentence: {sentence}"
            answer = f"The last word is {_strip(words[-1])}."
        else:
            word = _strip(rng.choice([w for w in words if len(_strip(w)) > 1] or words))
            prompt, answer = f"Spell the word {word}.", _spell(word)
        out.append(
            {
                "id": f"sent-{i:06d}",
                "task": task,
                "messages": [
                    {"role": "user", "content": prompt},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    return out
