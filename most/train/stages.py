"""``most base``, ``most stage1``, ``most stage2``: one training path, three data mixtures.

Each function's signature is its command line (jsonargparse); each dataclass parameter is a recipe
section (``--optim.lr=3e-4``). All three go through :func:`_train`: build the mixture, wrap the model
in :class:`~most.train.module.CausalLMModule`, fit with resume (:mod:`most.train.runner`), export an HF
folder. ``--dry_run=true`` validates the recipe and prints parameter counts and a per-GPU memory estimate
without reading data or loading weights.

=========  ============================  ================================  =====================
stage      reads                         tasks (default ratios)            writes
=========  ============================  ================================  =====================
base       data/text, data/sqa           text_lm .9, text_qa .1            base/hf (+ tokenizer)
stage1     adapt/hf, units/, data/text   asr .4, tts .4, text_lm .2,       stage1/hf
                                         text_qa 0, speech_lm 0 (optional)
stage2     stage1/hf, units/, data/      s2t .4, s2s .4, instruct .1,      stage2/hf
                                         asr .05, tts .05 (replay),
                                         text_lm 0, text_qa 0,
                                         speech_lm 0 (optional)
=========  ============================  ================================  =====================

Multi-node (N nodes x 8 GPUs), Lightning's launcher: on every node run ::

    MASTER_ADDR=<node0> MASTER_PORT=29500 NODE_RANK=<i> WORLD_SIZE=$((N*8)) \\
      most stage1 --config recipes/deepseek-v2-lite/stage1.yaml --run RUN \\
      --trainer.num_nodes=N --trainer.devices=8

(under SLURM, ``srun --nodes=N --ntasks-per-node=8 most stage1 ...``; Lightning reads the SLURM env).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from most.data.prompts import Example, Prompts, SpeechMode
from most.layout import TokenLayout
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer
from most.train import sources as S
from most.train.config import ModelConfig, TrainerConfig
from most.train.datamodule import DataConfig, MixtureDataModule
from most.train.dryrun import load_config, print_dry_run
from most.train.mixing import Source
from most.train.module import CausalLMModule
from most.train.optim import LoraConfig, OptimConfig, apply_lora, select_trainable
from most.train.runner import StagePaths, export_hf, fit, prepare, write_metrics
from most.train.textqa import qa_text, text_qa_accuracy

BASE_RATIOS = {"text_lm": 0.9, "text_qa": 0.1}
STAGE1_RATIOS = {"asr": 0.4, "tts": 0.4, "text_lm": 0.2, "text_qa": 0.0, "speech_lm": 0.0}
STAGE2_RATIOS = {
    "s2t": 0.4,
    "s2s": 0.4,
    "instruct": 0.1,
    "asr": 0.05,
    "tts": 0.05,
    "text_lm": 0.0,
    "text_qa": 0.0,
    "speech_lm": 0.0,
}


@dataclass
class BaseEval:
    """Held-out text-QA accuracy measured after the base stage."""

    n_questions: int = 200
    """``qa_heldout`` questions asked (0 = skip)."""
    max_new_tokens: int = 12


# Shared, never mutated defaults (a call in a signature default would be evaluated once anyway).
_DEFAULT_BaseEval = BaseEval()
_DEFAULT_DataConfig = DataConfig()
_DEFAULT_LoraConfig = LoraConfig()
_DEFAULT_ModelConfig = ModelConfig()
_DEFAULT_OptimConfig = OptimConfig()
_DEFAULT_TokenizerConfig = TokenizerConfig()
_DEFAULT_TrainerConfig = TrainerConfig()


def base(
    run: Path = Path("runs/demo"),
    model: ModelConfig = _DEFAULT_ModelConfig,
    tokenizer: TokenizerConfig = _DEFAULT_TokenizerConfig,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    evaluation: BaseEval = _DEFAULT_BaseEval,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """Pretrain the tiny MoE text LM on the text world (embedded default only)."""
    if dry_run:
        print_dry_run(model.hf_config(tokenizer.vocab_size, 0), data, trainer, optim)
        return
    paths = prepare(Path(run) / "base", force)
    if paths is None:
        return
    text = S.load_data(run, "text")
    tok_dir = paths.root / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():  # resumed run: the ids must not change
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        tok = train_text_tokenizer(text["train"]["text"], tokenizer)
        if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
            tok.save_pretrained(str(tok_dir))
    from transformers import Qwen3MoeForCausalLM

    L.seed_everything(data.seed, verbose=False)
    hf_model = Qwen3MoeForCausalLM(model.hf_config(len(tok), tok.eos_token_id))
    p = Prompts(None, tok)
    train = [S.text_lm(p, text["train"])]
    val = [S.text_lm(p, text["heldout"])]
    sqa = _maybe(lambda: S.load_data(run, "sqa"))
    if sqa is not None:
        train.append(_text_qa(p, sqa["qa_train"]))
    metrics = _train(paths, hf_model, tok, None, train, BASE_RATIOS, val, data, optim, trainer)
    if metrics is None or sqa is None or evaluation.n_questions == 0:
        return
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(str(paths.hf))
    # Held-out facts were seen only as statements; qa_train facts also in the QA format, so the
    # pair separates "knows the fact" from "can retrieve a fact it never saw asked".
    for split, key in (("qa_heldout", "heldout_text_qa"), ("qa_train", "train_text_qa")):
        qs = sqa[split].select(range(min(evaluation.n_questions, len(sqa[split]))))
        metrics[key] = text_qa_accuracy(
            reloaded, tok, qs["text"], qs["answer"], evaluation.max_new_tokens
        )
        print(f"base: {key} accuracy {metrics[key]['accuracy']:.3f} (n={metrics[key]['n']})")
    write_metrics(paths, metrics)


def stage1(
    run: Path = Path("runs/demo"),
    init: Path | None = None,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """MoST stage 1: ASR + TTS + text-LM mixture on the adapted model (``init`` = RUN/adapt/hf)."""
    init = Path(init) if init else Path(run) / "adapt" / "hf"
    if dry_run:
        print_dry_run(load_config(init), data, trainer, optim, lora)
        return
    paths = prepare(Path(run) / "stage1", force)
    if paths is None:
        return
    model, tok, layout = _load(init)
    S.check_layout(run, layout)
    p = Prompts(layout, tok)
    speech = S.load_units(run, layout, "speech")
    text = S.load_data(run, "text")
    train = [
        S.asr(p, S.asr_train(speech), data.unit_noise),
        S.tts(p, speech["train"], data.tts_history_noise),
        S.text_lm(p, text["train"]),
        S.speech_lm(p, S.speech_lm_train(speech), data.speech_lm_spans),
    ]
    train += _text_qa_replay(run, p, layout, STAGE1_RATIOS, data)
    val = [S.asr(p, speech["dev"]), S.tts(p, speech["dev"]), S.text_lm(p, text["heldout"])]
    _train(paths, model, tok, layout, train, STAGE1_RATIOS, val, data, optim, trainer, lora)


def stage2(
    run: Path = Path("runs/demo"),
    init: Path | None = None,
    speech_mode: SpeechMode = "text_then_units",
    answer_sentences: bool = True,
    data: DataConfig = _DEFAULT_DataConfig,
    optim: OptimConfig = _DEFAULT_OptimConfig,
    trainer: TrainerConfig = _DEFAULT_TrainerConfig,
    lora: LoraConfig = _DEFAULT_LoraConfig,
    force: bool = False,
    dry_run: bool = False,
) -> None:
    """MoST stage 2: spoken-QA and text instruction tuning with ASR/TTS replay.

    Only ``qa_train`` facts are used; ``qa_heldout`` stays out of training and validation.
    ``speech_mode``: spoken answers as text-then-units or units only.
    ``answer_sentences``: text answers are the data's ``answer_sentence`` (the fact as a statement)
    where it has one, else the short ``answer`` (see :func:`most.train.sources.answer_column`).
    """
    init = Path(init) if init else Path(run) / "stage1" / "hf"
    if dry_run:
        print_dry_run(load_config(init), data, trainer, optim, lora)
        return
    paths = prepare(Path(run) / "stage2", force)
    if paths is None:
        return
    model, tok, layout = _load(init)
    S.check_layout(run, layout)
    p = Prompts(layout, tok)
    speech = S.load_units(run, layout, "speech")
    qa = S.load_units(run, layout, "sqa")["qa_train"]
    instr = S.load_data(run, "instructions")
    text = S.load_data(run, "text")
    train = [
        S.s2t(p, qa, answer_sentences, data.unit_noise),
        S.s2s(p, qa, speech_mode, answer_sentences, data.unit_noise),
        S.instruct(p, instr["train"]),
        S.asr(p, S.asr_train(speech), data.unit_noise),
        S.tts(p, speech["train"], data.tts_history_noise),
        S.text_lm(p, text["train"]),
        S.speech_lm(p, S.speech_lm_train(speech), data.speech_lm_spans),
        *_text_qa_replay(run, p, layout, STAGE2_RATIOS, data, answer_sentences),
    ]
    val = [S.instruct(p, instr["test"]), S.asr(p, speech["dev"]), S.tts(p, speech["dev"])]
    _train(paths, model, tok, layout, train, STAGE2_RATIOS, val, data, optim, trainer, lora)


def _train(
    paths: StagePaths,
    model: torch.nn.Module,
    tok,
    layout: TokenLayout | None,
    train: list[Source],
    defaults: dict[str, float],
    val: list[Source],
    data: DataConfig,
    optim: OptimConfig,
    trainer: TrainerConfig,
    lora: LoraConfig | None = None,
) -> dict | None:
    """Fit and export; returns the run metrics on the global-zero process, None elsewhere."""
    train_sources, train_ratios = S.mixture(train, defaults, data.ratios)
    val_ratios = [1.0] * len(val)
    if lora is not None and lora.enabled:
        model = apply_lora(model, lora)
    trainable = select_trainable(model, optim)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    dm = MixtureDataModule(train_sources, train_ratios, val, val_ratios, data, pad_id)
    n_old = layout.text_vocab_size if layout is not None else None
    # torch's global generator starts from a random seed in this process (an import reseeds it),
    # and dropout draws from it: seed it, so the same recipe gives the same model on every run.
    L.seed_everything(data.seed, verbose=False)
    module = CausalLMModule(model, optim, trainer.max_steps, n_old)
    pl_trainer, metrics = fit(paths, module, dm, trainer)
    if not pl_trainer.is_global_zero:
        return None
    export_hf(module.model, tok, layout, paths.hf)
    metrics["trainable_params"] = sum(
        p.numel() for n, p in model.named_parameters() if n in trainable
    )
    metrics["ratios"] = dict(zip([s.task for s in train_sources], train_ratios, strict=True))
    write_metrics(paths, metrics)
    return metrics


def _text_qa_replay(
    run: Path,
    p: Prompts,
    layout: TokenLayout,
    defaults: dict,
    data: DataConfig,
    sentences: bool = True,
) -> list[Source]:
    """The ``text_qa`` source of a speech stage (``qa_train`` only), read only when its ratio > 0."""
    if {**defaults, **data.ratios}.get("text_qa", 0.0) <= 0:
        return []
    return [S.text_qa(p, S.load_units(run, layout, "sqa")["qa_train"], sentences)]


def _text_qa(p: Prompts, ds) -> Source:
    ds = ds.select_columns(["text", "answer"])

    def build(row: dict) -> Example:
        ex = p.text_lm(qa_text(row["text"], row["answer"]))
        return Example(ex.input_ids, ex.labels, "text_lm")

    return Source("text_qa", ds, build)


def _load(init: Path):
    """Model, tokenizer and token layout of an HF folder written by ``most adapt`` or a stage."""
    # `most/__init__` (already imported: this is most.train) registers the adapted model class.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (init / "config.json").is_file():
        raise FileNotFoundError(f"{init}: no HF model folder (run the previous stage first)")
    layout = TokenLayout.load(init)
    model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(init))
    rows = model.get_input_embeddings().num_embeddings
    if rows < layout.vocab_size:
        raise ValueError(f"{init}: embedding has {rows} rows, layout needs {layout.vocab_size}")
    return model, tok, layout


def _maybe(load):
    try:
        return load()
    except FileNotFoundError:
        return None
