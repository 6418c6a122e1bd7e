"""The corpus a run starts from: settings, the items of the embedded world or a real corpus, and
writing them as resumable shards and DatasetDicts (the layout is :mod:`most.corpora.schema`)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import pyarrow.parquet as pq

from most.corpora import schema
from most.corpora.commonvoice import commonvoice_items
from most.corpora.hf_disk import hf_disk_items
from most.corpora.ingest import (
    SourceItem,
    SpokenAudio,
    load_split,
    read_rejects,
    shard_files,
    write_split,
)
from most.corpora.kaldi import kaldi_items
from most.corpora.librispeech import librispeech_items
from most.corpora.speech import Voice
from most.corpora.tasks import (
    instructions,
    qa_items,
    short_utterances,
    speech_sentences,
)
from most.corpora.world import WorldConfig, build_world, split_facts, text_corpus
from most.io import save_dataset

KINDS = ("world", "librispeech", "commonvoice", "kaldi", "hf")
CASINGS = ("keep", "lower", "sentence")


@dataclass(frozen=True)
class CorpusConfig:
    """Where the speech comes from.

    Args:
        kind: ``world`` (the embedded default, generated here), ``librispeech``, ``commonvoice``,
            ``kaldi`` (Kaldi data directories) or ``hf`` (a dataset saved with ``save_to_disk``).
        path: root folder of a real corpus (unused for ``world``).
        splits: our split name -> the corpus's subset, e.g. ``{train: train-clean-100}``.
        audio_column: audio column name (``hf`` only).
        text_column: transcript column name (``hf`` only).
        voice_column: speaker column name (``hf`` only; optional).
        max_seconds: clips longer than this are rejected.
        dev_speakers: when ``splits`` names no ``dev``, this many speakers of ``train`` (a seeded
            pick) become the ``dev`` split; their utterances leave ``train``.
        casing: transcripts as the corpus writes them (``keep``), ``lower``, or ``sentence`` (first
            letter upper, the rest lower: how the embedded world and most text corpora write).
    """

    kind: str = "world"
    path: Path | None = None
    splits: dict[str, str] = field(default_factory=dict)
    audio_column: str = "audio"
    text_column: str = "text"
    voice_column: str | None = None
    max_seconds: float = 30.0
    dev_speakers: int = 0
    casing: str = "keep"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"corpus.kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "world":
            if self.path is None:
                raise ValueError(f"corpus.path is required for corpus.kind={self.kind}")
            if not self.splits:
                raise ValueError(f"corpus.splits is required for corpus.kind={self.kind}")
        if self.max_seconds <= 0:
            raise ValueError(f"corpus.max_seconds must be > 0, got {self.max_seconds}")
        if self.casing not in CASINGS:
            raise ValueError(f"corpus.casing must be one of {CASINGS}, got {self.casing!r}")
        if self.dev_speakers < 0:
            raise ValueError(f"corpus.dev_speakers must be >= 0, got {self.dev_speakers}")
        if self.dev_speakers and ("dev" in self.splits or "train" not in self.splits):
            raise ValueError(
                "corpus.dev_speakers needs a train split and no dev split in corpus.splits"
            )


@dataclass(frozen=True)
class SpeechConfig:
    """Speech of the embedded default (espeak-ng voices ``variant:rate:pitch``) and task sizes.

    Args:
        train_voices: voices used for training (and for the seen-voice test split).
        test_voices: voices heard only in the ``test_voices`` split.
        n_train: ASR/TTS training utterances.
        n_short: one- and two-word speech-LM utterances (split ``train_short``) cut from the
            training sentences, no invented names and no words of the sWUGGY-style pairs
            (:func:`most.corpora.tasks.short_utterances`). 0 = none.
        n_dev: dev utterances (unseen sentences, seen voices).
        n_test: test utterances (unseen sentences); spoken by seen voices and again by test voices.
        n_instructions: text instructions for stage 2 (train split; a tenth more for test).
        text_heldout_words: words of held-out text for perplexity.
    """

    train_voices: tuple[str, ...] = (
        "en-us+m3:165:45",
        "en-us+f2:160:60",
        "en-gb+m1:150:40",
        "en-gb+f3:170:65",
        "en-us+m7:180:50",
        "en-gb-x-rp+f4:155:55",
        "en-us+m2:145:35",
        "en-029+f1:160:70",
    )
    test_voices: tuple[str, ...] = ("en-us+f5:170:62", "en-gb-scotland+m4:155:42")
    n_train: int = 6000
    n_short: int = 0
    n_dev: int = 200
    n_test: int = 300
    n_instructions: int = 4000
    text_heldout_words: int = 20_000

    def __post_init__(self) -> None:
        voices = [Voice.parse(v) for v in (*self.train_voices, *self.test_voices)]
        if len({v.name for v in voices}) != len(voices):
            raise ValueError("speech.train_voices and speech.test_voices must be distinct")
        if not self.train_voices or not self.test_voices:
            raise ValueError("speech needs at least one train voice and one test voice")
        for name in ("n_train", "n_dev", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"speech.{name} must be >= 1")
        if self.n_short < 0:
            raise ValueError(f"speech.n_short must be >= 0, got {self.n_short}")


def settings_hash(*configs: object) -> str:
    blob = json.dumps([asdict(c) for c in configs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


# ---- embedded default ------------------------------------------------------------------------
def world_items(world_cfg: WorldConfig, speech: SpeechConfig) -> tuple[dict, dict, dict]:
    """(speech split -> items, sqa split -> items, text datasets) for the generated world."""
    world = build_world(world_cfg)
    qa_train, qa_heldout = split_facts(world)
    seed = world_cfg.seed
    rng = random.Random(seed + 2)
    train_voices = [Voice.parse(v) for v in speech.train_voices]
    test_voices = [Voice.parse(v) for v in speech.test_voices]

    sentences = speech_sentences(
        world,
        qa_train,
        {"train": speech.n_train, "dev": speech.n_dev, "test": speech.n_test},
        seed + 3,
    )

    def spoken(
        split: str, texts: list[str], voices: list[Voice], rng: random.Random = rng
    ) -> list[SourceItem]:
        items = []
        for i, text in enumerate(texts):
            voice = rng.choice(voices)
            items.append(
                SourceItem(
                    id=f"{split}-{i:06d}",
                    columns={"text": text, "voice": voice.name, "task": "asr_tts"},
                    audio={"audio": SpokenAudio(text, voice)},
                )
            )
        return items

    speech_items = {
        "train": spoken("train", sentences["train"], train_voices),
        "dev": spoken("dev", sentences["dev"], train_voices),
        "test": spoken("test", sentences["test"], train_voices),
        "test_voices": spoken("test_voices", sentences["test"], test_voices),
    }
    if speech.n_short:  # own generators: the world's splits stay the same with or without it
        short = short_utterances(world, sentences["train"], speech.n_short, seed + 12)
        speech_items["train_short"] = spoken(
            "train_short", short, train_voices, random.Random(seed + 13)
        )

    def sqa(facts: list, split_seed: int) -> list[SourceItem]:
        items = []
        for qa in qa_items(facts, split_seed):
            qv, av = rng.choice(train_voices), rng.choice(train_voices)
            items.append(
                SourceItem(
                    id=qa.id,
                    columns={
                        "text": qa.question,
                        "voice": qv.name,
                        "task": "sqa",
                        "fact_id": qa.fact_id,
                        "answer": qa.answer,
                        "answer_sentence": qa.answer_sentence,
                        "answer_voice": av.name,
                    },
                    audio={
                        "audio": SpokenAudio(qa.question, qv),
                        # The spoken answer says the sentence the text answer writes, so that
                        # text-then-speech answers are the TTS of what was just written (spoken
                        # short answers after a sentence: S->S judged 0 of 60, text part 36 of 60)
                        "answer_audio": SpokenAudio(qa.answer_sentence, av),
                    },
                )
            )
        return items

    sqa_items = {"qa_train": sqa(qa_train, seed + 4), "qa_heldout": sqa(qa_heldout, seed + 5)}

    corpus = text_corpus(world, world_cfg.corpus_words, seed + 6)
    heldout = text_corpus(world, speech.text_heldout_words, seed + 7)
    instr_train = instructions(world, qa_train, speech.n_instructions, seed + 8)
    instr_test = instructions(world, qa_train, max(4, speech.n_instructions // 10), seed + 9)
    text = {
        "text": datasets.DatasetDict(
            {
                "train": datasets.Dataset.from_dict(
                    {"id": [f"doc-{i:07d}" for i in range(len(corpus))], "text": corpus}
                ),
                "heldout": datasets.Dataset.from_dict(
                    {"id": [f"held-{i:06d}" for i in range(len(heldout))], "text": heldout}
                ),
            }
        ),
        "instructions": datasets.DatasetDict(
            {
                name: datasets.Dataset.from_list(
                    [{"id": f"{name}-{i:06d}", **row} for i, row in enumerate(rows)]
                )
                for name, rows in (("train", instr_train), ("test", instr_test))
            }
        ),
    }
    info = {
        "entities": sum(len(v) for v in world.entities.values()),
        "facts": len(world.facts),
        "qa_train_facts": len(qa_train),
        "qa_heldout_facts": len(qa_heldout),
        "text_words": sum(p.count(" ") + 1 for p in corpus),
    }
    return {"speech": speech_items, "sqa": sqa_items}, text, info


# ---- real corpora ------------------------------------------------------------------------------
def recase(text: object, casing: str) -> object:
    """``text`` in ``casing`` (see :class:`CorpusConfig`); anything not a string is left alone."""
    if not isinstance(text, str) or casing == "keep":
        return text
    text = text.lower()
    return text[:1].upper() + text[1:] if casing == "sentence" else text


def split_dev(items: dict[str, list[SourceItem]], n_speakers: int, seed: int = 0) -> None:
    """Move the utterances of ``n_speakers`` seeded-picked ``train`` speakers to ``dev``."""
    speakers = sorted({str(it.columns.get("voice", "")) for it in items["train"]})
    if n_speakers >= len(speakers):
        raise ValueError(
            f"corpus.dev_speakers={n_speakers}: train has only {len(speakers)} speakers"
        )
    dev = set(random.Random(seed).sample(speakers, n_speakers))
    items["dev"] = [it for it in items["train"] if it.columns.get("voice") in dev]
    items["train"] = [it for it in items["train"] if it.columns.get("voice") not in dev]


def real_items(corpus: CorpusConfig, scratch: Path) -> dict:
    """``{"speech": split -> items}`` of a real corpus, recased and with its dev speakers split off."""
    items = {}
    for split, subset in corpus.splits.items():
        if corpus.kind == "librispeech":
            items[split] = librispeech_items(corpus.path, subset)
        elif corpus.kind == "commonvoice":
            items[split] = commonvoice_items(corpus.path, subset)
        elif corpus.kind == "kaldi":
            items[split] = kaldi_items(corpus.path, subset)
        else:
            items[split] = hf_disk_items(
                corpus.path,
                subset,
                scratch,
                corpus.audio_column,
                corpus.text_column,
                corpus.voice_column,
            )
        for it in items[split]:
            it.columns["text"] = recase(it.columns.get("text"), corpus.casing)
    if corpus.dev_speakers:
        split_dev(items, corpus.dev_speakers)
    return {"speech": items}


def content_hash(files: list[str], text_sets: dict[str, datasets.DatasetDict]) -> str:
    """Hash of every row's columns (audio: its stored bytes), independent of Parquet details."""
    h = hashlib.sha256()
    for f in files:
        table = pq.read_table(f)
        for name in table.column_names:
            col = table[name].combine_chunks()
            if schema.is_audio_column(name):
                for data in col.field("bytes").to_pylist():
                    h.update(len(data).to_bytes(8, "little") + data)
            else:
                h.update(json.dumps(col.to_pylist()).encode())
    for name in sorted(text_sets):
        for split in sorted(text_sets[name]):
            h.update(json.dumps(text_sets[name][split].to_dict(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def write_datasets(
    out: Path,
    work: Path,
    audio_items: dict,
    text_sets: dict[str, datasets.DatasetDict],
    manifest_datasets: dict,
    max_seconds: float,
    num_jobs: int,
) -> tuple[list[str], list[dict]]:
    """Write every audio set (resumable shards under ``work``, then one DatasetDict under ``out``)
    and every text set; fill ``manifest_datasets``; return the shard files and the rejects."""
    features = {"speech": schema.SPEECH_FEATURES, "sqa": schema.SQA_FEATURES}
    all_files: list[str] = []
    rejects: list[dict] = []
    for name, splits in audio_items.items():
        parts = {}
        for split, items in splits.items():
            shard_dir = work / name / split
            stats = write_split(
                items,
                shard_dir,
                features[name],
                num_jobs=num_jobs,
                max_seconds=max_seconds,
                label=f"{name}/{split}",
            )
            parts[split] = load_split(shard_dir, features[name], work / "cache")
            all_files += shard_files(shard_dir)
            rejects += [{"dataset": name, "split": split, **r} for r in read_rejects(shard_dir)]
            manifest_datasets.setdefault(name, {})[split] = {
                "items": stats.items,
                "hours": round(stats.seconds / 3600, 4),
                "voices": sorted(set(parts[split]["voice"])),
                "rejects": dict(stats.rejects),
            }
        save_dataset(datasets.DatasetDict(parts), out / name)
    for name, dsd in text_sets.items():
        save_dataset(dsd, out / name)
        manifest_datasets[name] = {split: {"items": len(ds)} for split, ds in dsd.items()}

    return all_files, rejects


def print_summary(out: Path, manifest: dict) -> None:
    print(f"most data: wrote {out} in {manifest['build_seconds']:.0f}s")
    for name, splits in manifest["datasets"].items():
        for split, s in splits.items():
            hours = f"  {s['hours']:.2f} h" if "hours" in s else ""
            rej = f"  rejected {sum(s['rejects'].values())}" if s.get("rejects") else ""
            print(f"  {name}/{split}: {s['items']} items{hours}{rej}")
    if "facts" in manifest:
        print(
            f"  text corpus: {manifest['text_words']:,} words; facts {manifest['facts']} "
            f"({manifest['qa_heldout_facts']} held out); entities {manifest['entities']}"
        )
    elif "text_words" in manifest:
        print(f"  text corpus: {manifest['text_words']:,} words")
