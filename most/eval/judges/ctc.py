"""The embedded default's CTC judge: a trained :class:`~most.ctc.model.CTCRecognizer` and its decoder.

The judge reads log-mel frames (never units), so it is independent of the model under test. A judge
folder (written by ``most judge``) holds ``model.safetensors``, ``judge.json`` (model config,
characters, mel settings, lexicon, beam settings, training log, metrics) and, with beam search,
``lm.arpa``. No pickle.

Decodings, best first:

- ``beam``: lexicon-constrained beam search with a word bigram (:mod:`most.eval.judges.beam`);
- ``snapped``: greedy CTC, then every word missing from the lexicon replaced by the nearest lexicon
  word (:mod:`most.eval.judges.lexicon`);
- ``greedy``: greedy CTC.

All treat original, resynthesised and model-generated audio alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from most.ctc.model import (
    CHARS,
    MEL,
    CTCModelConfig,
    CTCRecognizer,
    features,
    greedy_decode,
    pad,
)
from most.ctc.train import read_rows
from most.eval.judges.beam import BeamSettings, LexiconBeam
from most.eval.judges.lexicon import Lexicon
from most.eval.metrics import cer, wer
from most.io import read_json
from most.threads import single_thread

JUDGE_FILE = "judge.json"
LM_FILE = "lm.arpa"
WEIGHTS_FILE = "model.safetensors"


class CTCJudge:
    """A trained :class:`CTCRecognizer` and its decoder (beam search with a word LM, else greedy
    with optional lexicon snapping); satisfies ``most.eval.judges.Judge``."""

    name = "ctc"

    def __init__(
        self,
        model: CTCRecognizer,
        lexicon: Lexicon | None = None,
        batch_size: int = 16,
        beam: LexiconBeam | None = None,
    ) -> None:
        self.model = model.eval()
        self.lexicon = lexicon
        self.batch_size = batch_size
        self.beam = beam

    @classmethod
    def load(cls, directory: str | Path) -> CTCJudge:
        directory = Path(directory)
        if not (directory / JUDGE_FILE).is_file():
            raise FileNotFoundError(f"{directory}: no CTC judge ({JUDGE_FILE}); run `most judge`")
        meta = read_json(directory / JUDGE_FILE)
        if meta.get("chars") != CHARS or meta.get("mel") != MEL.to_dict():
            raise ValueError(f"{directory}: judge was trained with other characters/mel settings")
        model = CTCRecognizer(CTCModelConfig(**meta["model"]))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        lexicon = Lexicon(meta["lexicon"]) if meta.get("lexicon") else None
        beam = None
        if meta.get("beam") and lexicon is not None:
            if not (directory / LM_FILE).is_file():
                raise FileNotFoundError(
                    f"{directory}: judge.json names a beam but {LM_FILE} is missing"
                )
            beam = LexiconBeam(lexicon.words, directory / LM_FILE, BeamSettings(**meta["beam"]))
        return cls(model, lexicon, beam=beam)

    @property
    def best(self) -> str:
        """The decoding :meth:`transcribe` returns: ``beam``, ``snapped`` or ``greedy``."""
        if self.beam is not None:
            return "beam"
        return "snapped" if self.lexicon is not None else "greedy"

    @torch.no_grad()
    def logprobs(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per utterance ``(T_i, len(CHARS) + 1)`` CTC log-probabilities, in input order."""
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        out: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            with single_thread():
                feats = features([wavs[i] for i in idx])
            x, lengths = pad(feats)
            logp, out_len = self.model(x, lengths)
            out.update({i: row[:n] for i, row, n in zip(idx, logp, out_len.tolist(), strict=True)})
        return [out[i] for i in range(len(wavs))]

    def decodings(self, rows: Sequence[torch.Tensor]) -> dict[str, list[str]]:
        """Every decoding this judge has of ``rows``: ``greedy``, ``snapped``, ``beam``."""
        greedy = [greedy_decode(r[None], torch.tensor([len(r)]))[0] for r in rows]
        out = {"greedy": greedy}
        if self.lexicon is not None:
            out["snapped"] = [self.lexicon.snap_text(t) for t in greedy]
        if self.beam is not None:
            out["beam"] = [self.beam.decode(r) for r in rows]
        return out

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        rows = self.logprobs(wavs)
        if self.beam is not None:
            return [self.beam.decode(r) for r in rows]
        return self.decodings(rows)[self.best]


def judge_meta(model: CTCModelConfig, lexicon: Lexicon | None, log: dict) -> dict:
    """The ``judge.json`` of a freshly trained judge, before its beam settings and metrics."""
    return {
        "kind": "ctc",
        "model": model.to_dict(),
        "chars": CHARS,
        "mel": MEL.to_dict(),
        "lexicon": lexicon.words if lexicon else None,
        "train": log,
    }


def save_weights(model: CTCRecognizer, directory: Path) -> None:
    """``directory/model.safetensors``: the recogniser's weights, as :meth:`CTCJudge.load` reads them."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))


def read_split(ds: datasets.Dataset, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` rows' audio ``(n_i,)`` float32 and text."""
    return read_rows(ds, range(min(n, len(ds))))


def score_splits(scorer: CTCJudge, speech: datasets.DatasetDict, n: int) -> dict:
    """WER/CER on the first ``n`` rows of ``test`` and ``test_voices``, for every decoding."""
    metrics = {}
    for split in ("test", "test_voices"):
        if split not in speech:
            continue
        wavs, refs = read_split(speech[split], n)
        hyps = scorer.decodings(scorer.logprobs(wavs))
        best = hyps[scorer.best]
        metrics[split] = {"wer": wer(refs, best), "cer": cer(refs, best), "n": len(refs)}
        metrics[split] |= {f"wer_{name}": wer(refs, h) for name, h in hyps.items()}
    return metrics
