"""LibriSpeech layout: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` plus one
``<speaker>-<chapter>.trans.txt`` per chapter (``<utt-id> <TRANSCRIPT>`` lines).

The speaker id is the ``voice``: LibriSpeech's dev/test speakers are disjoint from train's, so the
voice split comes for free.
"""

from __future__ import annotations

from pathlib import Path

from most.corpora.ingest import FileAudio, SourceItem

AUDIO_EXTENSIONS = (".flac", ".wav")


def librispeech_items(root: str | Path, subset: str) -> list[SourceItem]:
    """Items of one subset (e.g. ``train-clean-100``) under ``root`` (the folder holding subsets).

    A transcript line whose audio file is missing still yields an item, and so does an audio file
    no transcript line names: the builder records them as rejects (``missing_file``,
    ``no_transcript``) instead of silently dropping them.
    """
    base = Path(root) / subset
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: LibriSpeech subset folder not found")
    items: list[SourceItem] = []
    for trans in sorted(base.glob("*/*/*.trans.txt")):
        listed: set[str] = set()
        for n, line in enumerate(trans.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            listed.add(utt_id)
            speaker = utt_id.split("-")[0]
            audio = next(
                (
                    trans.parent / f"{utt_id}{ext}"
                    for ext in AUDIO_EXTENSIONS
                    if (trans.parent / f"{utt_id}{ext}").exists()
                ),
                trans.parent / f"{utt_id}.flac",
            )
            items.append(
                SourceItem(
                    id=utt_id,
                    columns={"text": text, "voice": f"spk{speaker}", "task": "asr_tts"},
                    audio={"audio": FileAudio(str(audio))},
                    source=f"{trans}:{n}" if not audio.exists() else str(audio),
                )
            )
        for audio in sorted(p for ext in AUDIO_EXTENSIONS for p in trans.parent.glob(f"*{ext}")):
            if audio.stem not in listed:
                items.append(
                    SourceItem(
                        id=audio.stem,
                        columns={"text": None, "voice": "", "task": "asr_tts"},
                        audio={"audio": FileAudio(str(audio))},
                        source=str(audio),
                    )
                )
    if not items:
        raise FileNotFoundError(
            f"{base}: no *.trans.txt files found (is this a LibriSpeech subset?)"
        )
    return items
