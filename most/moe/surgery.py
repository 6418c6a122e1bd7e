"""Swap each pretrained MoE block for a :class:`ModalityMoE` with modality expert groups.

``split`` keeps the E pretrained experts and router rows where they are and assigns contiguous
ranges to groups (MoST: text ``[0, E/2)``, speech ``[E/2, E)``). ``upcycle`` gives every group a
copy of all E experts and router rows (G*E experts in total), so each group starts as the base
layer. Shared experts are moved over unchanged (same module, same weights); ``add_shared`` gives a
base without any one new :class:`SharedExpert` per layer (zero down projection: a no-op at step 0).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn
from transformers import PretrainedConfig

from most.moe.arch import ArchError, ArchSpec, get_path, moe_layers
from most.moe.block import ModalityMoE, RoutingState
from most.moe.config import ExpertsConfig
from most.moe.experts import GroupedExperts, SharedExpert
from most.moe.router import BaseRouting, ModalityRouter


def group_size(n_experts: int, n_groups: int, init: str) -> int:
    """Experts per modality group for a layer with ``n_experts`` pretrained experts."""
    if init == "upcycle":
        return n_experts
    if n_experts % n_groups:
        raise ArchError(f"split init needs the {n_experts} experts divisible by {n_groups} groups")
    return n_experts // n_groups


def view_routing(base: BaseRouting, view_size: int) -> BaseRouting:
    """Base routing over a view of ``view_size`` experts; DeepSeek's expert groups must still tile
    it, else group-limited selection falls back to plain top-k (documented in the recipe)."""
    if base.n_group > 1 and view_size % base.n_group:
        return replace(base, n_group=1, topk_group=1)
    return base


def convert(
    lm: nn.Module,
    spec: ArchSpec,
    experts: ExpertsConfig,
    n_groups: int,
    state: RoutingState,
    copy_weights: bool,
) -> None:
    """Replace every MoE block of ``lm`` in place.

    ``copy_weights``: initialise from the pretrained block (``adapt``); otherwise only build shapes
    (reloading a saved adapted model, or a meta-device plan).
    """
    cfg: PretrainedConfig = lm.config
    base = spec.routing(cfg)
    for idx, layer in moe_layers(lm, spec):
        old = getattr(layer, spec.block)
        old_experts = getattr(old, spec.experts)
        e, h, inter = (
            old_experts.down_proj.shape[0],
            old_experts.down_proj.shape[1],
            old_experts.down_proj.shape[2],
        )
        eg = group_size(e, n_groups, experts.init)
        view = n_groups * eg if experts.router == "topk" else eg
        gate = getattr(old, spec.gate)
        score_bias = getattr(gate, spec.score_bias) if spec.score_bias else None
        param = old_experts.down_proj
        with torch.device(param.device):
            router = ModalityRouter(
                h,
                n_groups,
                eg,
                experts.router,
                view_routing(base, view),
                top_p=experts.top_p,
                n_null=experts.n_null,
                max_k=experts.max_k,
                has_bias=score_bias is not None,
            )
            new_experts = GroupedExperts(n_groups * eg, h, inter, cfg.hidden_act)
        router.to(param.dtype)
        new_experts.to(param.dtype)
        with torch.no_grad():
            if copy_weights:
                # New expert j of group g is pretrained expert j (upcycle) or g*Eg + j (split).
                src = torch.arange(e, device=param.device)
                if experts.init == "upcycle":
                    src = src.repeat(n_groups)
                new_experts.gate_up_proj.copy_(old_experts.gate_up_proj[src])
                new_experts.down_proj.copy_(old_experts.down_proj[src])
                router.weight[: router.num_experts].copy_(gate.weight[src])
                router.weight[router.num_experts :].zero_()
                if score_bias is not None:
                    router.bias.copy_(score_bias[src])
            else:
                std = getattr(cfg, "initializer_range", 0.02)
                for p in (new_experts.gate_up_proj, new_experts.down_proj, router.weight):
                    p.normal_(0.0, std)
        shared = get_path(old, spec.shared) if spec.shared and experts.shared_experts else None
        shared_gate = (
            get_path(old, spec.shared_gate) if spec.shared_gate and experts.shared_experts else None
        )
        if experts.add_shared and experts.shared_experts:
            if spec.shared:
                raise ArchError(
                    f"experts.add_shared: {cfg.model_type} has shared experts of its own "
                    "(shared_experts=true keeps them)"
                )
            shared = _new_shared(old_experts, h, inter, cfg, copy_weights)
        block = ModalityMoE(router, new_experts, state, idx, shared, shared_gate)
        setattr(layer, spec.block, block)


def _new_shared(
    old_experts: nn.Module, h: int, inter: int, cfg: PretrainedConfig, copy_weights: bool
) -> SharedExpert:
    """A shared expert for a base without one; see :attr:`ExpertsConfig.add_shared`.

    The mean of the pretrained experts gives the gate/up projections features the layer already
    computes; the zero down projection keeps step 0 identical to the base, and it is the first
    weight to receive gradient (its gradient is the gate/up activations), after which the rest learn.
    """
    param = old_experts.down_proj
    with torch.device(param.device):
        shared = SharedExpert(h, inter, cfg.hidden_act)
    shared.to(param.dtype)
    with torch.no_grad():
        if copy_weights:
            shared.gate_up_proj.copy_(old_experts.gate_up_proj.mean(0))
            shared.down_proj.zero_()
        else:
            std = getattr(cfg, "initializer_range", 0.02)
            shared.gate_up_proj.normal_(0.0, std)
            shared.down_proj.normal_(0.0, std)
    return shared
