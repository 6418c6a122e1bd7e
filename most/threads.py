"""Thread settings for small per-utterance torch work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run a block with one torch thread: per-utterance STFTs are so small that thread start-up
    dominates (measured 0.2 ms with 1 thread vs 46 ms with 2 for a 4 s log-mel on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
