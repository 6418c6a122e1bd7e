"""Text retention: perplexity of held-out text-world paragraphs before and after speech training.

Both models read the text-LM format the base stage pretrained on (``<eos> text <eos>``, built by
:meth:`Prompts.text_lm`) and the perplexity is ``exp(mean NLL)`` over every target token of the
set, so the two numbers are directly comparable (same tokenizer ids: the adapted model keeps the
base text vocabulary). The demo's bar is ``ppl_model <= 1.10 x ppl_base``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from most.data.prompts import IGNORE, Prompts
from most.generate import SpeechLM, device_of
from most.progress import progress
from most.run import Run


@torch.no_grad()
def perplexity(
    model, prompts: Prompts, texts: Sequence[str], batch_size: int = 8, max_len: int = 512
) -> float:
    """``exp`` of the token-averaged NLL of ``texts`` (each truncated to ``max_len`` tokens)."""
    model.eval()
    examples = [prompts.text_lm(t) for t in texts if t.strip()]
    if not examples:
        raise ValueError("no non-empty text to score")
    pad = prompts.eos_id
    device = device_of(model)
    total, count = 0.0, 0
    with progress() as bar:
        task = bar.add_task("text perplexity", total=len(examples))
        for s in range(0, len(examples), batch_size):
            batch = examples[s : s + batch_size]
            width = min(max_len, max(len(e) for e in batch))
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            labels = torch.full_like(ids, IGNORE)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(batch):
                n = min(len(e), width)
                ids[i, :n] = torch.tensor(e.input_ids[:n])
                labels[i, :n] = torch.tensor(e.labels[:n])
                mask[i, :n] = 1
            ids, labels, mask = (t.to(device) for t in (ids, labels, mask))
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            target = labels[:, 1:]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]),
                target.reshape(-1),
                ignore_index=IGNORE,
                reduction="sum",
            )
            total += float(nll)
            count += int((target != IGNORE).sum())
            bar.advance(task, len(batch))
    return math.exp(total / max(count, 1))


def text_retention(lm: SpeechLM, run: Path, base: Path | None, n: int) -> dict:
    """Perplexity of the model and of the base LM (``base`` or ``RUN/base/hf``, when there is one)
    on the first ``n`` held-out paragraphs of ``RUN/data/text``."""
    heldout = Run(run).load_data("text")["heldout"]
    texts = heldout.select(range(min(n, len(heldout))))["text"]
    out = {"ppl_model": perplexity(lm.model, lm.prompts, texts)}
    base_dir = Path(base or Run(run).hf("base"))
    if (base_dir / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(str(base_dir)).to(lm.model.device)
        tok = AutoTokenizer.from_pretrained(str(base_dir))
        out["ppl_base"] = perplexity(model, Prompts(None, tok), texts)
    return out
