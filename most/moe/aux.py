"""Router auxiliary losses: per-modality sequence-level load balance, its null-aware form for Top-P
routing, and z-loss.

Load balance is computed *within each modality group*: speech tokens are only asked to spread over
the speech experts, text tokens over the text experts. Otherwise a speech-heavy batch would push
text experts to take speech tokens they can never receive. It is sequence-level as in MoST /
DeepSeek-V2 (balance inside every sequence, then averaged), and padding tokens count nowhere.

Top-P routing learns how many experts a token uses from two terms, both on the distribution Top-P
sorts (the token's group and the null experts, one softmax):

- the null-aware balance (UniMoE-Audio's dynamic-capacity MoE, after AdaMoE): the same balance with
  the ``n_null`` null experts counted as members of every group. Balanced, each member takes
  ``1 / (Eg + n_null)`` of the group's picks, so ``n_null / (Eg + n_null)`` of them are null. A null
  expert adds nothing to the output, so the language-model loss alone never rewards a null pick and
  the null experts fall out of use;
- the routing entropy (Huang et al. 2024's "dynamic loss", where Top-P routing comes from): the
  balance flattens distributions, and a flat distribution needs *more* experts to reach p;
  penalising entropy makes each token reach p with fewer picks. The language-model loss keeps a
  token's distribution wide where mixing experts pays, so the count differs per token, modality and
  layer.

Both directions are measured in docs/results.md (benchmarks) and checked by
tests/moe/test_dynamic_capacity.py.
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
    return _balance(_counts(r), r.probs, r.view_sizes, r, valid, seq_len)


def null_balance(r: Routing, valid: Tensor | None, seq_len: int) -> Tensor:
    """:func:`load_balance` over each group's experts *and* the null experts (``Eg + n_null``
    members; null picks count as selections). 1.0 when balanced. Needs a Top-P routing."""
    if r.null_probs is None or r.null_hits is None:
        raise ValueError("null_balance needs a top_p routing with null experts")
    counts = torch.cat([_counts(r), r.null_hits], dim=-1)
    probs = torch.cat([r.probs, r.null_probs], dim=-1)
    # Null columns sit after the view's padding; padding columns are never picked and have
    # probability 0, so they are not members and only the size needs the null experts added.
    sizes = r.view_sizes + r.null_probs.shape[1]
    return _balance(counts, probs, sizes, r, valid, seq_len)


def routing_entropy(r: Routing, valid: Tensor | None) -> Tensor:
    """Mean over valid tokens of the entropy of the Top-P distribution (the token's group and the
    null experts). Top-P takes experts until their mass reaches p, so a sharper distribution takes
    fewer: this is the price of compute (Huang et al. 2024's "dynamic loss")."""
    if r.null_probs is None:
        raise ValueError("routing_entropy needs a top_p routing")
    p = torch.cat([r.probs, r.null_probs], dim=-1)
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    if valid is None:
        return ent.mean()
    w = valid.float()
    return (ent * w).sum() / w.sum().clamp_min(1.0)


def _counts(r: Routing) -> Tensor:
    """``(N, Ev)`` selections of each view column per token; skipped slots (id Ev) dropped."""
    n, ev = r.probs.shape
    counts = torch.zeros(n, ev + 1, device=r.probs.device)
    counts.scatter_add_(1, r.local_index, torch.ones_like(r.local_index, dtype=counts.dtype))
    return counts[:, :ev]


def _balance(
    counts: Tensor, probs: Tensor, sizes: Tensor, r: Routing, valid: Tensor | None, seq_len: int
) -> Tensor:
    """``counts (N, M)`` selections and ``probs (N, M)`` of M member columns, ``sizes (G,)`` members
    per view -> mean over present (sequence, view) pairs of ``size * sum_m f_m * P_m``."""
    n, m = probs.shape
    b = n // seq_len
    w = torch.ones(n, device=probs.device) if valid is None else valid.float()
    counts = counts.view(b, seq_len, m)
    member = torch.nn.functional.one_hot(r.view, r.n_views).float() * w[:, None]
    member = member.view(b, seq_len, r.n_views)  # (B, T, G)
    picks = torch.einsum("btg,bte->bge", member, counts)
    size = sizes.to(picks.dtype).view(1, r.n_views, 1)
    f = size * picks / picks.sum(-1, keepdim=True).clamp_min(1.0)
    n_tok = member.sum(1)  # (B, G)
    p = torch.einsum("btg,bte->bge", member, probs.view(b, seq_len, m))
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
