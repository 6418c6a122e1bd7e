"""Continuous audio input (MoE-Adapter): frozen frame features -> LLM input embeddings.

The alternative to speech units for understanding tasks: an audio encoder's frames (log-mel, the
CTC recogniser's states, a local HuBERT/Whisper encoder: :mod:`most.units.frontend`) are
downsampled and mapped into the LLM's embedding space by a small trainable adapter.

Both adapters share the same frame, downsampling and residual structure and differ only in the
feed-forward block, so a comparison between them isolates the sparse MoE::

    feats (B, F, D) --stack k frames--> (B, F/k, k*D) --in_proj--> h (B, F/k, H)
    h + ffn(norm(h)) --out_norm--> (B, F/k, H)

- ``moe`` (MoE-Adapter): ``ffn`` = top-k routed experts with dynamic (softmax) gating, plus shared
  experts that see every frame (global context), with a load-balance loss over the routed experts.
  It reuses the LLM's MoE pieces: :class:`~most.moe.router.ModalityRouter` with a single group,
  :class:`~most.moe.experts.GroupedExperts` (grouped dispatch) and
  :func:`~most.moe.aux.load_balance`.
- ``dense``: ``ffn`` = one gated MLP whose width is the MoE's *active* width
  ``(top_k + n_shared) * expert_size``: the same active parameters and FLOPs per frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from most.moe.aux import load_balance
from most.moe.experts import GroupedExperts, SharedExpert
from most.moe.router import BaseRouting, ModalityRouter, Routing

AdapterKind = Literal["moe", "dense", "none"]


@dataclass
class AdapterConfig:
    """The ``adapter`` section of a stage recipe, stored (with the feature width ``in_dim`` and
    the LLM's hidden size ``out_dim``) in the adapted model's config: a reload rebuilds the same
    adapter."""

    kind: AdapterKind = "none"
    """``moe``: sparse MoE adapter; ``dense``: its dense baseline of equal active size; ``none``:
    no adapter, audio enters as speech units (the default pipeline)."""
    stack: int = 4
    """Consecutive feature frames concatenated into one adapter token (the downsampling factor)."""
    n_experts: int = 8
    """Routed experts of the MoE adapter."""
    top_k: int = 2
    """Routed experts per frame."""
    n_shared: int = 1
    """Shared experts (each as wide as a routed one) that see every frame; 0 for none."""
    expert_size: int = 64
    """Intermediate width of each expert; the dense adapter is ``(top_k + n_shared)`` times wider."""
    aux_alpha: float = 0.01
    """Weight of the routed experts' load-balance loss (1.0 when balanced) added to the LM loss."""

    def __post_init__(self) -> None:
        if self.kind not in ("moe", "dense", "none"):
            raise ValueError(f"adapter.kind must be moe, dense or none, got {self.kind!r}")
        if min(self.stack, self.n_experts, self.top_k, self.expert_size) < 1:
            raise ValueError("adapter.stack, .n_experts, .top_k and .expert_size must be >= 1")
        if self.top_k > self.n_experts:
            raise ValueError(f"adapter.top_k {self.top_k} exceeds n_experts {self.n_experts}")
        if self.n_shared < 0 or self.aux_alpha < 0:
            raise ValueError("adapter.n_shared and adapter.aux_alpha must be >= 0")

    @property
    def dense_size(self) -> int:
        """Intermediate width of the dense adapter: the MoE adapter's active width."""
        return (self.top_k + self.n_shared) * self.expert_size

    def to_dict(self) -> dict:
        return asdict(self)


def stack_frames(feats: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """``feats (B, F, D)``, ``mask (B, F)`` bool -> ``(B, ceil(F/k), k*D)`` and its mask.

    An adapter token is valid when its first frame is; the padded tail is zero (the padding frames
    of a batch are zero-filled too), so a row's tokens do not depend on the batch it is in.
    """
    b, f, d = feats.shape
    f_k = -(-f // k)
    feats = feats.masked_fill(~mask.unsqueeze(-1), 0.0)
    feats = nn.functional.pad(feats, (0, 0, 0, f_k * k - f)).reshape(b, f_k, k * d)
    lengths = mask.sum(1)
    out_len = (lengths + k - 1) // k
    out_mask = torch.arange(f_k, device=mask.device)[None] < out_len[:, None]
    return feats, out_mask


def adapter_lengths(frames: Tensor | int, stack: int) -> Tensor | int:
    """Adapter tokens made of ``frames`` feature frames: ``ceil(frames / stack)``."""
    return (frames + stack - 1) // stack


def join_clips(clips: Sequence[Tensor], stack: int) -> Tensor:
    """Several clips ``(F_i, D)`` of one sequence as one ``(F, D)``: each zero-padded to a multiple
    of ``stack``, so that every clip gives exactly the adapter tokens it gives alone."""
    out = []
    for c in clips:
        pad = -c.shape[0] % stack
        out.append(torch.cat([c, c.new_zeros(pad, c.shape[1])]) if pad else c)
    return torch.cat(out)


class GatedMLP(nn.Module):
    """The dense adapter's feed-forward: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, hidden: int, inner: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(hidden, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(nn.functional.silu(gate) * up)


class SparseFFN(nn.Module):
    """Routed experts (dynamic softmax top-k gating, weights renormalised) + shared experts.

    ``last_routing``: the :class:`Routing` of the latest forward (tests, telemetry).
    """

    def __init__(self, cfg: AdapterConfig, hidden: int) -> None:
        super().__init__()
        rule = BaseRouting(top_k=cfg.top_k, scoring="softmax", norm_topk=True)
        groups = (tuple(range(cfg.n_experts)),)
        self.router = ModalityRouter(hidden, groups, "topk", rule)
        self.experts = GroupedExperts(cfg.n_experts, hidden, cfg.expert_size)
        self.shared = nn.ModuleList(
            SharedExpert(hidden, cfg.expert_size) for _ in range(cfg.n_shared)
        )
        self.last_routing: Routing | None = None

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, H)`` -> ``(N, H)``."""
        r = self.router(x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))
        self.last_routing = r
        y = self.experts(x, r.index, r.weight, can_skip=False)
        for expert in self.shared:
            y = y + expert(x)
        return y


class AudioAdapter(nn.Module):
    """``in_dim``-wide frames -> ``out_dim``-wide LLM embeddings through a sparse MoE
    (``kind=moe``) or dense (``kind=dense``) FFN.

    ``aux_loss``: the weighted load-balance loss of the latest forward (MoE only, None otherwise).
    """

    def __init__(self, cfg: AdapterConfig, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if cfg.kind == "none":
            raise ValueError("adapter.kind none builds no adapter")
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"adapter widths must be >= 1, got in {in_dim}, out {out_dim}")
        self.cfg, self.in_dim, self.out_dim = cfg, in_dim, out_dim
        h = out_dim
        self.in_proj = nn.Linear(cfg.stack * in_dim, h)
        self.norm = nn.LayerNorm(h)
        self.ffn = SparseFFN(cfg, h) if cfg.kind == "moe" else GatedMLP(h, cfg.dense_size)
        self.out_norm = nn.LayerNorm(h)
        self.aux_loss: Tensor | None = None

    def forward(self, feats: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``feats (B, F, D)``, ``mask (B, F)`` bool (None: all valid) -> embeddings
        ``(B, ceil(F/stack), H)`` and their mask ``(B, ceil(F/stack))``."""
        if feats.shape[-1] != self.in_dim:
            raise ValueError(
                f"audio features are {feats.shape[-1]}-dimensional, the adapter expects "
                f"{self.in_dim}"
            )
        if mask is None:
            mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
        x, out_mask = stack_frames(feats.to(self.in_proj.weight.dtype), mask.bool(), self.cfg.stack)
        h = self.in_proj(x)
        b, t, width = h.shape
        y = self.ffn(self.norm(h).reshape(-1, width)).view(b, t, width)
        self.aux_loss = None
        if isinstance(self.ffn, SparseFFN) and self.cfg.aux_alpha > 0:
            lb = load_balance(self.ffn.last_routing, out_mask.reshape(-1), t)
            self.aux_loss = self.cfg.aux_alpha * lb
        return self.out_norm(h + y), out_mask

    def active_params(self) -> int:
        """Parameters a frame passes through (routed: ``top_k`` of ``n_experts`` experts)."""
        total = sum(p.numel() for p in self.parameters())
        if isinstance(self.ffn, SparseFFN):
            routed = sum(p.numel() for p in self.ffn.experts.parameters())
            total -= routed - routed * self.cfg.top_k // self.cfg.n_experts
        return total


def init_adapter_weights(module: nn.Module, std: float = 0.02) -> None:
    """Initialise one of the adapter's modules (the model's ``_init_weights`` hook calls this).

    Through ``transformers.initialization``, which leaves tensors loaded from a checkpoint alone.
    """
    from transformers import initialization as init

    if isinstance(module, nn.Linear):
        init.normal_(module.weight, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        init.ones_(module.weight)
        init.zeros_(module.bias)
    elif isinstance(module, (GroupedExperts, SharedExpert, ModalityRouter)):
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("bias"):
                init.zeros_(p)
            else:
                init.normal_(p, std=std)
