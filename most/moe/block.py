"""The modality-aware MoE block, assembled by injection, and the per-forward routing state.

A decoder layer calls its MLP as ``mlp(hidden_states)``; it cannot pass each token's modality. The
model therefore writes the modality (and the padding mask) into one shared :class:`RoutingState`
before running the layers, every block reads it from there, and the blocks write their aux losses
and telemetry back into it. One object per model; nothing global.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from most.moe.aux import load_balance, null_balance, routing_entropy, z_loss
from most.moe.experts import GroupedExperts
from most.moe.router import ModalityRouter
from most.moe.telemetry import Telemetry


@dataclass
class RoutingState:
    """What the current forward pass tells the MoE blocks, and what they report back.

    Attributes:
        modality: ``(B, T)`` modality group id per token of the current forward (None: unset).
        valid: ``(B, T)`` bool, False at padding (None: no padding).
        aux_alpha, z_coef: loss weights; aux losses are only computed when ``collect`` is True.
        null_coef, entropy_coef: weights of the null-aware balance and the routing entropy of
            Top-P routers with null experts (:mod:`most.moe.aux`); other routers ignore them.
        losses: per-layer weighted aux terms of the current forward.
        telemetry: accumulator, or None when telemetry is off.
    """

    aux_alpha: float = 0.0
    z_coef: float = 0.0
    null_coef: float = 0.0
    entropy_coef: float = 0.0
    modality: Tensor | None = None
    valid: Tensor | None = None
    collect: bool = False
    losses: list[Tensor] = field(default_factory=list)
    telemetry: Telemetry | None = None

    def begin(self, modality: Tensor, valid: Tensor | None, collect: bool) -> None:
        self.modality, self.valid, self.collect = modality, valid, collect
        self.losses = []

    def aux_loss(self) -> Tensor | None:
        """Mean over MoE layers of the weighted aux terms, or None when none were collected."""
        if not self.losses:
            return None
        return torch.stack(self.losses).mean()


class ModalityMoE(nn.Module):
    """Routed experts chosen per token by ``router`` (+ optional shared experts that see every token).

    ``shared_gate`` is Qwen2-MoE's sigmoid gate on the shared expert (None elsewhere).
    ``tuple_output``: return ``(output, None)``, as blocks whose decoder layer unpacks two values.
    """

    def __init__(
        self,
        router: ModalityRouter,
        experts: GroupedExperts,
        state: RoutingState,
        layer_idx: int,
        shared: nn.Module | None = None,
        shared_gate: nn.Module | None = None,
        tuple_output: bool = False,
    ) -> None:
        super().__init__()
        self.tuple_output = tuple_output
        self.router, self.experts = router, experts
        self.shared_experts, self.shared_expert_gate = shared, shared_gate
        self.layer_idx = layer_idx
        # A plain attribute, not a submodule: shared by all blocks, holds no weights.
        self.state = state

    def forward(
        self, hidden_states: Tensor, modality: Tensor | None = None
    ) -> Tensor | tuple[Tensor, None]:
        """``hidden_states (B, T, H)`` -> ``(B, T, H)`` (``(output, None)`` with ``tuple_output``,
        for decoder layers that unpack two values); ``modality (B, T)`` overrides the state's."""
        b, t, h = hidden_states.shape
        modality = self.state.modality if modality is None else modality
        if modality is None:
            raise RuntimeError(
                "ModalityMoE needs each token's modality: call the model, not a layer"
            )
        x = hidden_states.reshape(-1, h)
        mod = modality.reshape(-1)
        valid = None if self.state.valid is None else self.state.valid.reshape(-1)
        r = self.router(x, mod)
        y = self.experts(x, r.index, r.weight, can_skip=r.can_skip)
        if self.shared_experts is not None:
            s = self.shared_experts(x)
            if self.shared_expert_gate is not None:
                s = torch.sigmoid(self.shared_expert_gate(x)) * s
            y = y + s
        if self.state.collect:
            loss = x.new_zeros((), dtype=torch.float32)
            if self.state.aux_alpha > 0:
                loss = loss + self.state.aux_alpha * load_balance(r, valid, t)
            if self.state.z_coef > 0:
                loss = loss + self.state.z_coef * z_loss(r, valid)
            if r.null_probs is not None:  # Top-P
                if self.state.null_coef > 0 and r.null_probs.shape[1]:
                    loss = loss + self.state.null_coef * null_balance(r, valid, t)
                if self.state.entropy_coef > 0:
                    loss = loss + self.state.entropy_coef * routing_entropy(r, valid)
            self.state.losses.append(loss)
        if self.state.telemetry is not None:
            self.state.telemetry.update(self.layer_idx, r, mod, valid, self.router.groups)
        y = y.view(b, t, h)
        return (y, None) if self.tuple_output else y
