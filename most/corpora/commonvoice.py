"""Common Voice release layout: ``<lang>/{train,dev,test}.tsv`` plus ``<lang>/clips/*.mp3``.

The TSVs have a header with at least ``client_id``, ``path`` and ``sentence``; ``client_id`` (an
anonymous speaker hash) becomes the ``voice``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from most.corpora.ingest import FileAudio, SourceItem

REQUIRED = ("client_id", "path", "sentence")


def commonvoice_items(root: str | Path, subset: str) -> list[SourceItem]:
    """Items listed in ``root/<subset>.tsv`` (e.g. ``train``, ``dev``, ``test``, ``validated``)."""
    root = Path(root)
    tsv = root / f"{subset}.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: Common Voice TSV not found")
    with tsv.open(newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{tsv}: missing columns {missing} (header: {reader.fieldnames})")
        items = []
        for n, row in enumerate(reader, 2):
            clip = root / "clips" / (row["path"] or "")
            items.append(
                SourceItem(
                    id=Path(row["path"] or f"line{n}").stem,
                    columns={
                        "text": row["sentence"] or "",
                        "voice": f"cv{(row['client_id'] or '')[:12]}",
                        "task": "asr_tts",
                    },
                    audio={"audio": FileAudio(str(clip))},
                    source=str(clip) if row["path"] else f"{tsv}:{n}",
                )
            )
    return items
