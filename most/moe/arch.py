"""Where each supported architecture keeps its MoE pieces, and how it routes.

Adding an architecture is one :class:`ArchSpec` entry: the decoder-layer attribute of the MoE block,
the names of its router / experts / shared experts inside the block, and a function reading the
base routing rule from the config. Every supported transformers class stores experts the same way
(``experts.gate_up_proj (E, 2I, H)``, ``experts.down_proj (E, H, I)``, ``gate.weight (E, H)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from transformers import PretrainedConfig

from most.moe.router import BaseRouting


class ArchError(ValueError):
    """The model cannot be adapted (not MoE, or an architecture with no table entry)."""


@dataclass(frozen=True)
class ArchSpec:
    """Attribute paths of one architecture's MoE block and its base routing rule."""

    routing: Callable[[PretrainedConfig], BaseRouting]
    experts_key: str
    """Config field with the number of routed experts (0 or missing means a dense model)."""
    layers: str = "model.layers"
    block: str = "mlp"
    gate: str = "gate"
    experts: str = "experts"
    shared: str | None = None
    shared_gate: str | None = None
    score_bias: str | None = None
    """Buffer of the gate used only for expert *selection* (DeepSeek-V3's score correction)."""


def _softmax_topk(cfg: PretrainedConfig) -> BaseRouting:
    return BaseRouting(top_k=cfg.num_experts_per_tok, norm_topk=bool(cfg.norm_topk_prob))


def _mixtral(cfg: PretrainedConfig) -> BaseRouting:
    # Mixtral's optional training-time input jitter (router_jitter_noise, 0 in released configs)
    # is not reproduced.
    return BaseRouting(top_k=cfg.num_experts_per_tok, norm_topk=True)


def _deepseek_v2(cfg: PretrainedConfig) -> BaseRouting:
    limited = cfg.topk_method == "group_limited_greedy"
    return BaseRouting(
        top_k=cfg.num_experts_per_tok,
        scale=cfg.routed_scaling_factor,
        n_group=cfg.n_group if limited else 1,
        topk_group=cfg.topk_group if limited else 1,
        fp32_logits=True,
    )


def _deepseek_v3(cfg: PretrainedConfig) -> BaseRouting:
    return BaseRouting(
        top_k=cfg.num_experts_per_tok,
        scoring="sigmoid",
        norm_topk=bool(cfg.norm_topk_prob),
        scale=cfg.routed_scaling_factor,
        n_group=cfg.n_group,
        topk_group=cfg.topk_group,
        group_score="top2sum",
        fp32_logits=True,
    )


ARCHS: dict[str, ArchSpec] = {
    "qwen3_moe": ArchSpec(_softmax_topk, "num_experts"),
    "qwen2_moe": ArchSpec(
        _softmax_topk, "num_experts", shared="shared_expert", shared_gate="shared_expert_gate"
    ),
    "olmoe": ArchSpec(_softmax_topk, "num_experts"),
    "mixtral": ArchSpec(_mixtral, "num_local_experts"),
    "deepseek_v2": ArchSpec(_deepseek_v2, "n_routed_experts", shared="shared_experts"),
    "deepseek_v3": ArchSpec(
        _deepseek_v3,
        "n_routed_experts",
        shared="shared_experts",
        score_bias="e_score_correction_bias",
    ),
}

#: Config fields that betray an MoE model of an architecture we do not know.
_MOE_HINTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


def spec_for(cfg: PretrainedConfig) -> ArchSpec:
    """The table entry for ``cfg``; a clear :class:`ArchError` for dense or unknown models."""
    model_type = getattr(cfg, "model_type", None)
    spec = ARCHS.get(model_type)
    if spec is None:
        if any(getattr(cfg, k, None) for k in _MOE_HINTS):
            raise ArchError(
                f"unknown MoE architecture {model_type!r}; supported: {sorted(ARCHS)} "
                "(add an ArchSpec entry in most/moe/arch.py)"
            )
        raise ArchError(f"{model_type!r} is not a Mixture-of-Experts model; `most adapt` needs one")
    if not getattr(cfg, spec.experts_key, 0):
        raise ArchError(f"{model_type!r} config has {spec.experts_key}=0: a dense model, not MoE")
    return spec


def get_path(obj: object, path: str) -> object:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


def moe_layers(lm: nn.Module, spec: ArchSpec) -> list[tuple[int, nn.Module]]:
    """``(layer index, decoder layer)`` for each layer whose block is a (base or adapted) MoE."""
    found = []
    for i, layer in enumerate(get_path(lm, spec.layers)):
        block = getattr(layer, spec.block)
        if hasattr(block, spec.experts) and (hasattr(block, spec.gate) or hasattr(block, "router")):
            found.append((i, layer))
    if not found:
        raise ArchError(f"no MoE layers found at {spec.layers}[*].{spec.block}")
    return found
