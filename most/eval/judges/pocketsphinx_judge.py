"""pocketsphinx with its bundled US-English model: a second judge nobody in this project trained.

It is weak on synthetic voices and invented names, but it is fully independent of our data and
training, which is what makes it a reference: a model whose TTS WER moves with the CTC judge's but
not with pocketsphinx's is fitting the judge, not speaking better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class PocketsphinxJudge:
    """Decodes each utterance with a fresh ``start_utt``/``end_utt`` on one shared decoder."""

    name = "pocketsphinx"

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self.decoder = Decoder(samprate=16_000, loglevel="FATAL")

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        out = []
        for wav in wavs:
            pcm = (np.clip(np.asarray(wav, dtype=np.float32), -1, 1) * 32767).astype(np.int16)
            self.decoder.start_utt()
            self.decoder.process_raw(pcm.tobytes(), full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
            out.append(hyp.hypstr if hyp is not None else "")
        return out
