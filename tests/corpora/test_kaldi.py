"""Kaldi data directories: the real speechocean762 layout, and every kind of broken entry."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from most.corpora.kaldi import kaldi_items
from most.stages.data import CorpusConfig, data


def _write(folder: Path, name: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("\n".join(lines) + "\n")


def _rejects(run: Path) -> dict[str, dict]:
    lines = (run / "data" / "rejects.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def test_the_shared_corpus_lists_every_utterance(realdata):
    corpus = realdata / "speechocean762"
    train, test = kaldi_items(corpus, "train"), kaldi_items(corpus, "test")
    assert (len(train), len(test)) == (1260, 500)
    assert len({i.columns["voice"] for i in train}) == 63
    assert len({i.columns["voice"] for i in test}) == 25
    assert not {i.columns["voice"] for i in train} & {i.columns["voice"] for i in test}
    first = next(i for i in train if i.id == "000010011")
    assert first.columns["text"] == "WE CALL IT BEAR"
    assert first.audio["audio"].path == str(corpus / "WAVE" / "SPEAKER0001" / "000010011.flac")


def test_real_utterances_and_broken_entries(realdata, tmp_path):
    """Relative (to the corpus) and absolute paths, a segment of a recording, and one utterance
    for each broken entry: each broken one is a named reject, the rest are rows."""
    corpus = tmp_path / "corpus"
    real = realdata / "speechocean762"
    real_text = dict(
        line.split(maxsplit=1) for line in (real / "train" / "text").read_text().splitlines()
    )
    (corpus / "WAVE").mkdir(parents=True)
    (corpus / "WAVE" / "SPEAKER0001").symlink_to(real / "WAVE" / "SPEAKER0001")
    low = corpus / "low.wav"
    sf.write(low, np.full(3000, 0.1, np.float32), 2000)  # 1.5 s at 2 kHz
    rel, absolute = "000010011", "000010035"
    absolute_path = real / "WAVE" / "SPEAKER0001" / f"{absolute}.flac"
    data_dir = corpus / "train"
    _write(data_dir, "wav.scp", [
        f"{rel} WAVE/SPEAKER0001/{rel}.flac",
        f"{absolute} {absolute_path}",
        "gone WAVE/SPEAKER0001/nope.flac",
        "untranscribed WAVE/SPEAKER0001/000010053.flac",
        "blank WAVE/SPEAKER0001/000010053.flac",
        "piped flac -c -d -s WAVE/SPEAKER0001/000010053.flac |",
        "low low.wav",
    ])  # fmt: skip
    _write(data_dir, "text", [
        f"{rel} {real_text[rel]}",
        f"{absolute} {real_text[absolute]}",
        "gone SOME WORDS",
        "blank ",
        "piped SOME WORDS",
        "low SOME WORDS",
        "orphan NO RECORDING",
    ])  # fmt: skip
    _write(data_dir, "utt2spk", [f"{u} spk1" for u in (rel, absolute, "low", "piped")])
    _write(data_dir, "spk2gender", ["spk1 m"])
    data(run=tmp_path / "run", corpus=CorpusConfig("kaldi", corpus, {"train": "train"}), num_jobs=1)

    rows = datasets.load_from_disk(str(tmp_path / "run" / "data" / "speech"))["train"]
    assert sorted(rows["id"]) == [rel, absolute]
    for row in rows:
        assert row["text"] == real_text[row["id"]] and row["voice"] == "spk1"
        assert 0.5 < row["duration"] < 10
    rejects = _rejects(tmp_path / "run")
    reasons = {k: r["reason"] for k, r in rejects.items()}
    assert reasons == {
        "gone": "missing_file",
        "untranscribed": "no_transcript",
        "blank": "empty_text",
        "piped": "unreadable",
        "low": "bad_sample_rate",
        "orphan": "missing_file",
    }
    assert "piped entry 'flac -c -d -s" in rejects["piped"]["message"]
    assert rejects["piped"]["file"].endswith("wav.scp:6")
    assert "orphan not in wav.scp" in rejects["orphan"]["message"]


def test_segments_cut_utterances_out_of_a_recording(tmp_path):
    corpus = tmp_path / "corpus"
    sr = 16000
    t = np.arange(3 * sr) / sr
    corpus.mkdir()
    sf.write(corpus / "rec.wav", 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    data_dir = corpus / "train"
    _write(data_dir, "wav.scp", ["rec1 rec.wav"])
    _write(data_dir, "segments", ["a rec1 0.0 1.0", "b rec1 1.5 2.75", "c rec9 0 1", "d rec1 x y"])
    _write(
        data_dir, "text", ["a FIRST PART", "b SECOND PART", "c NO SUCH RECORDING", "d BAD TIMES"]
    )
    _write(data_dir, "utt2spk", ["a s", "b s", "c s", "d s"])
    data(run=tmp_path / "run", corpus=CorpusConfig("kaldi", corpus, {"train": "train"}), num_jobs=1)
    rows = datasets.load_from_disk(str(tmp_path / "run" / "data" / "speech"))["train"]
    durations = dict(zip(rows["id"], rows["duration"], strict=True))
    assert durations == {"a": 1.0, "b": 1.25}
    assert {k: r["reason"] for k, r in _rejects(tmp_path / "run").items()} == {
        "c": "missing_file",
        "d": "unreadable",
    }
