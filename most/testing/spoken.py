"""A complete tiny run with real speech (espeak-ng), for the eval and tool tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import datasets
import numpy as np
import torch

from most.ctc.model import CTCModelConfig
from most.run import Run
from most.stages.judge import CTCTrainConfig, judge
from most.testing.runs import TINY_MODEL
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer

# ---- a complete tiny run with real speech (eval and tool tests) ---------------------------------

#: What the tiny speech run says: espeak-ng sentences, voices (the last one held out) and QA pairs.
SPEECH_SENTENCES = [
    "the capital of velmora is tarsk",
    "a red lantern hangs above the old gate",
    "nine sailors crossed the river at dawn",
    "she keeps the key in a wooden box",
    "the market opens when the bells ring",
    "my brother found a map under the stairs",
]
SPEECH_VOICES = ["en-us+f3", "en-us+m3", "en-gb+m1"]
SPEECH_QA = [("what is the capital of velmora", "tarsk"), ("who found the map", "brother")]


def speak(text: str, voice: str, path: Path):
    """``text`` spoken by espeak-ng ``voice`` into ``path``; -> float32 ``(n,)`` at 16 kHz."""

    from most.audio import read_audio

    subprocess.run(["espeak-ng", "-v", voice, "-s", "190", "-w", str(path), "--", text], check=True)
    return read_audio(path)


def _spoken_rows(items: list[tuple[str, str]], wav_dir: Path, prefix: str) -> list[dict]:
    from most.corpora.schema import audio_value

    rows = []
    for i, (text, voice) in enumerate(items):
        wav = speak(text, voice, wav_dir / f"{prefix}{i}.wav")
        rows.append(
            dict(id=f"{prefix}{i}", audio=audio_value(wav), text=text, voice=voice,
                 task="asr_tts", duration=len(wav) / 16_000)
        )  # fmt: skip
    return rows


def _spoken_qa_rows(items: list[tuple[str, str]], wav_dir: Path, prefix: str) -> list[dict]:
    from most.corpora.schema import audio_value

    rows = []
    for i, (question, answer) in enumerate(items):
        row = _spoken_rows([(question, SPEECH_VOICES[0])], wav_dir, f"{prefix}q")[0]
        ans = speak(answer, SPEECH_VOICES[1], wav_dir / f"{prefix}a{i}.wav")
        rows.append(
            dict(row, id=f"{prefix}{i}", task="sqa", fact_id=f"{prefix}f{i}", answer=answer,
                 answer_sentence=f"It is {answer}.", answer_audio=audio_value(ans),
                 answer_voice=SPEECH_VOICES[1])
        )  # fmt: skip
    return rows


def write_spoken_data(run: Path) -> None:
    """``RUN/data``: speech (train, dev, test, test_voices), sqa, text and instructions, spoken by
    espeak-ng in the data stage's schema (``RUN/wav`` keeps the recordings)."""
    from most.corpora.schema import SPEECH_FEATURES, SQA_FEATURES

    r, wav_dir = Run(run), Path(run) / "wav"
    wav_dir.mkdir(parents=True)
    voices = SPEECH_VOICES
    split = {
        "train": [(s, v) for s in SPEECH_SENTENCES for v in voices[:2]],
        "dev": [(SPEECH_SENTENCES[0], voices[0])],
        "test": [(s, voices[0]) for s in SPEECH_SENTENCES[:3]],
        "test_voices": [(s, voices[2]) for s in SPEECH_SENTENCES[3:5]],
    }
    speech = {k: _spoken_rows(v, wav_dir, k) for k, v in split.items()}
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list(v, features=SPEECH_FEATURES) for k, v in speech.items()}
    ).save_to_disk(str(r.dataset("speech")))
    qa = {
        "qa_train": _spoken_qa_rows(SPEECH_QA[:1], wav_dir, "qt"),
        "qa_heldout": _spoken_qa_rows(SPEECH_QA[1:], wav_dir, "qh"),
    }
    datasets.DatasetDict(
        {k: datasets.Dataset.from_list(v, features=SQA_FEATURES) for k, v in qa.items()}
    ).save_to_disk(str(r.dataset("sqa")))
    text = {"id": [f"t{i}" for i in range(len(SPEECH_SENTENCES))], "text": SPEECH_SENTENCES}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(text),
        heldout=datasets.Dataset.from_dict({"id": ["h0"], "text": ["the old gate is red"]}),
    ).save_to_disk(str(r.dataset("text")))
    instr = {"id": ["i0"], "task": ["repeat"], "prompt": ["repeat tarsk"], "response": ["tarsk"]}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(instr), test=datasets.Dataset.from_dict(instr)
    ).save_to_disk(str(r.dataset("instructions")))


