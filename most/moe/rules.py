"""What a base config says about its Mixture-of-Experts: the language-model config inside any
wrapper, the expert count and top-k, and the routing rule it declares.

The *structure* (which module of a decoder layer is the MoE block, where its router, experts and
shared experts live) is found on the model itself by :mod:`most.moe.arch`; the rule read here
is only the first guess that :mod:`most.moe.probe` checks against the base block on real weights.
:data:`RULES` pins the rule of architectures whose gate code is known exactly (the six supported
before discovery, so models adapted then reload with the same rule); :data:`REFUSED` names what is
missing for MoE types whose block the generic one cannot reproduce.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from most.moe.router import BaseRouting

if TYPE_CHECKING:
    from transformers import PretrainedConfig


class ArchError(ValueError):
    """The model cannot be adapted (dense, or an MoE block the generic one cannot reproduce)."""


#: Config fields holding the number of routed experts, in the order they are trusted.
EXPERT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
#: Config fields holding the experts per token.
TOPK_KEYS = (
    "num_experts_per_tok",
    "num_experts_per_token",
    "moe_topk",
    "moe_k",
    "top_k_experts",
    "moe_top_k",
)
#: Sub-configs that hold the MoE fields of a wrapper config (multimodal wrappers, DBRX).
NESTED = ("text_config", "ffn_config")


def text_config(cfg: PretrainedConfig) -> PretrainedConfig:
    """The base language model's config inside ``cfg``: an adapted model's (``model_type`` most)
    ``text_config``, a multimodal wrapper's ``text_config``, or ``cfg`` itself."""
    seen = 0
    while seen < 4:
        sub = getattr(cfg, "text_config", None)
        if sub is None or isinstance(sub, dict) or sub is cfg:
            return cfg
        if cfg.model_type != "most" and _expert_count(cfg):
            return cfg
        cfg, seen = sub, seen + 1
    return cfg


