"""Tiny text and unit runs built inline: the text world, unit datasets and a tiny Qwen3-MoE taken
through ``most adapt`` (the adapted ``MostForCausalLM`` the training stages start from)."""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import datasets

from most.io import atomic_write_json
from most.layout import TokenLayout
from most.run import UNIT_TOKENIZER_FILE, Run
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer
from most.train.config import ModelConfig

UNIT_HASH = "units0123456789ab"
N_UNITS = 24
NAMES = ["Velmora", "Tarsk", "Oskel", "Brinda", "Kalo", "Meru", "Zathi", "Pelno"]
TINY_MODEL = ModelConfig(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    moe_intermediate_size=32,
    num_experts=4,
    num_experts_per_tok=2,
    max_position_embeddings=256,
)


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"The capital of {rng.choice(NAMES)} is {rng.choice(NAMES)}." for _ in range(n)]


def write_text_run(run: Path, n: int = 64) -> None:
    """RUN/data/text (train/heldout) and RUN/data/sqa (qa_train/qa_heldout, text columns)."""
    text = datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"id": [f"t{i}" for i in range(n)], "text": sentences(n)}),
        heldout=datasets.Dataset.from_dict({"id": ["h0", "h1"], "text": sentences(2, seed=1)}),
    )
    text.save_to_disk(str(Run(run).dataset("text")))

    def qa(k: int, seed: int) -> datasets.Dataset:
        rng = random.Random(seed)
        subj = [rng.choice(NAMES) for _ in range(k)]
        return datasets.Dataset.from_dict(
            {
                "id": [f"q{seed}{i}" for i in range(k)],
                "fact_id": [f"f{seed}{i}" for i in range(k)],
                "text": [f"What is the capital of {s}?" for s in subj],
                "answer": [rng.choice(NAMES) for _ in range(k)],
            }
        )

    datasets.DatasetDict(qa_train=qa(16, 2), qa_heldout=qa(4, 3)).save_to_disk(
        str(Run(run).dataset("sqa"))
    )


def unit_rows(n: int, seed: int, answers: bool = False) -> dict[str, list]:
    rng = random.Random(seed)
    rows: dict[str, list] = {
        "id": [f"u{seed}-{i}" for i in range(n)],
        "units": [[rng.randrange(N_UNITS) for _ in range(rng.randint(5, 20))] for _ in range(n)],
        "text": sentences(n, seed),
        "voice": ["v0"] * n,
    }
    if answers:
        rows["fact_id"] = [f"f{i}" for i in range(n)]
        rows["answer"] = [rng.choice(NAMES) for _ in range(n)]
        rows["answer_sentence"] = [f"The answer is {a}." for a in rows["answer"]]
        rows["answer_units"] = [[rng.randrange(N_UNITS) for _ in range(8)] for _ in range(n)]
    return rows


def write_speech_run(run: Path, unit_hash: str = UNIT_HASH) -> TokenLayout:
    """Everything stage1/stage2 read: adapt/hf (a random :data:`TINY_MODEL` Qwen3-MoE with its text
    tokenizer, saved as base/hf, through ``most adapt``: a ``MostForCausalLM``), units/, data/text,
    data/instructions."""
    import torch
    from transformers import Qwen3MoeForCausalLM

    from most.adapt import LayoutSection, SourceSection
    from most.stages.adapt import adapt

    write_text_run(run)
    tok = train_text_tokenizer(sentences(64) + ["Question Answer repeat"] * 4, TokenizerConfig(300))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok), 0))
    src = Run(run).hf("base")
    base.save_pretrained(str(src))
    tok.save_pretrained(str(src))
    units = LayoutSection(n_units=N_UNITS, unit_tokenizer_hash=UNIT_HASH)
    with contextlib.redirect_stdout(io.StringIO()):
        hf = adapt(run=run, source=SourceSection(model=src), layout=units)
    layout = TokenLayout.load(hf)

    atomic_write_json(
        Run(run).unit_tokenizer / UNIT_TOKENIZER_FILE,
        {"vocab_size": N_UNITS, "hash": unit_hash, "frame_rate": 50},
    )
    atomic_write_json(Run(run).units_manifest, {"hash": unit_hash, "complete": True})
    R = Run(run)
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict(unit_rows(48, 0)),
        dev=datasets.Dataset.from_dict(unit_rows(4, 1)),
    ).save_to_disk(str(R.unit_dataset(unit_hash, "speech")))
    datasets.DatasetDict(
        qa_train=datasets.Dataset.from_dict(unit_rows(16, 2, answers=True)),
        qa_heldout=datasets.Dataset.from_dict(unit_rows(4, 3, answers=True)),
    ).save_to_disk(str(R.unit_dataset(unit_hash, "sqa")))
    instr = {"id": ["i0", "i1"], "task": ["repeat"] * 2, "prompt": ["repeat Tarsk", "repeat Kalo"]}
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict({**instr, "response": ["Tarsk", "Kalo"]}),
        test=datasets.Dataset.from_dict({**instr, "response": ["Tarsk", "Kalo"]}),
    ).save_to_disk(str(R.dataset("instructions")))
    return layout
