"""Routers: which experts serve each token, and with what weight.

Every router produces the same :class:`Routing` record, so the experts, the aux losses and the
telemetry never need to know which kind ran. Indices equal to the number of routed experts mean
"no expert" (a null expert or an unused Top-P slot); the grouped dispatch skips them at no cost.

Shapes: ``N`` tokens, ``E`` routed experts in total, ``G`` modality groups of ``Eg = E / G`` experts
each, ``K`` slots per token, ``Ev`` the experts a token's group may use (``Eg``, or ``E`` for the
modality-blind ``topk`` router).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from most.moe.config import RouterKind


@dataclass(frozen=True)
class BaseRouting:
    """How a pretrained architecture turns router logits into (weights, experts).

    Reproducing it exactly is what makes ``upcycle`` a no-regression init: a text token routed over
    the text group (a copy of all pretrained experts) gets the base model's weights bit for bit.
    """

    top_k: int
    scoring: Literal["softmax", "sigmoid"] = "softmax"
    norm_topk: bool = False
    scale: float = 1.0
    n_group: int = 1
    topk_group: int = 1
    group_score: Literal["max", "top2sum"] = "max"
    fp32_logits: bool = False
    """DeepSeek computes the router matmul in fp32; Qwen/OLMoE/Mixtral in the model dtype."""

    def select(self, logits: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``logits (N, Ev)`` -> ``weights (N, k)`` fp32, ``index (N, k)``, ``probs (N, Ev)`` fp32."""
        logits = logits.float()
        scores = logits.softmax(-1) if self.scoring == "softmax" else logits.sigmoid()
        choice = scores if bias is None else scores + bias
        n, ev = choice.shape
        if self.n_group > 1:
            # Group-limited routing (DeepSeek): only experts in the best ``topk_group`` groups compete.
            grouped = choice.view(n, self.n_group, ev // self.n_group)
            if self.group_score == "max":
                group_scores = grouped.max(-1).values
            else:
                group_scores = grouped.topk(2, dim=-1).values.sum(-1)
            best = group_scores.topk(self.topk_group, dim=-1, sorted=False).indices
            keep = torch.zeros_like(group_scores).scatter_(1, best, 1.0).bool()
            keep = keep.unsqueeze(-1).expand_as(grouped).reshape(n, ev)
            choice = choice.masked_fill(~keep, float("-inf"))
        index = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, index)
        if self.norm_topk:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * self.scale, index, scores


@dataclass
class Routing:
    """One router call's decisions, the only thing experts, aux losses and telemetry read.

    Attributes:
        index: ``(N, K)`` global expert ids in ``[0, E]``; ``E`` = skip (null / unused slot).
        weight: ``(N, K)`` mixing weights in the hidden dtype; 0 at skipped slots.
        local_index: ``(N, K)`` ids within the token's view ``[0, Ev]``; ``Ev`` = skip.
        probs: ``(N, Ev)`` fp32 router probabilities over the token's view (aux loss, entropy).
        view: ``(N,)`` which view each token used (its modality group; all 0 for ``topk``).
        logits: ``(N, E + n_null)`` raw router logits (z-loss).
        n_null_picks: ``(N,)`` null experts chosen per token (Top-P only, else zeros).
        num_experts: ``E``, also the "skip" id of ``index``.
        n_views: number of views (``G``, or 1 for ``topk``).
        can_skip: whether ``index`` may hold the skip id.
    """

    index: Tensor
    weight: Tensor
    local_index: Tensor
    probs: Tensor
    view: Tensor
    logits: Tensor
    n_null_picks: Tensor
    num_experts: int
    n_views: int
    can_skip: bool


