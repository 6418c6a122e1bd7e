"""The ``paraling`` training source: questions about how an utterance was spoken
(:mod:`most.data.paraling`), the audio heard through the adapter or as units.

Each drawn row gets one of the tasks (drawn from the batch's augmentation generator, so a batch
stays a pure function of its index) and is heard as :func:`~most.data.paraling.heard` makes it
(noisy for half the utterances). ``hear(wav) -> (units, features)``: the adapter variant gives
placeholder-free features, the unit variant the unit tokenizer's ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from most.corpora.schema import decode_audio
from most.data.paraling import PARALING_TASKS, QUESTIONS, answer, heard, voice_labels
from most.data.prompts import Example, Prompts
from most.run import Run
from most.train.features import with_features
from most.train.mixing import Source
from most.units import load_tokenizer
from most.units.base import UnitTokenizer
from most.units.frontend import AudioFrontend


def build_example(
    p: Prompts,
    task: str,
    row: dict,
    wav: np.ndarray,
    frontend: AudioFrontend | None,
    stack: int,
    units: UnitTokenizer | None,
) -> Example:
    """One ``paraling`` example about ``row`` (``id``, ``voice``) heard as ``wav``."""
    question, reply = QUESTIONS[task], answer(task, row["voice"], row["id"])
    sound = heard(wav, row["id"])
    if frontend is not None:
        feats = frontend.features(sound)
        return with_features(p, lambda u: p.paraling(question, u, reply), feats, stack)
    if units is None:
        raise ValueError("paraling examples need an audio frontend or a unit tokenizer")
    return p.paraling(question, units.encode(sound, 16_000).tolist(), reply)


def paraling(
    p: Prompts,
    ds: datasets.Dataset,
    tasks: Sequence[str] = PARALING_TASKS,
    frontend: AudioFrontend | None = None,
    stack: int = 1,
    units: UnitTokenizer | None = None,
) -> Source:
    """Questions about the utterances of ``ds`` (``id``, ``audio``, ``voice`` columns)."""
    unknown = set(tasks) - set(PARALING_TASKS)
    if unknown or not tasks:
        raise ValueError(f"paraling tasks must be some of {list(PARALING_TASKS)}, got {tasks}")
    tasks = list(tasks)
    voice_labels(ds.select_columns(["voice"])[0]["voice"])  # refused now, not mid-training

    def pick(row: dict, rng: np.random.Generator) -> dict:
        return {**row, "ptask": tasks[int(rng.integers(len(tasks)))]}

    def build(row: dict) -> Example:
        wav = np.asarray(decode_audio(row["audio"]), dtype=np.float32)
        task = row.get("ptask", tasks[0])
        return build_example(p, task, row, wav, frontend, stack, units)

    return Source("paraling", ds.select_columns(["id", "audio", "voice"]), build, pick)


def paraling_replay(
    run: Path,
    p: Prompts,
    defaults: dict[str, float],
    ratios: dict[str, float],
    frontend: AudioFrontend | None,
    stack: int,
) -> list[Source]:
    """The ``paraling`` source of a speech stage on ``RUN/data/speech`` train (the audio heard
    through ``frontend``, else the run's unit tokenizer), read only when its ratio > 0."""
    if {**defaults, **ratios}.get("paraling", 0.0) <= 0:
        return []
    speech = Run(run).load_data("speech")["train"]
    units = None if frontend is not None else load_tokenizer(run)
    return [paraling(p, speech, frontend=frontend, stack=stack, units=units)]
