"""Unit shards: encode one slice ("part") of a dataset split, and merge finished parts.

A split is cut into parts of ``part_rows`` rows. Each part is encoded independently and written
atomically to ``RUN/units/<hash>/.parts/<dataset>/<split>/rows<N>-<part>/`` together with its
rejects and stats. This is what makes the stage resumable (finished parts are skipped), parallel
(``--num-proc`` workers take parts from a queue) and distributable (``--shard i/n`` takes every
n-th part; any later run merges all parts without re-encoding anything).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import datasets
import torch

from most.audio import SAMPLE_RATE, AudioError
from most.corpora.schema import decode_audio, is_audio_column
from most.io import atomic_dir, read_json
from most.units.base import UnitTokenizer, to_waveform
from most.units.kinds import load_tokenizer

PARTS = ".parts"
#: Utterances encoded together; bounds padding waste in the batched STFT.
BATCH = 16


#: Inside a part folder: its encoded rows as a saved ``datasets.Dataset`` (not the run's data).
PART_TABLE = "data"


def units_column(audio_column: str) -> str:
    """``audio`` -> ``units``, ``answer_audio`` -> ``answer_units``."""
    return audio_column[: -len("audio")] + "units"


@dataclass(frozen=True)
class Job:
    """Rows ``[start, stop)`` of one split, written to ``out``."""

    data: Path  # the DatasetDict folder in RUN/data
    dataset: str
    split: str
    start: int
    stop: int
    out: Path


@lru_cache(maxsize=8)
def _split(data: Path, split: str) -> datasets.Dataset:
    return datasets.load_from_disk(str(data))[split]


_worker_tokenizer: UnitTokenizer | None = None


def init_worker(tokenizer_dir: Path) -> None:
    """Pool initializer: one tokenizer per process, one thread each (processes give the scaling)."""
    global _worker_tokenizer
    torch.set_num_threads(1)
    datasets.disable_progress_bars()  # a spawned process starts with them on: they broke the stage's bar
    _worker_tokenizer = load_tokenizer(tokenizer_dir)


def run_in_worker(job: Job) -> dict:
    assert _worker_tokenizer is not None, "init_worker was not called"
    return encode_part(job, _worker_tokenizer)


def encode_part(job: Job, tok: UnitTokenizer) -> dict:
    """Encode every audio column of one part; returns its stats (also saved beside it).

    Rows whose audio fails :func:`most.audio.check_audio` or the encoder are left out of the
    part and listed in its ``rejects.json``; one bad file never stops the run.
    """
    t0 = time.perf_counter()
    ds = _split(job.data, job.split)
    audio_cols = [c for c in ds.column_names if is_audio_column(c)]
    rows = ds.select(range(job.start, job.stop))
    audio = rows.select_columns(audio_cols).with_format("numpy")
    ids = rows["id"] if "id" in rows.column_names else [str(i) for i in range(job.start, job.stop)]

    rejects: list[dict] = []
    wavs: dict[str, list[torch.Tensor | None]] = {c: [] for c in audio_cols}
    for i, row in enumerate(audio):
        for col in audio_cols:
            try:
                wavs[col].append(to_waveform(decode_audio(row[col]), SAMPLE_RATE))
            except AudioError as e:
                wavs[col].append(None)
                rejects.append(_reject(job, ids[i], col, e.reason, str(e)))
            except (KeyError, TypeError, ValueError) as e:
                wavs[col].append(None)
                rejects.append(_reject(job, ids[i], col, "unreadable", str(e)))

    units: dict[str, list[torch.Tensor | None]] = {}
    for col in audio_cols:
        units[col] = _encode_all(tok, wavs[col], job, ids, col, rejects)

    keep = [i for i in range(len(ids)) if all(units[c][i] is not None for c in audio_cols)]
    table = rows.remove_columns(audio_cols).select(keep).to_dict()
    features = rows.remove_columns(audio_cols).features.copy()
    seconds = n_units = 0.0
    for col in audio_cols:
        name = units_column(col)
        table[name] = [units[col][i].to(torch.int32).tolist() for i in keep]
        features[name] = datasets.Sequence(datasets.Value("int32"))
        seconds += sum(wavs[col][i].numel() for i in keep) / tok.sample_rate
        n_units += sum(len(u) for u in table[name])

    stats = {
        "rows": len(keep),
        "seconds": seconds,
        "units": int(n_units),
        "rejects": len({r["id"] for r in rejects}),
        "encode_s": time.perf_counter() - t0,
    }
    with atomic_dir(job.out) as tmp:
        datasets.Dataset.from_dict(table, features=features).save_to_disk(str(tmp / PART_TABLE))
        (tmp / "rejects.json").write_text(json.dumps(rejects))
        (tmp / "stats.json").write_text(json.dumps(stats))
    return stats


def _encode_all(
    tok: UnitTokenizer,
    wavs: list[torch.Tensor | None],
    job: Job,
    ids: list[str],
    col: str,
    rejects: list[dict],
) -> list[torch.Tensor | None]:
    """Batched encode of the valid waveforms; an item that breaks the encoder is rejected alone."""
    out: list[torch.Tensor | None] = [None] * len(wavs)
    valid = [i for i, w in enumerate(wavs) if w is not None]
    for b in range(0, len(valid), BATCH):
        idx = valid[b : b + BATCH]
        try:
            encoded = tok.encode_batch([wavs[i] for i in idx], tok.sample_rate)
        except Exception:  # find the culprit item by item below
            encoded = None
        for j, i in enumerate(idx):
            if encoded is not None:
                out[i] = encoded[j]
                continue
            try:
                out[i] = tok.encode(wavs[i], tok.sample_rate)
            except Exception as e:  # any encoder failure is a reject, never a crash
                rejects.append(
                    _reject(job, ids[i], col, "encode_failed", f"{type(e).__name__}: {e}")
                )
        # Empty unit sequences cannot be trained on; they come from clips shorter than a frame, or
        # (ctc_phones) audio in which the recogniser hears no phoneme.
        for i in idx:
            if out[i] is not None and out[i].numel() == 0:
                out[i] = None
                rejects.append(_reject(job, ids[i], col, "too_short", "no units"))
    return out


def _reject(job: Job, item_id: str, column: str, reason: str, message: str) -> dict:
    return {
        "file": f"{job.dataset}/{job.split}",
        "id": str(item_id),
        "column": column,
        "reason": reason,
        "message": message,
    }


def merge_split(parts: list[Path]) -> tuple[datasets.Dataset, list[dict], dict]:
    """Concatenate finished parts (in order) -> dataset, rejects, summed stats."""
    ds = datasets.concatenate_datasets(
        [datasets.load_from_disk(str(p / PART_TABLE)) for p in parts]
    )
    rejects = [r for p in parts for r in read_json(p / "rejects.json")]
    stats = {"rows": 0, "seconds": 0.0, "units": 0, "rejects": 0, "encode_s": 0.0}
    for p in parts:
        for key, value in read_json(p / "stats.json").items():
            stats[key] += value
    return ds, rejects, stats
