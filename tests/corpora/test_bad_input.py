"""Every kind of bad input is repaired or skipped, counted by reason, and listed by file."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from most.audio import AudioError, check_audio
from most.stages.data import CorpusConfig, data

SR = 16000


def _tone(seconds: float, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * 200 * t).astype(np.float32)
    return np.stack([wav, 0.5 * wav], axis=1) if channels == 2 else wav


@pytest.fixture()
def bad_corpus(tmp_path: Path) -> Path:
    chapter = tmp_path / "LibriSpeech" / "train-x" / "100" / "1"
    chapter.mkdir(parents=True)
    write = {
        "100-1-0000": lambda p: sf.write(p, _tone(1.0), SR),  # good
        "100-1-0001": lambda p: sf.write(
            p, _tone(1.0, 44100, channels=2), 44100
        ),  # stereo 44.1k: repaired
        "100-1-0002": lambda p: sf.write(p, _tone(1.0, 8000), 8000),  # 8 kHz: resampled
        "100-1-0003": lambda p: p.write_bytes(b"fLaC but not really" * 10),  # corrupt
        "100-1-0004": lambda p: sf.write(
            p, np.zeros(0, np.float32), SR
        ),  # empty (a wav header, no frames)
        "100-1-0005": lambda p: sf.write(
            p, np.full(SR, np.nan, np.float32), SR, subtype="FLOAT", format="WAV"
        ),
        "100-1-0006": lambda p: sf.write(p, _tone(5.0), SR),  # over max_seconds
        "100-1-0007": lambda p: sf.write(p, _tone(1.0), SR),  # empty transcript
        "100-1-0008": lambda p: sf.write(p, _tone(1.0), SR),  # binary transcript
        "100-1-0010": lambda p: sf.write(p, _tone(1.0), SR),  # no transcript line at all
    }
    for utt, make in write.items():
        ext = ".wav" if utt in ("100-1-0004", "100-1-0005") else ".flac"
        make(chapter / f"{utt}{ext}")
    lines = [f"{utt} SOME WORDS HERE" for utt in list(write)[:7]]  # 0007-0010: see below
    lines += [
        "100-1-0007 ",
        "100-1-0008 \x00\x01\x02garbage",
        "100-1-0009 THIS FILE DOES NOT EXIST",
    ]
    (chapter / "100-1.trans.txt").write_text("\n".join(lines))
    return tmp_path / "LibriSpeech"


def test_bad_inputs_are_skipped_and_listed(bad_corpus, tmp_path):
    corpus = CorpusConfig(
        kind="librispeech", path=bad_corpus, splits={"train": "train-x"}, max_seconds=3.0
    )
    out = data(run=tmp_path / "run", corpus=corpus, num_jobs=2)
    speech = datasets.load_from_disk(str(out / "speech"))["train"]
    assert speech["id"] == ["100-1-0000", "100-1-0001", "100-1-0002"]
    for row in speech:
        assert row["audio"]["sampling_rate"] == SR
        assert abs(row["duration"] - 1.0) < 1e-3  # downmixed / resampled to 1 s at 16 kHz
    rejects = {
        r["id"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())
    }
    assert {k: v["reason"] for k, v in rejects.items()} == {
        "100-1-0003": "unreadable",
        "100-1-0004": "empty_audio",
        "100-1-0005": "non_finite",
        "100-1-0006": "too_long",
        "100-1-0007": "empty_text",
        "100-1-0008": "bad_text",
        "100-1-0009": "missing_file",
        "100-1-0010": "no_transcript",
    }
    assert {(r["dataset"], r["split"]) for r in rejects.values()} == {("speech", "train")}
    assert rejects["100-1-0010"]["file"].endswith("100-1-0010.flac")
    assert rejects["100-1-0003"]["file"].endswith("100-1-0003.flac")
    assert rejects["100-1-0009"]["file"].endswith("100-1.trans.txt:10")
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(manifest["datasets"]["speech"]["train"]["rejects"].values()) == 8


def test_stereo_is_downmixed_by_averaging():
    stereo = np.stack([np.ones(1600, np.float32), np.zeros(1600, np.float32)], axis=1) * 0.5
    assert np.allclose(check_audio(stereo, SR), 0.25)


def test_all_zero_audio_is_rejected():
    with pytest.raises(AudioError) as e:
        check_audio(np.zeros(SR, np.float32), SR)
    assert e.value.reason == "empty_audio"


def test_missing_corpus_folder_is_a_clear_error(tmp_path):
    corpus = CorpusConfig(
        kind="librispeech", path=tmp_path / "nope", splits={"train": "train-clean-100"}
    )
    with pytest.raises(FileNotFoundError, match="nope/train-clean-100"):
        data(run=tmp_path / "run", corpus=corpus)
    assert not (tmp_path / "run" / "data" / "speech").exists()
