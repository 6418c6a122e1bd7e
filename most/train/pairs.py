"""LightningDataModule over preference pairs, with its read position saved in every checkpoint.

As in :mod:`most.train.mixing`, batch ``b`` is a pure function of ``(seed, b)``: the pairs are read
in epochs, each a permutation drawn from ``(seed, epoch)``, so restoring the number of batches
already trained on (:attr:`PairDataModule.position`) restores the stream exactly, and DDP rank ``r``
of ``w`` reads the global batches ``b * w + r``. Batches are collated by
:func:`most.train.dpo.collate_pairs` (keys in :mod:`most.train.dpo`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from most.train.datamodule import PositionedDataModule
from most.train.dpo import PAIR_COLUMNS, REF_COLUMNS, DPOConfig, collate_pairs


class PairStream(IterableDataset):
    """Infinite stream of collated pair batches from ``start`` on."""

    def __init__(
        self, pairs, cfg: DPOConfig, pad_id: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if len(pairs) == 0:
            raise ValueError("no preference pairs to train on")
        self.pairs, self.cfg, self.pad_id = pairs, cfg, pad_id
        self.rank, self.world_size = rank, world_size
        self.start = 0
        self._orders: dict[int, np.ndarray] = {}

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the pairs read in ``epoch``."""
        if epoch not in self._orders:
            self._orders = {
                epoch: np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.pairs))
            } | {e: o for e, o in self._orders.items() if e >= epoch - 1}
        return self._orders[epoch]

    def rows(self, b: int) -> list[int]:
        """Row indices of local batch ``b``."""
        first = (b * self.world_size + self.rank) * self.cfg.batch_size
        out = []
        for k in range(first, first + self.cfg.batch_size):
            epoch, i = divmod(k, len(self.pairs))
            out.append(int(self.order(epoch)[i]))
        return out

    def batch(self, b: int) -> dict[str, torch.Tensor]:
        return collate_pairs([self.pairs[i] for i in self.rows(b)], self.pad_id, self.cfg.max_len)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        b = self.start
        while True:
            yield self.batch(b)
            b += 1


class PairDataModule(PositionedDataModule):
    """Training batches of a pairs dataset (columns ``task``, ``prompt_ids``, ``chosen_ids``,
    ``rejected_ids``, ``ref_chosen_logps``, ``ref_rejected_logps``); no validation set."""

    has_val = False

    def __init__(self, pairs, cfg: DPOConfig, pad_id: int) -> None:
        super().__init__()
        missing = [c for c in (*PAIR_COLUMNS, *REF_COLUMNS) if c not in pairs.column_names]
        if missing:
            raise ValueError(f"preference pairs lack the columns {missing}")
        self.pairs = pairs.select_columns([*PAIR_COLUMNS, *REF_COLUMNS])
        self.cfg, self.pad_id = cfg, pad_id

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        stream = PairStream(self.pairs, self.cfg, self.pad_id, rank, world)
        stream.start = self.position
        return DataLoader(stream, batch_size=None)
