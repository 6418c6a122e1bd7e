"""Deterministic task mixing: batch ``b`` is a pure function of ``(seed, b)``.

Every batch draws its examples with its own RNG seeded by ``(seed, global batch index)``, so

- resuming needs only the number of batches already consumed (no iterator state to pickle);
- DDP ranks read disjoint batches (rank ``r`` of ``w`` takes global batches ``b * w + r``);
- the mixture is the same however many DataLoader workers there are.

Sources are random-access ``datasets.Dataset`` objects: Arrow files are memory-mapped, so a corpus
larger than RAM is read page by page, never loaded whole. Tasks are drawn per example with
probabilities proportional to the recipe's ratios (sampling with replacement: a stage is a number of
steps, not of epochs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from most.data.collate import fit_rows, pack_batch, pack_rows, pad_batch
from most.data.prompts import Example


@dataclass
class Source:
    """One task of the mixture: rows of ``dataset`` turned into examples by ``build(row)``."""

    task: str
    dataset: Any  # datasets.Dataset or any sequence of rows supporting len() and []
    build: Callable[[dict], Example]
    augment: Callable[[dict, np.random.Generator], dict] | None = None
    """Edits a row before ``build``, drawing from a generator seeded by the batch (e.g.
    :mod:`most.data.augment`)."""

    def __post_init__(self) -> None:
        if len(self.dataset) == 0:
            raise ValueError(f"task {self.task!r}: the dataset is empty")


class Collate(Protocol):
    """Builds a batch from drawn examples in place of padding or packing them (e.g. a multi-scale
    model's frames, :class:`~most.multiscale.batches.FrameBatches`)."""

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]: ...

    def length(self, ex: Example) -> int:
        """``ex``'s length in the batch's positions (what packing fills a row with)."""
        ...


def normalize(ratios: Sequence[float]) -> np.ndarray:
    p = np.asarray(ratios, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0 or (p < 0).any() or p.sum() <= 0:
        raise ValueError(f"mixture ratios must be non-negative with a positive sum: {list(ratios)}")
    return p / p.sum()


class MixtureStream(IterableDataset):
    """Infinite (or ``n_batches``-long) stream of collated batches, starting at ``start``.

    Yields dicts with the keys of :mod:`most.data.collate` (``input_ids``, ``labels``,
    ``position_ids``, ``task_ids`` all ``(batch_size, T)``, plus ``attention_mask`` when not packing).
    Use with ``DataLoader(stream, batch_size=None)``: batching happens here because packing decides
    how many examples a batch holds. ``collate`` replaces the padding and packing (its ``length``
    then measures the examples a packed batch draws).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        ratios: Sequence[float],
        batch_size: int,
        max_len: int,
        pad_id: int,
        seed: int,
        pack: bool = False,
        rank: int = 0,
        world_size: int = 1,
        n_batches: int | None = None,
        collate: Collate | None = None,
    ) -> None:
        if len(sources) != len(ratios):
            raise ValueError(f"{len(sources)} sources but {len(ratios)} ratios")
        self.sources = list(sources)
        self.p = normalize(ratios)
        self.batch_size, self.max_len, self.pad_id = batch_size, max_len, pad_id
        self.seed, self.pack = seed, pack
        self.rank, self.world_size = rank, world_size
        self.n_batches = n_batches
        self.collate = collate
        self.start = 0

    def draw(self, b: int) -> list[Example]:
        """The examples of local batch ``b`` (before collation)."""
        index = b * self.world_size + self.rank
        rng = np.random.default_rng([self.seed, index])
        # Augmentations draw from their own generator: the rows drawn do not depend on them.
        aug = np.random.default_rng([self.seed, index, 1])
        budget = self.batch_size * self.max_len
        examples: list[Example] = []
        lengths: list[int] = []
        # Padded batches hold batch_size examples; packed ones enough tokens to fill every row.
        while (sum(lengths) < budget) if self.pack else (len(examples) < self.batch_size):
            src = self.sources[rng.choice(len(self.sources), p=self.p)]
            row = src.dataset[int(rng.integers(len(src.dataset)))]
            if src.augment is not None:
                row = src.augment(row, aug)
            ex = src.build(row)
            examples.append(ex)
            lengths.append(min(self.collate.length(ex) if self.collate else len(ex), self.max_len))
        if self.pack:  # the examples best fit packs into batch_size rows, random ones left out
            drop = np.random.default_rng([self.seed, index, 2])
            examples = [examples[i] for i in fit_rows(lengths, self.max_len, self.batch_size, drop)]
        return examples

    def batch(self, b: int) -> dict[str, torch.Tensor]:
        examples = self.draw(b)
        if self.collate is not None:
            return self.collate(examples)
        if not self.pack:
            return pad_batch(examples, self.pad_id, self.max_len)
        rows = pack_rows(examples, self.max_len)  # batch_size rows: draw() saw to it
        return pack_batch(rows, self.pad_id, self.max_len)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        b = self.start + wid
        while self.n_batches is None or b < self.n_batches:
            yield self.batch(b)
            b += nw
