"""Any HF dataset saved with ``save_to_disk`` that has an audio column and a text column.

Audio may be a ``{"array", "sampling_rate"}`` struct (decoded), a ``{"path", "bytes"}`` struct
(``datasets.Audio(decode=False)``) or a plain path string. Arrays are written to a scratch folder as
wav so every source takes the same validated path through :mod:`most.corpora.ingest`.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from most.corpora.ingest import FileAudio, SourceItem


def _materialise(value: object, scratch: Path, key: str) -> str:
    """Return a readable path for one audio cell, writing bytes/arrays to ``scratch``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("bytes"):
            path = scratch / f"{key}.bin"
            path.write_bytes(value["bytes"])
            return str(path)
        if value.get("array") is not None:
            path = scratch / f"{key}.wav"
            wav = np.asarray(value["array"], dtype=np.float32)
            try:
                sf.write(str(path), wav, int(value["sampling_rate"]), subtype="FLOAT")
            except (ValueError, TypeError, RuntimeError) as e:
                path.write_bytes(f"unwritable audio: {e}".encode())
            return str(path)
        if value.get("path"):
            return str(value["path"])
    return str(scratch / f"{key}.missing")


def hf_disk_items(
    path: str | Path,
    split: str,
    scratch: Path,
    audio_column: str = "audio",
    text_column: str = "text",
    voice_column: str | None = None,
) -> list[SourceItem]:
    """Items of ``split`` of the dataset saved at ``path``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: dataset folder not found")
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{path}: not a dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path}: no split {split!r} (has {list(ds)})")
        ds = ds[split]
    for col in (audio_column, text_column):
        if col not in ds.column_names:
            raise ValueError(f"{path}: no column {col!r} (has {ds.column_names})")
    if isinstance(ds.features[audio_column], datasets.Audio):
        ds = ds.cast_column(audio_column, datasets.Audio(decode=False))
    scratch = scratch / split
    scratch.mkdir(parents=True, exist_ok=True)
    items = []
    for i, row in enumerate(ds):
        key = f"{split}-{i:08d}"
        audio_path = _materialise(row[audio_column], scratch, key)
        voice = str(row[voice_column]) if voice_column else "unknown"
        text = row[text_column]
        items.append(
            SourceItem(
                id=str(row.get("id", key)),
                columns={"text": text, "voice": voice, "task": "asr_tts"},
                audio={"audio": FileAudio(audio_path)},
                source=f"{path}[{split}][{i}]",
            )
        )
    return items
