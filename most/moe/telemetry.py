"""Router telemetry: per layer and per modality, where tokens went.

Counters stay on the model's device and are only summed in the forward pass (no host sync); the
numbers reach the host once, in :meth:`Telemetry.summary`. Off by default; the cost when on is a
few scatter-adds per MoE layer.
"""

from __future__ import annotations

import torch
from torch import Tensor

from most.moe.groups import Groups
from most.moe.router import Routing

_COUNTERS = ("entropy", "null", "picks", "dropped", "tokens")


class Telemetry:
    """Accumulates, per MoE layer and per modality (the token's layout modality, any number):

    ``load`` (selection histogram over all routed experts), ``entropy`` (of the router distribution
    the token was routed with), ``null`` (null-expert picks), ``picks`` (real expert picks),
    ``dropped`` (tokens served by no routed expert: Top-P picked only null experts), ``tokens``;
    and each layer's modality groups, to report the share of picks inside the token's own group.
    """

    def __init__(self, modalities: tuple[str, ...]) -> None:
        self.modalities = modalities
        self.layers: dict[int, dict[str, Tensor]] = {}
        self.groups: dict[int, Groups] = {}

    @torch.no_grad()
    def update(
        self, layer: int, r: Routing, modality: Tensor, valid: Tensor | None, groups: Groups
    ) -> None:
        """``modality (N,)`` group id per token; ``valid (N,)`` bool or None (padding excluded);
        ``groups``: the layer's expert ids per modality."""
        dev, e = r.probs.device, r.num_experts
        w = torch.ones(modality.shape[0], device=dev) if valid is None else valid.float()
        acc = self.layers.get(layer)
        if acc is None:
            g = len(self.modalities)
            acc = {"load": torch.zeros(g, e + 1, device=dev)}
            acc |= {name: torch.zeros(g, device=dev) for name in _COUNTERS}
            self.layers[layer] = acc
            self.groups[layer] = groups
        k = r.index.shape[1]
        cell = modality.unsqueeze(-1) * (e + 1) + r.index  # (N, K) flat (modality, expert or skip)
        acc["load"].view(-1).scatter_add_(0, cell.reshape(-1), w.repeat_interleave(k))
        ent = -(r.probs * r.probs.clamp_min(1e-12).log()).sum(-1)
        real = (r.index < e).sum(-1).float()
        values = {
            "entropy": ent,
            "null": r.n_null_picks.float(),
            "picks": real,
            "dropped": (real == 0).float(),
            "tokens": torch.ones_like(ent),
        }
        for name, val in values.items():
            acc[name].scatter_add_(0, modality, val * w)

    def summary(self) -> dict:
        """JSON-able ``{"modalities": [...], "layers": {"idx": {modality: {...}}}}``; per modality
        ``experts`` lists its group and ``in_group`` is the share of its picks inside it (None: no
        picks)."""
        out: dict = {"modalities": list(self.modalities), "layers": {}}
        for layer, acc in sorted(self.layers.items()):
            per: dict = {}
            for gi, name in enumerate(self.modalities):
                tokens = float(acc["tokens"][gi])
                picks, null = float(acc["picks"][gi]), float(acc["null"][gi])
                load = [int(v) for v in acc["load"][gi, :-1].tolist()]
                own = self.groups[layer][gi]
                per[name] = {
                    "tokens": int(tokens),
                    "load": load,
                    "experts": list(own),
                    "in_group": sum(load[i] for i in own) / sum(load) if sum(load) else None,
                    "entropy": float(acc["entropy"][gi]) / max(tokens, 1.0),
                    "experts_per_token": picks / max(tokens, 1.0),
                    "null_share": null / max(picks + null, 1.0),
                    "dropped": int(acc["dropped"][gi]),
                }
            out["layers"][str(layer)] = per
        return out

    def reset(self) -> None:
        self.layers.clear()
        self.groups.clear()
