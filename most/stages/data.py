"""``most data``: build the embedded-default corpus, or ingest a real one, into ``RUN/data/``.

The layout of the output is documented in :mod:`most.corpora.schema`. The stage is idempotent (a
finished build with the same settings is a no-op), resumable (speech is written in shards under
``RUN/data/.work/<settings-hash>/``; a killed run continues at the first missing shard) and atomic
(each dataset folder is swapped in whole, and ``manifest.json``, written last, marks completion).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import datasets

from most.corpora.build import (
    CorpusConfig,
    SpeechConfig,
    content_hash,
    print_summary,
    real_items,
    settings_hash,
    world_items,
    write_datasets,
)
from most.corpora.instructions import InstructionsConfig, read_instructions
from most.corpora.music_data import MusicConfig, music_dataset, music_hash
from most.corpora.sentence_tasks import sentence_instructions
from most.corpora.speech import require_espeak
from most.corpora.text_corpus import TextCorpusConfig, read_text_corpus
from most.corpora.uniaudio import TasksConfig, task_items
from most.corpora.world import WorldConfig, build_world
from most.corpora.world import text_corpus as world_text
from most.io import atomic_write_json, atomic_write_text, read_json, save_dataset
from most.run import Run, fingerprint


def transcripts(audio_items: dict) -> list[str]:
    """The distinct non-empty transcripts of the ``train`` speech items, in order."""
    out: dict[str, None] = {}
    for item in audio_items["speech"].get("train", []):
        words = item.columns.get("text")
        if isinstance(words, str) and words.strip():
            out.setdefault(" ".join(words.split()))
    return list(out)


def extra_text(text: TextCorpusConfig, world: WorldConfig, audio_items: dict) -> list[str]:
    """Paragraphs beside ``text.path``: the ``train`` transcripts and the world's generated text."""
    out = transcripts(audio_items) if text.transcripts else []
    if text.world_words:
        out += world_text(build_world(world), text.world_words, world.seed + 6)
    return out


def data(
    run: Path,
    corpus: CorpusConfig = CorpusConfig(),
    world: WorldConfig = WorldConfig(),
    speech: SpeechConfig = SpeechConfig(),
    text: TextCorpusConfig = TextCorpusConfig(),
    instructions: InstructionsConfig = InstructionsConfig(),
    music: MusicConfig = MusicConfig(),
    tasks: TasksConfig = TasksConfig(),
    num_jobs: int = 2,
    force: bool = False,
) -> Path:
    """Build ``RUN/data/``: speech, spoken QA, text corpus and instructions (layout: :mod:`most.corpora.schema`).

    Args:
        run: the run folder; output goes to ``RUN/data``.
        corpus: the speech source (the generated world by default, or a real corpus).
        world: the generated world (embedded default only).
        speech: voices and sizes of the embedded default.
        text: a text-LM corpus of your own beside a real speech corpus (``RUN/data/text``).
        instructions: chat data of your own beside a real speech corpus: text instructions
            (``RUN/data/instructions``) and their spoken pairs (``RUN/data/sqa``, ``qa_train``).
        music: captioned synth melodies (``RUN/data/music``) beside either corpus; off by default.
        tasks: parallel and noisy speech splits for UniAudio's tasks (:mod:`most.corpora.uniaudio`;
            embedded default only); off by default.
        num_jobs: worker processes for synthesis and audio decoding.
        force: rebuild even if ``RUN/data`` is complete for these settings.
    """
    R = Run(run)
    out = R.data
    configs = dict(corpus=corpus, world=world, speech=speech) if corpus.kind == "world" else {}
    configs = configs or dict(corpus=corpus)  # a real corpus ignores world and speech
    if text.enabled:
        if corpus.kind == "world":
            raise ValueError(
                "text: the embedded world writes its own text; use text.* with a real corpus"
            )
        configs["text"] = text
    if instructions.enabled:
        if corpus.kind == "world":
            raise ValueError(
                "instructions: the embedded world writes its own instructions; "
                "use it with a real corpus"
            )
        configs["instructions"] = instructions
    if music.enabled:  # only then: a run without music keeps its settings and fingerprint
        configs["music"] = music
    if tasks.enabled:  # likewise: a run without them keeps its fingerprint
        if corpus.kind != "world":
            raise ValueError(
                "tasks: parallel and noisy splits are made for the embedded world only"
            )
        configs["tasks"] = tasks
    settings = settings_hash(*configs.values())
    current = fingerprint(configs, {})
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not force:
        legacy = R.recorded("data") is None  # built before fingerprints: its settings hash
        if (legacy and read_json(manifest_path).get("settings_hash") == settings) or (
            not legacy and R.check("data", current, False)
        ):
            print(f"most data: {out} is up to date ({current['id']}); --force=true rebuilds it")
            return out
    if num_jobs < 1:
        raise ValueError(f"num_jobs must be >= 1, got {num_jobs}")
    start = time.perf_counter()
    datasets.disable_progress_bars()  # our own progress bars show synthesis speed instead
    work = out / ".work" / settings
    if force and work.exists():
        shutil.rmtree(work)
    manifest_path.unlink(missing_ok=True)  # the build is incomplete from here on

    if corpus.kind == "world":
        require_espeak()
        audio_items, text_sets, info = world_items(world, speech)
        if tasks.enabled:
            audio_items["speech"].update(
                task_items(audio_items["speech"], tasks, speech.train_voices)
            )
    else:
        audio_items, text_sets, info = real_items(corpus, work / "scratch"), {}, {}
    text_rejects: list[dict] = []
    if text.enabled:
        text_sets["text"], text_rejects = read_text_corpus(
            text, extra_text(text, world, audio_items)
        )
        info["text_words"] = sum(p.count(" ") + 1 for p in text_sets["text"]["train"]["text"])
    if instructions.enabled:
        require_espeak()
        sentences = [str(t) for t in transcripts(audio_items)]
        extra = sentence_instructions(sentences, instructions.from_transcripts, instructions.seed)
        spoken, text_sets["instructions"], instr_rejects = read_instructions(
            instructions, work / "scratch", extra
        )
        audio_items["sqa"] = {"qa_train": spoken}
        text_rejects += instr_rejects

    manifest: dict = {
        "settings_hash": settings,
        "kind": corpus.kind,
        "seed": world.seed,
        "datasets": {},
    }
    all_files, rejects = write_datasets(
        out, work, audio_items, text_sets, manifest["datasets"], corpus.max_seconds, num_jobs
    )
    rejects += text_rejects
    if not music.enabled:  # a rebuild without music leaves none behind for the units stage
        shutil.rmtree(out / "music", ignore_errors=True)
    else:
        music_set = music_dataset(music)
        save_dataset(music_set, out / "music")
        manifest["datasets"]["music"] = {
            split: {"items": len(ds), "hours": round(sum(ds["duration"]) / 3600, 4)}
            for split, ds in music_set.items()
        }
    atomic_write_text(out / "rejects.jsonl", "".join(json.dumps(r) + "\n" for r in rejects))
    manifest.update(info)
    manifest["rejects"] = len(rejects)
    manifest["content_hash"] = content_hash(all_files, text_sets)
    if music.enabled:
        manifest["content_hash"] = music_hash(music_set, manifest["content_hash"])
    manifest["build_seconds"] = round(time.perf_counter() - start, 1)
    R.record("data", current, content_hash=manifest["content_hash"])
    atomic_write_json(manifest_path, manifest)  # written last: marks the build complete
    shutil.rmtree(out / ".work", ignore_errors=True)  # shards only serve an interrupted build
    print_summary(out, manifest)
    return out
