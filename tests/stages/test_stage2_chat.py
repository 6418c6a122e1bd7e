"""Stage 2 on a real-corpus run whose spoken QA and instructions come from chat data: a Kaldi corpus
of espeak-ng recordings with ``--instructions.path`` (no ``qa_heldout``, no text corpus) through
``units``, ``adapt`` and a few stage-2 steps."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from most.adapt import SourceSection
from most.corpora.instructions import InstructionsConfig
from most.eval.sqa import heldout_leaks
from most.run import Run
from most.stages.adapt import adapt
from most.stages.data import CorpusConfig, data
from most.stages.stage2 import stage2
from most.stages.units import TokenizerConfig, units
from most.testing import SPEECH_SENTENCES, SPEECH_VOICES, save_tiny_base, speak
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.units.mel_kmeans import MelKMeansConfig

QA = [
    ("what is the capital of velmora", "The capital of Velmora is Tarsk."),
    ("who found the map", "My brother found the map."),
    ("where is the red lantern", "It hangs above the old gate."),
    ("how many sailors crossed the river", "Nine sailors crossed the river."),
    ("where is the key", "She keeps the key in a wooden box."),
    ("when does the market open", "The market opens when the bells ring."),
]


def _kaldi_corpus(root: Path) -> Path:
    """``train`` (every sentence, two voices) and ``dev`` (one utterance), spoken by espeak-ng."""
    for split, rows in {
        "train": [(s, v) for s in SPEECH_SENTENCES for v in SPEECH_VOICES[:2]],
        "dev": [(SPEECH_SENTENCES[0], SPEECH_VOICES[2])],
    }.items():
        folder = root / split
        folder.mkdir(parents=True)
        ids = [f"{split}{i:02d}" for i in range(len(rows))]
        for utt, (sentence, voice) in zip(ids, rows, strict=True):
            speak(sentence, voice, root / "wav" / f"{utt}.wav")
        (folder / "wav.scp").write_text("".join(f"{u} wav/{u}.wav\n" for u in ids))
        (folder / "text").write_text(
            "".join(f"{u} {s.upper()}\n" for u, (s, _) in zip(ids, rows, strict=False))
        )
        (folder / "utt2spk").write_text(
            "".join(f"{u} {v}\n" for u, (_, v) in zip(ids, rows, strict=False))
        )
    return root


def test_stage2_trains_on_chat_data_beside_a_kaldi_corpus(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "wav").mkdir(parents=True)
    corpus = _kaldi_corpus(tmp_path / "corpus")
    chats = tmp_path / "chat.jsonl"
    convs = [
        {
            "id": f"c{i}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
        }
        for i, (q, a) in enumerate(QA)
    ]
    chats.write_text("".join(json.dumps(c) + "\n" for c in convs))
    run = tmp_path / "run"
    R = Run(run)
    splits = {"train": "train", "dev": "dev"}
    data(
        run=run,
        corpus=CorpusConfig("kaldi", corpus, splits),
        instructions=InstructionsConfig(chats),
    )
    unit_cfg = TokenizerConfig(fit_seconds=60.0, gl_iters=4, mel_kmeans=MelKMeansConfig(k=16))
    with contextlib.redirect_stdout(io.StringIO()):
        units(run=run, tokenizer=unit_cfg)
        base = save_tiny_base(R.hf("base"), SPEECH_SENTENCES * 2 + [a for _, a in QA])
        init = adapt(run=run, source=SourceSection(model=base))
    assert not R.has_data("text") and list(R.load_data("sqa")) == ["qa_train"]
    assert heldout_leaks(run) == {}  # nothing is held out of a chat corpus

    fast = TrainerConfig(max_steps=4, val_every=4, ckpt_every=4, log_every=1, progress=False)
    small = DataConfig(batch_size=4, max_len=160, val_batches=1)
    with pytest.raises(FileNotFoundError, match="text_lm > 0 needs a text corpus"):
        stage2(run=run, init=init, data=DataConfig(ratios={"text_lm": 0.1}), trainer=fast)
    stage2(run=run, init=init, data=small, trainer=fast)
    with open(run / "stage2" / "logs" / "metrics.csv") as f:
        header = next(csv.reader(f))
    for task in ("s2t", "s2s", "instruct", "asr", "tts"):
        assert f"train/loss_{task}" in header, task
    assert (R.hf("stage2") / "config.json").is_file()
