"""The decoding rule of a model that reads multi-codebook units flat (every codebook's code its own
token, :mod:`most.units.codebooks`): position ``p`` after ``<|begin_of_audio|>`` must be a code of
codebook ``p % C``.

:class:`CodebookConstraint` is a transformers ``LogitsProcessor`` for ``model.generate``: from the
last ``<|begin_of_audio|>`` on, it keeps only the unit ids of the due codebook
(``[unit_offset + cK, unit_offset + (c+1)K)``) and, at a frame boundary (``p % C == 0``),
``<|end_of_audio|>``; so every generated answer unflattens into whole frames. Rows with no
``<|begin_of_audio|>``, or past their ``<|end_of_audio|>``, are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import LogitsProcessor, LogitsProcessorList

from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO, TokenLayout


class CodebookConstraint(LogitsProcessor):
    """Masks every id but the due codebook's (and the end of audio at frame boundaries)."""

    def __init__(self, layout: TokenLayout, n_codebooks: int) -> None:
        if layout.n_units % n_codebooks:
            raise ValueError(f"the layout's {layout.n_units} units are not {n_codebooks} codebooks")
        self.layout = layout
        self.n_codebooks = n_codebooks
        self.codebook_size = layout.n_units // n_codebooks
        self.begin = layout.special_id(BEGIN_OF_AUDIO)
        self.end = layout.special_id(END_OF_AUDIO)

    def allowed(self, input_ids: Tensor, vocab: int) -> tuple[Tensor, Tensor]:
        """``(B, L)`` ids so far -> ``(B,)`` whether the row is inside audio, and ``(B, V)`` the ids
        its next position may take."""
        length = input_ids.shape[1]
        pos = torch.arange(length, device=input_ids.device)
        last = torch.where(input_ids == self.begin, pos, -1).max(1).values
        after = pos[None] > last[:, None]
        spoken = (self.layout.is_unit(input_ids) & after).sum(1)
        inside = (last >= 0) & (spoken == length - 1 - last)  # only units since the last begin
        codebook = spoken % self.n_codebooks
        lo = self.layout.unit_offset + codebook * self.codebook_size
        v = torch.arange(vocab, device=input_ids.device)[None]
        ok = (v >= lo[:, None]) & (v < lo[:, None] + self.codebook_size)
        ok |= (v == self.end) & (codebook == 0)[:, None]
        return inside, ok

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        inside, ok = self.allowed(input_ids, scores.shape[-1])
        masked = scores.masked_fill(~ok, float("-inf"))
        return torch.where(inside[:, None], masked, scores)


def codebook_rules(layout: TokenLayout | None, units: object) -> LogitsProcessorList:
    """The decoding rules for ``units`` (a unit tokenizer or None): a :class:`CodebookConstraint`
    when it has several codebooks (``n_codebooks``), else none."""
    c = int(getattr(units, "n_codebooks", 1))
    return LogitsProcessorList([CodebookConstraint(layout, c)] if c > 1 and layout else [])


def whole_frames(units: Sequence[int], tokenizer: object) -> list[int]:
    """``units`` up to the last whole frame of ``tokenizer``'s codebooks (all of them for a
    single-stream kind): an answer cut by a length guard may stop inside a frame."""
    c = int(getattr(tokenizer, "n_codebooks", 1))
    return list(units)[: len(units) // c * c]