def save_tiny_base(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A random :data:`TINY_MODEL` Qwen3-MoE (no shared experts) with a 300-token byte-level BPE
    tokenizer trained on ``texts``, saved as an HF folder."""
    from transformers import Qwen3MoeForCausalLM

    tok = train_text_tokenizer(texts, TokenizerConfig(300))
    torch.manual_seed(seed)
    model = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok), tok.eos_token_id))
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return Path(folder)


#: The judge of :func:`write_spoken_run` (a re-run with these settings is a no-op).
JUDGE_MODEL = CTCModelConfig(width=32, layers=1, heads=2, ff=64)
JUDGE_TRAIN = CTCTrainConfig(epochs=2, batch_frames=4000, eval_utterances=4)


def write_spoken_run(run: Path) -> Path:
    """A complete untrained tiny run: :func:`write_spoken_data`, ``units`` (a 16-unit mel k-means
    through the real stage), ``base/hf`` (:func:`save_tiny_base`), ``stage2/hf`` (the base through
    the real ``most adapt``) and ``judge`` (a tiny CTC judge trained for two epochs). Tests check
    plumbing with it, never quality. -> ``run``."""

    from most.adapt import SourceSection
    from most.stages.adapt import adapt
    from most.stages.units import TokenizerConfig as UnitTokenizerConfig
    from most.stages.units import units
    from most.units.mel_kmeans import MelKMeansConfig

    r = Run(run)
    write_spoken_data(r.root)
    unit_cfg = UnitTokenizerConfig(fit_seconds=60.0, gl_iters=4, mel_kmeans=MelKMeansConfig(k=16))
    units(run=r.root, tokenizer=unit_cfg)
    texts = SPEECH_SENTENCES * 4 + [q for q, _ in SPEECH_QA]
    base = save_tiny_base(r.hf("base"), texts)
    shutil.copytree(adapt(run=r.root, source=SourceSection(model=base)), r.hf("stage2"))
    judge(run=r.root, model=JUDGE_MODEL, train=JUDGE_TRAIN)
    return r.root


#: The sentences of the units tests' corpus (``tests/units/conftest.py`` speaks them).
UNIT_SENTENCES = [
    "the capital of velmora is tarsk",
    "a red lantern hangs above the old gate",
    "nine sailors crossed the silver river at dawn",
    "she keeps the brass key in a wooden box",
    "the market opens when the bells ring twice",
    "tomorrow the council will vote on the bridge",
    "my brother found a map under the stairs",
    "green apples grow in the northern valley",
]


def voice_ratio(tok, train_wavs: list[np.ndarray]) -> float:
    """Mean normalised unit edit distance between one sentence's two voices (train rows 2i, 2i+1),
    over that between two different sentences: low = units that ignore the voice."""
    from rapidfuzz.distance import Levenshtein

    seqs = [tok.encode(w, 16_000).tolist() for w in train_wavs]
    n = len(seqs)
    same = np.mean([Levenshtein.normalized_distance(*seqs[i : i + 2]) for i in range(0, n, 2)])
    diff = np.mean(
        [Levenshtein.normalized_distance(seqs[i], seqs[(i + 3) % n]) for i in range(0, n, 2)]
    )
    return float(same / diff)
