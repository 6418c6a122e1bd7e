"""Stage 1 and eval with music: a run with music units, adapted with ``most adapt --music=true``, trains
text to music and music continuation beside ASR/TTS (its music loss falls), and ``most eval``
reports ``music.*`` scored from the model's audio."""

import csv
import json
import shutil
from pathlib import Path

import datasets

from most.adapt import LayoutSection, SourceSection
from most.cli import main as most_main
from most.corpora.music import generate_melody
from most.corpora.music_data import MusicConfig, music_dataset
from most.corpora.synth import render
from most.eval.ttm import MusicLM
from most.generate import Sampling
from most.io import atomic_write_json
from most.layout import MUSIC, TokenLayout
from most.moe.config import ExpertsConfig
from most.run import Run
from most.stages.adapt import adapt
from most.stages.eval import EvalSettings, Judges, Models, Sizes, eval_fingerprint, evaluate
from most.stages.release import ReleaseSource, release
from most.stages.stage1 import stage1
from most.stages.stage2 import stage2
from most.testing.runs import N_UNITS, UNIT_HASH
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig
from most.units.mel_kmeans import MelKMeansTokenizer

RATIOS = {"asr": 0.2, "tts": 0.2, "text_lm": 0.1, "ttm": 0.4, "music_continue": 0.1}
ONLY_TTM = {"asr": 0.0, "tts": 0.0, "text_lm": 0.0, "ttm": 1.0}


def _add_music(run: Path) -> MelKMeansTokenizer:
    """A music tokenizer and the music units of 16 melodies, as ``most units`` writes them."""
    wavs = {s: render(generate_melody(s)) for s in range(16)}
    tok = MelKMeansTokenizer.fit(list(wavs.values()), k=24, frame_rate=25.0, dedup=False)
    tok.save(Run(run).music_units / "tokenizer")
    rows = [
        {
            "id": f"m{s}",
            "text": generate_melody(s).caption(),
            "duration": len(w) / 16000,
            "units": tok.encode(w, 16000).tolist()[:60],
        }
        for s, w in wavs.items()
    ]
    split = datasets.Dataset.from_list(rows)
    datasets.DatasetDict(train=split, test=split).save_to_disk(str(Run(run).music_units / tok.hash))
    return tok


