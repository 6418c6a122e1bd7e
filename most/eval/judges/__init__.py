"""ASR judges: recognisers that are not the model under test, used to score its speech output.

Every judge is an object with a ``name`` and ``transcribe(wavs) -> list[str]`` taking float32 mono
16 kHz waveforms. Three kinds: the embedded-default CTC recogniser trained by ``most judge``
(:mod:`most.eval.judges.ctc`), pocketsphinx with its bundled English model
(:mod:`most.eval.judges.pocketsphinx_judge`) and any HF CTC or seq2seq ASR model in a local folder
(:mod:`most.eval.judges.hf_judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from most.run import Run


class Judge(Protocol):
    name: str

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """``wavs``: float32 ``(n_i,)`` at 16 kHz -> one transcript each."""
        ...


def audible(wav: np.ndarray) -> np.ndarray:
    """What a judge is given for ``wav``: a model that spoke no units gets 0.1 s of silence
    (transcribed as nothing: every reference word deleted) instead of an empty array."""
    return wav if wav.size else np.zeros(1600, dtype=np.float32)


def load_judge(spec: str, run: Path) -> Judge:
    """``"ctc"`` (RUN/judge), ``"pocketsphinx"``, or a local HF model folder path."""
    if spec == "ctc":
        from most.eval.judges.ctc import CTCJudge

        return CTCJudge.load(Run(run).judge)
    if spec == "pocketsphinx":
        from most.eval.judges.pocketsphinx_judge import PocketsphinxJudge

        return PocketsphinxJudge()
    from most.eval.judges.hf_judge import HFJudge

    return HFJudge.load(Path(spec))
