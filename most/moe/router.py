"""Routers: which experts serve each token, and with what weight.

Every router produces the same :class:`Routing` record, so the experts, the aux losses and the
telemetry never need to know which kind ran. Indices equal to the number of routed experts mean
"no expert" (a null expert or an unused Top-P slot); the grouped dispatch skips them at no cost.

Shapes: ``N`` tokens, ``E`` routed experts in total, ``G`` modality groups (any sizes, any expert ids:
:mod:`most.moe.groups`), ``K`` slots per token, ``Ev`` the width of a token's view: the largest
group's size (a smaller group's view is padded with masked columns), or ``E`` for the
modality-blind ``topk`` router.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from most.moe.config import RouterKind
from most.moe.groups import Groups


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

    def select(
        self, logits: Tensor, bias: Tensor | None = None, pad: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``logits (N, Ev)`` -> ``weights (N, k)`` fp32, ``index (N, k)``, ``probs (N, Ev)`` fp32.

        ``pad (N, Ev)`` bool marks view columns that are no expert (a smaller group's padding):
        their logits must be ``-inf`` (score 0), and they are never selected.
        """
        logits = logits.float()
        scores = logits.softmax(-1) if self.scoring == "softmax" else logits.sigmoid()
        choice = scores if bias is None else scores + bias
        if pad is not None:
            choice = choice.masked_fill(pad, float("-inf"))
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
        view_sizes: ``(n_views,)`` experts in each view (padding columns of ``probs`` hold 0).
        num_experts: ``E``, also the "skip" id of ``index``.
        n_views: number of views (``G``, or 1 for ``topk``).
        can_skip: whether ``index`` may hold the skip id.
        null_probs: ``(N, n_null)`` fp32 router probabilities of the null experts, from the same
            softmax as ``probs`` (Top-P only, else None): what the null-aware balance pulls on.
        null_hits: ``(N, n_null)`` times each null expert was taken (Top-P only, else None).
    """

    index: Tensor
    weight: Tensor
    local_index: Tensor
    probs: Tensor
    view: Tensor
    logits: Tensor
    n_null_picks: Tensor
    view_sizes: Tensor
    num_experts: int
    n_views: int
    can_skip: bool
    null_probs: Tensor | None = None
    null_hits: Tensor | None = None


class ModalityRouter(nn.Module):
    """Router over modality groups of routed experts (+ null experts for Top-P).

    ``groups[g]`` lists the global expert ids of modality g; together they partition
    ``[0, E)``. ``weight`` row e scores expert e; the last ``n_null`` rows score the null experts
    (Top-P only). ``bias`` is DeepSeek-V3's selection-only score correction, ``logit_bias`` a bias
    added to the routed experts' logits (gpt-oss).
    """

    def __init__(
        self,
        hidden_size: int,
        groups: Groups,
        kind: RouterKind,
        base: BaseRouting,
        top_p: float = 0.7,
        n_null: int = 0,
        max_k: int = 0,
        has_bias: bool = False,
        has_logit_bias: bool = False,
    ) -> None:
        super().__init__()
        groups = tuple(tuple(int(i) for i in ids) for ids in groups)
        sizes = [len(ids) for ids in groups]
        if sorted(i for ids in groups for i in ids) != list(range(sum(sizes))) or 0 in sizes:
            raise ValueError(f"expert groups must partition 0..E-1 into non-empty groups: {groups}")
        if base.top_k > min(sizes):
            raise ValueError(f"top_k {base.top_k} exceeds the {min(sizes)} experts of a group")
        self.groups, self.kind, self.base = groups, kind, base
        self.n_groups, self.num_experts, self.view_size = len(groups), sum(sizes), max(sizes)
        self.equal_groups = len(set(sizes)) == 1  # no padded view columns
        self.top_p = top_p
        self.n_null = n_null if kind == "top_p" else 0
        self.max_k = min(max_k or 2 * base.top_k, self.view_size + self.n_null)
        self.weight = nn.Parameter(torch.zeros(self.num_experts + self.n_null, hidden_size))
        if has_bias:
            self.register_buffer("bias", torch.zeros(self.num_experts))
        else:
            self.bias = None
        # gpt-oss's router is a Linear with a bias: added to every routed expert's logit.
        self.logit_bias = nn.Parameter(torch.zeros(self.num_experts)) if has_logit_bias else None
        # Derived from ``groups``, never saved: built on the CPU (also under a meta-device
        # context) and copied once to each device the router runs on.
        members = torch.zeros(self.n_groups, self.view_size, dtype=torch.long, device="cpu")
        for g, ids in enumerate(groups):
            members[g, : len(ids)] = torch.tensor(ids, dtype=torch.long, device="cpu")
        cols = torch.arange(self.view_size, device="cpu")
        self._tables_cpu = (
            members,
            cols >= torch.tensor(sizes, device="cpu").unsqueeze(-1),
            torch.tensor(sizes, dtype=torch.long, device="cpu"),
        )
        self._tables_dev: dict[torch.device, tuple[Tensor, Tensor, Tensor]] = {}

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """``members (G, Ev)`` expert ids of each group (padded with 0), ``pad (G, Ev)`` bool,
        ``sizes (G,)``, on ``device``."""
        tables = self._tables_dev.get(device)
        if tables is None:
            tables = self._tables_dev[device] = tuple(t.to(device) for t in self._tables_cpu)
        return tables

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
        e, ev = self.num_experts, self.view_size
        members, pad_table, sizes = self._tables(x.device)

        if self.kind == "topk":
            one_view = torch.zeros_like(modality)  # a single view holding every expert
            weight, index, probs = self.base.select(routed, self.bias)
            return self._out(
                x, logits, index, weight, index, probs, view=one_view, n_views=1,
                view_sizes=sizes.sum().unsqueeze(0),
            )  # fmt: skip

        own = members[modality]  # (N, Ev) global id of each column of the token's view
        # Padding columns exist only when the groups differ in size.
        pad = None if self.equal_groups else pad_table[modality]

        if self.kind == "most_compat":
            # MoST: softmax over *all* experts, then only the token's group competes (reading the
            # group's columns is "zero outside the group"), greedy top-k, no renormalisation; the
            # weights are multiplied by the base's routed_scaling_factor, as MoST's gate does.
            probs = routed.float().softmax(-1).gather(1, own)
            if pad is None:
                weight, local = probs.topk(self.base.top_k, dim=-1)
            else:
                probs = probs.masked_fill(pad, 0.0)
                local = probs.masked_fill(pad, -1.0).topk(self.base.top_k, dim=-1).indices
                weight = probs.gather(1, local)
            weight = weight * self.base.scale
            index = own.gather(1, local)
            return self._out(
                x, logits, index, weight, local, probs, view=modality, view_sizes=sizes
            )

        group_logits = routed.gather(1, own)
        if pad is not None:
            group_logits = group_logits.masked_fill(pad, float("-inf"))
        if self.kind == "modality":
            bias = None if self.bias is None else self.bias[own]
            weight, local, probs = self.base.select(group_logits, bias, pad)
            index = own.gather(1, local)
            return self._out(
                x, logits, index, weight, local, probs, view=modality, view_sizes=sizes
            )

        # Top-P (UniMoE-Audio): sort the group's experts and the null experts by probability and take
        # them until the cumulative probability reaches p (always at least one, at most max_k).
        full = torch.cat([group_logits, logits[:, e:]], dim=-1).float().softmax(-1)
        p_sorted, order = full.sort(dim=-1, descending=True)
        p_sorted, order = p_sorted[:, : self.max_k], order[:, : self.max_k]
        taken = (p_sorted.cumsum(-1) - p_sorted) < self.top_p
        if pad is None:
            real = order < ev
            null = ~real
        else:
            real = order < sizes[modality].unsqueeze(-1)
            null = order >= ev
        use = taken & real
        local = torch.where(use, order, ev)
        index = torch.where(use, own.gather(1, order.clamp(max=ev - 1)), e)
        # Raw probabilities, not renormalised: the mass that went to null experts is compute the
        # token skips, so a token mostly routed to nulls gets a small routed update.
        weight = p_sorted * use
        # Which null expert each taken null slot is (n_null = none), counted per token.
        null_col = torch.where(taken & null, order - ev, self.n_null)
        hits = torch.zeros(x.shape[0], self.n_null + 1, device=x.device)
        hits = hits.scatter_add_(1, null_col, torch.ones_like(p_sorted))[:, : self.n_null]
        r = self._out(
            x, logits, index, weight, local, full[:, :ev], view=modality, view_sizes=sizes,
            null_picks=hits.sum(-1).long(), can_skip=True,
        )  # fmt: skip
        r.null_probs, r.null_hits = full[:, ev:], hits
        return r

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
        view_sizes: Tensor,
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
            view_sizes=view_sizes,
            num_experts=self.num_experts,
            n_views=self.n_groups if n_views is None else n_views,
            can_skip=can_skip,
        )
