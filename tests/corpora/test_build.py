from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import numpy as np
import pytest

from most.audio import decode_audio
from most.corpora.world import RELATIONS, build_world, split_facts
from most.stages.data import SpeechConfig, data
from most.testing import TINY_SPEECH, TINY_WORLD, build_tiny


def test_layout_and_schema(tiny_run):
    out = tiny_run / "data"
    speech = datasets.load_from_disk(str(out / "speech"))
    assert set(speech) == {"train", "train_short", "dev", "test", "test_voices"}
    assert len(speech["train"]) == TINY_SPEECH.n_train
    assert len(speech["train_short"]) == TINY_SPEECH.n_short
    assert set(speech["train_short"]["voice"]) <= set(TINY_SPEECH.train_voices)
    assert all(1 <= len(t.split()) <= 2 for t in speech["train_short"]["text"])
    row = speech["train"][0]
    assert {"id", "audio", "text", "voice", "task", "duration"} <= set(row)
    assert row["audio"]["sampling_rate"] == 16000
    wav = decode_audio(row["audio"])
    assert wav.ndim == 1 and np.isfinite(wav).all() and np.abs(wav).max() > 0.01
    assert row["duration"] == pytest.approx(len(wav) / 16000, rel=1e-4)
    sqa = datasets.load_from_disk(str(out / "sqa"))
    assert set(sqa) == {"qa_train", "qa_heldout"}
    assert {"answer", "answer_audio", "fact_id"} <= set(sqa["qa_train"].column_names)
    text = datasets.load_from_disk(str(out / "text"))
    assert sum(len(t.split()) for t in text["train"]["text"]) >= TINY_WORLD.corpus_words
    instr = datasets.load_from_disk(str(out / "instructions"))
    assert set(instr["train"]["task"]) == {"repeat", "answer", "continue", "spell"}


def test_manifest_counts_and_voices(tiny_run):
    m = json.loads((tiny_run / "data" / "manifest.json").read_text())
    speech = m["datasets"]["speech"]
    assert speech["train"]["items"] == TINY_SPEECH.n_train and speech["train"]["hours"] > 0
    assert set(speech["test_voices"]["voices"]) <= set(TINY_SPEECH.test_voices)
    assert set(speech["train"]["voices"]).isdisjoint(TINY_SPEECH.test_voices)
    assert len(TINY_SPEECH.train_voices) + len(TINY_SPEECH.test_voices) >= 8
    assert re.fullmatch(r"[0-9a-f]{16}", m["content_hash"])
    assert m["seed"] == TINY_WORLD.seed and m["rejects"] == 0


def test_test_sentences_unseen_and_heldout_facts_never_spoken(tiny_run):
    speech = datasets.load_from_disk(str(tiny_run / "data" / "speech"))
    train = set(speech["train"]["text"])
    assert train.isdisjoint(speech["test"]["text"]) and train.isdisjoint(speech["dev"]["text"])
    assert set(speech["test"]["text"]) == set(speech["test_voices"]["text"])
    _, heldout = split_facts(build_world(TINY_WORLD))
    spoken = " ".join(train | set(speech["test"]["text"]))
    for fact in heldout:
        for template in RELATIONS[fact.relation].statements:
            sentence = template.format(s=fact.subject, o=fact.answer)
            assert sentence[0].upper() + sentence[1:] not in spoken
    sqa = datasets.load_from_disk(str(tiny_run / "data" / "sqa"))
    assert {f.id for f in heldout} == set(sqa["qa_heldout"]["fact_id"])
    assert set(sqa["qa_train"]["fact_id"]).isdisjoint(sqa["qa_heldout"]["fact_id"])


def test_short_utterances_leave_out_names_and_the_pair_words():
    from most.corpora.tasks import short_utterances
    from most.corpora.world import CLASS_WORDS, invented_names

    world = build_world(TINY_WORLD)
    name = sorted(invented_names(world))[0]
    sentences = [
        f"{name} is forty two years old. The home of {name} is in the forests.",
        f"In {name} everyone speaks {name}ish.",
    ]
    short = short_utterances(world, sentences, 200, seed=0)
    assert len(short) == 200 and short == short_utterances(world, sentences, 200, seed=0)
    spans = {s.rstrip(".").lower() for s in short}
    # every word alone and every adjacent pair of usable words, within a clause
    assert {"forty", "forty two", "two years", "home of", "everyone speaks", "the"} <= spans
    words = {w for s in spans for w in s.split()}
    assert name.lower() not in words and f"{name.lower()}ish" not in words
    assert words.isdisjoint(w.lower() for w in CLASS_WORDS)  # "forests": a sWUGGY-style word
    assert "old the" not in spans  # never across a sentence end
    with pytest.raises(ValueError, match="no sentence has a word"):
        short_utterances(world, [f"{name}."], 3, seed=0)
    with pytest.raises(ValueError, match="n_short"):
        SpeechConfig(n_short=-1)


