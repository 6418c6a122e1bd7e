"""Swap each pretrained MoE block for a :class:`ModalityMoE` with modality expert groups.

``split`` keeps the E pretrained experts and router rows where they are and assigns them to the
layout's G modality groups as ``experts.groups`` says (default: equal contiguous ranges; MoST:
text ``[0, E/2)``, speech ``[E/2, E)``; :mod:`most.moe.groups`). ``upcycle`` gives every group a
copy of all E experts and router rows (G*E experts in total), so each group starts as the base
layer. Shared experts are moved over unchanged (same module, same weights); ``add_shared`` gives a
base without any one new :class:`SharedExpert` per layer (zero down projection: a no-op at step 0).

Expert weights are copied into the stacked ``(E, 2I, H)`` / ``(E, H, I)`` layout whatever the base's
(transposed ones are transposed); per-expert biases and the base's own gating function (gpt-oss)
are kept. When adapting (weights copied), the routing rule is fitted on the first MoE layer
(:func:`most.moe.probe.fit_routing`) and returned, so the adapted config can store it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from most.moe.arch import ArchSpec, expert_weights, get_path, moe_layers
from most.moe.block import ModalityMoE, RoutingState
from most.moe.config import ExpertsConfig
from most.moe.experts import GroupedExperts, SharedExpert
from most.moe.groups import Groups, resolve_groups
from most.moe.probe import fit_routing
from most.moe.router import BaseRouting, ModalityRouter

if TYPE_CHECKING:
    from transformers import PretrainedConfig
from most.moe.rules import ArchError, candidate_rules


def layer_groups(
    experts: ExpertsConfig, modalities: Sequence[str], n_experts: int, top_k: int
) -> Groups:
    """The modality groups of a layer with ``n_experts`` pretrained experts (:mod:`most.moe.groups`);
    a group smaller than the base's top-k is refused, naming it."""
    groups = resolve_groups(experts.groups, modalities, n_experts, experts.init)
    for name, ids in zip(modalities, groups, strict=True):
        if len(ids) < top_k:
            raise ValueError(
                f"experts.groups: {name!r} has {len(ids)} experts, fewer than the base's top-k "
                f"({top_k}) it routes each token to"
            )
    return groups


def view_routing(base: BaseRouting, view_sizes: Sequence[int]) -> BaseRouting:
    """Base routing over views of ``view_sizes`` experts; DeepSeek's expert groups must tile every
    view alike (equal sizes, each a multiple of ``n_group``), else group-limited selection falls
    back to plain top-k (documented in the recipe)."""
    if base.n_group > 1 and (len(set(view_sizes)) > 1 or view_sizes[0] % base.n_group):
        return replace(base, n_group=1, topk_group=1)
    return base


def _activation(experts: nn.Module, cfg: PretrainedConfig) -> tuple[nn.Module, object]:
    """``(act, glu)``: the base experts' activation and, when they gate their own way, their gating
    function bound to a copy of the scalar settings it reads (gpt-oss: alpha, limit)."""
    # Imported here, as in most.moe.arch (importing transformers registers the adapted model).
    from transformers.activations import ACT2FN
    from transformers.integrations import moe as hf_moe

    act = getattr(experts, "act_fn", None) or getattr(
        getattr(experts, "mlp", None), "activation_fn", None
    )
    act = act or ACT2FN[getattr(cfg, "hidden_act", "silu")]
    own = getattr(type(experts), "_apply_gate", None)
    if own is None or own is getattr(hf_moe, "_default_apply_gate", None):
        return act, None
    scalars = {k: v for k, v in vars(experts).items() if isinstance(v, (bool, int, float, str))}
    return act, partial(own, SimpleNamespace(**scalars, act_fn=act))


