"""The adapter variant of the speech stages: feature examples, their batches, stage 1 end to end."""

from __future__ import annotations

import csv
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from most.corpora.schema import SPEECH_FEATURES, audio_value
from most.data.collate import pack_batch, pad_batch
from most.data.prompts import Example, Prompts
from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO, TokenLayout
from most.moe.adapter import AdapterConfig
from most.run import Run
from most.stages.stage1 import stage1
from most.train import features as F
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import OptimConfig
from most.units.frontend import AudioFrontend, FrontendConfig


class Words:
    """A stand-in text tokenizer: one id per word."""

    eos_token_id = 2

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [10 + len(w) for w in text.split()]


LAYOUT = TokenLayout(text_vocab_size=64, n_units=8, unit_tokenizer_hash="x")
P = Prompts(LAYOUT, Words())


def test_feature_examples_hold_one_placeholder_per_adapter_token():
    feats = torch.randn(10, 3)
    ex = F.with_features(P, lambda u: P.asr(u, "two words"), feats, stack=4)
    start, end = ex.audio_span
    assert end - start == 3  # ceil(10 / 4)
    assert ex.input_ids[start - 1] == LAYOUT.special_id(BEGIN_OF_AUDIO)
    assert ex.input_ids[end] == LAYOUT.special_id(END_OF_AUDIO)
    assert all(label == -100 for label in ex.labels[: end + 1])
    assert ex.features is feats


def test_batches_carry_features_frames_and_positions():
    a = F.with_features(P, lambda u: P.s2t(u, "yes"), torch.ones(6, 3), stack=2)
    b = P.tts("say it", [1, 2, 3])  # a unit example in the same batch: no features
    batch = pad_batch([a, b], pad_id=0, max_len=64)
    assert batch["input_features"].shape == (2, 6, 3)
    assert batch["input_features_mask"].sum(1).tolist() == [6, 0]
    mask = batch["audio_mask"]
    assert mask.shape == batch["input_ids"].shape and mask.sum(1).tolist() == [3, 0]
    assert mask[0, a.audio_span[0] : a.audio_span[1]].all()
    assert "input_features" not in pad_batch([b], pad_id=0, max_len=64)
    with pytest.raises(ValueError, match="cannot be packed"):
        pack_batch([[a]], pad_id=0)
    with pytest.raises(ValueError, match="max_len"):
        pad_batch([a], pad_id=0, max_len=4)


VOICES = ["en-us+m3:165:45", "en-gb+f3:170:65"]


def add_spoken_data(run: Path) -> None:
    """``RUN/data/speech`` with noise 'recordings' beside the run's unit datasets (same texts)."""
    rng = np.random.default_rng(0)
    units = Run(run).load_units("speech")
    splits = {}
    for split in ("train", "dev"):
        rows = units[split].select(range(8 if split == "train" else 2))
        splits[split] = datasets.Dataset.from_list(
            [
                {
                    "id": r["id"], "text": r["text"], "voice": VOICES[i % 2], "task": "asr",
                    "audio": audio_value(rng.normal(0, 0.1, 4000 + 800 * i).astype(np.float32)),
                    "duration": (4000 + 800 * i) / 16_000,
                }
                for i, r in enumerate(rows)
            ],
            features=SPEECH_FEATURES,
        )  # fmt: skip
    datasets.DatasetDict(splits).save_to_disk(str(Run(run).dataset("speech")))