class ModalityRouter(nn.Module):
    """Router over ``n_groups`` modality groups of ``group_size`` experts each (+ null experts).

    ``weight`` rows ``[g*Eg, (g+1)*Eg)`` score group g's experts; the last ``n_null`` rows score the
    null experts (Top-P only). ``bias`` is DeepSeek-V3's selection-only score correction,
    ``logit_bias`` a bias added to the routed experts' logits (gpt-oss).
    """

    def __init__(
        self,
        hidden_size: int,
        n_groups: int,
        group_size: int,
        kind: RouterKind,
        base: BaseRouting,
        top_p: float = 0.7,
        n_null: int = 0,
        max_k: int = 0,
        has_bias: bool = False,
        has_logit_bias: bool = False,
    ) -> None:
        super().__init__()
        if base.top_k > group_size:
            raise ValueError(f"top_k {base.top_k} exceeds the {group_size} experts of a group")
        self.n_groups, self.group_size, self.kind, self.base = n_groups, group_size, kind, base
        self.num_experts = n_groups * group_size
        self.top_p = top_p
        self.n_null = n_null if kind == "top_p" else 0
        self.max_k = min(max_k or 2 * base.top_k, group_size + self.n_null)
        self.weight = nn.Parameter(torch.zeros(self.num_experts + self.n_null, hidden_size))
        if has_bias:
            self.register_buffer("bias", torch.zeros(self.num_experts))
        else:
            self.bias = None
        # gpt-oss's router is a Linear with a bias: added to every routed expert's logit.
        self.logit_bias = nn.Parameter(torch.zeros(self.num_experts)) if has_logit_bias else None

    def _own_group(self, t: Tensor, modality: Tensor) -> Tensor:
        """``(N, G*Eg) -> (N, Eg)``: the columns of each token's own modality group."""
        n = t.shape[0]
        return t.view(n, self.n_groups, self.group_size)[torch.arange(n, device=t.device), modality]

    def forward(self, x: Tensor, modality: Tensor) -> Routing:
        """``x (N, H)``, ``modality (N,)`` group id per token -> :class:`Routing`."""
        if self.base.fp32_logits:
            logits = nn.functional.linear(x.float(), self.weight.float())
        else:
            logits = nn.functional.linear(x, self.weight)
        if self.logit_bias is not None:
            pad = nn.functional.pad(self.logit_bias, (0, self.n_null))
            logits = logits + pad.to(logits.dtype)
        routed = logits[:, : self.num_experts]
        e, eg = self.num_experts, self.group_size
        offset = (modality * eg).unsqueeze(-1)

        if self.kind == "topk":
            one_view = torch.zeros_like(modality)  # a single view holding every expert
            weight, index, probs = self.base.select(routed, self.bias)
            return self._out(x, logits, index, weight, index, probs, view=one_view, n_views=1)

        if self.kind == "most_compat":
            # MoST: softmax over *all* experts, then only the token's group competes (reading the
            # group's slice is "zero outside the group"), greedy top-k, no renormalisation; the
            # weights are multiplied by the base's routed_scaling_factor, as MoST's gate does.
            probs = self._own_group(routed.float().softmax(-1), modality)
            weight, local = probs.topk(self.base.top_k, dim=-1)
            weight = weight * self.base.scale
            return self._out(x, logits, local + offset, weight, local, probs, view=modality)

        group_logits = self._own_group(routed, modality)
        if self.kind == "modality":
            bias = (
                None
                if self.bias is None
                else self._own_group(self.bias.expand_as(routed), modality)
            )
            weight, local, probs = self.base.select(group_logits, bias)
            return self._out(x, logits, local + offset, weight, local, probs, view=modality)

        # Top-P (UniMoE-Audio): sort the group's experts and the null experts by probability and take
        # them until the cumulative probability reaches p (always at least one, at most max_k).
        full = torch.cat([group_logits, logits[:, e:]], dim=-1).float().softmax(-1)
        p_sorted, order = full.sort(dim=-1, descending=True)
        p_sorted, order = p_sorted[:, : self.max_k], order[:, : self.max_k]
        taken = (p_sorted.cumsum(-1) - p_sorted) < self.top_p
        real = order < eg
        use = taken & real
        local = torch.where(use, order, eg)
        index = torch.where(use, order + offset, e)
        # Raw probabilities, not renormalised: the mass that went to null experts is compute the
        # token skips, so a token mostly routed to nulls gets a small routed update.
        weight = p_sorted * use
        return self._out(
            x, logits, index, weight, local, full[:, :eg], view=modality,
            null_picks=(taken & ~real).sum(-1), can_skip=True,
        )  # fmt: skip

    def _out(
        self,
        x: Tensor,
        logits: Tensor,
        index: Tensor,
        weight: Tensor,
        local: Tensor,
        probs: Tensor,
        *,
        view: Tensor,
        null_picks: Tensor | None = None,
        n_views: int | None = None,
        can_skip: bool = False,
    ) -> Routing:
        return Routing(
            index=index,
            weight=weight.to(x.dtype),
            local_index=local,
            probs=probs,
            view=view,
            logits=logits,
            n_null_picks=torch.zeros_like(view) if null_picks is None else null_picks,
            num_experts=self.num_experts,
            n_views=self.n_groups if n_views is None else n_views,
            can_skip=can_skip,
        )
