"""``most base``: pretrain the tiny MoE text LM of the embedded default on the text world.

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
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3MoeForCausalLM

from most.data.prompts import Prompts
from most.run import Run, fingerprint
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer
from most.train import sources as S
from most.train.config import ModelConfig, TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dryrun import print_dry_run
from most.train.optim import OptimConfig
from most.train.runner import prepare, write_metrics
from most.train.stage import BASE_RATIOS, maybe, text_qa_source, train_and_export
from most.train.textqa import text_qa_accuracy


@dataclass
class BaseEval:
    """Held-out text-QA accuracy measured after the base stage."""

    n_questions: int = 200
    """``qa_heldout`` questions asked (0 = skip)."""
    max_new_tokens: int = 12


# Shared, never mutated defaults (a call in a signature default would be evaluated once anyway).
_DEFAULT_BaseEval = BaseEval()
_DEFAULT_DataConfig = DataConfig()
_DEFAULT_ModelConfig = ModelConfig()
_DEFAULT_OptimConfig = OptimConfig()
_DEFAULT_TokenizerConfig = TokenizerConfig()
_DEFAULT_TrainerConfig = TrainerConfig()


def base(
    run: Path,
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
    R = Run(run)
    settings = dict(model=model, tokenizer=tokenizer, data=data, optim=optim, trainer=trainer)
    current = fingerprint({**settings, "evaluation": evaluation}, {"data": R.output_id("data")})
    paths = prepare(R, "base", current, force)
    if paths is None:
        return
    text = R.load_data("text")
    tok_dir = paths.root / "tokenizer"
    if (tok_dir / "tokenizer.json").is_file():  # resumed run: the ids must not change
        tok = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        tok = train_text_tokenizer(text["train"]["text"], tokenizer)
        if L.fabric.utilities.rank_zero.rank_zero_only.rank == 0:
            tok.save_pretrained(str(tok_dir))
    L.seed_everything(data.seed, verbose=False)
    hf_model = Qwen3MoeForCausalLM(model.hf_config(len(tok), tok.eos_token_id))
    p = Prompts(None, tok)
    train = [S.text_lm(p, text["train"])]
    val = [S.text_lm(p, text["heldout"])]
    sqa = maybe(lambda: R.load_data("sqa"))
    if sqa is not None:
        train.append(text_qa_source(p, sqa["qa_train"]))
    metrics = train_and_export(
        paths, hf_model, tok, None, train, BASE_RATIOS, val, data, optim, trainer
    )
    if metrics is None or sqa is None or evaluation.n_questions == 0:
        return
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
