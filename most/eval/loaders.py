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
``Aliases``}, TriviaQA). A record that cannot be used (not JSON, no audio, a missing or unreadable
audio file, no answer) is counted and named, never a crash. Scoring (S->T and S->S):
:func:`most.eval.sqa.evaluate_qa_sets`.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from most.audio import AudioError, read_audio

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
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [str(v) for v in values if v is not None and str(v).strip()]


def _first(record: dict, keys: tuple[str, ...]):
    return next((record[k] for k in keys if k in record), None)


def _records(path: Path) -> list[tuple[str, object]]:
    """``(where, record)`` of a .jsonl (``file:line``; a line that is not JSON is ``None``) or a
    .json file (``file[i]``)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".jsonl":
        out: list[tuple[str, object]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append((f"{path}:{n}", json.loads(line)))
                except json.JSONDecodeError:
                    out.append((f"{path}:{n}", None))
        return out
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if isinstance(records, dict):  # {"data": [...]} wrappers
        records = next((v for v in records.values() if isinstance(v, list)), [])
    return [(f"{path}[{i}]", r) for i, r in enumerate(records)]


def _qa_record(where: str, r: object, folder: Path) -> dict:
    """One record as ``{"id", "question", "answers", "audio"}``; raises AudioError if unusable."""
    if not isinstance(r, dict):
        raise AudioError("bad_record", f"{where}: not a JSON object")
    audio_rel, answers = _first(r, AUDIO_KEYS), _answers(r)
    if isinstance(audio_rel, dict):  # {"path": ...} audio structs
        audio_rel = audio_rel.get("path")
    if not isinstance(audio_rel, str) or not audio_rel.strip():
        raise AudioError("missing_file", f"{where}: no audio path")
    if not answers:
        raise AudioError("no_answer", f"{where}: no answer")
    try:
        audio = read_audio(folder / audio_rel)
    except AudioError as e:
        raise AudioError(e.reason, f"{where}: {e}") from None
    question = _first(r, QUESTION_KEYS)
    record_id = r.get("id", where)
    return {
        "id": str(record_id),
        "question": str(question or ""),
        "answers": answers,
        "audio": audio,
    }


def load_qa_set(path: str | Path, n: int) -> tuple[list[dict], list[dict]]:
    """``(records, rejects)``: up to ``n`` usable records ``{"id", "question", "answers": [str],
    "audio": float32 (n,) 16 kHz}`` in file order, and every record skipped before the ``n``-th
    usable one as ``{"file", "reason", "message"}`` (``bad_record``: not JSON or not an object;
    ``missing_file``: no audio path or no file; ``no_answer``; the audio checks' reasons)."""
    path = Path(path)
    if path.is_dir():
        files = sorted([*path.glob("*.jsonl"), *path.glob("*.json")])
        if not files:
            raise FileNotFoundError(f"{path}: no .jsonl/.json spoken-QA file")
        path = files[0]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: spoken-QA file not found")
    records, rejects = [], []
    for where, r in _records(path):
        if len(records) == n:
            break
        try:
            if r is None:
                raise AudioError("bad_record", f"{where}: not JSON")
            records.append(_qa_record(where, r, path.parent))
        except AudioError as e:
            rejects.append({"file": where, "reason": e.reason, "message": str(e)})
    return records, rejects