def _field(cfg: PretrainedConfig, keys: tuple[str, ...]) -> int:
    for k in keys:
        v = getattr(cfg, k, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    ffn = getattr(cfg, "ffn_config", None)
    if ffn is not None and not isinstance(ffn, dict):
        return _field(ffn, keys)
    return 0


def _expert_count(cfg: PretrainedConfig) -> int:
    return _field(cfg, EXPERT_KEYS)


def moe_shape(cfg: PretrainedConfig) -> tuple[int, int]:
    """``(routed experts per MoE layer, experts per token)`` of any (wrapped, adapted) config;
    ``(0, 0)`` for a dense model."""
    cfg = text_config(cfg)
    e = _expert_count(cfg)
    return (e, _field(cfg, TOPK_KEYS)) if e else (0, 0)


def _get(cfg: PretrainedConfig, *keys: str, default=None):
    ffn = getattr(cfg, "ffn_config", None)
    for c in (cfg, None if isinstance(ffn, dict) else ffn):
        for k in keys:
            v = getattr(c, k, None)
            if v is not None:
                return v
    return default


def declared_rule(cfg: PretrainedConfig, has_bias: bool = False) -> BaseRouting:
    """The routing rule the config declares (scoring, top-k normalisation, expert groups, scale),
    with the usual default for each field it leaves out; ``has_bias``: the gate has a selection bias
    (DeepSeek-V3-style gates score with a sigmoid)."""
    cfg = text_config(cfg)
    rule = RULES.get(cfg.model_type)
    if rule is not None:
        return rule(cfg)
    _, k = moe_shape(cfg)
    scoring = str(_get(cfg, "scoring_func", "expert_selection_fn", default="")).lower()
    if scoring not in ("softmax", "sigmoid"):
        scoring = "sigmoid" if has_bias else "softmax"
    norm = _get(cfg, "norm_topk_prob", "moe_renormalize", "moe_normalize_expert_weights")
    n_group = int(_get(cfg, "n_group", "num_expert_group", default=1) or 1)
    topk_group = int(_get(cfg, "topk_group", default=1) or 1)
    if n_group <= 1 or topk_group >= n_group:
        n_group, topk_group = 1, 1
    scale = float(
        _get(
            cfg,
            "routed_scaling_factor",
            "moe_routed_scaling_factor",
            "router_scaling_factor",
            default=1.0,
        )
    )
    return BaseRouting(
        top_k=k,
        scoring=scoring,
        norm_topk=bool(norm) if norm is not None else scoring == "sigmoid",
        scale=scale,
        n_group=n_group,
        topk_group=topk_group,
        group_score="top2sum" if scoring == "sigmoid" else "max",
        fp32_logits=scoring == "sigmoid",
    )


def candidate_rules(cfg: PretrainedConfig, has_bias: bool) -> Iterator[BaseRouting]:
    """The declared rule first, then its variants (other scoring, normalisation, scale, grouping),
    for :mod:`most.moe.probe` to try against the base block when the declared one does not match."""
    first = declared_rule(cfg, has_bias)
    yield first
    seen = {first}
    for scoring in (first.scoring, "softmax" if first.scoring == "sigmoid" else "sigmoid"):
        for norm in (first.norm_topk, not first.norm_topk):
            for scale in dict.fromkeys((first.scale, 1.0)):
                groups = [(first.n_group, first.topk_group, first.group_score)]
                if first.n_group > 1:
                    other = "max" if first.group_score == "top2sum" else "top2sum"
                    groups += [(first.n_group, first.topk_group, other), (1, 1, "max")]
                for n_group, topk_group, group_score in groups:
                    rule = replace(
                        first,
                        scoring=scoring,
                        norm_topk=norm,
                        scale=scale,
                        n_group=n_group,
                        topk_group=topk_group,
                        group_score=group_score,
                    )
                    if rule not in seen:
                        seen.add(rule)
                        yield rule


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


#: Routing rules read from the gate code of these architectures (the probe still checks them).
RULES: dict[str, Callable[[PretrainedConfig], BaseRouting]] = {
    "qwen3_moe": _softmax_topk,
    "qwen2_moe": _softmax_topk,
    "olmoe": _softmax_topk,
    "mixtral": _mixtral,
    "deepseek_v2": _deepseek_v2,
    "deepseek_v3": _deepseek_v3,
}

#: MoE causal-LM types whose block the generic one cannot reproduce, and what it lacks.
REFUSED: dict[str, str] = {
    "llama4": "its MoE block scales each expert's input by the router score (sigmoid of the top-1 "
    "logit) instead of the expert's output; the grouped dispatch weights outputs",
    "kolibri1": "its gate adds the selection bias to the raw logits and weights experts by the "
    "sigmoid of the chosen logits; the generic rule adds the bias to the scores",
    "phimoe": "its gate is SparseMixer (top-2 chosen by masked, jittered softmaxes, one per slot); "
    "no top-k rule over one score vector reproduces it",
}
REFUSED["llama4_text"] = REFUSED["llama4"]
REFUSED["longcat_flash"] = (
    "its router also scores zero_expert_num identity ('zero') experts beside the routed ones (a "
    "router weight of E + zero rows); identity experts have no weights to group by modality"
)
REFUSED["inkling_text"] = (
    "its router scores the shared experts as a sink beside the routed ones (shared_expert_sink: a "
    "router weight of E + shared rows); the generic router scores routed experts only"
)
REFUSED["doge"] = (
    "its CDMoE keeps single-vector experts in embeddings (up_embed/down_embed) picked by "
    "product-key routing; there are no stacked MLP experts to group"
)
REFUSED["jetmoe"] = (
    "its MoE MLP keeps experts as JetMoeParallelExperts (input_linear/output_linear with a shared "
    "output bias) and its attention is a mixture of experts too; no stacked gate_up_proj/down_proj"
)


def check_config(cfg: PretrainedConfig) -> PretrainedConfig:
    """The base LM config of ``cfg`` if it is an MoE model that may be adapted; else one-line
    :class:`ArchError`."""
    inner = text_config(cfg)
    model_type = getattr(inner, "model_type", None)
    if model_type in REFUSED:
        raise ArchError(f"{model_type}: {REFUSED[model_type]}")
    e, k = moe_shape(inner)
    if not e:
        raise ArchError(f"{model_type!r} is not a Mixture-of-Experts model; `most adapt` needs one")
    if not k:
        raise ArchError(f"{model_type}: its config names no experts-per-token field {TOPK_KEYS}")
    return inner
