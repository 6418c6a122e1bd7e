"""Readers for real evaluation sets stored locally (no downloads).

Minimal pairs, ZeroSpeech 2021 layout (sWUGGY, sBLIMP): a folder with ``gold.csv`` and the audio
files it names (``filename`` column, without extension; files may sit in any subfolder). Rows with
the same ``id`` (and ``voice``, where given) form a pair: ``correct == 1`` is the real word /
grammatical sentence, ``correct == 0`` the pseudo-word / ungrammatical one.

Spoken QA (Llama Questions, WebQuestions, TriviaQA spoken versions): a ``.jsonl`` or ``.json`` file
(or a folder holding one) with one record per question. Field names vary between releases, so a
record may name its question ``question``/``Question``/``text``, its audio ``audio``/
``audio_path``/``audio_filepath``/``wav``/``file`` (relative to the file), and its answers
``answers`` (list, WebQ), ``answer`` (str or list, Llama Q) or ``Answer`` ({``Value``,
``Aliases``}, TriviaQA). A question counts as answered when any alias is contained in the reply.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from most.audio import read_audio
from most.text import contains_answer

AUDIO_EXTS = (".wav", ".flac", ".mp3", ".ogg")
QUESTION_KEYS = ("question", "Question", "text")
AUDIO_KEYS = ("audio", "audio_path", "audio_filepath", "wav", "file")


def _audio_index(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTS}


def load_minimal_pairs(folder: str | Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """First ``n`` (good, bad) audio pairs of a ZeroSpeech-style minimal-pair folder."""
    folder = Path(folder)
    gold = folder / "gold.csv"
    if not gold.is_file():
        raise FileNotFoundError(f"{gold}: minimal-pair folder needs gold.csv")
    audio = _audio_index(folder)
    groups: dict[tuple, dict[int, str]] = defaultdict(dict)
    with gold.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                key = (row["id"], row.get("voice", ""))
                groups[key][int(row["correct"])] = row["filename"]
            except (KeyError, ValueError) as e:
                raise ValueError(
                    f"{gold}: needs id, filename and correct (0/1) columns ({e})"
                ) from None
    pairs = []
    for key, items in groups.items():
        if set(items) != {0, 1}:
            continue
        paths = [audio.get(Path(items[c]).stem) for c in (1, 0)]
        if None in paths:
            raise FileNotFoundError(f"{folder}: audio for pair {key} not found ({items})")
        pairs.append((read_audio(paths[0]), read_audio(paths[1])))
        if len(pairs) == n:
            break
    return pairs


def _answers(record: dict) -> list[str]:
    if "answers" in record:
        value = record["answers"]
    elif "Answer" in record and isinstance(record["Answer"], dict):
        value = [record["Answer"].get("Value", ""), *record["Answer"].get("Aliases", [])]
    else:
        value = record.get("answer", [])
    values = [value] if isinstance(value, str) else list(value)
    return [str(v) for v in values if str(v).strip()]


def _first(record: dict, keys: tuple[str, ...]):
    return next((record[k] for k in keys if k in record), None)


def load_qa_set(path: str | Path, n: int) -> list[dict]:
    """Up to ``n`` records ``{"question", "answers": [str], "audio": float32 (n,) 16 kHz}``."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
        if not files:
            raise FileNotFoundError(f"{path}: no .jsonl/.json spoken-QA file")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spoken-QA file not found")
    text = path.read_text()
    try:
        records = (
            [json.loads(line) for line in text.splitlines() if line.strip()]
            if path.suffix == ".jsonl"
            else json.loads(text)
        )
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(records, dict):  # {"data": [...]} wrappers
        records = next((v for v in records.values() if isinstance(v, list)), [])
    out = []
    for i, r in enumerate(records[:n]):
        audio_rel, answers = _first(r, AUDIO_KEYS), _answers(r)
        if isinstance(audio_rel, dict):  # {"path": ...} audio structs
            audio_rel = audio_rel.get("path")
        if not audio_rel or not answers:
            raise ValueError(f"{path}: record {i} needs an audio path and at least one answer")
        out.append(
            {
                "question": str(_first(r, QUESTION_KEYS) or ""),
                "answers": answers,
                "audio": read_audio(path.parent / audio_rel),
            }
        )
    return out


def evaluate_qa_sets(lm, sets: dict[str, Path], n: int, sampling) -> dict:
    """S->T accuracy on each named real spoken-QA set: ``{name: {"accuracy", "n"}}``."""
    out = {}
    for name, path in sets.items():
        records = load_qa_set(path, n)
        replies = lm.s2t_units(lm.encode([r["audio"] for r in records]), sampling)
        hits = [
            any(contains_answer(reply, a) for a in r["answers"])
            for reply, r in zip(replies, records, strict=True)
        ]
        out[name] = {"accuracy": sum(hits) / max(len(hits), 1), "n": len(hits)}
    return out
