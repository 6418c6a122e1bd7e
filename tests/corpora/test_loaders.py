"""Real-corpus loaders on the real recordings in ../shared/realdata and on generated fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf

from most.stages.data import CorpusConfig, data


def _load(run: Path) -> tuple[datasets.DatasetDict, dict, list[dict]]:
    out = run / "data"
    rejects = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    return (
        datasets.load_from_disk(str(out / "speech")),
        json.loads((out / "manifest.json").read_text()),
        rejects,
    )


def test_librispeech_real_recordings(realdata, tmp_path):
    corpus = CorpusConfig(
        kind="librispeech",
        path=realdata / "librispeech" / "LibriSpeech",
        splits={"train": "dev-clean", "test": "test-clean"},
    )
    data(run=tmp_path, corpus=corpus, num_jobs=1)
    speech, manifest, rejects = _load(tmp_path)
    assert rejects == []
    assert len(speech["test"]) == 4 and len(speech["train"]) == 2
    row = next(r for r in speech["test"] if r["id"] == "1089-134691-0000")
    assert row["text"] == "HE COULD WAIT NO LONGER"  # last line of a trans.txt without newline
    assert row["voice"] == "spk1089"
    assert abs(row["duration"] - 2.085) < 0.01
    assert manifest["datasets"]["speech"]["test"]["voices"] == ["spk1089"]


def _write_cv_fixture(root: Path, realdata: Path) -> None:
    clips = root / "clips"
    clips.mkdir(parents=True)
    shutil.copy(realdata / "robustness" / "1272-141231-0002.mp3", clips / "common_voice_en_1.mp3")
    sr = 48000
    t = np.arange(sr) / sr
    sf.write(clips / "common_voice_en_2.wav", 0.3 * np.sin(2 * np.pi * 220 * t), sr)
    (clips / "common_voice_en_3.mp3").write_bytes(b"not an mp3 at all")
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\n"
    rows = [
        "abc123\tcommon_voice_en_1.mp3\tThe cut on his chest still dripping blood.\t2\t0",
        "def456\tcommon_voice_en_2.wav\tA steady tone.\t1\t0",
        "def456\tcommon_voice_en_3.mp3\tBroken clip.\t1\t0",
        "ghi789\tcommon_voice_en_4.mp3\tThis clip is missing.\t1\t0",
    ]
    (root / "train.tsv").write_text(header + "\n".join(rows) + "\n")


def test_commonvoice_layout_with_bad_clips(realdata, tmp_path):
    root = tmp_path / "cv" / "en"
    _write_cv_fixture(root, realdata)
    data(
        run=tmp_path / "run",
        corpus=CorpusConfig(kind="commonvoice", path=root, splits={"train": "train"}),
        num_jobs=1,
    )
    speech, manifest, rejects = _load(tmp_path / "run")
    assert speech["train"]["id"] == ["common_voice_en_1", "common_voice_en_2"]
    assert speech["train"][0]["voice"] == "cvabc123"
    assert {r["reason"] for r in rejects} == {"unreadable", "missing_file"}
    assert all(r["file"].endswith(("en_3.mp3", "en_4.mp3")) for r in rejects)
    assert manifest["datasets"]["speech"]["train"]["rejects"] == {
        "unreadable": 1,
        "missing_file": 1,
    }


def test_hf_disk_dataset(tmp_path):
    rng = np.random.default_rng(0)
    rows = {
        "audio": [
            {"array": (0.1 * rng.standard_normal(8000)).astype(np.float32), "sampling_rate": 8000},
            {
                "array": (0.1 * rng.standard_normal(22050)).astype(np.float32),
                "sampling_rate": 22050,
            },
        ],
        "sentence": ["first one", "second one"],
        "speaker": ["a", "b"],
    }
    ds = datasets.DatasetDict({"validation": datasets.Dataset.from_dict(rows)})
    ds.save_to_disk(str(tmp_path / "hf"))
    corpus = CorpusConfig(
        kind="hf",
        path=tmp_path / "hf",
        splits={"dev": "validation"},
        text_column="sentence",
        voice_column="speaker",
    )
    data(run=tmp_path / "run", corpus=corpus, num_jobs=1)
    speech, _, rejects = _load(tmp_path / "run")
    assert rejects == []
    assert speech["dev"]["text"] == ["first one", "second one"]
    assert speech["dev"]["voice"] == ["a", "b"]
    assert [round(d, 3) for d in speech["dev"]["duration"]] == [1.0, 1.0]  # resampled to 16 kHz
