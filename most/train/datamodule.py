"""LightningDataModule over a task mixture, with its read position saved in every checkpoint.

The position is the number of training batches that reached the model (counted after transfer, so
batches the loader prefetched but never trained on are not counted). Because a batch is a pure function
of ``(seed, index)`` (:mod:`most.train.mixing`), restoring that one integer restores the data stream
exactly: a killed run resumes on the batch it would have trained next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from most.train.mixing import Collate, MixtureStream, Source


@dataclass
class DataConfig:
    """Batching and mixing of a stage's data."""

    batch_size: int = 8
    """Sequences (rows) per micro-batch and device."""
    max_len: int = 256
    """Longest sequence in tokens; longer examples are truncated."""
    pack: bool = False
    """Pack several examples per row (block-diagonal attention) instead of padding."""
    ratios: dict[str, float] = field(default_factory=dict)
    """Task -> sampling weight; tasks not listed keep the stage's default weight."""
    seed: int = 1234
    """Seeds the mixture; the same seed gives the same batches."""
    val_batches: int = 4
    """Fixed held-out batches evaluated at every validation."""
    num_workers: int = 0
    """DataLoader worker processes (0 = in the training process)."""
    tts_history_noise: float = 0.0
    """Probability per unit of a TTS example's input history being replaced by a random unit while
    its targets stay true (:func:`most.data.augment.substitute`); 0 = off. Teaches the model to
    recover from its own wrong units by reading the text again."""
    speech_lm_spans: float = 0.0
    """Share of ``speech_lm`` (unit continuation) examples cut to a random span of the utterance
    instead of the whole of it (:func:`most.data.augment.crop`); 0 = whole utterances only."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_len < 8:
            raise ValueError(f"data: batch_size >= 1 and max_len >= 8 required ({self})")
        if not 0.0 <= self.tts_history_noise <= 1.0:
            raise ValueError(
                f"data.tts_history_noise must be in [0, 1], got {self.tts_history_noise}"
            )
        if not 0.0 <= self.speech_lm_spans <= 1.0:
            raise ValueError(f"data.speech_lm_spans must be in [0, 1], got {self.speech_lm_spans}")
        bad = {k: v for k, v in self.ratios.items() if v < 0}
        if bad:
            raise ValueError(f"data.ratios must be >= 0: {bad}")


class PositionedDataModule(L.LightningDataModule):
    """A data module whose training stream resumes where it stopped: ``position`` counts the
    training batches handed to the model and is saved in the checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.position = 0

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self.position += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.position = int(state_dict["position"])


class MixtureDataModule(PositionedDataModule):
    """Train and validation mixtures of :class:`~most.train.mixing.Source` objects (``collate``:
    how both build their batches, see :class:`~most.train.mixing.MixtureStream`)."""

    def __init__(
        self,
        train: Sequence[Source],
        train_ratios: Sequence[float],
        val: Sequence[Source],
        val_ratios: Sequence[float],
        cfg: DataConfig,
        pad_id: int,
        collate: Collate | None = None,
    ) -> None:
        super().__init__()
        self.collate = collate
        self.train_sources, self.train_ratios = list(train), list(train_ratios)
        self.val_sources, self.val_ratios = list(val), list(val_ratios)
        self.cfg, self.pad_id = cfg, pad_id

    @property
    def has_val(self) -> bool:
        """Whether validation runs: there are validation sources and batches to draw."""
        return bool(self.val_sources) and self.cfg.val_batches > 0

    def _stream(self, sources, ratios, seed: int, n_batches: int | None) -> MixtureStream:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return MixtureStream(
            sources,
            ratios,
            batch_size=self.cfg.batch_size,
            max_len=self.cfg.max_len,
            pad_id=self.pad_id,
            seed=seed,
            pack=self.cfg.pack,
            rank=rank,
            world_size=world,
            n_batches=n_batches,
            collate=self.collate,
        )

    def train_dataloader(self) -> DataLoader:
        stream = self._stream(self.train_sources, self.train_ratios, self.cfg.seed, None)
        stream.start = self.position
        return DataLoader(stream, batch_size=None, num_workers=self.cfg.num_workers)

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_sources or self.cfg.val_batches == 0:
            return []
        # A different seed from training, and always the same batches: comparable across evals.
        stream = self._stream(self.val_sources, self.val_ratios, self.cfg.seed + 1, None)
        stream.n_batches = self.cfg.val_batches
        return DataLoader(stream, batch_size=None)
