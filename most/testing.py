"""Test helpers: tiny runs built inline (text world, unit datasets, an 'adapted' tiny Qwen3-MoE).

No network and no files from other stages: tests of every area can build a complete tiny RUN.

Until ``most adapt`` lands, the adapted model is a plain ``Qwen3MoeForCausalLM`` whose embeddings are
resized to the layout's vocabulary, saved with ``token_layout.json`` and a tokenizer that knows the
new tokens: exactly the folder contract ``adapt`` promises.
"""

from __future__ import annotations

import random
from pathlib import Path

import datasets

from most.ctc.model import CTCModelConfig
from most.io import atomic_write_json
from most.layout import TokenLayout
from most.run import UNIT_TOKENIZER_FILE, Run
from most.stages.judge import CTCTrainConfig, judge
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
    """Everything stage1/stage2 read: adapt/hf, units/, data/text, data/instructions."""
    write_text_run(run)
    tok = train_text_tokenizer(sentences(64) + ["Question Answer repeat"] * 4, TokenizerConfig(300))
    layout = TokenLayout(text_vocab_size=len(tok), n_units=N_UNITS, unit_tokenizer_hash=UNIT_HASH)
    tok.add_special_tokens({"additional_special_tokens": layout.new_tokens()})
    assert tok.convert_tokens_to_ids(layout.unit_token(0)) == layout.unit_offset

    from transformers import Qwen3MoeForCausalLM

    model = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok) - len(layout.new_tokens()), 0))
    model.resize_token_embeddings(layout.vocab_size)
    hf = Run(run).hf("adapt")
    model.save_pretrained(str(hf))
    tok.save_pretrained(str(hf))
    layout.save(hf)

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


# Small stand-ins shared by tests of several modules.


class Chars:
    """A character-level stand-in tokenizer: one id per character."""

    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def tiny_lm(vocab_size: int = 64):
    """A random :data:`TINY_MODEL` ``Qwen3MoeForCausalLM`` (seed 0) over ``vocab_size`` ids."""
    import torch
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(vocab_size, 0))


class Voice:
    """A vocoder/TTS stand-in: a "wav" is the unit list as floats."""

    def __init__(self, says: dict[str, list[int]]) -> None:
        self.says = says

    def vocode(self, units):
        import numpy as np

        return np.asarray(units, dtype=np.float32)

    def tts_units(self, texts, sampling=None, on_batch=None) -> list[list[int]]:
        if on_batch:
            on_batch(len(texts))
        return [self.says[t] for t in texts]


class Ear:
    """A judge stand-in: knows which "wav" means which words."""

    name = "ear"

    def __init__(self, hears: dict[tuple, str]) -> None:
        self.hears = hears

    def transcribe(self, wavs) -> list[str]:
        import numpy as np

        return [self.hears.get(tuple(np.asarray(w).tolist()), "") for w in wavs]


# What `most adapt` makes of the tiny MoE bases (the ``base_dirs`` fixture of tests/conftest.py).

TEXT_VOCAB = 64  # the bases' text vocabulary
LAYOUT_UNITS = 20  # unit tokens `layout_args` adds
ARCHS = ("qwen3_moe", "qwen2_moe", "olmoe", "mixtral", "deepseek_v3", "deepseek_v2")


def layout_args():
    """The ``layout`` section of ``most adapt`` for the tiny bases: :data:`LAYOUT_UNITS` units."""
    from most.adapt import LayoutSection

    return LayoutSection(n_units=LAYOUT_UNITS, unit_tokenizer_hash="test-units")


def run_adapt(run: Path, base: Path, **experts) -> Path:
    """``most adapt`` of ``base`` into ``run`` with ``ExpertsConfig(**experts)``; the HF folder."""
    from most.adapt import SourceSection
    from most.moe.config import ExpertsConfig
    from most.stages.adapt import adapt

    return adapt(
        run=run,
        source=SourceSection(model=base),
        experts=ExpertsConfig(**experts),
        layout=layout_args(),
    )


def load_adapted(run: Path, bases: dict[str, Path], arch: str = "qwen3_moe", **experts):
    """``run_adapt`` then load: ``(model in eval mode, TokenLayout)``."""
    from transformers import AutoModelForCausalLM

    from most.modeling import load_layout

    out = run_adapt(run, bases[arch], **experts)
    return AutoModelForCausalLM.from_pretrained(out).eval(), load_layout(out)


def mixed_batch(
    layout: TokenLayout, batch: int = 2, n_text: int = 6, n_speech: int = 6, seed: int = 0
):
    """Text ids, then <|begin_of_audio|> and unit ids: ``(B, n_text + 1 + n_speech)``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    text = torch.randint(4, TEXT_VOCAB, (batch, n_text), generator=g)
    boa = torch.full((batch, 1), layout.special_id("<|begin_of_audio|>"))
    units = layout.units_to_ids(torch.randint(0, layout.n_units, (batch, n_speech), generator=g))
    return torch.cat([text, boa, units], dim=1)


# Grouped expert dispatch against a per-token reference loop.


def loop_experts(m, x, index, weight):
    """Reference for ``GroupedExperts``: every token slot through its expert, one at a time."""
    import torch

    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for i, w in zip(index[t].tolist(), weight[t], strict=True):
            if i == m.num_experts:
                continue
            gate, up = (m.gate_up_proj[i] @ x[t]).chunk(2)
            out[t] = out[t] + w * (m.down_proj[i] @ (m.act_fn(gate) * up))
    return out


def skip_case():
    """6 experts with non-trivial weights; 20 tokens x 3 slots, id 6 = skip, token 0 served by
    nobody. Returns ``(experts, x, index)``."""
    import torch

    from most.moe.experts import GroupedExperts

    torch.manual_seed(0)
    m = GroupedExperts(6, 16, 8)
    torch.nn.init.normal_(m.gate_up_proj, std=0.3)
    torch.nn.init.normal_(m.down_proj, std=0.3)
    x = torch.randn(20, 16, requires_grad=True)
    index = torch.randint(0, 7, (20, 3))
    index[0] = 6
    return m, x, index


def against_loop(m, x, index, weight, wrt: list):
    """``(ours, reference, our grads, reference grads)``, gradients of ``sum(out^2)`` wrt ``wrt``."""
    import torch

    ours = m(x, index, weight, can_skip=True)
    ref = loop_experts(m, x, index, weight)
    grads = torch.autograd.grad(ours.square().sum(), wrt)
    return ours, ref, grads, torch.autograd.grad(ref.square().sum(), wrt)


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
    import subprocess

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
    datasets.DatasetDict(train=datasets.Dataset.from_dict(instr)).save_to_disk(
        str(r.dataset("instructions"))
    )


def save_tiny_base(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A random :data:`TINY_MODEL` Qwen3-MoE (no shared experts) with a 300-token byte-level BPE
    tokenizer trained on ``texts``, saved as an HF folder."""
    import torch
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
    import shutil

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
