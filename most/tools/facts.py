"""Forgotten facts or forgotten skill? Fact retention vs text QA across a run's stages.

Spoken QA can fail because the model lost the facts or because it lost the question->fact skill.
For the first ``n`` facts of a QA split this probe finds the text-corpus statement that carries the
answer ("The national animal of Trofem is the | broken horse") and scores, for every stage's model:

- ``facts``: greedy completion of the statement cut before the answer (the text-LM format);
- ``qa``: the question in the base's text-QA format (``Question: ... Answer:``).

Both count a prediction as correct when it starts with the normalised answer. JSON on stdout::

    python -m most.tools.facts runs/demo [--split qa_heldout] [--n 60] [--stages base adapt stage1 stage2]

On the tiny demo (split init, no text-QA replay) held-out facts were 0.88 / 0.38 / 0.78 / 0.70 for
base / adapt / stage1 / stage2 and text QA 0.57 / 0.17 / 0.00 / 0.00: the skill went, the facts
mostly stayed.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from most.run import Run

STAGES = ("base", "adapt", "stage1", "stage2")


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


def probe(run: Path, split: str = "qa_heldout", n: int = 60, stages: Sequence[str] = STAGES):
    """``{stage: {"facts", "qa", "n"}}`` for every stage of ``run`` with an ``hf`` folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import most  # noqa: F401  (registers the adapted model class)
    from most.train.textqa import completion_accuracy, text_qa_accuracy

    qa = Run(run).load_data("sqa")[split]
    text = Run(run).load_data("text")["train"]
    items = statement_prompts(qa["text"], qa["answer"], text["text"], n)
    if not items:
        raise ValueError(f"{run}/data: no {split} fact has a statement in text/train")
    questions, prefixes, answers = (list(c) for c in zip(*items, strict=True))
    out = {}
    for stage in stages:
        folder = run / stage / "hf"
        if not (folder / "config.json").is_file():
            continue
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(folder))
        facts = completion_accuracy(model, tok, prefixes, answers, 8)["accuracy"]
        asked = text_qa_accuracy(model, tok, questions, answers, 12)["accuracy"]
        out[stage] = {"facts": round(facts, 4), "qa": round(asked, 4), "n": len(items)}
        print(json.dumps({"stage": stage, **out[stage]}), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m most.eval.facts", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", default="qa_heldout", choices=["qa_heldout", "qa_train"])
    parser.add_argument("--n", type=int, default=60, help="facts (with a corpus statement)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES))
    args = parser.parse_args(argv)
    probe(args.run, args.split, args.n, args.stages)


if __name__ == "__main__":
    main()