def test_stage1_trains_the_moe_adapter_and_exports_it(speech_run: Path):
    add_spoken_data(speech_run)
    adapter = AdapterConfig(kind="moe", stack=8, expert_size=16, aux_alpha=0.01)
    data = DataConfig(
        batch_size=4, max_len=96, val_batches=1, ratios={"asr": 0.5, "tts": 0.2, "paraling": 0.2}
    )
    fast = TrainerConfig(max_steps=6, val_every=6, ckpt_every=6, log_every=1, progress=False)
    stage1(
        run=speech_run, data=data, optim=OptimConfig(lr=1e-2, warmup_steps=1), trainer=fast,
        adapter=adapter, audio_frontend=FrontendConfig(kind="mel"),
    )  # fmt: skip
    hf = speech_run / "stage1" / "hf"
    model = AutoModelForCausalLM.from_pretrained(str(hf)).eval()
    assert model.config.adapter["kind"] == "moe" and model.config.audio_frontend["kind"] == "mel"
    # the adapter trained: its weights moved from the seeded initialisation
    init = AutoModelForCausalLM.from_pretrained(str(speech_run / "adapt" / "hf"))
    F.attach(init, adapter, FrontendConfig(kind="mel"), data.seed)
    trained = model.audio_adapter.state_dict()
    start = init.audio_adapter.state_dict()
    assert trained.keys() == start.keys()
    assert not torch.equal(trained["in_proj.weight"], start["in_proj.weight"])
    assert not torch.equal(trained["ffn.experts.gate_up_proj"], start["ffn.experts.gate_up_proj"])
    with open(speech_run / "stage1" / "logs" / "metrics.csv") as f:
        asr = [float(r["train/loss_asr"]) for r in csv.DictReader(f) if r.get("train/loss_asr")]
    assert asr and all(np.isfinite(asr))
    with open(speech_run / "stage1" / "logs" / "metrics.csv") as f:
        header = f.readline()
    assert "train/loss_paraling" in header
    # a later stage asking for another adapter on this model is refused
    with pytest.raises(ValueError, match="adapter is moe"):
        F.attach(model, AdapterConfig(kind="dense"), FrontendConfig(kind="mel"), 0)


def test_attach_none_is_the_unit_pipeline(speech_run: Path):
    model = AutoModelForCausalLM.from_pretrained(str(speech_run / "adapt" / "hf"))
    assert F.attach(model, AdapterConfig(), FrontendConfig(), 0) is None
    assert model.audio_adapter is None and model.config.adapter is None
    fe = F.attach(model, AdapterConfig(kind="dense"), FrontendConfig(), 0)
    assert isinstance(fe, AudioFrontend) and model.config.adapter["in_dim"] == fe.dim == 80


def test_adapter_sources_read_the_audio(speech_run: Path):
    add_spoken_data(speech_run)
    speech = Run(speech_run).load_data("speech")["train"]
    fe = AudioFrontend(FrontendConfig())
    src = F.asr(P, speech, fe, stack=4)
    ex = src.build(speech[0])
    assert ex.task == "asr" and ex.features.shape == (26, 80)  # 4000 samples: 26 mel frames
    assert ex.audio_span[1] - ex.audio_span[0] == 7
    replaced = F.replace([Example([1], [1], "tts"), Example([1], [1], "asr")], src)
    assert replaced[1] is src


def test_lora_leaves_a_new_audio_adapter_trainable(speech_run: Path):
    from most.train.optim import LoraConfig, apply_lora

    model = AutoModelForCausalLM.from_pretrained(str(speech_run / "adapt" / "hf"))
    F.attach(model, AdapterConfig(kind="moe", expert_size=8), FrontendConfig(), 0)
    peft_model = apply_lora(model, LoraConfig(enabled=True))
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    adapter = [n for n in trainable if ".audio_adapter." in n]
    assert len(adapter) == len(list(model.audio_adapter.parameters()))
    assert not any("experts.gate_up_proj" in n for n in trainable if "audio_adapter" not in n)


@pytest.mark.slow
def test_ddp_trains_the_adapter_when_a_rank_draws_no_audio(speech_run: Path):
    """2 CPU processes (gloo), batches of 2 with ASR 30%: about half the batches hold no audio, and
    DDP still finds a gradient for every adapter weight (the zero-weighted touch)."""
    import os
    import socket
    import subprocess
    import sys

    add_spoken_data(speech_run)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
    cmd = [
        sys.executable, "-m", "most.cli", "stage1", "--run", str(speech_run),
        "--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--trainer.devices=2",
        "--trainer.threads=1", "--trainer.max_steps=6", "--trainer.val_every=0",
        "--trainer.progress=false", "--data.batch_size=2", "--data.max_len=96",
        "--data.val_batches=0", "--data.ratios={asr: 0.3, tts: 0.7, text_lm: 0.0}",
        "--adapter.kind=moe", "--adapter.stack=8", "--audio_frontend.kind=mel",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    model = AutoModelForCausalLM.from_pretrained(str(speech_run / "stage1" / "hf"))
    assert model.config.adapter["kind"] == "moe"