def test_short_split_leaves_the_world_splits_unchanged():
    """``train_short`` draws from its own generators: adding it changes no other split."""
    from dataclasses import replace

    from most.corpora.build import world_items

    def columns(items: dict) -> dict:
        return {
            (kind, split): [(i.id, i.columns) for i in rows]
            for kind, splits in items.items()
            for split, rows in splits.items()
        }

    with_short, text_a, _ = world_items(TINY_WORLD, TINY_SPEECH)
    without, text_b, _ = world_items(TINY_WORLD, replace(TINY_SPEECH, n_short=0))
    a, b = columns(with_short), columns(without)
    assert set(a) - set(b) == {("speech", "train_short")}
    assert all(a[key] == b[key] for key in b)
    assert all(text_a[k][s]["text"] == text_b[k][s]["text"] for k in ("text",) for s in text_a[k])


def test_same_seed_same_hash_other_seed_differs(tiny_run, tmp_path):
    first = json.loads((tiny_run / "data" / "manifest.json").read_text())["content_hash"]
    build_tiny(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "data" / "manifest.json").read_text())["content_hash"]
    assert again == first
    other_world = type(TINY_WORLD)(**{**TINY_WORLD.__dict__, "seed": TINY_WORLD.seed + 1})
    build_tiny(tmp_path / "other", world=other_world)
    other = json.loads((tmp_path / "other" / "data" / "manifest.json").read_text())["content_hash"]
    assert other != first


def test_rerun_is_a_noop(tiny_run, capsys):
    build_tiny(tiny_run)
    assert "up to date" in capsys.readouterr().out


def test_other_settings_into_a_finished_run_are_refused(tiny_run):
    """`most data --world.seed=8` into a finished run: refused naming the key, nothing rewritten."""
    from dataclasses import replace

    from most.run import StaleOutput

    before = (tiny_run / "data" / "manifest.json").read_text()
    with pytest.raises(StaleOutput, match=r"\(world.seed 7 -> 8\); pass --force to redo data"):
        build_tiny(tiny_run, world=replace(TINY_WORLD, seed=8))
    assert (tiny_run / "data" / "manifest.json").read_text() == before


def test_resume_after_kill_reaches_the_same_content(tiny_run, tmp_path, monkeypatch):
    import most.corpora.build as build

    real_save = build.save_dataset

    def killed(ds, dest):
        if Path(dest).name == "sqa":
            raise KeyboardInterrupt  # the run dies after the speech shards are written
        return real_save(ds, dest)

    monkeypatch.setattr(build, "save_dataset", killed)
    with pytest.raises(KeyboardInterrupt):
        build_tiny(tmp_path)
    assert not (tmp_path / "data" / "manifest.json").exists()
    shards = sorted((tmp_path / "data" / ".work").rglob("speech/train/shard-*.parquet"))
    assert shards
    monkeypatch.setattr(build, "save_dataset", real_save)
    import most.corpora.ingest as ingest

    real_load = ingest.load_item

    def no_resynthesis(item, max_seconds):  # finished shards must be reused, not rebuilt
        assert not item.id.startswith("train-"), f"{item.id} was synthesised again"
        return real_load(item, max_seconds)

    monkeypatch.setattr(ingest, "load_item", no_resynthesis)
    build_tiny(tmp_path)
    resumed = json.loads((tmp_path / "data" / "manifest.json").read_text())["content_hash"]
    clean = json.loads((tiny_run / "data" / "manifest.json").read_text())["content_hash"]
    assert resumed == clean
    assert not (tmp_path / "data" / ".work").exists()


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match=r"speech\.train_voices and speech\.test_voices"):
        SpeechConfig(train_voices=("en-us:160:50",), test_voices=("en-us:160:50",))
    with pytest.raises(ValueError, match="variant:rate:pitch"):
        SpeechConfig(test_voices=("en-us",))
    with pytest.raises(ValueError, match="num_jobs"):
        data(run=__import__("pathlib").Path("/nonexistent-run"), num_jobs=0)
