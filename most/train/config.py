"""Recipe sections shared by the stages: the base model's shape and the Trainer's settings.

Every field is a real argument: jsonargparse refuses unknown YAML keys and ``__post_init__`` refuses
bad values, so a typo in a recipe fails before any data is read.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from most.cpu import bf16_timings, cpu_bf16_is_faster

STRATEGIES = ("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3")


@dataclass
class ModelConfig:
    """Shape of the tiny Qwen3-MoE the ``base`` stage pretrains (a real ``transformers`` class)."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 64
    moe_intermediate_size: int = 256
    num_experts: int = 8
    num_experts_per_tok: int = 2
    max_position_embeddings: int = 2048
    router_aux_loss_coef: float = 0.01
    """Weight of the load-balancing loss added to the LM loss (``output_router_logits`` is on)."""
    tie_word_embeddings: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("model.hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("model.num_attention_heads must be a multiple of num_key_value_heads")
        if not 0 < self.num_experts_per_tok <= self.num_experts:
            raise ValueError("model: need 0 < num_experts_per_tok <= num_experts")

    def hf_config(self, vocab_size: int, eos_id: int):
        from transformers import Qwen3MoeConfig

        return Qwen3MoeConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=4 * self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            head_dim=self.head_dim,
            moe_intermediate_size=self.moe_intermediate_size,
            num_experts=self.num_experts,
            num_experts_per_tok=self.num_experts_per_tok,
            norm_topk_prob=True,
            max_position_embeddings=self.max_position_embeddings,
            output_router_logits=True,
            router_aux_loss_coef=self.router_aux_loss_coef,
            tie_word_embeddings=self.tie_word_embeddings,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )


@dataclass
class TrainerConfig:
    """Lightning ``Trainer`` settings: budget, precision, parallelism, checkpoints, logging."""

    max_steps: int = 1000
    """Optimizer steps; also the length of the cosine schedule."""
    max_time_min: float | None = None
    """Safety stop after this many minutes of training (resumed runs count the time already spent)."""
    accumulate: int = 1
    """Micro-batches per optimizer step."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    precision: str = "auto"
    """``auto`` = ``bf16-mixed`` on GPU, and on a CPU where a bf16 training step measures faster
    than fp32 (:func:`cpu_bf16_is_faster`), else ``32-true``; or any Lightning precision string."""
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    """One of ``auto``, ``ddp``, ``ddp_spawn``, ``fsdp`` (FSDP2 per decoder layer, GPUs or CPUs),
    ``deepspeed_stage_2``, ``deepspeed_stage_3`` (the optional extra: ``pip install -e
    '.[deepspeed]'``); :mod:`most.train.sharding`."""
    sharded_checkpoint: bool = False
    """``fsdp`` only: each rank writes its shard of the weights and Adam state into a checkpoint
    folder (``torch.distributed.checkpoint``) instead of rank 0 gathering them into one file (12 B
    per parameter in rank 0's host RAM). Either kind resumes on any number of ranks."""
    val_every: int = 200
    """Validate every this many micro-batches (0 = never)."""
    ckpt_every: int = 100
    """Checkpoint every this many optimizer steps."""
    keep_last: int = 2
    """Step checkpoints kept besides ``last.ckpt`` and the best one (by validation loss)."""
    log_every: int = 10
    threads: int | None = None
    """torch intra-op threads (None = torch's default)."""
    progress: bool = True
    """Rich progress bar (off in tests and non-interactive jobs)."""
    compile: bool = False
    """``torch.compile`` each decoder layer while training, its MoE block eager
    (:mod:`most.train.compile`): fused elementwise passes, ~1.3x a step of the tiny default on a
    2-core CPU, for ~30 s of compiling at the first step. Strategies ``auto`` and ``ddp`` only."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy {self.strategy!r} is not one of {STRATEGIES}")
        if self.sharded_checkpoint and self.strategy != "fsdp":
            raise ValueError("trainer.sharded_checkpoint needs trainer.strategy=fsdp")
        if self.compile and self.strategy not in ("auto", "ddp", "ddp_spawn"):
            raise ValueError(
                f"trainer.compile works with strategy auto, ddp or ddp_spawn, not {self.strategy}"
            )
        if self.max_steps < 1 or self.accumulate < 1 or self.ckpt_every < 1 or self.keep_last < 1:
            raise ValueError("trainer: max_steps, accumulate, ckpt_every, keep_last must be >= 1")

    def resolved_precision(self) -> str:
        import torch

        if self.precision != "auto":
            return self.precision
        gpu = self.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        if gpu:
            return "bf16-mixed"
        choice = "bf16-mixed" if cpu_bf16_is_faster() else "32-true"
        if (times := bf16_timings()) is not None:
            print(
                f"most: trainer.precision auto -> {choice} (a probe step on this CPU: bf16 "
                f"{1e3 * times[1]:.0f} ms, fp32 {1e3 * times[0]:.0f} ms)",
                file=sys.stderr,
                flush=True,
            )
        return choice
