"""``--dry-run``: validate a recipe against a model config and estimate memory, loading no weights.

The model is instantiated on the ``meta`` device (shapes only, no storage), so a 30B-parameter config
is counted in a second. Memory per GPU for bf16 mixed precision with AdamW (ZeRO paper accounting):
bf16 weights 2 B + bf16 grads 2 B + fp32 master, m, v 12 B per trainable parameter (frozen ones only
2 B), divided by the data-parallel size where the strategy shards them: DDP shards nothing, ZeRO-2
shards grads and optimizer state, ZeRO-3/FSDP also the weights. Activations use Korthikanti et al.'s
``34 * tokens * hidden`` bytes per layer (flash attention, no recomputation) plus fp32 logits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import LoraConfig, OptimConfig, apply_lora, select_trainable

GIB = 2**30


def load_config(path: Path):
    """An HF config from a model folder or a ``*.json`` config file (no weights, no remote code)."""
    from transformers import AutoConfig

    path = Path(path)
    if path.is_file():
        d = json.loads(path.read_text())
        d.pop("auto_map", None)  # the built-in class, never remote code
        return AutoConfig.for_model(d.pop("model_type"), **d)
    return AutoConfig.from_pretrained(str(path))


def _experts(config) -> tuple[int, int]:
    n = next(
        getattr(config, k)
        for k in ("num_experts", "n_routed_experts", "num_local_experts")
        if getattr(config, k, None)
    )
    return int(n), int(config.num_experts_per_tok)


def count_params(config, optim: OptimConfig, lora: LoraConfig | None = None) -> dict[str, int]:
    """Total, active-per-token and trainable parameter counts of ``config``'s model."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    if lora is not None and lora.enabled:
        model = apply_lora(model, lora)
    select_trainable(model, optim)
    n_experts, top_k = _experts(config)
    total = trainable = routed = 0
    for name, p in model.named_parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        if (
            ".experts." in name
            or name.endswith(".experts.gate_up_proj")
            or name.endswith(".experts.down_proj")
        ):
            routed += p.numel()
    active = total - routed + routed * top_k // n_experts
    return {"total": total, "active": active, "trainable": trainable, "routed_experts": routed}


def memory_per_gpu(
    counts: dict[str, int], config, data: DataConfig, trainer: TrainerConfig, world: int
) -> dict[str, float]:
    """GiB per GPU of weights, grads, optimizer state and activations for ``trainer.strategy``."""
    p, t = counts["total"], counts["trainable"]
    shard_opt = trainer.strategy.startswith(("deepspeed", "fsdp"))
    shard_weights = trainer.strategy in ("deepspeed_stage_3", "fsdp")
    weights = 2 * p / (world if shard_weights else 1)
    grads = 2 * t / (world if shard_opt else 1)
    optimizer = 12 * t / (world if shard_opt else 1)
    tokens = data.batch_size * data.max_len
    acts = 34 * tokens * config.hidden_size * config.num_hidden_layers
    logits = 6 * tokens * config.vocab_size  # bf16 logits + fp32 copy for the loss
    est = {
        "weights": weights,
        "grads": grads,
        "optimizer": optimizer,
        "activations": acts + logits,
    }
    est = {k: round(v / GIB, 2) for k, v in est.items()}
    est["total"] = round(sum(est.values()), 2)
    return est


def dry_run(
    config,
    data: DataConfig,
    trainer: TrainerConfig,
    optim: OptimConfig,
    lora: LoraConfig | None = None,
) -> dict[str, Any]:
    devices = trainer.devices if isinstance(trainer.devices, int) else 8
    world = devices * trainer.num_nodes
    counts = count_params(config, optim, lora)
    return {
        "model_type": config.model_type,
        "params": counts,
        "strategy": trainer.strategy,
        "world_size": world,
        "global_batch": data.batch_size * trainer.accumulate * world,
        "tokens_per_step": data.batch_size * data.max_len * trainer.accumulate * world,
        "memory_gib_per_gpu": memory_per_gpu(counts, config, data, trainer, world),
    }


def print_dry_run(config, data, trainer, optim, lora: LoraConfig | None = None) -> dict[str, Any]:
    report = dry_run(config, data, trainer, optim, lora)
    print(json.dumps(report, indent=2))
    return report
