"""What trains and how fast: freeze/train regex lists, per-group learning rates, LoRA, AdamW + schedule.

Trainability is data in the recipe (NeMo-style regex lists) rather than code: "train only the speech
experts and the new embeddings" is ``train: ['\\.experts\\.', 'embed_tokens', 'lm_head']`` plus
``new_embedding_rows_only: true``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class OptimConfig:
    """AdamW with linear warmup and cosine decay, and the trainable-parameter selection."""

    lr: float = 1e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of ``lr`` (end of the cosine)."""
    warmup_steps: int = 50
    """Optimizer steps of linear warmup from 0."""
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1
    """Decoupled weight decay; never applied to norms, biases or embeddings."""
    lr_groups: dict[str, float] = field(default_factory=dict)
    """Regex -> learning-rate multiplier (first match wins), e.g. ``{'router|gate\\.weight': 0.1}``."""
    train: list[str] = field(default_factory=list)
    """If not empty, only parameters whose name matches one of these regexes train."""
    freeze: list[str] = field(default_factory=list)
    """Parameters whose name matches one of these regexes are frozen (applied after ``train``)."""
    new_embedding_rows_only: bool = False
    """In embedding / LM-head matrices, update only rows of tokens added after the text vocabulary."""
    loss_weighting: str = "token"
    """``token``: mean over all answer tokens of the batch (``transformers``' own loss). ``example``:
    mean per example, then over examples, so a task's share of the gradient is its mixture ratio
    rather than ratio x answer length (an ASR transcript is ~15 tokens, a TTS answer ~115 units)."""
    dropout: float = 0.0
    """Residual dropout on each decoder layer's attention and MLP outputs while training (forward
    hooks, :mod:`most.train.regularize`; nothing is saved with the model). 0 = off."""

    def __post_init__(self) -> None:
        if self.loss_weighting not in ("token", "example"):
            raise ValueError(
                f"optim.loss_weighting must be 'token' or 'example', got {self.loss_weighting!r}"
            )
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise ValueError(
                f"optim: need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0 ({self})"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"optim: need 0 <= dropout < 1 ({self})")
        for pattern in [*self.lr_groups, *self.train, *self.freeze]:
            re.compile(pattern)


@dataclass
class LoraConfig:
    """LoRA adapters via peft; the exported HF folder has them merged into the weights."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap ``model`` in peft LoRA; only adapter weights stay trainable."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def select_trainable(model: nn.Module, cfg: OptimConfig) -> list[str]:
    """Apply ``train``/``freeze`` to ``requires_grad``; return the names left trainable."""
    for name, p in model.named_parameters():
        if cfg.train and p.requires_grad:
            p.requires_grad = any(re.search(r, name) for r in cfg.train)
        if any(re.search(r, name) for r in cfg.freeze):
            p.requires_grad = False
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("optim.train/freeze leave no trainable parameter")
    return names


def mask_old_embedding_rows(model: nn.Module, n_old: int) -> None:
    """Zero the gradient of rows ``< n_old`` of the input and output embeddings.

    Those rows get no weight decay (see :func:`param_groups`), so AdamW leaves them bit-identical.
    """
    mats = {
        id(m.weight): m.weight
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
    }
    for w in mats.values():
        if w.requires_grad:
            w.register_hook(lambda g: torch.cat([torch.zeros_like(g[:n_old]), g[n_old:]]))


def _no_decay(name: str, p: nn.Parameter) -> bool:
    return p.ndim < 2 or "norm" in name or "embed" in name or "lm_head" in name


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Trainable parameters grouped by (lr multiplier, decay); each group records its ``lr_mult``."""
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        mult = next((m for r, m in cfg.lr_groups.items() if re.search(r, name)), 1.0)
        groups.setdefault((mult, _no_decay(name, p)), []).append(p)
    return [
        {
            "params": params,
            "lr": cfg.lr * mult,
            "lr_mult": mult,
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
        }
        for (mult, no_decay), params in groups.items()
    ]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier at optimizer ``step``: linear warmup, then cosine down to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int, fused: bool = False):
    """AdamW + per-step LambdaLR, in the form ``LightningModule.configure_optimizers`` returns.

    ``fused``: the fused AdamW kernel (CPU and CUDA), several times faster per step than the foreach
    one on the CPU. Lightning refuses gradient clipping with fused optimizers under mixed precision,
    so the module asks for it only at full precision.
    """
    opt = torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
