"""Gradient conflict between tasks inside the audio adapter (MoE-Adapter's motivation).

Tasks that hear audio through one adapter pull its weights in their own directions; MoE-Adapter
argues that routing tasks to different experts lowers that conflict. For each task, the gradient of
its loss (the training loss: example-mean next-token loss) over the same number of padded batches
is taken with respect to the adapter's parameters; the result is the cosine between the gradients
of every pair of tasks, over the whole adapter and per part (``in_proj``, ``router``, ``experts``,
``shared``, ``dense`` for the dense adapter's MLP, ``norm``). Negative: the tasks disagree.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn

from most.train.mixing import MixtureStream, Source
from most.train.module import AUDIO_KEYS, example_mean_loss


def _part(name: str) -> str:
    """The adapter part a parameter name belongs to."""
    if name.startswith("ffn."):
        kind = name.split(".")[1]
        return kind if kind in ("router", "experts", "shared") else "dense"
    return "norm" if "norm" in name else name.split(".")[0]


def task_gradient(
    model: nn.Module, source: Source, pad_id: int, n_batches: int, batch_size: int, max_len: int,
    seed: int,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """``{parameter name: gradient}`` of ``model.audio_adapter`` for ``source``'s mean loss over
    ``n_batches`` padded batches (the model's other weights get no gradient kept)."""
    adapter = model.audio_adapter
    if adapter is None:
        raise ValueError("the model has no audio adapter: gradient conflict is measured inside one")
    stream = MixtureStream([source], [1.0], batch_size=batch_size, max_len=max_len,
                           pad_id=pad_id, seed=seed)  # fmt: skip
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        for b in range(n_batches):
            batch = stream.batch(b)
            out = model(
                input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                position_ids=batch["position_ids"], use_cache=False,
                **{k: batch[k] for k in AUDIO_KEYS if k in batch},
            )  # fmt: skip
            (example_mean_loss(out.logits, batch) / n_batches).backward()
        grads = {n: p.grad.detach().clone() for n, p in adapter.named_parameters()
                 if p.grad is not None}  # fmt: skip
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if not grads:
        raise ValueError(f"task {source.task!r} sent no gradient into the audio adapter")
    return grads


def _cosine(
    a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor], names: list[str]
) -> float:
    x = torch.cat([a[n].flatten().double() for n in names])
    y = torch.cat([b[n].flatten().double() for n in names])
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0).clamp(-1.0, 1.0))


def gradient_conflict(
    model: nn.Module, sources: list[Source], pad_id: int, n_batches: int = 4, batch_size: int = 8,
    max_len: int = 512, seed: int = 0,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """``{"<task a>|<task b>": {"all": cos, "<part>": cos, ...}}`` for every pair of ``sources``
    (their tasks), from :func:`task_gradient` of each; dropout is on, as in training, and seeded."""
    if len(sources) < 2:
        raise ValueError("gradient conflict needs at least two tasks")
    grads = {}
    for s in sources:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            grads[s.task] = task_gradient(model, s, pad_id, n_batches, batch_size, max_len, seed)
    out = {}
    for a, b in itertools.combinations(grads, 2):
        names = sorted(set(grads[a]) & set(grads[b]))
        parts: dict[str, list[str]] = {}
        for n in names:
            parts.setdefault(_part(n), []).append(n)
        out[f"{a}|{b}"] = {"all": _cosine(grads[a], grads[b], names)} | {
            part: _cosine(grads[a], grads[b], ns) for part, ns in sorted(parts.items())
        }
    return out
