"""pocketsphinx with its bundled US-English model: a second judge nobody in this project trained.

It is weak on synthetic voices and invented names, but it is fully independent of our data and
training, which is what makes it a reference: a model whose TTS WER moves with the CTC judge's but
not with pocketsphinx's is fitting the judge, not speaking better.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from most.threads import available_cores

_DECODER = None  # one decoder per process, made on first use


def _decode(wavs: Sequence[np.ndarray]) -> list[str]:
    """Each utterance on this process' decoder, its feature state (cepstral mean) reset first so
    that a transcript does not depend on the utterances decoded before it."""
    global _DECODER
    if _DECODER is None:
        from pocketsphinx import Decoder

        _DECODER = Decoder(samprate=16_000, loglevel="FATAL")
    out = []
    for wav in wavs:
        pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1, 1) * 32767).astype(np.int16)
        _DECODER.reinit_feat()
        _DECODER.start_utt()
        _DECODER.process_raw(pcm.tobytes(), full_utt=True)
        _DECODER.end_utt()
        hyp = _DECODER.hyp()
        out.append(hyp.hypstr if hyp is not None else "")
    return out


class PocketsphinxJudge:
    """pocketsphinx in ``workers`` processes (default: every core this process may use; it is
    single-threaded), each utterance decoded on its own; the transcripts do not depend on the number
    of workers."""

    name = "pocketsphinx"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or len(available_cores()))
        self._pool: ProcessPoolExecutor | None = None

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        wavs = list(wavs)
        n = min(self.workers, len(wavs))
        if n <= 1:
            return _decode(wavs)
        if self._pool is None:
            # fork: the workers only run numpy and pocketsphinx, never the parent's torch threads
            ctx = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx)
        # interleaved shares balance long and short utterances
        shares = [wavs[i::n] for i in range(n)]
        parts = list(self._pool.map(_decode, shares))
        out = [""] * len(wavs)
        for i, part in enumerate(parts):
            out[i::n] = part
        return out

    def __del__(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
