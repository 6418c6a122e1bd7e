"""A real corpus end to end at tiny size: 40 utterances of speechocean762 (Kaldi layout) through
`most data` -> `most units` (mel k-means: no encoder to train) -> a few stage-1 steps -> `most eval`
with pocketsphinx as the peer recogniser on the same test utterances."""

from __future__ import annotations

import json
from pathlib import Path

from most.adapt import SourceSection
from most.audio import read_audio
from most.corpora.build import CorpusConfig
from most.corpora.text_corpus import TextCorpusConfig
from most.eval.judges.pocketsphinx_judge import PocketsphinxJudge
from most.eval.metrics import wer
from most.run import Run
from most.stages.adapt import adapt
from most.stages.data import data
from most.stages.eval import Judges, Models, Sizes, evaluate
from most.stages.stage1 import stage1
from most.stages.units import units
from most.testing.spoken import save_tiny_base
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig
from most.units.kinds import TokenizerConfig
from most.units.mel_kmeans import MelKMeansConfig

TRAIN_SPEAKERS, TEST_SPEAKERS, PER_SPEAKER = 4, 1, 8


def kaldi_subset(corpus: Path, out: Path) -> dict[str, list[str]]:
    """``out/{train,test}``: the first :data:`PER_SPEAKER` utterances of the first speakers of each
    subset, ``wav.scp`` pointing at the shared FLAC files by absolute path; -> subset -> utt ids."""
    picked = {}
    for subset, n_speakers in (("train", TRAIN_SPEAKERS), ("test", TEST_SPEAKERS)):
        src = corpus / subset
        utt2spk = dict(line.split() for line in (src / "utt2spk").read_text().splitlines())
        speakers = sorted(set(utt2spk.values()))[:n_speakers]
        utts = [
            u
            for s in speakers
            for u in sorted(k for k, v in utt2spk.items() if v == s)[:PER_SPEAKER]
        ]
        text = dict(line.split(maxsplit=1) for line in (src / "text").read_text().splitlines())
        scp = dict(line.split(maxsplit=1) for line in (src / "wav.scp").read_text().splitlines())
        dst = out / subset
        dst.mkdir(parents=True)
        (dst / "text").write_text("".join(f"{u} {text[u]}\n" for u in utts))
        (dst / "utt2spk").write_text("".join(f"{u} {utt2spk[u]}\n" for u in utts))
        (dst / "wav.scp").write_text("".join(f"{u} {corpus / scp[u]}\n" for u in utts))
        picked[subset] = utts
    return picked


def test_speechocean762_data_units_stage1_eval(realdata, tmp_path):
    corpus, run = tmp_path / "corpus", tmp_path / "run"
    picked = kaldi_subset(realdata / "speechocean762", corpus)
    R = Run(run)

    data(
        run=run,
        corpus=CorpusConfig(
            kind="kaldi",
            path=corpus,
            splits={"train": "train", "test": "test"},
            dev_speakers=1,
            casing="sentence",
        ),
        text=TextCorpusConfig(transcripts=True, world_words=3000, heldout=5),
    )
    manifest = json.loads((R.data / "manifest.json").read_text())
    counts = {s: v["items"] for s, v in manifest["datasets"]["speech"].items()}
    assert counts == {"train": 24, "dev": 8, "test": 8}, counts
    assert manifest["rejects"] == 0
    speech = R.load_data("speech")
    assert speech["train"][0]["text"][1:].islower()  # sentence case: "We call it bear"
    assert not set(speech["dev"]["voice"]) & set(speech["train"]["voice"])
    text = R.load_data("text")
    train_text = set(text["train"]["text"]) | set(text["heldout"]["text"])
    assert set(speech["train"]["text"]) <= train_text  # the transcripts are in the text corpus
    only_test = set(speech["test"]["text"]) - set(speech["train"]["text"])
    assert only_test and not only_test & train_text  # no test transcript reaches the text LM
    assert not set(speech["dev"]["text"]) - set(speech["train"]["text"]) & train_text

    units(
        run=run,
        tokenizer=TokenizerConfig(
            kind="mel_kmeans", fit_seconds=60.0, gl_iters=4, mel_kmeans=MelKMeansConfig(k=32)
        ),
    )
    h = R.unit_info()["hash"]
    speech_units = R.load_units("speech", h)
    assert {s: len(speech_units[s]) for s in speech_units} == counts
    assert all(len(u) > 3 for u in speech_units["test"]["units"])

    base = save_tiny_base(R.hf("base"), list(text["train"]["text"]))
    adapt(run=run, source=SourceSection(model=base))
    trainer = TrainerConfig(max_steps=4, val_every=4, ckpt_every=4, log_every=1, progress=False)
    stage1(
        run=run,
        data=DataConfig(batch_size=4, max_len=256, val_batches=1),
        optim=OptimConfig(lr=1e-2, warmup_steps=1),
        trainer=trainer,
    )
    header = (R.root / "stage1" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_asr" in header and "train/loss_tts" in header

    report = evaluate(
        run=run,
        models=Models(model=R.hf("stage1")),
        sizes=Sizes(asr=8, tts=2, sqa=0, text=3, wuggy=0, blimp=0, router=2),
        judges=Judges(names=["pocketsphinx"], peers=["pocketsphinx"]),
    )
    m = report["metrics"]
    for key in ("asr.test.wer", "tts.pocketsphinx.wer_original", "tts.pocketsphinx.wer_model"):
        assert key in m, key
    assert report["details"]["asr"]["test"]["n"] == 8
    # the peer read the same 8 test recordings the model was scored on, against the same texts
    ids = picked["test"]
    scp = dict(line.split() for line in (corpus / "test" / "wav.scp").read_text().splitlines())
    wavs = [read_audio(scp[u]) for u in ids]
    refs = [dict(zip(speech["test"]["id"], speech["test"]["text"], strict=True))[u] for u in ids]
    assert m["asr.test.peer.pocketsphinx.wer"] == wer(refs, PocketsphinxJudge().transcribe(wavs))
