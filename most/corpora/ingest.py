"""Turn source items (files on disk or text to speak) into validated, resumable Parquet shards.

Every corpus, generated or real, goes through :func:`write_split`: a process pool loads or
synthesises each item's audio, :mod:`most.audio` validates it (downmix, resample, reject broken
audio), rejected items are recorded with their reason, and rows are written in shards. A shard is
written under a temporary name and renamed, so a killed run resumes at the first missing shard.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import soundfile as sf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from most.audio import SAMPLE_RATE, AudioError, read_audio
from most.corpora.schema import audio_value
from most.corpora.speech import Voice, synthesize
from most.noise import add_noise


@dataclass(frozen=True)
class FileAudio:
    """An audio file, or the ``[start, end)`` seconds of one (a Kaldi ``segments`` entry)."""

    path: str
    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class RefusedAudio:
    """Audio known to be unusable before anything is read (e.g. a piped Kaldi ``wav.scp`` entry):
    the item is rejected with this reason and message."""

    reason: str
    message: str


@dataclass(frozen=True)
class SpokenAudio:
    """``text`` said by ``voice``. ``key`` seeds the voice's jitter (default: the item id and
    column), so a copy under another id can say it exactly alike; ``snr_db``, when set, adds
    noise at that SNR (:func:`most.noise.add_noise`, drawn from ``noise_seed``)."""

    text: str
    voice: Voice
    key: str | None = None
    snr_db: float | None = None
    noise_seed: int = 0


@dataclass(frozen=True)
class SourceItem:
    """One row to be: string columns plus audio columns still to be loaded or synthesised."""

    id: str
    columns: dict[str, object]  # validated by load_item: "text" must be a non-empty string
    audio: dict[str, FileAudio | SpokenAudio | RefusedAudio]
    source: str = ""  # file named in rejects (the audio path, or the transcript file)


@dataclass
class SplitStats:
    items: int = 0
    seconds: float = 0.0
    rejects: Counter = field(default_factory=Counter)


def check_text(text: object, where: str) -> str:
    """A transcript must be a non-empty printable string; returns it stripped. ``None`` means the
    corpus has audio without a transcript (rejected as ``no_transcript``)."""
    if text is None:
        raise AudioError("no_transcript", f"{where}: audio without a transcript")
    if not isinstance(text, str):
        raise AudioError("bad_text", f"{where}: transcript is {type(text).__name__}, not text")
    text = " ".join(text.split())
    if not text:
        raise AudioError("empty_text", f"{where}: empty transcript")
    bad = sum(1 for ch in text if unicodedata.category(ch)[0] == "C")
    if bad:
        raise AudioError("bad_text", f"{where}: transcript has {bad} control/binary characters")
    return text


STORED_FORM = ("FLAC", "PCM_16", 1, SAMPLE_RATE)
"""libsndfile's (format, subtype, channels, rate) of audio as stored: see :func:`stored_as_is`."""


def stored_as_is(spec: FileAudio) -> bytes | None:
    """The file's own bytes when they are already in the stored form (a whole 16-bit mono FLAC
    at ``SAMPLE_RATE``, see :mod:`most.corpora.schema`), else ``None`` (the audio is encoded)."""
    if spec.start or spec.end is not None:
        return None
    info = sf.info(spec.path)
    if (info.format, info.subtype, info.channels, info.samplerate) != STORED_FORM:
        return None
    return Path(spec.path).read_bytes()


def load_item(item: SourceItem, max_seconds: float | None) -> tuple[dict | None, dict | None]:
    """Worker: ``(row, None)`` on success, ``(None, reject)`` when the item must be skipped."""
    try:
        row: dict = {"id": item.id}
        for name, value in item.columns.items():
            row[name] = (
                check_text(value, f"{item.source or item.id}:{name}") if name == "text" else value
            )
        for name, spec in item.audio.items():
            if isinstance(spec, RefusedAudio):
                raise AudioError(spec.reason, spec.message)
            if isinstance(spec, FileAudio):
                wav = read_audio(spec.path, max_seconds=max_seconds, start=spec.start, end=spec.end)
                original = stored_as_is(spec)
            else:
                key = spec.key or f"{item.id}/{name}"
                wav = synthesize(spec.text, spec.voice, key, max_seconds=max_seconds)
                if spec.snr_db is not None:
                    wav = add_noise(wav, spec.snr_db, np.random.default_rng(spec.noise_seed))
                original = None
            row[name] = audio_value(wav if original is None else original)
            if name == "audio":
                row["duration"] = float(wav.shape[0] / SAMPLE_RATE)
        return row, None
    except AudioError as e:
        return None, {"file": item.source, "id": item.id, "reason": e.reason, "message": str(e)}


