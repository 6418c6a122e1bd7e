"""Text for the text LM beside a real speech corpus: ``RUN/data/text`` from your own files, the
speech corpus' training transcripts and the embedded world's generated text, in any combination.

Accepted: a ``.txt`` file (one paragraph per non-empty line), a ``.jsonl`` file (one object per
line with the paragraph under ``column``), a dataset folder written by ``save_to_disk`` (its
``column``; every split of a ``DatasetDict``), or a folder of ``.txt`` / ``.jsonl`` files. A line
that is not JSON, an object without ``column`` or whose value is not text, and an empty paragraph
are rejects (named by file and line in ``RUN/data/rejects.jsonl``), never a crash.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import datasets

SUFFIXES = (".txt", ".jsonl")


@dataclass(frozen=True)
class TextCorpusConfig:
    """The ``text`` section of ``most data``: a text-LM corpus for a real speech corpus."""

    path: Path | None = None
    """A .txt or .jsonl file, a ``save_to_disk`` dataset folder, or a folder of .txt/.jsonl files.
    None: no text corpus (the embedded world makes its own)."""
    column: str = "text"
    """Field holding the paragraph (.jsonl and datasets)."""
    heldout: int = 200
    """Paragraphs kept out of training for the perplexity check (at most a tenth of them)."""
    seed: int = 0
    """Seed of the shuffle that picks the held-out paragraphs."""
    transcripts: bool = False
    """Add the speech corpus' ``train`` transcripts, one paragraph each (never dev or test)."""
    world_words: int = 0
    """Add this many words of the embedded world's generated text (0 = none)."""

    def __post_init__(self) -> None:
        if self.heldout < 0:
            raise ValueError(f"text.heldout must be >= 0, got {self.heldout}")
        if self.world_words < 0:
            raise ValueError(f"text.world_words must be >= 0, got {self.world_words}")

    @property
    def enabled(self) -> bool:
        return self.path is not None or self.transcripts or self.world_words > 0


def _reject(where: str, reason: str, message: str) -> dict:
    return {"dataset": "text", "file": where, "id": where, "reason": reason, "message": message}


def _from_file(path: Path, column: str) -> tuple[list[str], list[dict]]:
    paragraphs, rejects = [], []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        where = f"{path}:{n}"
        if not line.strip():
            continue  # blank lines separate paragraphs
        if path.suffix == ".txt":
            paragraphs.append(line.strip())
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            rejects.append(_reject(where, "bad_text", f"{where}: not JSON ({e.msg})"))
            continue
        value = row.get(column) if isinstance(row, dict) else None
        if not isinstance(value, str):
            got = "missing" if value is None else type(value).__name__
            rejects.append(_reject(where, "bad_text", f"{where}: {column!r} is {got}, not text"))
        elif not value.strip():
            rejects.append(_reject(where, "empty_text", f"{where}: {column!r} is empty"))
        else:
            paragraphs.append(value.strip())
    return paragraphs, rejects


def _from_dataset(path: Path, column: str) -> tuple[list[str], list[dict]]:
    loaded = datasets.load_from_disk(str(path))
    parts = loaded.values() if isinstance(loaded, datasets.DatasetDict) else [loaded]
    paragraphs, rejects = [], []
    for part in parts:
        if column not in part.column_names:
            raise ValueError(f"{path}: no column {column!r} (columns: {part.column_names})")
        for i, value in enumerate(part[column]):
            if isinstance(value, str) and value.strip():
                paragraphs.append(value.strip())
            else:
                where = f"{path}[{i}]"
                rejects.append(_reject(where, "empty_text", f"{where}: {column!r} has no text"))
    return paragraphs, rejects


def read_files(cfg: TextCorpusConfig) -> tuple[list[str], list[dict]]:
    """``(paragraphs, rejects)`` of ``cfg.path``."""
    path = Path(cfg.path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: text corpus not found")
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise ValueError(f"{path}: a text corpus file is .txt or .jsonl")
        paragraphs, rejects = _from_file(path, cfg.column)
    elif (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        paragraphs, rejects = _from_dataset(path, cfg.column)
    else:
        paragraphs, rejects = [], []
        for f in sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES):
            got, bad = _from_file(f, cfg.column)
            paragraphs += got
            rejects += bad
    if not paragraphs:
        raise ValueError(f"{path}: no paragraph of text found")
    return paragraphs, rejects


def read_text_corpus(
    cfg: TextCorpusConfig, extra: list[str] = ()
) -> tuple[datasets.DatasetDict, list[dict]]:
    """``(DatasetDict(train, heldout) with columns id, text; rejects)`` of ``cfg.path`` (if set)
    followed by the ``extra`` paragraphs."""
    paragraphs, rejects = read_files(cfg) if cfg.path is not None else ([], [])
    paragraphs = [*paragraphs, *extra]
    if not paragraphs:
        raise ValueError(
            "text: no paragraph of text (set text.path, text.transcripts or text.world_words)"
        )
    order = list(range(len(paragraphs)))
    random.Random(cfg.seed).shuffle(order)
    n_heldout = min(cfg.heldout, len(paragraphs) // 10)
    heldout, train = sorted(order[:n_heldout]), sorted(order[n_heldout:])

    def split(rows: list[int]) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"id": [f"text-{i:08d}" for i in rows], "text": [paragraphs[i] for i in rows]}
        )

    return datasets.DatasetDict(train=split(train), heldout=split(heldout)), rejects
