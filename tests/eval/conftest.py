"""A complete tiny run for the eval tests, built once per session with no network.

``RUN/data`` (espeak-ng speech in the data-stage schema), ``RUN/units`` (a 16-unit mel k-means
tokenizer through the real ``units`` stage), ``RUN/base/hf`` (a random tiny Qwen3-MoE with a
byte-level BPE tokenizer), ``RUN/stage2/hf`` (that model through the real ``most adapt``) and
``RUN/judge`` (a tiny CTC judge trained for a few steps). The model is untrained: tests check
plumbing, identities and rigged preferences, never quality.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import datasets
import pytest
import torch

from most.audio import read_audio
from most.corpora.schema import SPEECH_FEATURES, SQA_FEATURES, audio_value

SENTENCES = [
    "the capital of velmora is tarsk",
    "a red lantern hangs above the old gate",
    "nine sailors crossed the river at dawn",
    "she keeps the key in a wooden box",
    "the market opens when the bells ring",
    "my brother found a map under the stairs",
]
VOICES = ["en-us+f3", "en-us+m3", "en-gb+m1"]
QA = [("what is the capital of velmora", "tarsk"), ("who found the map", "brother")]


def speak(text: str, voice: str, path: Path):
    subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(path), text], check=True)
    return read_audio(path)


def _speech_rows(items, wav_dir: Path, prefix: str) -> list[dict]:
    rows = []
    for i, (text, voice) in enumerate(items):
        wav = speak(text, voice, wav_dir / f"{prefix}{i}.wav")
        rows.append(
            dict(id=f"{prefix}{i}", audio=audio_value(wav), text=text, voice=voice,
                 task="asr_tts", duration=len(wav) / 16_000)
        )  # fmt: skip
    return rows


def _qa_rows(items, wav_dir: Path, prefix: str) -> list[dict]:
    rows = []
    for i, (question, answer) in enumerate(items):
        row = _speech_rows([(question, VOICES[0])], wav_dir, f"{prefix}q")[0]
        ans = speak(answer, VOICES[1], wav_dir / f"{prefix}a{i}.wav")
        rows.append(
            dict(row, id=f"{prefix}{i}", task="sqa", fact_id=f"{prefix}f{i}", answer=answer,
                 answer_sentence=f"It is {answer}.", answer_audio=audio_value(ans), answer_voice=VOICES[1])
        )  # fmt: skip
    return rows


def write_data(root: Path) -> None:
    wav_dir = root / "wav"
    wav_dir.mkdir(parents=True)
    split = {
        "train": [(s, v) for s in SENTENCES for v in VOICES[:2]],
        "dev": [(SENTENCES[0], VOICES[0])],
        "test": [(s, VOICES[0]) for s in SENTENCES[:3]],
        "test_voices": [(s, VOICES[2]) for s in SENTENCES[3:5]],
    }
    speech = {k: _speech_rows(v, wav_dir, k) for k, v in split.items()}
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list(v, features=SPEECH_FEATURES) for k, v in speech.items()}
    ).save_to_disk(str(root / "data" / "speech"))
    datasets.DatasetDict(
        qa_train=datasets.Dataset.from_list(_qa_rows(QA[:1], wav_dir, "qt"), features=SQA_FEATURES),
        qa_heldout=datasets.Dataset.from_list(
            _qa_rows(QA[1:], wav_dir, "qh"), features=SQA_FEATURES
        ),
    ).save_to_disk(str(root / "data" / "sqa"))
    text = {"id": [f"t{i}" for i in range(len(SENTENCES))], "text": SENTENCES}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(text),
        heldout=datasets.Dataset.from_dict({"id": ["h0"], "text": ["the old gate is red"]}),
    ).save_to_disk(str(root / "data" / "text"))
    instr = {"id": ["i0"], "task": ["repeat"], "prompt": ["repeat tarsk"], "response": ["tarsk"]}
    datasets.DatasetDict(train=datasets.Dataset.from_dict(instr)).save_to_disk(
        str(root / "data" / "instructions")
    )


def write_models(run: Path) -> None:
    from transformers import Qwen3MoeForCausalLM

    from most.adapt import SourceSection
    from most.stages.adapt import adapt
    from most.testing import TINY_MODEL
    from most.text_tokenizer import TokenizerConfig, train_text_tokenizer

    tok = train_text_tokenizer(SENTENCES * 4 + [q for q, _ in QA], TokenizerConfig(300))
    torch.manual_seed(0)
    base = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok), tok.eos_token_id))
    base.save_pretrained(str(run / "base" / "hf"))
    tok.save_pretrained(str(run / "base" / "hf"))
    adapted = adapt(run=run, source=SourceSection(model=run / "base" / "hf"))
    shutil.copytree(adapted, run / "stage2" / "hf")


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory) -> Path:
    """The shared tiny run (read-only for tests: copy before writing into it)."""
    from most.ctc.model import CTCModelConfig
    from most.eval.judges.ctc import CTCTrainConfig, judge
    from most.stages.units import TokenizerConfig, units

    run = tmp_path_factory.mktemp("eval-run")
    write_data(run)
    units(run=run, tokenizer=TokenizerConfig(k=16, fit_seconds=60.0, gl_iters=4))
    write_models(run)
    judge(
        run=run,
        model=CTCModelConfig(width=32, layers=1, heads=2, ff=64),
        train=CTCTrainConfig(epochs=2, batch_frames=4000, eval_utterances=4),
    )
    return run


@pytest.fixture
def fresh_run(eval_run: Path, tmp_path: Path) -> Path:
    """A writable run whose inputs link to the shared tiny run."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("data", "units", "base", "stage2", "judge"):
        (run / name).symlink_to(eval_run / name)
    return run