def rows_to_table(rows: list[dict], features: datasets.Features) -> pa.Table:
    schema = features.arrow_schema
    return pa.table(
        {name: pa.array([r[name] for r in rows], schema.field(name).type) for name in features}
    )


def finished(path: Path, rejects_path: Path, features: datasets.Features) -> bool:
    """Whether a shard and its rejects were written, in the current column types (a shard left in
    another storage format by an older build is written again)."""
    if not (path.exists() and rejects_path.exists()):
        return False
    return pq.read_schema(path).remove_metadata().equals(features.arrow_schema.remove_metadata())


def _shards(
    items: Sequence[SourceItem], shard_size: int
) -> Iterator[tuple[int, Sequence[SourceItem]]]:
    for i in range(0, len(items), shard_size):
        yield i // shard_size, items[i : i + shard_size]


def write_split(
    items: Sequence[SourceItem],
    out: Path,
    features: datasets.Features,
    *,
    num_jobs: int = 1,
    max_seconds: float | None = None,
    shard_size: int = 500,
    label: str = "",
) -> SplitStats:
    """Write ``items`` to ``out/shard-XXXXX.parquet`` (+ ``.rejects.jsonl``); skip finished shards."""
    out.mkdir(parents=True, exist_ok=True)
    stats = SplitStats()
    start = time.perf_counter()
    ctx = mp.get_context("fork")
    columns = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[xrt]}"),
        TimeRemainingColumn(),
    )
    with columns as progress, ctx.Pool(num_jobs) as pool:
        task = progress.add_task(label or out.name, total=len(items), xrt="")
        for index, shard in _shards(items, shard_size):
            path = out / f"shard-{index:05d}.parquet"
            rejects_path = path.with_suffix(".rejects.jsonl")
            if finished(path, rejects_path, features):  # by an earlier run
                meta = pq.read_metadata(path)
                stats.items += meta.num_rows
                stats.seconds += float(
                    pq.read_table(path, columns=["duration"])["duration"].to_numpy().sum()
                )
                for line in rejects_path.read_text().splitlines():
                    stats.rejects[json.loads(line)["reason"]] += 1
                progress.advance(task, len(shard))
                continue
            rows, rejects = [], []
            for row, reject in pool.imap(
                _load_star, ((it, max_seconds) for it in shard), chunksize=8
            ):
                if row is None:
                    rejects.append(reject)
                    stats.rejects[reject["reason"]] += 1
                else:
                    rows.append(row)
                    stats.seconds += row["duration"]
                progress.advance(task)
            stats.items += len(rows)
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(rows_to_table(rows, features), tmp)
            rejects_tmp = rejects_path.with_name(f".{rejects_path.name}.tmp")
            rejects_tmp.write_text("".join(json.dumps(r) + "\n" for r in rejects))
            tmp.replace(path)  # the parquet file first: a shard counts as done only with both
            rejects_tmp.replace(rejects_path)
            elapsed = time.perf_counter() - start
            progress.update(task, xrt=f"{stats.seconds / max(elapsed, 1e-9):.0f}x real time")
    return stats


def _load_star(args: tuple[SourceItem, float | None]) -> tuple[dict | None, dict | None]:
    return load_item(*args)


def shard_files(out: Path) -> list[str]:
    return sorted(str(p) for p in out.glob("shard-*.parquet"))


def read_rejects(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for p in sorted(out.glob("shard-*.rejects.jsonl"))
        for line in p.read_text().splitlines()
    ]


def load_split(out: Path, features: datasets.Features, cache_dir: Path) -> datasets.Dataset:
    """The shards of one split as a ``datasets.Dataset`` (an empty one if every item was rejected)."""
    files = [f for f in shard_files(out) if pq.read_metadata(f).num_rows > 0]
    if not files:
        return datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    return datasets.Dataset.from_parquet(files, features=features, cache_dir=str(cache_dir))
