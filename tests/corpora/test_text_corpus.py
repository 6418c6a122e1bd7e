"""A text-LM corpus of your own beside a real speech corpus: .txt, .jsonl, datasets on disk, folders;
bad lines are named rejects."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from most.corpora.text_corpus import TextCorpusConfig, read_text_corpus
from most.run import Run
from most.stages.data import CorpusConfig, data

PARAGRAPHS = [f"Paragraph number {i} says something true." for i in range(40)]


def _kaldi(root: Path) -> Path:
    """A two-utterance Kaldi corpus of tones."""
    sr = 16000
    root.mkdir(parents=True)
    sf.write(root / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr), sr)
    data_dir = root / "train"
    data_dir.mkdir()
    (data_dir / "wav.scp").write_text("u1 a.wav\nu2 a.wav\n")
    (data_dir / "text").write_text("u1 A TONE\nu2 THE SAME TONE\n")
    (data_dir / "utt2spk").write_text("u1 s\nu2 s\n")
    return root


def test_text_files_next_to_a_kaldi_corpus(tmp_path):
    corpus = _kaldi(tmp_path / "corpus")
    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("\n\n".join(PARAGRAPHS[:20]) + "\n")
    lines = [json.dumps({"text": p}) for p in PARAGRAPHS[20:]]
    lines[3:3] = ["{not json", json.dumps({"body": "no text key"}), json.dumps({"text": 7})]
    (books / "b.jsonl").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    text = TextCorpusConfig(path=books, heldout=4)
    data(run=run, corpus=CorpusConfig("kaldi", corpus, {"train": "train"}), text=text, num_jobs=1)

    loaded = Run(run).load_data("text")
    assert len(loaded["heldout"]) == 4 and len(loaded["train"]) == 36
    assert sorted([*loaded["train"]["text"], *loaded["heldout"]["text"]]) == sorted(PARAGRAPHS)
    rejects = [json.loads(r) for r in (run / "data" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["file"], r["reason"]) for r in rejects] == [
        (f"{books / 'b.jsonl'}:4", "bad_text"),
        (f"{books / 'b.jsonl'}:5", "bad_text"),
        (f"{books / 'b.jsonl'}:6", "bad_text"),
    ]
    assert "'text' is int, not text" in rejects[2]["message"]
    assert len(datasets.load_from_disk(str(run / "data" / "speech"))["train"]) == 2


def test_a_dataset_on_disk_and_bad_paths(tmp_path):
    ds = datasets.DatasetDict(
        a=datasets.Dataset.from_dict({"body": PARAGRAPHS[:30]}),
        b=datasets.Dataset.from_dict({"body": [*PARAGRAPHS[30:], " "]}),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    out, rejects = read_text_corpus(TextCorpusConfig(tmp_path / "ds", column="body", heldout=200))
    assert (len(out["train"]), len(out["heldout"])) == (36, 4)  # at most a tenth held out
    assert [r["reason"] for r in rejects] == ["empty_text"]
    with pytest.raises(ValueError, match="no column 'text'"):
        read_text_corpus(TextCorpusConfig(tmp_path / "ds"))
    with pytest.raises(FileNotFoundError, match="text corpus not found"):
        read_text_corpus(TextCorpusConfig(tmp_path / "none.txt"))
    (tmp_path / "notes.md").write_text("# hi\n")
    with pytest.raises(ValueError, match=r"\.txt or \.jsonl"):
        read_text_corpus(TextCorpusConfig(tmp_path / "notes.md"))
    with pytest.raises(ValueError, match="embedded world writes its own text"):
        data(run=tmp_path / "run", text=TextCorpusConfig(tmp_path / "ds"))
