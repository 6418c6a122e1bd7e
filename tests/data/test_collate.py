"""Padding and packing give the same logits as running each example alone; loss only on answers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from most.data.collate import best_fit, pack_batch, pack_rows, pad_batch
from most.data.prompts import IGNORE, Example
from most.testing import TINY_MODEL


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(64, 0)).eval()


def examples(n: int = 4) -> list[Example]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        length = 5 + 3 * i
        ids = torch.randint(1, 64, (length,), generator=g).tolist()
        k = 2 + i  # prompt length
        out.append(Example(ids, [IGNORE] * k + ids[k:], "asr"))
    return out


def alone(model, ex: Example) -> torch.Tensor:
    return model(input_ids=torch.tensor([ex.input_ids])).logits[0]


@torch.no_grad()
def test_packed_rows_do_not_attend_across_examples(model) -> None:
    exs = examples()
    rows = pack_rows(exs, max_len=20)
    assert len(rows) < len(exs)  # something was actually packed
    batch = pack_batch(rows, pad_id=0)
    logits = model(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).logits
    for r, row in enumerate(rows):
        col = 0
        for ex in row:
            got = logits[r, col : col + len(ex)]
            torch.testing.assert_close(got, alone(model, ex), atol=1e-4, rtol=1e-4)
            assert batch["labels"][r, col] == IGNORE  # no loss term across the boundary
            col += len(ex)


@torch.no_grad()
def test_padded_batch_matches_single_examples(model) -> None:
    exs = examples()
    batch = pad_batch(exs, pad_id=0, max_len=64)
    logits = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    ).logits
    for r, ex in enumerate(exs):
        torch.testing.assert_close(logits[r, : len(ex)], alone(model, ex), atol=1e-4, rtol=1e-4)


def test_loss_is_taken_on_answer_tokens_only(model) -> None:
    exs = examples(3)
    batch = pad_batch(exs, pad_id=0, max_len=64)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    out = model(**inputs, labels=batch["labels"])
    # The model's loss adds the router's load-balancing term; the LM part is what masking governs.
    loss = out.loss - model.config.router_aux_loss_coef * out.aux_loss
    # Recompute by hand over answer positions only.
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    terms = []
    for r, ex in enumerate(exs):
        for t in range(1, len(ex)):
            if ex.labels[t] != IGNORE:
                terms.append(F.cross_entropy(logits[r, t - 1], torch.tensor(ex.input_ids[t])))
    torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)


def test_truncation_and_task_ids() -> None:
    exs = examples()
    batch = pad_batch(exs, pad_id=0, max_len=8)
    assert batch["input_ids"].shape == (4, 8)
    assert (batch["task_ids"][0, len(exs[0]) :] == -1).all()


@torch.no_grad()
def test_example_weighting_averages_each_example_once(model) -> None:
    from most.train.module import example_mean_loss

    exs = examples(4)  # answers of 3, 5, 7, 9 tokens
    per_example = []
    for ex in exs:
        logits = alone(model, ex)
        targets = [
            F.cross_entropy(logits[t - 1], torch.tensor(ex.input_ids[t]))
            for t in range(1, len(ex))
            if ex.labels[t] != IGNORE
        ]
        per_example.append(torch.stack(targets).mean())
    expected = torch.stack(per_example).mean()
    padded = pad_batch(exs, pad_id=0, max_len=64)
    logits = model(
        input_ids=padded["input_ids"],
        attention_mask=padded["attention_mask"],
        position_ids=padded["position_ids"],
    ).logits
    torch.testing.assert_close(example_mean_loss(logits, padded), expected, atol=1e-5, rtol=1e-5)
    packed = pack_batch(pack_rows(exs, max_len=20), pad_id=0)
    logits = model(
        input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
    ).logits
    torch.testing.assert_close(example_mean_loss(logits, packed), expected, atol=1e-4, rtol=1e-4)
    # Token weighting favours the long answers: the two must differ on unequal lengths.
    labels = padded["labels"][:, 1:]
    token_mean = F.cross_entropy(
        model(**{k: padded[k] for k in ("input_ids", "attention_mask", "position_ids")})
        .logits[:, :-1]
        .flatten(0, 1),
        labels.flatten(),
        ignore_index=IGNORE,
    )
    assert not torch.allclose(token_mean, expected, atol=1e-3)


def test_best_fit_decreasing_fills_rows_next_fit_leaves_half_empty() -> None:
    lengths = [6, 5, 5, 4, 4, 3, 3, 2]  # 32 tokens: four rows of 8 hold them exactly
    rows = best_fit(lengths, max_len=8)
    assert len(rows) == 4
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 8 for row in rows)
    assert all(row == sorted(row) for row in rows)  # drawn order kept inside a row
    assert best_fit([20, 3], max_len=8) == [[0], [1]]  # over-long counts as max_len


@torch.no_grad()
def test_packed_width_rounds_up_to_few_shapes(model) -> None:
    """Given ``max_len``, a packed batch is as wide as a multiple of PACK_MULTIPLE (never past
    ``max_len``): the extra columns are one more ignored segment, and every example's logits
    are as without them."""
    exs = examples()
    rows = pack_rows(exs, max_len=20)
    longest = max(sum(len(ex) for ex in row) for row in rows)
    tight = pack_batch(rows, pad_id=0)
    assert tight["input_ids"].shape[1] == longest
    for max_len, want in [(20, 20), (100, 64), (longest, longest)]:
        wide = pack_batch(rows, pad_id=0, max_len=max_len)
        assert wide["input_ids"].shape[1] == max(longest, min(want, max_len))
    wide = pack_batch(rows, pad_id=0, max_len=100)
    assert (wide["labels"][:, longest:] == IGNORE).all() and (
        wide["task_ids"][:, longest:] < 0
    ).all()
    a = model(input_ids=tight["input_ids"], position_ids=tight["position_ids"], use_cache=False)
    b = model(input_ids=wide["input_ids"], position_ids=wide["position_ids"], use_cache=False)
    for r, row in enumerate(rows):
        n = sum(len(ex) for ex in row)
        torch.testing.assert_close(b.logits[r, :n], a.logits[r, :n], atol=1e-4, rtol=1e-4)
