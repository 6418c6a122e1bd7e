"""Router auxiliary losses: per-modality sequence-level load balance and z-loss.

Load balance is computed *within each modality group*: speech tokens are only asked to spread over
the speech experts, text tokens over the text experts. Otherwise a speech-heavy batch would push
text experts to take speech tokens they can never receive. It is sequence-level as in MoST /
DeepSeek-V2 (balance inside every sequence, then averaged), and padding tokens count nowhere.
"""

from __future__ import annotations

import torch
from torch import Tensor

from most.moe.router import Routing


def load_balance(r: Routing, valid: Tensor | None, seq_len: int) -> Tensor:
    """Mean over (sequence, group) pairs of ``Eg * sum_e f_e * P_e``; 1.0 when perfectly balanced.

    ``Eg``: the group's number of experts; ``f_e``: share of the group's selections that went to
    expert e; ``P_e``: mean router probability of e over the group's tokens (a smaller group's
    padding columns have neither). ``valid (N,)`` bool excludes padding; ``N = B * seq_len``.
    """
    n, ev = r.probs.shape
    b = n // seq_len
    w = torch.ones(n, device=r.probs.device) if valid is None else valid.float()
    counts = torch.zeros(n, ev + 1, device=r.probs.device)
    counts.scatter_add_(1, r.local_index, torch.ones_like(r.local_index, dtype=counts.dtype))
    counts = counts[:, :ev].view(b, seq_len, ev)  # skipped slots (id Ev) dropped
    member = torch.nn.functional.one_hot(r.view, r.n_views).float() * w[:, None]
    member = member.view(b, seq_len, r.n_views)  # (B, T, G)
    picks = torch.einsum("btg,bte->bge", member, counts)
    size = r.view_sizes.to(picks.dtype).view(1, r.n_views, 1)
    f = size * picks / picks.sum(-1, keepdim=True).clamp_min(1.0)
    n_tok = member.sum(1)  # (B, G)
    p = torch.einsum("btg,bte->bge", member, r.probs.view(b, seq_len, ev))
    p = p / n_tok.clamp_min(1.0).unsqueeze(-1)
    present = (n_tok > 0).float()
    return ((f * p).sum(-1) * present).sum() / present.sum().clamp_min(1.0)


def z_loss(r: Routing, valid: Tensor | None) -> Tensor:
    """Mean over valid tokens of ``logsumexp(router logits)^2`` (keeps logits from drifting large)."""
    z = torch.logsumexp(r.logits.float(), dim=-1).square()
    if valid is None:
        return z.mean()
    w = valid.float()
    return (z * w).sum() / w.sum().clamp_min(1.0)