def test_stage1_trains_music(speech_run: Path) -> None:
    tok = _add_music(speech_run)
    R = Run(speech_run)
    layout_args = LayoutSection(n_units=N_UNITS, unit_tokenizer_hash=UNIT_HASH)
    hf = adapt(
        run=speech_run,
        source=SourceSection(model=R.hf("base")),
        experts=ExpertsConfig(init="upcycle"),
        layout=layout_args,
        music=True,
        force=True,
    )
    layout = TokenLayout.load(hf)
    assert layout.unit_tokenizer_hash_of(MUSIC) == tok.hash and MUSIC in layout.modalities
    assert tok.hash in json.dumps(R.recorded("adapt")["settings"])  # the music modality's
    stage1(
        run=speech_run,
        data=DataConfig(batch_size=4, max_len=96, val_batches=1, ratios=RATIOS),
        optim=OptimConfig(lr=1e-2, warmup_steps=2),
        trainer=TrainerConfig(
            max_steps=30, val_every=30, ckpt_every=30, log_every=1, progress=False
        ),
    )
    with open(speech_run / "stage1" / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ttm = [float(r["train/loss_ttm"]) for r in rows if r.get("train/loss_ttm")]
    assert len(ttm) >= 10 and any(r.get("train/loss_music_continue") for r in rows)
    assert sum(ttm[-5:]) / 5 < sum(ttm[:5]) / 5 - 0.3, ttm
    metrics = json.loads((speech_run / "stage1" / "metrics.json").read_text())
    assert metrics["ratios"]["ttm"] == 0.4
    # stage 2 replays music (recipes/music/stage2.yaml)
    stage2(
        run=speech_run,
        data=DataConfig(batch_size=4, max_len=96, val_batches=1, ratios={"ttm": 0.2}),
        optim=OptimConfig(lr=1e-3, warmup_steps=2),
        trainer=TrainerConfig(max_steps=4, val_every=4, ckpt_every=4, log_every=1, progress=False),
    )
    metrics = json.loads((speech_run / "stage2" / "metrics.json").read_text())
    assert metrics["ratios"]["ttm"] == 0.2 and "music_continue" not in metrics["ratios"]


def test_eval_reports_music(speech_run: Path) -> None:
    """``most eval`` on a model with music: ``music.*`` in report.json, from the model's audio."""
    R = Run(speech_run)
    speech_tok = _add_music(speech_run)  # a real tokenizer stands in for the speech one too
    shutil.rmtree(R.unit_tokenizer)
    speech_tok.save(R.unit_tokenizer)
    h = speech_tok.hash
    atomic_write_json(R.units_manifest, {"hash": h, "complete": True})
    units = datasets.Dataset.from_dict({"id": ["s"], "text": ["a"], "units": [[1, 2]]})
    datasets.DatasetDict(test=units).save_to_disk(str(R.unit_dataset(h, "speech")))
    music_dataset(MusicConfig(train=2, test=2)).save_to_disk(str(R.dataset("music")))
    speech = datasets.Dataset.from_dict({"id": ["s"], "text": ["a"]})
    datasets.DatasetDict(test=speech).save_to_disk(str(R.dataset("speech")))
    plain = R.hf("adapt")
    assert "sizes.music" not in json.dumps(eval_fingerprint(speech_run, _settings(plain)))
    hf = adapt(
        run=speech_run,
        source=SourceSection(model=R.hf("base")),
        experts=ExpertsConfig(init="upcycle"),
        layout=LayoutSection(),  # speech and music units from RUN/units
        music=True,
        force=True,
    )
    settings = _settings(hf)
    report = evaluate(
        run=speech_run,
        models=settings.models,
        sizes=settings.sizes,
        judges=settings.judges,
        sampling=settings.sampling,
    )
    m = report["metrics"]
    assert m["music.n"] == 2 and m["music.original.note_acc"] == 1.0
    assert 0.0 <= m["music.note_acc"] <= 1.0 and "music.resynth.key_acc" in m
    assert 0.0 <= m["music.continue.note_acc"] <= 1.0 and "music.continue.prompt_only.n" in m
    assert (R.eval / "report.md").read_text().count("music.") >= 4
    assert "sizes.music" in json.dumps(eval_fingerprint(speech_run, settings))
    # the release ships the music tokenizer: `most music --model RELEASE` needs nothing else
    out = release(run=speech_run, source=ReleaseSource(model=hf, verify=False))
    lm = MusicLM.load(out, device="cpu")
    assert lm.music.hash == TokenLayout.load(out).unit_tokenizer_hash_of(MUSIC)


def _settings(model: Path) -> EvalSettings:
    off = dict(asr=0, tts=0, sqa=0, text=0, wuggy=0, blimp=0, router=0)
    return EvalSettings(
        models=Models(model=model),
        sizes=Sizes(**off, music=2),
        judges=Judges(names=[]),
        sampling=Sampling(
            max_new_tokens=40, guidance=1.25
        ),  # the speech recipe's: music ignores it
    )


def test_stage1_learns_captions_and_most_music_plays_them(speech_run: Path, capsys) -> None:
    """Nothing rigged: 120 steps of text to music teach the tiny model two caption -> melody
    pairs, and ``most music`` then plays each caption note for note (scored from the audio)."""
    R = Run(speech_run)
    wavs = {s: render(generate_melody(s)) for s in range(12)}
    tok = MelKMeansTokenizer.fit(list(wavs.values()), k=128, frame_rate=25.0, dedup=False)
    tok.save(R.music_units / "tokenizer")
    rows = [
        {
            "id": f"m{s}",
            "text": generate_melody(s).caption(),
            "duration": 1.0,
            "units": tok.encode(wavs[s], 16000).tolist(),
        }
        for s in (2, 5)  # 83 and 55 units
    ]
    split = datasets.Dataset.from_list(rows)
    datasets.DatasetDict(train=split, test=split).save_to_disk(str(R.music_units / tok.hash))
    adapt(
        run=speech_run,
        source=SourceSection(model=R.hf("base")),
        experts=ExpertsConfig(init="upcycle"),
        layout=LayoutSection(n_units=N_UNITS, unit_tokenizer_hash=UNIT_HASH),
        music=True,
        force=True,
    )
    stage1(
        run=speech_run,
        data=DataConfig(batch_size=4, max_len=512, val_batches=1, ratios=ONLY_TTM),
        optim=OptimConfig(lr=1e-2, warmup_steps=10, weight_decay=0.0, dropout=0.0),
        trainer=TrainerConfig(max_steps=120, val_every=120, ckpt_every=120, progress=False),
    )
    for i, row in enumerate(rows):
        out = speech_run / f"played{i}.wav"
        args = ["music", row["text"], "-o", str(out), "--model", str(R.hf("stage1"))]
        assert most_main([*args, "--device=cpu"]) == 0
        assert "note_acc 1.000  key_acc 1.0  tempo_acc 1.0" in capsys.readouterr().out
