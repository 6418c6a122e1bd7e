"""Preference pairs from the model's own samples on training prompts, ranked by the judge.

Two tasks, both read from training splits only (:func:`tts_items`, :func:`sqa_items`):

- ``tts``: a ``speech/train`` sentence is read ``samples`` times with sampling; each reading is
  vocoded and transcribed by the judge and scored by its WER against the sentence; ties are broken
  by the model's own ASR of its units (the WER of what the model hears in what it said).
- ``s2s``: a ``qa_train`` question (its units) is answered aloud ``samples`` times; an answer
  ranks by whether the judge hears the right answer in its vocoded units, then whether the text the
  model wrote before speaking has it, then the judge's WER against the answer sentence.

The best and the worst candidate of a prompt make a pair when their ranks differ (a prompt whose
candidates all rank the same teaches nothing and is dropped). Completions are the exact ids the
model wrote: ``units <|end_of_audio|>`` for TTS and ``text <|begin_of_audio|> units
<|end_of_audio|>`` for S->S, the formats stage 2 trains (:mod:`most.data.prompts`).

Held out, never a prompt: every sentence of a speech split other than ``train``/``train_short``
(``dev``, ``test``, ``test_voices``), and every ``qa_heldout`` fact, question and answer sentence.
:func:`heldout_texts` collects them and :func:`check_no_heldout` refuses pairs that contain one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import numpy as np

from most.eval.judges import Judge, audible
from most.eval.metrics import wer
from most.generate import Sampling, SpeechLM
from most.io import atomic_write_json, read_json
from most.layout import BEGIN_OF_AUDIO
from most.progress import progress
from most.run import Run
from most.text import answer_forms, contains_answer, normalize

#: Speech splits prompts may come from (every other split is held out).
TRAIN_SPLITS = ("train", "train_short")


@dataclass(frozen=True)
class PairsConfig:
    """What the model samples to build preference pairs (``--pairs.*``)."""

    tts: int = 200
    """Training sentences the model reads (0 = no TTS pairs)."""
    sqa: int = 200
    """``qa_train`` questions the model answers aloud (0 = no S->S pairs)."""
    samples: int = 4
    """Candidates sampled per prompt; the best and the worst make the pair."""
    chunk: int = 32
    """Prompts per chunk: sampled candidates are saved chunk by chunk, so an interrupted run
    resumes at the first chunk not on disk."""
    judge: str = "ctc"
    """The judge that transcribes candidates (``ctc``, ``pocketsphinx`` or a local HF folder)."""
    seed: int = 0
    """Which training prompts are picked, and the sampling seed of chunk ``k`` (``seed + k``)."""

    def __post_init__(self) -> None:
        if self.tts < 0 or self.sqa < 0 or self.tts + self.sqa == 0:
            raise ValueError(f"pairs: need tts, sqa >= 0 and at least one > 0 ({self})")
        if self.samples < 2 or self.chunk < 1:
            raise ValueError(f"pairs: need samples >= 2 and chunk >= 1 ({self})")


def heldout_texts(run: Path) -> set[str]:
    """Normalised texts no pair may contain: sentences of every held-out speech split, and the
    questions and answer sentences of ``qa_heldout``."""
    R = Run(run)
    out: set[str] = set()
    speech = R.load_data("speech")
    for split, ds in speech.items():
        if split not in TRAIN_SPLITS:
            out.update(normalize(t) for t in ds["text"])
    if R.has_data("sqa"):
        sqa = R.load_data("sqa")
        if "qa_heldout" in sqa:
            held = sqa["qa_heldout"]
            cols = [c for c in ("text", "answer_sentence") if c in held.column_names]
            out.update(normalize(t) for c in cols for t in held[c])
    out.discard("")
    return out


def _pick(n_rows: int, n: int, seed: int) -> list[int]:
    order = np.random.default_rng(seed).permutation(n_rows)
    return sorted(int(i) for i in order[:n])


def tts_items(speech_units: datasets.DatasetDict, heldout: set[str], n: int, seed: int) -> list:
    """Up to ``n`` distinct ``speech/train`` sentences (seeded pick), none held out:
    ``[{"id", "text"}]``."""
    rows = speech_units["train"].select_columns(["id", "text"])
    seen: set[str] = set()
    unique = []
    for id_, text in zip(rows["id"], rows["text"], strict=True):
        key = normalize(text)
        if key and key not in seen and key not in heldout:
            seen.add(key)
            unique.append({"id": str(id_), "text": str(text)})
    return [unique[i] for i in _pick(len(unique), n, seed)]


def sqa_items(sqa_units: datasets.DatasetDict, heldout: set[str], n: int, seed: int) -> list:
    """Up to ``n`` ``qa_train`` questions (seeded pick) whose fact, question and answer sentence
    are not held out and whose answer has words: ``[{"id", "text", "units", "answer",
    "answer_sentence"}]``."""
    train = sqa_units["qa_train"]
    held_facts: set[str] = set()
    if "qa_heldout" in sqa_units and "fact_id" in sqa_units["qa_heldout"].column_names:
        held_facts = set(sqa_units["qa_heldout"]["fact_id"])
    items = []
    for row in train:
        sentence = row.get("answer_sentence") or row["answer"]
        if not normalize(row["answer"]) or not normalize(sentence):
            continue  # nothing a transcript could be checked against
        if normalize(row["text"]) in heldout or normalize(sentence) in heldout:
            continue
        if row.get("fact_id") in held_facts:
            continue
        items.append(
            {
                "id": str(row["id"]),
                "text": str(row["text"]),
                "units": list(row["units"]),
                "answer": str(row["answer"]),
                "answer_sentence": str(sentence),
            }
        )
    return [items[i] for i in _pick(len(items), n, seed)]


def sample_tts(
    lm: SpeechLM, judge: Judge, k: int, items: Sequence[dict], sampling: Sampling, tick=None
) -> list[dict]:
    """Each item read ``k`` times: ``{"task": "tts", "id", "text", "prompt_ids", "candidates":
    [{"ids", "heard", "self_heard", "key"}]}``, ``key = (judge WER, own-ASR WER)``."""
    texts = [it["text"] for it in items for _ in range(k)]
    ids = lm.tts_ids(texts, sampling, on_batch=tick)
    units = [lm.units_of(i) for i in ids]
    heard = judge.transcribe([audible(lm.vocode(u)) for u in units])
    greedy = Sampling(max_new_tokens=sampling.max_new_tokens, batch_size=sampling.batch_size)
    own = lm.asr_units(units, greedy)
    out = []
    for j, it in enumerate(items):
        cands = []
        for c in range(j * k, (j + 1) * k):
            key = [wer([it["text"]], [heard[c]]), wer([it["text"]], [own[c]])]
            cands.append({"ids": ids[c], "heard": heard[c], "self_heard": own[c], "key": key})
        prompt = lm.prompts.tts_prompt(it["text"])
        out.append({"task": "tts", **it, "prompt_ids": prompt, "candidates": cands})
    return out


def sample_sqa(
    lm: SpeechLM, judge: Judge, k: int, items: Sequence[dict], sampling: Sampling, tick=None
) -> list[dict]:
    """Each question answered aloud ``k`` times: ``{"task": "s2s", ...,"candidates": [{"ids",
    "said", "heard", "key"}]}``, ``key = (judge misses the answer, text misses it, judge WER
    against the answer sentence)``: lower is better."""
    boa = lm.layout.special_id(BEGIN_OF_AUDIO)
    prompts = [lm.prompts.s2s_prompt(it["units"]) for it in items for _ in range(k)]
    spoken = lm.speak_ids(prompts, sampling, on_batch=tick)
    heard = judge.transcribe([audible(lm.vocode(lm.units_of(u))) for _, u in spoken])
    out = []
    for j, it in enumerate(items):
        forms = answer_forms(it["answer"], it["text"])
        cands = []
        for c in range(j * k, (j + 1) * k):
            text_ids, unit_ids = spoken[c]
            said = lm.text_of(text_ids)
            key = [
                int(not any(contains_answer(heard[c], f) for f in forms)),
                int(not any(contains_answer(said, f) for f in forms)),
                wer([it["answer_sentence"]], [heard[c]]),
            ]
            ids = [*text_ids, boa, *unit_ids]
            cands.append({"ids": ids, "said": said, "heard": heard[c], "key": key})
        prompt = prompts[j * k]
        rest = {key: v for key, v in it.items() if key != "units"}
        out.append({"task": "s2s", **rest, "prompt_ids": prompt, "candidates": cands})
    return out


def sample_chunks(
    folder: Path,
    task: str,
    items: Sequence[dict],
    chunk: int,
    sample: Callable[[Sequence[dict], Sampling, Callable], list[dict]],
    sampling: Sampling,
    k: int,
) -> list[dict]:
    """``sample`` over ``items`` chunk by chunk, each chunk saved as ``folder/<task>-NNNNN.json``
    (atomically) and read back instead of sampled again when it is there already. Chunk ``c``
    samples with seed ``sampling.seed + c``, so a resumed run samples what an uninterrupted one
    does."""
    out: list[dict] = []
    starts = range(0, len(items), chunk)
    with progress() as bar:
        task_bar = bar.add_task(f"pairs: {task} samples", total=len(items) * k)
        for c, s in enumerate(starts):
            path = folder / f"{task}-{c:05d}.json"
            if path.is_file():
                records = read_json(path)
                bar.advance(task_bar, len(records) * k)
            else:
                seeded = replace(sampling, seed=sampling.seed + c)
                records = sample(items[s : s + chunk], seeded, lambda n: bar.advance(task_bar, n))
                atomic_write_json(path, records)
            out += records
    return out


def best_and_worst(record: dict) -> dict | None:
    """The pair of one prompt's candidates: the lowest key chosen, the highest rejected; None when
    every candidate ranks the same or the two are the same sequence."""
    cands = record["candidates"]
    chosen = min(cands, key=lambda c: c["key"])
    rejected = max(cands, key=lambda c: c["key"])
    if chosen["key"] == rejected["key"] or chosen["ids"] == rejected["ids"]:
        return None
    keys = zip(chosen["key"], rejected["key"], strict=True)
    first = next(i for i, (a, b) in enumerate(keys) if a != b)
    return {
        "task": record["task"],
        "id": record["id"],
        "text": record["text"],
        "prompt_ids": record["prompt_ids"],
        "chosen_ids": chosen["ids"],
        "rejected_ids": rejected["ids"],
        "chosen_key": [float(x) for x in chosen["key"]],
        "rejected_key": [float(x) for x in rejected["key"]],
        "decided_by": int(first),
        "chosen_heard": chosen["heard"],
        "rejected_heard": rejected["heard"],
    }


def build_pairs(records: Sequence[dict]) -> list[dict]:
    """One pair per prompt whose candidates rank differently (:func:`best_and_worst`)."""
    return [p for r in records if (p := best_and_worst(r)) is not None]


def check_no_heldout(pairs: Sequence[dict], heldout: set[str], where: str) -> None:
    """Refuse pairs whose prompt text (sentence or question) is held out (see the module doc)."""
    leaked = sorted({p["text"] for p in pairs if normalize(p["text"]) in heldout})
    if leaked:
        raise ValueError(
            f"{where}: {len(leaked)} preference prompts are held-out texts (e.g. {leaked[0]!r}); "
            "pairs are built from training splits only"
        )


def pair_stats(records: Sequence[dict], pairs: Sequence[dict]) -> dict:
    """Per task: prompts sampled, pairs kept, and the mean key of chosen and rejected candidates
    (``key`` as in :func:`sample_tts` / :func:`sample_sqa`)."""
    out = {}
    for task in sorted({r["task"] for r in records}):
        mine = [p for p in pairs if p["task"] == task]
        all_keys = [c["key"] for r in records if r["task"] == task for c in r["candidates"]]
        out[task] = {
            "prompts": sum(r["task"] == task for r in records),
            "pairs": len(mine),
            "candidate_key_mean": np.mean(all_keys, axis=0).round(4).tolist(),
            "chosen_key_mean": np.mean([p["chosen_key"] for p in mine], axis=0).round(4).tolist()
            if mine
            else None,
            "rejected_key_mean": np.mean([p["rejected_key"] for p in mine], axis=0)
            .round(4)
            .tolist()
            if mine
            else None,
        }
    return out
