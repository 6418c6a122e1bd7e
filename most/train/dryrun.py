"""``--dry-run``: validate a recipe against a model config and estimate memory, loading no weights.

The model is instantiated on the ``meta`` device (shapes only, no storage), so a 30B-parameter config
is counted in seconds; base configs and adapted ones (``model_type: most``, the base config under
``text_config``) alike.

Parameters: ``total``; ``active`` = everything but the routed experts, plus ``top_k`` of each MoE
layer's experts (the convention of Qwen's and Mistral's published figures); ``active_compute`` =
``active`` without the input embedding table, of which a token reads one row (DeepSeek's
convention); ``trainable`` after LoRA and the recipe's ``optim.train`` / ``freeze``.

Memory per GPU, with AdamW (ZeRO paper accounting): weights and gradients in the dtype the strategy
keeps them in (fp32 under ``32-true`` and the ``*-mixed`` precisions, except DeepSpeed, which keeps
16-bit weights and gradients and fp32 master weights in the optimizer: 12 B per trainable parameter),
AdamW's two moments in the weights' dtype elsewhere, all divided by the data-parallel size where the
strategy shards them: DDP shards nothing, ZeRO-2 shards gradients and optimizer state, ZeRO-3/FSDP
also the weights. Activations use Korthikanti et al.'s ``34 * tokens * hidden`` bytes per layer
(flash attention, no recomputation) plus the logits and their fp32 copy for the loss.

Host RAM per node: the weights are read in the checkpoint's dtype; every rank reads its own copy
under DDP and ZeRO-2/3, only global rank 0 under FSDP (the others are built on the ``meta`` device
and receive their shards from it, :func:`most.train.sharding.loads_weights`; the figure is node 0's);
plus :data:`RANK_RUNTIME_GIB` per rank.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from most.moe.arch import moe_shape, text_config
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import LoraConfig, OptimConfig, apply_lora, select_trainable

GIB = 2**30
#: Host memory per training process besides the weights: Python, torch, the CUDA context, data
#: loader workers. An allowance, not a measurement (torch + transformers alone: 0.4 GiB on CPU).
RANK_RUNTIME_GIB = 3.0
#: Resident memory of a process that has imported torch and transformers (measured: 0.36 GiB).
PROCESS_GIB = 0.4
SHARDED = ("fsdp", "deepspeed_stage_3")
_BYTES = {torch.float32: 4, torch.bfloat16: 2, torch.float16: 2}


def load_config(path: Path):
    """An HF config from a model folder or a ``*.json`` config file (no weights, no remote code)."""
    from transformers import AutoConfig

    import most.modeling  # noqa: F401  (adapted configs: model_type "most")

    path = Path(path)
    if path.is_file():
        d = json.loads(path.read_text())
        d.pop("auto_map", None)  # the built-in class, never remote code
        return AutoConfig.for_model(d.pop("model_type"), **d)
    return AutoConfig.from_pretrained(str(path))


def _moe_shape(cfg) -> tuple[int, int]:
    """``(routed experts per layer, experts per token)`` of a base or adapted MoE config."""
    n, k = moe_shape(cfg)
    if not n or not k:
        raise ValueError(
            f"{getattr(cfg, 'model_type', '?')} config: no expert count or experts per token; "
            "--dry-run counts Mixture-of-Experts models"
        )
    return n, k


def _dtype_bytes(cfg) -> int:
    named = getattr(cfg, "dtype", None) or getattr(text_config(cfg), "dtype", None)
    if isinstance(named, str):
        named = getattr(torch, named, None)
    return _BYTES.get(named, 4)


def count_params(config, optim: OptimConfig, lora: LoraConfig | None = None) -> dict[str, int]:
    """Total, active-per-token and trainable parameter counts of ``config``'s model."""
    from transformers import AutoModelForCausalLM

    import most.modeling  # noqa: F401  (adapted configs: model_type "most")

    n_experts, top_k = _moe_shape(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    embed = model.get_input_embeddings().weight.numel()
    if lora is not None and lora.enabled:
        model = apply_lora(model, lora)
    select_trainable(model, optim)
    total = trainable = routed = routed_active = 0
    for name, p in model.named_parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        if "experts" in name.split(".") and "lora_" not in name:
            # stacked (E, ...) tensors carry their own expert count (an upcycled model has G*E)
            e = p.shape[0] if p.dim() == 3 else n_experts
            routed += p.numel()
            routed_active += p.numel() * top_k // e
    active = total - routed + routed_active
    return {
        "total": total,
        "active": active,
        "active_compute": active - embed,
        "trainable": trainable,
        "routed_experts": routed,
    }


def _precision(trainer: TrainerConfig) -> str:
    """The precision a GPU run of the recipe uses (``auto`` is bf16-mixed on a GPU)."""
    return "bf16-mixed" if trainer.precision == "auto" else trainer.precision


def memory_per_gpu(
    counts: dict[str, int], config, data: DataConfig, trainer: TrainerConfig, world: int
) -> dict[str, float]:
    """GiB per GPU of weights, grads, optimizer state and activations for ``trainer.strategy``."""
    p, t = counts["total"], counts["trainable"]
    precision, strategy = _precision(trainer), trainer.strategy
    half = precision.startswith(("bf16", "16"))
    deepspeed = strategy.startswith("deepspeed")
    w_bytes = 2 if (half and (deepspeed or precision.endswith("-true"))) else 4
    opt_bytes = 12 if (deepspeed and half) else 2 * w_bytes
    shard_opt = strategy.startswith(("deepspeed", "fsdp"))
    shard_weights = strategy in SHARDED
    text = text_config(config)
    weights = w_bytes * p / (world if shard_weights else 1)
    grads = w_bytes * t / (world if shard_opt else 1)
    optimizer = opt_bytes * t / (world if shard_opt else 1)
    tokens = data.batch_size * data.max_len
    acts = 34 * tokens * text.hidden_size * text.num_hidden_layers
    logits = 6 * tokens * text.vocab_size  # bf16 logits + fp32 copy for the loss
    est = {
        "weights": weights,
        "grads": grads,
        "optimizer": optimizer,
        "activations": acts + logits,
    }
    est = {k: round(v / GIB, 2) for k, v in est.items()}
    est["total"] = round(sum(est.values()), 2)
    return est


def host_ram_per_node(
    counts: dict[str, int], config, trainer: TrainerConfig, devices: int, per_rank_gib: float
) -> dict[str, Any]:
    """GiB of host RAM a node needs to load the model for ``trainer.strategy`` (see the module doc);
    on a CPU run the per-rank training state (``per_rank_gib``) lives in host RAM as well."""
    loaders = 1 if trainer.strategy == "fsdp" else devices
    weights = counts["total"] * _dtype_bytes(config) / GIB
    est = {
        "ranks_loading_weights": loaders,
        "weights_once_gib": round(weights, 2),
        "weights_gib": round(loaders * weights, 2),
        "runtime_gib": round(devices * RANK_RUNTIME_GIB, 2),
    }
    if trainer.accelerator == "cpu":
        est["training_state_gib"] = round(devices * per_rank_gib, 2)
    est["total_gib"] = round(
        est["weights_gib"] + est["runtime_gib"] + est.get("training_state_gib", 0.0), 2
    )
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
    memory = memory_per_gpu(counts, config, data, trainer, world)
    return {
        "model_type": config.model_type,
        "params": counts,
        "strategy": trainer.strategy,
        "precision": _precision(trainer),
        "devices_per_node": devices,
        "world_size": world,
        "global_batch": data.batch_size * trainer.accumulate * world,
        "tokens_per_step": data.batch_size * data.max_len * trainer.accumulate * world,
        "memory_gib_per_gpu": memory,
        "host_ram_per_node": host_ram_per_node(counts, config, trainer, devices, memory["total"]),
    }


def adapt_dry_run(config, adapted, report: dict, weight_bytes: int) -> dict[str, Any]:
    """What ``most adapt`` would build from ``config`` (``report``: :func:`most.adapt.plan`) and the
    host RAM it needs: the larger of the model before and after, one MoE layer's new experts
    (built while the old ones still exist), and the process itself. ``adapted``: the config of
    the model it writes; ``weight_bytes``: bytes per weight of the dtype adapt works in."""
    counts = count_params(adapted, OptimConfig())
    n_layers = max(len(report["moe_layers"]), 1)
    after_experts = counts["routed_experts"] / n_layers
    peak = max(report["params_before"], report["params_after"]) + after_experts
    return {
        "plan": report,
        "params_after": counts,
        "bytes_per_weight": weight_bytes,
        "host_ram_gib": round(peak * weight_bytes / GIB + PROCESS_GIB, 2),
    }


def print_report(report: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(report, indent=2))
    return report


def print_dry_run(config, data, trainer, optim, lora: LoraConfig | None = None) -> dict[str, Any]:
    return print_report(dry_run(config, data, trainer, optim, lora))
