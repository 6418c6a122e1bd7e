"""Kaldi data directories: ``<corpus>/<subset>/`` with ``text``, ``wav.scp`` and ``utt2spk``, and
optionally ``segments`` (``spk2gender``, ``spk2age`` and other files are left alone: the speech
schema has no column for them).

``wav.scp`` maps a recording id to an audio file, absolute or relative to the corpus folder (then
to the data directory). A piped entry (``cmd ... |``) is a shell command, which is never run: its
utterances are rejected naming the entry. With ``segments`` (``utt rec start end``) an utterance is
that stretch of its recording, else the recording id is the utterance id. The speaker (``utt2spk``)
is the ``voice``.

Bad entries become rejects, never a crash: an utterance whose recording is missing from
``wav.scp`` or whose file is missing (``missing_file``), an empty transcript (``empty_text``), a
recording no transcript names (``no_transcript``), and whatever the audio checks refuse.
"""

from __future__ import annotations

from pathlib import Path

from most.corpora.ingest import FileAudio, RefusedAudio, SourceItem

REQUIRED = ("text", "wav.scp", "utt2spk")


def read_table(path: Path) -> dict[str, tuple[str, int]]:
    """``key rest-of-line`` lines -> ``{key: (rest, line number)}``; blank lines are skipped."""
    out: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        parts = line.split(maxsplit=1)  # Kaldi separates the key by spaces or a tab
        if parts:
            out[parts[0]] = (parts[1].strip() if len(parts) > 1 else "", n)
    return out


def _audio(entry: str, where: str, corpus: Path, data: Path) -> FileAudio | RefusedAudio:
    if entry.endswith("|"):
        return RefusedAudio(
            "unreadable",
            f"{where}: piped entry '{entry}' (a shell command; most reads audio files only: "
            "write the audio to files and list them in wav.scp)",
        )
    path = Path(entry)
    if not path.is_absolute():
        path = corpus / entry if (corpus / entry).exists() else data / entry
    return FileAudio(str(path))


def kaldi_items(root: str | Path, subset: str) -> list[SourceItem]:
    """Items of the Kaldi data directory ``root/subset``."""
    corpus, data = Path(root), Path(root) / subset
    missing = [name for name in REQUIRED if not (data / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{data}: not a Kaldi data directory (no {', '.join(missing)})")
    text, scp, utt2spk = (read_table(data / name) for name in REQUIRED)
    segments = read_table(data / "segments") if (data / "segments").is_file() else None

    items: list[SourceItem] = []
    utterances = segments if segments is not None else {r: ("", n) for r, (_, n) in scp.items()}
    for utt in sorted(set(utterances) | set(text)):
        words, n = text.get(utt, (None, 0))
        speaker = utt2spk.get(utt, ("", 0))[0]
        columns: dict[str, object] = {"text": words, "voice": speaker, "task": "asr_tts"}
        where = f"{data / 'text'}:{n}" if n else f"{data}/{utt}"
        rec, start, end = utt, 0.0, None
        if segments is not None:
            if utt not in segments:
                items.append(_refused(utt, columns, where, "missing_file", "not in segments"))
                continue
            rec, start_s, end_s = [*segments[utt][0].split(), "", "", ""][:3]
            try:
                start, end = float(start_s), float(end_s)
            except ValueError:
                items.append(_refused(utt, columns, where, "unreadable", "bad segments line"))
                continue
        if rec not in scp:
            items.append(_refused(utt, columns, where, "missing_file", f"{rec} not in wav.scp"))
            continue
        entry, line = scp[rec]
        audio = _audio(entry, f"{data / 'wav.scp'}:{line}", corpus, data)
        if isinstance(audio, FileAudio) and segments is not None:
            audio = FileAudio(audio.path, start, end)
        source = audio.path if isinstance(audio, FileAudio) else f"{data / 'wav.scp'}:{line}"
        items.append(SourceItem(id=utt, columns=columns, audio={"audio": audio}, source=source))
    if not items:
        raise FileNotFoundError(f"{data}: the Kaldi data directory lists no utterances")
    return items


def _refused(utt: str, columns: dict, where: str, reason: str, why: str) -> SourceItem:
    return SourceItem(
        id=utt,
        columns=columns,
        audio={"audio": RefusedAudio(reason, f"{where}: {utt}: {why}")},
        source=where,
    )
