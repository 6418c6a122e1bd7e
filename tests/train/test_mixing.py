"""Mixture: ratios within tolerance, deterministic given the seed, resumable by position, rank-disjoint."""

from __future__ import annotations

import collections

import pytest
import torch

from most.data.prompts import TASKS, Example
from most.train.mixing import MixtureStream, Source


def source(task: str, n: int) -> Source:
    rows = [{"i": i} for i in range(n)]
    return Source(task, rows, lambda r, t=task: Example([1, 2 + r["i"] % 50, 3], [-100, 5, 6], t))


def stream(**kw) -> MixtureStream:
    sources = [source("asr", 30), source("tts", 7), source("text_lm", 100)]
    args = {"batch_size": 8, "max_len": 16, "pad_id": 0, "seed": 3, **kw}
    return MixtureStream(sources, [0.4, 0.4, 0.2], **args)


def first_task(batch: dict[str, torch.Tensor]) -> list[str]:
    return [TASKS[int(t)] for t in batch["task_ids"][:, 1]]


def test_ratios_within_tolerance() -> None:
    s = stream()
    counts = collections.Counter(t for b in range(300) for t in first_task(s.batch(b)))
    n = sum(counts.values())
    for task, p in {"asr": 0.4, "tts": 0.4, "text_lm": 0.2}.items():
        assert abs(counts[task] / n - p) < 0.03, (task, counts)


def test_deterministic_and_resumable() -> None:
    a = [b["input_ids"] for b, _ in zip(stream(), range(5), strict=False)]
    b = [b["input_ids"] for b, _ in zip(stream(), range(5), strict=False)]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    resumed = stream()
    resumed.start = 3
    assert torch.equal(next(iter(resumed))["input_ids"], a[3])
    other_seed = [b["input_ids"] for b, _ in zip(stream(seed=4), range(5), strict=False)]
    assert not all(torch.equal(x, y) for x, y in zip(a, other_seed, strict=True))


def test_ranks_read_different_batches() -> None:
    r0, r1 = stream(rank=0, world_size=2), stream(rank=1, world_size=2)
    single = stream()
    # rank r of w takes global batch b * w + r: together they cover the single-process stream
    assert torch.equal(r0.batch(1)["input_ids"], single.batch(2)["input_ids"])
    assert torch.equal(r1.batch(1)["input_ids"], single.batch(3)["input_ids"])


def test_packed_batches_fill_rows() -> None:
    batch = stream(pack=True).batch(0)
    assert batch["input_ids"].shape[0] == 8 and batch["input_ids"].shape[1] <= 16
    assert (batch["task_ids"] >= 0).float().mean() > 0.7
    assert "attention_mask" not in batch


def varied(task: str, n: int, lo: int, hi: int) -> Source:
    """``n`` examples of ``task``, lengths ``lo..hi`` tokens cycling with the row index."""
    rows = [{"n": lo + i * 7 % (hi - lo + 1)} for i in range(n)]
    return Source(task, rows, lambda r, t=task: Example([1] * r["n"], [-100] * r["n"], t))


def test_packed_rows_are_full_and_keep_long_examples_in_their_share() -> None:
    # Stage-1-like lengths: short and long examples packed into 16 rows of 256 tokens.
    sources = [varied("asr", 200, 30, 150), varied("text_lm", 200, 10, 60)]
    s = MixtureStream(sources, [0.5, 0.5], batch_size=16, max_len=256, pad_id=0, seed=0, pack=True)
    kept, fill = [], []
    for b in range(60):
        batch = s.batch(b)
        assert batch["input_ids"].shape == (16, 256)
        fill.append((batch["task_ids"] >= 0).float().mean().item())
        kept += [len(ex) for ex in s.draw(b)]
    drawn = [len(src.build(row)) for src in s.sources for row in src.dataset]
    assert sum(fill) / len(fill) > 0.95
    # the examples left out to fit the rows are a random draw, not the long ones
    assert abs(sum(kept) / len(kept) - sum(drawn) / len(drawn)) < 3


def test_bad_ratios_refused() -> None:
    with pytest.raises(ValueError, match="ratios"):
        MixtureStream([source("asr", 3)], [-1.0], batch_size=2, max_len=8, pad_id=0, seed=0)
    with pytest.raises(ValueError, match="empty"):
        source("asr", 0)
