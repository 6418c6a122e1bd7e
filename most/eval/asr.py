"""ASR: transcribe unit-encoded test speech with the model and score WER/CER.

Reads ``RUN/units/<hash>/speech/<split>`` (units + reference text), so the audio is encoded
exactly as in training. ``test`` has the training voices, ``test_voices`` voices never heard.
A few (id, reference, hypothesis) examples per split are kept in the report: ``most release``
reloads the released model and must reproduce them.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets

from most.eval.judges import Judge
from most.eval.metrics import cer, wer, word_errors
from most.eval.tts import aligned_rows
from most.generate import Sampling, SpeechLM
from most.progress import progress

N_EXAMPLES = 3


def evaluate_asr(
    lm: SpeechLM,
    speech_units: datasets.DatasetDict,
    splits: Sequence[str],
    n: int,
    sampling: Sampling,
) -> dict:
    """``{split: {"wer", "cer", "n", "word_errors", "examples": [{"id", "ref", "hyp"}]}}`` for
    present splits (``word_errors``: ``[edits, words]`` per utterance, for the WER's standard
    error)."""
    out = {}
    with progress() as bar:
        for split in splits:
            if split not in speech_units:
                continue
            ds = speech_units[split]
            rows = ds.select(range(min(n, len(ds)))).select_columns(["id", "units", "text"])
            task = bar.add_task(f"asr {split}", total=len(rows))
            hyps = lm.asr_units(
                rows["units"], sampling, on_batch=lambda k, t=task: bar.advance(t, k)
            )
            refs = rows["text"]
            out[split] = {
                "wer": wer(refs, hyps),
                "cer": cer(refs, hyps),
                "n": len(refs),
                "word_errors": word_errors(refs, hyps),
                "examples": [
                    {"id": i, "ref": r, "hyp": h}
                    for i, r, h in list(zip(rows["id"], refs, hyps, strict=True))[:N_EXAMPLES]
                ],
            }
    return out


#: Utterances a peer transcribes between progress updates.
PEER_CHUNK = 20


def peer_asr(
    judges: Sequence[Judge],
    speech: datasets.DatasetDict,
    speech_units: datasets.DatasetDict,
    splits: Sequence[str],
    n: int,
) -> dict:
    """``{split: {judge: {"wer", "cer", "n"}}}``: each peer recogniser reading the original audio of
    the utterances :func:`evaluate_asr` scores (the first ``n`` of each split's units), the
    baseline beside the model's WER."""
    out: dict = {}
    with progress() as bar:
        for split in splits:
            if split not in speech_units or split not in speech:
                continue
            units = speech_units[split]
            units = units.select(range(min(n, len(units))))
            _, wavs, _, refs = aligned_rows(speech[split], units, n)
            for judge in judges:
                task = bar.add_task(f"asr {split}: peer {judge.name}", total=len(wavs))
                hyps: list[str] = []
                for i in range(0, len(wavs), PEER_CHUNK):
                    hyps += judge.transcribe(wavs[i : i + PEER_CHUNK])
                    bar.advance(task, len(wavs[i : i + PEER_CHUNK]))
                out.setdefault(split, {})[judge.name] = {
                    "wer": wer(refs, hyps),
                    "cer": cer(refs, hyps),
                    "n": len(refs),
                }
    return out
