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
    """LoRA adapters via peft; the exported HF folder has them merged into the weights.

    Beside the adapters, by default the new speech rows of the input and output embeddings and the
    routers train in full: a frozen random unit embedding cannot carry speech whatever the
    adapters learn, and routers decide which experts a speech token reaches.
    """

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    """Dropout on the adapters' input; must be 0 with ``target_parameters`` (peft cannot factor it
    out of a parameter's update)."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    """Linear layers that get an adapter, by module-name suffix."""
    target_parameters: list[str] = field(default_factory=list)
    """Stacked expert weights that get an adapter per expert, by parameter-name suffix, e.g.
    ``experts.gate_up_proj`` / ``experts.down_proj``: the experts are most of an MoE's weights."""
    train_new_rows: bool = True
    """The rows of tokens added after the text vocabulary (ids >= the layout's
    ``text_vocab_size``) of ``embed_tokens`` and ``lm_head`` train (peft trainable tokens): the unit
    tokens start random and must learn; the text rows stay bit-identical."""
    train_routers: bool = True
    """Every MoE block's ``router`` trains in full: speech routing is new, and a router is tiny."""

    def __post_init__(self) -> None:
        if self.r <= 0:
            raise ValueError(f"lora.r must be > 0, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.dropout and self.target_parameters:
            raise ValueError(
                "lora.dropout must be 0 with lora.target_parameters (peft applies no dropout to "
                "parameter targets)"
            )


def apply_lora(model: nn.Module, cfg: LoraConfig) -> nn.Module:
    """Wrap ``model`` in peft LoRA. Trainable afterwards: the adapters, then as ``cfg`` says the
    new token rows of the input/output embeddings (:func:`new_token_rows`) and the routers, and
    the audio adapter (``model.audio_adapter``, new) in full; every other weight is frozen
    (:func:`select_trainable` may add some back).

    Tied embeddings share one set of trainable rows, so the merged export equals the adapter model.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    rows = new_token_rows(model) if cfg.train_new_rows else []
    emb, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is not None and out.weight is emb.weight
    tokens = {_module_name(model, emb): rows} if rows else None
    if rows and out is not None and not tied:
        tokens[_module_name(model, out)] = rows
    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        target_parameters=list(cfg.target_parameters) or None,
        trainable_token_indices=tokens,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, peft_cfg)
    if rows and tied and not hasattr(model.get_output_embeddings(), "token_adapter"):
        _tie_output_rows(model, out, rows)
    if cfg.train_routers:
        for name, module in model.named_modules():
            if name.rpartition(".")[2] == "router":
                module.requires_grad_(True)
    adapter = getattr(model, "audio_adapter", None)
    if adapter is not None:  # a continuous-audio adapter is new: it trains in full
        adapter.requires_grad_(True)
    return peft_model


def new_token_rows(model: nn.Module) -> list[int]:
    """Embedding rows of the tokens added after the text vocabulary (ids >= the layout's
    ``text_vocab_size``, padding rows included); none for a model without a token layout."""
    layout = getattr(model, "layout", None)
    if layout is None:
        return []
    return list(range(layout.text_vocab_size, model.get_input_embeddings().num_embeddings))


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _tie_output_rows(model: nn.Module, out: nn.Module, rows: list[int]) -> None:
    """Wrap the output embedding ``out`` (tied to the input one) so it reads the input embedding's
    trainable rows, as peft does itself for models that declare their tied weights at the top (the
    adapted model's tying sits in its base sub-model)."""
    from peft.utils.other import TrainableTokensWrapper

    adapter = model.get_input_embeddings().token_adapter
    parent, _, child = _module_name(model, out).rpartition(".")
    wrapper = TrainableTokensWrapper(out, "default", token_indices=rows, tied_adapter=adapter)
    wrapper.set_adapter("default", inference_mode=False)
    setattr(model.get_submodule(parent), child, wrapper)


def select_trainable(model: nn.Module, cfg: OptimConfig) -> list[str]:
    """Apply ``train``/``freeze`` to ``requires_grad``; return the names left trainable.

    On a plain model ``train`` keeps only the parameters it matches. On a LoRA model
    (:func:`apply_lora`) what LoRA made trainable stays so and ``train`` adds the base weights it
    matches. ``freeze`` then freezes what it matches, adapters included. Regexes see the names
    without peft's wrapping (:func:`plain_name`), the same with and without LoRA.
    """
    lora = getattr(model, "peft_config", None) is not None
    for name, p in model.named_parameters():
        plain = plain_name(name)
        if cfg.train:
            hit = any(re.search(r, plain) for r in cfg.train)
            p.requires_grad = (p.requires_grad or hit) if lora else (p.requires_grad and hit)
        if any(re.search(r, plain) for r in cfg.freeze):
            p.requires_grad = False
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("optim.train/freeze leave no trainable parameter")
    return names


def plain_name(name: str) -> str:
    """A parameter's name as it is without peft: no ``base_model.model.`` prefix, no
    ``base_layer`` / ``token_adapter`` levels (adapter weights keep their ``lora_A`` ... part)."""
    name = name.removeprefix("base_model.model.")
    return re.sub(r"\.(base_layer|token_adapter)(?=\.)", "", name)


def mask_old_embedding_rows(model: nn.Module, n_old: int) -> None:
    """Zero the gradient of rows ``< n_old`` of the input and output embeddings.

    Those rows get no weight decay (see :func:`param_groups`), so AdamW leaves them bit-identical.
    """
    mods = (model.get_input_embeddings(), model.get_output_embeddings())
    # Under LoRA trainable tokens the matrix sits in the wrapper's base layer.
    mats = [m.token_adapter.get_base_layer() if hasattr(m, "token_adapter") else m for m in mods]
    for w in {id(m.weight): m.weight for m in mats}.values():
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
        plain = plain_name(name)
        mult = next((m for r, m in cfg.lr_groups.items() if re.search(r, plain)), 1.0)
        groups.setdefault((mult, _no_decay(plain, p)), []).append(p)
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

    ``fused``: the fused AdamW kernel (CPU and CUDA), several times faster per step than the
    per-tensor loop on the CPU. It unscales no loss scaler's gradients, so the module asks for it
    only where there is none (full precision, bf16-mixed on the CPU).
    """
    opt = torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
