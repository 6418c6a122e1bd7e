"""Training audio through the unit tokenizer's vocoder, so the CTC judge learns to read vocoded speech.

Without it, the ceiling ``wer_resynth`` and the model's TTS would be judged by a recogniser that never
heard a vocoder. The vocoder is sequential per utterance, so worker processes (forked, one thread
each) are what use the cores.
"""

from __future__ import annotations

import multiprocessing as mp
import random
from typing import TYPE_CHECKING

import numpy as np
import torch

from most.progress import progress
from most.threads import available_cores, single_thread

if TYPE_CHECKING:
    from most.units.base import UnitTokenizer

_TOKENIZER: UnitTokenizer | None = None  # set before forking: inherited by the workers


def _init_worker() -> None:
    torch.set_num_threads(1)


def _resynth_one(wav: np.ndarray) -> np.ndarray:
    tok = _TOKENIZER
    return tok.decode(tok.encode(wav, 16_000)).numpy()


def resynthesize_share(
    wavs: list[np.ndarray],
    tokenizer: UnitTokenizer,
    share: float,
    seed: int,
    num_proc: int = 0,
) -> list[np.ndarray]:
    """A seeded ``share`` of ``wavs`` (float32 ``(n_i,)`` at 16 kHz) replaced by
    ``tokenizer.decode(tokenizer.encode(wav))``; the others are returned as they are.

    ``num_proc`` worker processes (0 = one per core this process may use) each run one utterance
    at a time.
    """
    global _TOKENIZER
    _TOKENIZER = tokenizer
    picked = random.Random(seed + 1).sample(range(len(wavs)), round(share * len(wavs)))
    out = list(wavs)
    num_proc = num_proc or len(available_cores())
    with progress() as bar, single_thread():
        task = bar.add_task("judge: vocoder resynthesis", total=len(picked))
        if num_proc > 1 and len(picked) > 1:
            with mp.get_context("fork").Pool(num_proc, _init_worker) as pool:
                todo = [wavs[i] for i in picked]
                for i, wav in zip(picked, pool.imap(_resynth_one, todo, chunksize=4), strict=True):
                    out[i] = wav
                    bar.advance(task)
        else:
            for i in picked:
                out[i] = _resynth_one(wavs[i])
                bar.advance(task)
    return out