def convert(
    lm: nn.Module,
    spec: ArchSpec,
    experts: ExpertsConfig,
    modalities: Sequence[str],
    state: RoutingState,
    copy_weights: bool,
    routing: BaseRouting | None = None,
) -> BaseRouting:
    """Replace every MoE block of ``lm`` in place, with one expert group per name of
    ``modalities`` (the layout's, in group-id order); returns the routing rule the blocks use.

    ``copy_weights``: initialise from the pretrained block (``adapt``), and fit the routing rule on
    it unless ``routing`` is given; otherwise only build shapes (reloading a saved adapted model, or
    a meta-device plan) with ``routing`` or the config's declared rule.
    """
    cfg: PretrainedConfig = lm.config
    base = routing or spec.routing
    if base is None:
        raise ArchError(f"{spec.model_type}: no routing rule")
    fitted = routing is not None or not copy_weights
    for idx, layer in moe_layers(lm, spec):
        old = getattr(layer, spec.block)
        old_experts = get_path(old, spec.experts)
        gu, down = expert_weights(old_experts)
        e, h, inter = down.shape
        groups = layer_groups(experts, modalities, e, base.top_k)
        n_new = sum(len(ids) for ids in groups)
        view = [n_new] if experts.router == "topk" else [len(ids) for ids in groups]
        gate = get_path(old, spec.gate)
        score_bias = get_path(old, spec.score_bias).reshape(-1) if spec.score_bias else None
        logit_bias = get_path(old, spec.logit_bias).reshape(-1) if spec.logit_bias else None
        gated = gu.shape[1] == 2 * inter
        in_name = "gate_up_proj" if gated else "up_proj"
        has_bias = getattr(old_experts, in_name + "_bias", None) is not None
        act, glu = _activation(old_experts, cfg)
        with torch.device(down.device):
            router = ModalityRouter(
                h,
                groups,
                experts.router,
                view_routing(base, view),
                top_p=experts.top_p,
                n_null=experts.n_null,
                max_k=experts.max_k,
                has_bias=score_bias is not None,
                has_logit_bias=logit_bias is not None,
            )
            new_experts = GroupedExperts(n_new, h, inter, act, bias=has_bias, glu=glu, gated=gated)
        router.to(down.dtype)
        new_experts.to(down.dtype)
        with torch.no_grad():
            if copy_weights:
                # Split keeps expert j at j (its group is a list of ids); upcycle's new expert
                # g*E + j is a copy of pretrained expert j.
                src = torch.arange(e, device=down.device)
                if experts.init == "upcycle":
                    src = src.repeat(len(groups))
                new_experts.in_proj.copy_(gu[src])
                new_experts.down_proj.copy_(down[src])
                if has_bias:
                    bias = getattr(new_experts, in_name + "_bias")
                    bias.copy_(getattr(old_experts, in_name + "_bias")[src])
                    new_experts.down_proj_bias.copy_(old_experts.down_proj_bias[src])
                router.weight[: router.num_experts].copy_(gate[src])
                router.weight[router.num_experts :].zero_()
                if score_bias is not None:
                    router.bias.copy_(score_bias[src])
                if logit_bias is not None:
                    router.logit_bias.copy_(logit_bias[src])
            else:
                std = getattr(cfg, "initializer_range", 0.02)
                for p in (new_experts.in_proj, new_experts.down_proj, router.weight):
                    p.normal_(0.0, std)
        shared = get_path(old, spec.shared) if spec.shared and experts.shared_experts else None
        shared_gate = (
            get_path(old, spec.shared_gate) if spec.shared_gate and experts.shared_experts else None
        )
        if experts.add_shared and experts.shared_experts:
            if spec.shared:
                raise ArchError(
                    f"experts.add_shared: {spec.model_type} has shared experts of its own "
                    "(shared_experts=true keeps them)"
                )
            if not gated:
                raise ArchError(f"experts.add_shared: {spec.model_type}'s experts are not gated")
            shared = _new_shared(gu, h, inter, cfg, copy_weights)
        block = ModalityMoE(
            router, new_experts, state, idx, shared, shared_gate, tuple_output=spec.tuple_output
        )
        if not fitted:
            # The base's own shared experts take part in the check even when dropped afterwards.
            keep = (block.shared_experts, block.shared_expert_gate)
            if spec.shared:
                block.shared_experts = get_path(old, spec.shared)
            if spec.shared_gate:
                block.shared_expert_gate = get_path(old, spec.shared_gate)
            # The view in which the first group sees exactly the base experts: all of them after a
            # split, the first group's copy of all of them after upcycling.
            probe_kind, probe_view = (
                ("topk", [n_new]) if experts.init == "split" else ("modality", [e] * len(groups))
            )
            where = f"{spec.layers}[{idx}].{spec.block}"
            try:
                base = fit_routing(
                    old, block, candidate_rules(cfg, score_bias is not None), probe_view,
                    probe_kind, where, view_routing,
                )  # fmt: skip
            except ArchError as err:
                raise ArchError(f"{spec.model_type}: {err}") from None
            finally:
                block.shared_experts, block.shared_expert_gate = keep
            router.base = view_routing(base, view)
            fitted = True
        setattr(layer, spec.block, block)
    return base


def _new_shared(
    gate_up: Tensor, h: int, inter: int, cfg: PretrainedConfig, copy_weights: bool
) -> SharedExpert:
    """A shared expert for a base without one; see :attr:`ExpertsConfig.add_shared`.

    The mean of the pretrained experts gives the gate/up projections features the layer already
    computes; the zero down projection keeps step 0 identical to the base, and it is the first
    weight to receive gradient (its gradient is the gate/up activations), after which the rest learn.
    """
    with torch.device(gate_up.device):
        shared = SharedExpert(h, inter, getattr(cfg, "hidden_act", "silu"))
    shared.to(gate_up.dtype)
    with torch.no_grad():
        if copy_weights:
            shared.gate_up_proj.copy_(gate_up.mean(0))
            shared.down_proj.zero_()
        else:
            std = getattr(cfg, "initializer_range", 0.02)
            shared.gate_up_proj.normal_(0.0, std)
            shared.down_proj.normal_(0.0, std)
    return shared
