"""Training a multi-scale model in a stage: its settings and the mixture's batches as frames.

A stage's mixture yields flat :class:`~most.data.prompts.Example` objects (``C`` unit ids a frame,
the flat model's spelling). :class:`FrameBatches` is the mixture's collate for a multi-scale model:
every example is read as positions and codes (:func:`~most.multiscale.frames.to_frames`), cut to
``max_len`` positions, and padded or packed into a batch with the keys of
:mod:`most.data.collate` plus ``codes (B, T, C)`` (``-1`` off frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from most.data.collate import pack_batch, pack_rows
from most.data.prompts import Example
from most.layout import TokenLayout
from most.multiscale.frames import cut_to_frames, to_frames


@dataclass(frozen=True)
class MultiScaleSettings:
    """``multiscale.*`` of ``most stage1``: train the adapted model as the global model of a
    multi-scale decoder (needs units with several codebooks: ``rvq``, ``codec``)."""

    enabled: bool = False
    """Train ``MostMultiScale`` (global model over frames + local model over codebooks)."""
    local_hidden_size: int = 64
    """Width of the local transformer that writes a frame's codes."""
    local_layers: int = 2
    """Its blocks."""
    local_heads: int = 4
    """Its attention heads (must divide ``local_hidden_size``)."""

    def __post_init__(self) -> None:
        if min(self.local_hidden_size, self.local_layers, self.local_heads) < 1:
            raise ValueError(f"multiscale: sizes must be >= 1 ({self})")
        if self.local_hidden_size % self.local_heads:
            raise ValueError(
                f"multiscale.local_heads ({self.local_heads}) must divide "
                f"multiscale.local_hidden_size ({self.local_hidden_size})"
            )

    def local(self) -> dict[str, int]:
        """The local model's sizes, as :meth:`MostMultiScale.from_global` takes them."""
        return dict(
            local_hidden_size=self.local_hidden_size,
            local_layers=self.local_layers,
            local_heads=self.local_heads,
        )


@dataclass(frozen=True)
class FrameBatches:
    """Collates flat examples into multi-scale batches (``data.max_len`` counts positions: a frame
    is one); :meth:`length` is an example's length in positions, which packing fills rows by."""

    layout: TokenLayout
    n_codebooks: int
    max_len: int
    pad_id: int
    batch_size: int
    pack: bool = False

    def length(self, ex: Example) -> int:
        units = int(self.layout.is_unit(torch.tensor(ex.input_ids)).sum())
        return len(ex) - units + units // self.n_codebooks

    def frames(self, ex: Example) -> tuple[Example, torch.Tensor]:
        """``ex`` as positions (an :class:`Example`, at most ``max_len`` long) and its codes."""
        c = self.n_codebooks
        ids, labels = cut_to_frames(ex.input_ids, ex.labels, self.layout, c, len(ex))
        ids, codes, labels = to_frames(ids, self.layout, c, labels)
        n = self.max_len
        return Example(ids[:n].tolist(), labels[:n].tolist(), ex.task), codes[:n]

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        framed = [self.frames(ex) for ex in examples]
        codes_of = {id(ex): codes for ex, codes in framed}
        if self.pack:  # every example already fits: pack_rows keeps the same objects
            rows = pack_rows([ex for ex, _ in framed], self.max_len)[: self.batch_size]
        else:
            rows = [[ex] for ex, _ in framed]
        batch = pack_batch(rows, self.pad_id)
        b, t = batch["input_ids"].shape
        codes = torch.full((b, t, self.n_codebooks), -1, dtype=torch.long)
        for r, row in enumerate(rows):
            col = 0
            for ex in row:
                codes[r, col : col + len(ex)] = codes_of[id(ex)]
                col += len(ex)
        batch["codes"] = codes
        if not self.pack:
            batch["attention_mask"] = (batch["task_ids"] >= 0).long()
        return batch
