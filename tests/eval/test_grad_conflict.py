"""Gradient conflict inside the audio adapter: cosines between per-task adapter gradients."""

from __future__ import annotations

import pytest
import torch

from most.data.prompts import IGNORE, Example
from most.eval.grad_conflict import gradient_conflict, task_gradient
from most.moe.adapter import AdapterConfig
from most.testing.models import load_adapted
from most.train.mixing import Source

IN_DIM = 12


def attach(model, kind: str):
    torch.manual_seed(0)
    model.attach_adapter(AdapterConfig(kind=kind, stack=2, expert_size=16), {"kind": "mel"}, IN_DIM)
    return model


@pytest.fixture
def adapted(tmp_path, base_dirs):
    return load_adapted(tmp_path / "run", base_dirs)


def source(layout, task: str, target: int, shift: float = 0.0) -> Source:
    """Rows ``10 11 <boa> [3 audio slots] <eoa> target`` whose target alone is labelled; the audio
    is 6 random frames per row (the same frames for every task), plus ``shift``. ``task`` names the
    source (the examples are built as ``asr``, a task the collator knows)."""
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")

    def build(row: dict) -> Example:
        g = torch.Generator().manual_seed(row["seed"])
        feats = torch.randn(6, IN_DIM, generator=g) + shift
        ids = [10, 11, boa, 5, 5, 5, eoa, target]
        return Example(ids, [IGNORE] * 7 + [target], "asr", feats, (3, 6))

    return Source(task, [{"seed": i} for i in range(16)], build)


def test_same_task_agrees_and_another_answer_conflicts_more(adapted):
    model, layout = adapted
    model = attach(model, "moe")
    same = [source(layout, "a", 12), source(layout, "a2", 12), source(layout, "b", 40)]
    pairs = gradient_conflict(model, same, pad_id=1, n_batches=2, batch_size=4, max_len=16)
    assert set(pairs) == {"a|a2", "a|b", "a2|b"}
    assert pairs["a|a2"]["all"] == pytest.approx(1.0, abs=1e-6)  # same data, seeded dropout
    assert pairs["a|b"]["all"] < 0.99 and pairs["a|b"]["all"] == pytest.approx(pairs["a2|b"]["all"])
    assert set(pairs["a|b"]) == {"all", "in_proj", "norm", "router", "experts", "shared"}
    assert all(-1.0 <= v <= 1.0 for p in pairs.values() for v in p.values())
    # nothing is left behind: no gradients, the model's mode as it was
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_dense_adapter_parts_and_the_gradient_is_the_adapters(adapted):
    model, layout = adapted
    model = attach(model, "dense")
    grads = task_gradient(model, source(layout, "a", 12), 1, 1, 4, 16, seed=0)
    assert set(grads) == {n for n, _ in model.audio_adapter.named_parameters()}
    assert any(g.abs().sum() > 0 for g in grads.values())
    pairs = gradient_conflict(
        model, [source(layout, "a", 12), source(layout, "b", 12, shift=3.0)], 1, 1, 4, 16
    )
    assert set(pairs["a|b"]) == {"all", "in_proj", "norm", "dense"}


def test_refusals(adapted):
    model, layout = adapted
    with pytest.raises(ValueError, match="no audio adapter"):
        task_gradient(model, source(layout, "a", 12), 1, 1, 4, 16, seed=0)
    model = attach(model, "moe")
    with pytest.raises(ValueError, match="at least two tasks"):
        gradient_conflict(model, [source(layout, "a", 12)], 1)

    def text_only(row: dict) -> Example:
        return Example([10, 11, 12], [IGNORE, IGNORE, 12], "text_lm")

    with pytest.raises(ValueError, match="'text' sent no gradient"):
        task_gradient(model, Source("text", [{}], text_only), 1, 1, 4, 16, seed=0)
