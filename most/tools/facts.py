"""``most facts``: forgotten facts or forgotten skill? Fact retention vs text QA across a run's stages.

Spoken QA can fail because the model lost the facts or because it lost the question->fact skill.
For the first ``n`` facts of a QA split this probe finds the text-corpus statement that carries the
answer ("The national animal of Trofem is the | broken horse") and scores, for every stage's model:

- ``facts``: greedy completion of the statement cut before the answer (the text-LM format);
- ``qa``: the question in the base's text-QA format (``Question: ... Answer:``).

Both count a prediction as correct when it starts with the normalised answer. One JSON line per
stage on stdout::

    most facts --run runs/demo [--split qa_train] [--n 60] [--stages [base,stage2]]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import most.modeling  # noqa: F401  (registers the adapted model class)
from most.run import Run
from most.train.textqa import completion_accuracy, text_qa_accuracy

Stage = Literal["base", "adapt", "stage1", "stage2"]


def statement_prompts(
    questions: Sequence[str], answers: Sequence[str], paragraphs: Iterable[str], n: int
) -> list[tuple[str, str, str]]:
    """``(question, statement prefix, answer)`` for up to ``n`` facts with a corpus statement.

    A statement is a sentence containing `` <answer>`` with every capitalised name of the question
    (but its first word) before it; facts without one are skipped.
    """
    sentences = [s for p in paragraphs for s in p.split(". ")]
    found = []
    for q, a in zip(questions, answers, strict=True):
        names = re.findall(r"\b[A-Z][a-z]+\b", q)[1:]
        if not names:
            continue
        for s in sentences:
            i = s.find(" " + a)
            if i > 0 and all(name in s[:i] for name in names):
                found.append((q, s[:i], a))
                break
        if len(found) >= n:
            break
    return found


def facts(
    run: Path,
    split: Literal["qa_heldout", "qa_train"] = "qa_heldout",
    n: int = 60,
    stages: tuple[Stage, ...] = ("base", "adapt", "stage1", "stage2"),
) -> dict[str, dict]:
    """``{stage: {"facts", "qa", "n"}}`` for each of ``stages`` whose HF model the run has.

    Args:
        run: the run folder.
        split: the QA split whose facts are probed.
        n: facts scored (those with a corpus statement, in split order).
        stages: the stages whose models are scored.
    """

    r = Run(run)
    qa = r.load_data("sqa")[split]
    text = r.load_data("text")["train"]
    items = statement_prompts(qa["text"], qa["answer"], text["text"], n)
    if not items:
        raise ValueError(f"{r.data}: no {split} fact has a statement in text/train")
    questions, prefixes, answers = (list(c) for c in zip(*items, strict=True))
    out = {}
    for stage in stages:
        folder = r.hf(stage)
        if not (folder / "config.json").is_file():
            continue
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(folder))
        completed = completion_accuracy(model, tok, prefixes, answers, 8)["accuracy"]
        asked = text_qa_accuracy(model, tok, questions, answers, 12)["accuracy"]
        out[stage] = {"facts": round(completed, 4), "qa": round(asked, 4), "n": len(items)}
        print(json.dumps({"stage": stage, **out[stage]}), flush=True)
    return out
