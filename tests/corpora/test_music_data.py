"""``RUN/data/music`` through the data stage, and its music units through the units stage."""

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from most.cli import parse_command
from most.corpora.music import generate_melody, parse_caption
from most.corpora.music_data import MusicConfig, music_dataset, music_hash
from most.corpora.schema import decode_audio
from most.corpora.synth import render
from most.eval.music import score_audio
from most.run import Run, StaleOutput
from most.stages.data import CorpusConfig, data
from most.units.encode import audio_datasets
from most.units.music import (
    MusicUnitsConfig,
    load_music_units,
    music_tokenizer_info,
    music_units,
    prepare_music_tokenizer,
)


def test_music_dataset_rows():
    dd = music_dataset(MusicConfig(train=6, test=3, seed=2))
    assert {s: len(d) for s, d in dd.items()} == {"train": 6, "test": 3}
    assert not set(dd["train"]["text"]) & set(dd["test"]["text"])
    row = dd["train"][0]
    seed = int(row["id"].rsplit("-", 1)[1])
    melody = generate_melody(seed)
    assert row["text"] == melody.caption() and row["instrument"] == melody.instrument
    wav = decode_audio(row["music"])
    assert np.abs(wav - render(melody)).max() < 1e-4  # 16-bit FLAC of the rendered melody
    assert score_audio(wav, row["text"]).note_acc == 1.0
    assert music_hash(dd) == music_hash(music_dataset(MusicConfig(train=6, test=3, seed=2)))
    assert music_hash(dd) != music_hash(music_dataset(MusicConfig(train=6, test=3, seed=3)))
    assert all(parse_caption(t).pitches for t in dd["test"]["text"])


def test_music_config_checks():
    assert not MusicConfig().enabled
    with pytest.raises(ValueError, match=r"music\.test needs music\.train"):
        MusicConfig(test=2)
    with pytest.raises(ValueError, match="no music asked for"):
        music_dataset(MusicConfig())


def _kaldi(corpus: Path) -> CorpusConfig:
    """Two utterances of a tone: the smallest real corpus a run can have beside its music."""
    sr = 16000
    corpus.mkdir(parents=True)
    sf.write(corpus / "rec.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(2 * sr) / sr), sr)
    (corpus / "train").mkdir()
    (corpus / "train" / "wav.scp").write_text("a rec.wav\nb rec.wav\n")
    (corpus / "train" / "text").write_text("a A TONE\nb THE TONE\n")
    (corpus / "train" / "utt2spk").write_text("a s\nb s\n")
    return CorpusConfig("kaldi", corpus, {"train": "train"})


@pytest.fixture(scope="module")
def music_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("music")
    run = tmp / "run"
    data(run=run, corpus=_kaldi(tmp / "corpus"), music=MusicConfig(train=24, test=4), num_jobs=1)
    return run


def test_data_stage_writes_music(music_run, capsys):
    manifest = json.loads((music_run / "data" / "manifest.json").read_text())
    assert {s: v["items"] for s, v in manifest["datasets"]["music"].items()} == {
        "train": 24,
        "test": 4,
    }
    music = datasets.load_from_disk(str(music_run / "data" / "music"))
    assert music["train"].column_names == ["id", "music", "text", "instrument", "task", "duration"]
    # music is not speech: the speech units stage does not see it
    assert set(audio_datasets(Run(music_run))) == {"speech"}
    # the same settings: a no-op; the recorded fingerprint covers the music settings
    corpus = CorpusConfig("kaldi", music_run.parent / "corpus", {"train": "train"})
    data(run=music_run, corpus=corpus, music=MusicConfig(24, 4), num_jobs=1)
    assert "is up to date" in capsys.readouterr().out
    with pytest.raises(StaleOutput, match=r"music\.train 24 -> 25"):
        data(run=music_run, corpus=corpus, music=MusicConfig(25, 4), num_jobs=1)


def test_music_units(music_run):
    r = Run(music_run)
    cfg = MusicUnitsConfig(k=16, fit_seconds=30.0)
    out = music_units(r, cfg)
    n, h = music_tokenizer_info(r)
    assert n == 16 and out == r.music_units / h
    units = load_music_units(r, h)
    assert {s: len(d) for s, d in units.items()} == {"train": 24, "test": 4}
    row = units["test"][0]
    assert abs(len(row["units"]) - 25 * row["duration"]) <= 2  # 25 units/s, repeats kept
    assert max(max(u) for u in units["train"]["units"]) < 16
    assert music_units(r, cfg) == out  # reused
    with pytest.raises(ValueError, match="pass --force=true to refit"):
        prepare_music_tokenizer(r, MusicUnitsConfig(k=32, fit_seconds=30.0))
    with pytest.raises(FileNotFoundError, match="no music units of tokenizer nope"):
        load_music_units(r, "nope")


def test_a_rebuild_without_music_drops_it(tmp_path):
    corpus = _kaldi(tmp_path / "corpus")
    run = tmp_path / "run"
    data(run=run, corpus=corpus, music=MusicConfig(train=2, test=1), num_jobs=1)
    assert Run(run).has_data("music")
    data(run=run, corpus=corpus, num_jobs=1, force=True)
    assert not Run(run).has_data("music")
    assert "music" not in json.loads((run / "data" / "manifest.json").read_text())["datasets"]


@pytest.mark.parametrize("stage", ["data", "units", "adapt", "stage1", "stage2", "eval"])
def test_music_recipes_override_tiny(stage):
    """``recipes/music/<stage>.yaml`` on top of ``recipes/tiny``: music on, the rest tiny's."""
    repo = Path(__file__).resolve().parents[2]
    tiny, music = (repo / "recipes" / family / f"{stage}.yaml" for family in ("tiny", "music"))
    both = parse_command(stage, ["--config", str(tiny), "--config", str(music), "--run", "r"])
    alone = parse_command(stage, ["--config", str(tiny), "--run", "r"])
    if stage == "data":
        assert both["music"].train == 2000 and not alone["music"].enabled
        assert both["speech"] == alone["speech"]
    elif stage == "units":
        assert both["music"].k == 512 and both["tokenizer"] == alone["tokenizer"]
    elif stage == "adapt":
        assert both["music"] and not alone["music"] and both["layout"] == alone["layout"]
        assert both["experts"].router == alone["experts"].router
    elif stage in ("stage1", "stage2"):
        ratios = both["data"].ratios
        assert ratios["ttm"] > 0 and ratios["music_continue"] > 0
        assert "ttm" not in alone["data"].ratios
        assert both["trainer"] == alone["trainer"]
    else:
        assert both["sizes"].music == 40 and both["sizes"].asr == alone["sizes"].asr
