"""Text question answering for the text-only base LM: does it know the world's facts?

The base LM learns facts from statements ("The capital of Velmora is Tarsk.") and the question/answer
*format* from a small share of ``qa_train`` pairs written as plain text (:func:`qa_text`). Asking it
the ``qa_heldout`` questions then measures knowledge it can only have from the statements, the text
twin of the spoken cross-modal transfer test.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from most.text import contains_answer

QUESTION = "Question: "
ANSWER = " Answer:"


def qa_text(question: str, answer: str = "") -> str:
    """``"Question: <q> Answer: <a>"``; with no answer, the generation prompt."""
    return f"{QUESTION}{question}{ANSWER}" + (f" {answer}" if answer else "")


def text_qa_accuracy(
    model,
    tokenizer,
    questions: Sequence[str],
    answers: Sequence[str],
    max_new_tokens: int = 12,
    n_examples: int = 5,
) -> dict:
    """Greedy-decode an answer to each question; correct if it contains the answer
    (:func:`most.text.contains_answer`, the rule the eval's spoken-QA scores use)."""
    prompts = [qa_text(q) for q in questions]
    out = completion_accuracy(model, tokenizer, prompts, answers, max_new_tokens, n_examples)
    out["examples"] = [
        {"question": q, **{k: v for k, v in e.items() if k != "prompt"}}
        for q, e in zip(questions, out["examples"], strict=False)
    ]
    return out


@torch.no_grad()
def completion_accuracy(
    model,
    tokenizer,
    prompts: Sequence[str],
    answers: Sequence[str],
    max_new_tokens: int = 12,
    n_examples: int = 5,
) -> dict:
    """Greedy-continue each text prompt (a document start, as the text LM was trained); correct if
    the continuation contains the answer (:func:`most.text.contains_answer`)."""
    model.eval()
    eos = tokenizer.eos_token_id
    correct = 0
    examples = []
    for prompt, a in zip(prompts, answers, strict=True):
        ids = [eos, *tokenizer.encode(prompt, add_special_tokens=False)]
        x = torch.tensor([ids], device=model.device)
        out = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
        )
        pred = tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        ok = contains_answer(pred, a)
        correct += ok
        if len(examples) < n_examples:
            examples.append(
                {"prompt": prompt, "answer": a, "predicted": pred.strip(), "correct": ok}
            )
    return {"accuracy": correct / max(len(prompts), 1), "n": len(prompts), "examples": examples}
