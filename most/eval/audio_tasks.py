"""Audio understanding scored the same way for every way audio enters the model.

For the adapter ablation (MoE adapter vs dense adapter vs discrete units): each task reads the
*audio* of held-out utterances and asks through :class:`~most.generate.SpeechLM`, which hears it
through the model's adapter when it has one and as units otherwise. Tasks (keys of the result):

- ``asr``: word error rate on ``speech/<split>`` (held-out sentences, training voices);
- ``s2t``: spoken question -> text answer, accuracy (answer contained) on ``sqa/qa_heldout``
  (facts known only from text) or the split asked for;
- ``paraling.<task>``: for each :data:`~most.data.paraling.PARALING_TASKS`, the question asked in
  text about the utterance as :func:`~most.data.paraling.heard` makes it; exact-match accuracy.

Every score comes with ``n``; accuracies with their binomial standard error (``se``).
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np

from most.corpora.schema import decode_audio
from most.data.paraling import PARALING_TASKS, QUESTIONS, answer, heard
from most.eval.compare import accuracy_se
from most.eval.metrics import wer
from most.generate import Sampling, SpeechLM
from most.text import accuracy

SHORT = Sampling(max_new_tokens=24, batch_size=16)
"""Answers here are a few words: a short length guard keeps a rambling model cheap to score."""


def _wavs(ds: datasets.Dataset) -> list[np.ndarray]:
    return [np.asarray(decode_audio(a), dtype=np.float32) for a in ds["audio"]]


def exact(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Share of predictions equal to their answer, case and end punctuation aside."""

    def norm(t: str) -> str:
        return " ".join(t.lower().strip().rstrip(".!?").split())

    hits = sum(norm(p) == norm(a) for p, a in zip(predictions, answers, strict=True))
    return hits / len(answers) if answers else 0.0


def _scored(value: float, n: int) -> dict:
    return {"accuracy": value, "n": n, "se": accuracy_se(value, n)}


def evaluate_audio_tasks(
    lm: SpeechLM,
    speech: datasets.DatasetDict,
    sqa: datasets.DatasetDict | None,
    n: int,
    tasks: Sequence[str] = PARALING_TASKS,
    speech_split: str = "test",
    sqa_split: str = "qa_heldout",
    sampling: Sampling = SHORT,
) -> dict[str, dict]:
    """``{"asr": {"wer", "n"}, "s2t": {...}, "paraling.<task>": {"accuracy", "n", "se"}}`` on the
    first ``n`` utterances of each split (``RUN/data`` datasets, with audio)."""
    rows = speech[speech_split].select(range(min(n, len(speech[speech_split]))))
    wavs = _wavs(rows)
    out: dict[str, dict] = {}
    hyps = lm.asr(wavs, sampling)
    out["asr"] = {"wer": wer(rows["text"], hyps), "n": len(hyps)}
    if sqa is not None and sqa_split in sqa:
        qa = sqa[sqa_split].select(range(min(n, len(sqa[sqa_split]))))
        said = [lm.chat([{"role": "user", "audio": w}], sampling=sampling).text for w in _wavs(qa)]
        out["s2t"] = _scored(accuracy(said, qa["answer"]), len(said))
    for task in tasks:
        preds, refs = [], []
        for row, wav in zip(rows, wavs, strict=True):
            msg = {"role": "user", "text": QUESTIONS[task], "audio": heard(wav, row["id"])}
            preds.append(lm.chat([msg], sampling=sampling).text)
            refs.append(answer(task, row["voice"], row["id"]))
        out[f"paraling.{task}"] = _scored(exact(preds, refs), len(refs))
    return out


def headline(result: dict[str, dict]) -> dict[str, float]:
    """One number per task: WER for ``asr``, accuracy for the rest."""
    return {k: v["wer"] if k == "asr" else v["accuracy"] for k, v in result.items()}
