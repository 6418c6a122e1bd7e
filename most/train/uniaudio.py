"""Mixture sources of UniAudio's speech tasks, built from the run's unit datasets.

- ``vtts`` (voice-prompted TTS): a ``train`` (or ``train_parallel``) utterance, its text, and a
  ~3-s window of *another* utterance of the same voice as the voice prompt.
- ``vc`` (voice conversion): the same sentence in two voices (``train`` x ``train_parallel``, both
  directions): the source speech, a ~3-s prompt of the target voice from another utterance, and
  the target speech as the answer.
- ``se`` (speech enhancement): ``train_noisy`` units -> the clean ``train`` units of that text.
- ``speech_continue``: a ``train`` utterance cut at a frame drawn in ``[low, high]`` of its length.

Prompts and cuts fall on frame boundaries (``ids_per_frame`` ids a frame: a multi-codebook unit
kind gives ``C``). Voice prompts are drawn per example during training (the batch's generator);
without a generator (validation) the next utterance of the voice and its start are used.
The parallel and noisy splits come from ``most data --tasks.*`` (:mod:`most.corpora.uniaudio`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import datasets
import numpy as np

from most.data.prompts import Prompts
from most.layout import UNIAUDIO_SPECIALS
from most.run import Run
from most.train.mixing import Source
from most.units.kinds import load_tokenizer

TASKS = ("vtts", "vc", "se", "speech_continue")
#: Voice prompt length: UniAudio's 3-s prompt of the target voice.
PROMPT_SECONDS = 3.0


class VoicePrompts:
    """Voice prompts: ~``prompt_ids`` unit ids of another utterance by the same voice.

    ``pool`` needs ``units`` and ``voice`` columns; its units are read once into memory."""

    def __init__(self, pool: datasets.Dataset, prompt_ids: int, ids_per_frame: int = 1) -> None:
        if prompt_ids < ids_per_frame or prompt_ids % ids_per_frame:
            raise ValueError(
                f"voice prompt of {prompt_ids} ids: a positive multiple of {ids_per_frame} ids a frame"
            )
        self.units = [list(u) for u in pool["units"]]
        self.rows: dict[str, list[int]] = defaultdict(list)
        for i, v in enumerate(pool["voice"]):
            self.rows[v].append(i)
        self.prompt_ids, self.step = prompt_ids, ids_per_frame

    def pick(self, voice: str, avoid: list[int], rng: np.random.Generator | None = None) -> int:
        """Pool row of another utterance of ``voice`` (units other than ``avoid``); without
        ``rng`` the first such row."""
        rows = self.rows.get(voice)
        if not rows:
            raise ValueError(f"no utterance of voice {voice!r} to take a voice prompt from")
        others = [r for r in rows if self.units[r] != list(avoid)] or rows
        return others[int(rng.integers(len(others))) if rng is not None else 0]

    def __call__(
        self, voice: str, avoid: list[int], rng: np.random.Generator | None = None
    ) -> list[int]:
        """A window of another utterance of ``voice`` (:meth:`pick`); without ``rng`` its start."""
        units = self.units[self.pick(voice, avoid, rng)]
        frames, want = len(units) // self.step, self.prompt_ids // self.step
        if frames <= want:
            return units[: frames * self.step]
        start = int(rng.integers(frames - want + 1)) if rng is not None else 0
        return units[start * self.step : (start + want) * self.step]


def vtts(p: Prompts, ds: datasets.Dataset, voices: VoicePrompts) -> Source:
    rows = ds.select_columns(["units", "text", "voice"])

    def draw(row: dict, rng: np.random.Generator) -> dict:
        return {**row, "prompt": voices(row["voice"], row["units"], rng)}

    def build(r: dict):
        prompt = r.get("prompt") or voices(r["voice"], r["units"])
        return p.vtts(prompt, r["text"], r["units"])

    return Source("vtts", rows, build, draw)


def by_text(ds: datasets.Dataset) -> dict[str, int]:
    """Row of each text (the ``train`` sentences are distinct)."""
    return {t: i for i, t in enumerate(ds["text"])}


def vc_pairs(train: datasets.Dataset, parallel: datasets.Dataset) -> datasets.Dataset:
    """``source``, ``target``, ``voice`` (the target's) rows: each parallel sentence both ways."""
    index = by_text(train)
    src, tgt, voice = [], [], []
    for row in parallel.select_columns(["units", "text", "voice"]):
        if row["text"] not in index:
            continue
        other = train[index[row["text"]]]
        src += [other["units"], row["units"]]
        tgt += [row["units"], other["units"]]
        voice += [row["voice"], other["voice"]]
    return datasets.Dataset.from_dict({"source": src, "target": tgt, "voice": voice})


def vc(p: Prompts, pairs: datasets.Dataset, voices: VoicePrompts) -> Source:
    def draw(row: dict, rng: np.random.Generator) -> dict:
        return {**row, "prompt": voices(row["voice"], row["target"], rng)}

    def build(r: dict):
        prompt = r.get("prompt") or voices(r["voice"], r["target"])
        return p.vc(r["source"], prompt, r["target"])

    return Source("vc", pairs, build, draw)


def se_pairs(clean: datasets.Dataset, noisy: datasets.Dataset) -> datasets.Dataset:
    """``noisy``, ``clean`` unit rows paired by text."""
    index = by_text(clean)
    rows = [r for r in noisy.select_columns(["units", "text"]) if r["text"] in index]
    return datasets.Dataset.from_dict(
        {
            "noisy": [r["units"] for r in rows],
            "clean": [clean[index[r["text"]]]["units"] for r in rows],
        }
    )


def se(p: Prompts, pairs: datasets.Dataset) -> Source:
    return Source("se", pairs, lambda r: p.se(r["noisy"], r["clean"]))


def speech_continue(
    p: Prompts, ds: datasets.Dataset, ids_per_frame: int = 1, low: float = 0.25, high: float = 0.75
) -> Source:
    """Continuation of a ``low``-``high`` share of an utterance (drawn per example, whole frames)."""
    if not 0.0 < low <= high < 1.0:
        raise ValueError(
            f"speech continuation shares must satisfy 0 < low <= high < 1: {low}, {high}"
        )
    rows = ds.select_columns(["units"])
    # select, not filter: filter writes cache files beside the run's unit shards
    rows = rows.select([i for i, u in enumerate(rows["units"]) if len(u) >= 2 * ids_per_frame])

    def at(n: int, share: float) -> int:
        frames = n // ids_per_frame
        return min(max(round(frames * share), 1), frames - 1) * ids_per_frame

    def cut(row: dict, rng: np.random.Generator) -> dict:
        return {**row, "start": at(len(row["units"]), rng.uniform(low, high))}

    def build(r: dict):
        return p.speech_continue(r["units"], r.get("start", at(len(r["units"]), 0.5)))

    return Source("speech_continue", rows, build, cut)


def ids_per_frame(run: Path) -> int:
    """Unit ids a frame of the run's unit kind: its codebook count (1 for single-stream kinds)."""
    return int(getattr(load_tokenizer(Run(run).unit_tokenizer), "n_codebooks", 1))


def task_sources(
    run: Path,
    p: Prompts,
    speech: datasets.DatasetDict,
    ratios: dict[str, float],
    split: str = "train",
    prompt_seconds: float = PROMPT_SECONDS,
) -> list[Source]:
    """The sources of the tasks of :data:`TASKS` whose ratio (defaults and recipe merged) is > 0,
    on ``speech`` (the run's ``speech`` units) ``split`` and its parallel and noisy splits."""
    wanted = [t for t in TASKS if ratios.get(t, 0.0) > 0]
    if not wanted:
        return []
    if p.layout is None or not set(UNIAUDIO_SPECIALS) <= set(p.layout.specials):
        raise ValueError(
            f"data.ratios asks for {', '.join(wanted)}, but the model's layout lacks their task "
            f"markers {list(UNIAUDIO_SPECIALS)}; adapt with recipes/uniaudio/adapt.yaml"
        )
    need = {"vc": f"{split}_parallel", "se": f"{split}_noisy"}
    for task in wanted:
        if task in need and need[task] not in speech:
            raise ValueError(
                f"data.ratios asks for {task}, but the speech units have no {need[task]!r} split; "
                "build the data with --tasks.n_parallel / --tasks.n_noisy > 0"
            )
    step = ids_per_frame(run)
    rate = float(Run(run).unit_info()["frame_rate"])
    prompt_ids = max(1, round(prompt_seconds * rate)) * step
    base = speech[split]
    pool = base
    if f"{split}_parallel" in speech:
        pool = datasets.concatenate_datasets([_cols(base), _cols(speech[f"{split}_parallel"])])
    out: list[Source] = []
    voices = VoicePrompts(_cols(pool), prompt_ids, step) if {"vtts", "vc"} & set(wanted) else None
    for task in wanted:
        if task == "vtts":
            out.append(vtts(p, _cols(pool), voices))
        elif task == "vc":
            out.append(vc(p, vc_pairs(base, speech[f"{split}_parallel"]), voices))
        elif task == "se":
            out.append(se(p, se_pairs(base, speech[f"{split}_noisy"])))
        else:
            out.append(speech_continue(p, base, step))
    return out


def _cols(ds: datasets.Dataset) -> datasets.Dataset:
    return ds.select_columns(["units", "text", "voice"])
