"""The local transformer of the multi-scale decoder: it writes one frame's ``C`` codebooks.

UniAudio's multi-scale model splits the work: a large *global* model reads one position per frame,
and a small *local* model, given the global model's hidden state for the next frame, predicts that
frame's codes one codebook at a time, each conditioned on the codebooks before it. The local
sequence is only ``C`` long, so it is recomputed at every step (no cache) and costs little next to
the global model.

Local step ``c`` reads ``proj(h) + pos[c] (+ embed(code of codebook c-1))`` and predicts codebook
``c`` with that codebook's own output matrix; attention is causal over the steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LocalBlock(nn.Module):
    """A pre-norm causal self-attention + GELU MLP block over ``(N, L, d)``."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"local_hidden_size {hidden} is not divisible by local_heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden)
        )

    def forward(self, x: Tensor) -> Tensor:
        n, length, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.out(a.transpose(1, 2).reshape(n, length, d))
        return x + self.mlp(self.norm2(x))


class LocalDecoder(nn.Module):
    """Predicts a frame's ``C`` codes in ``[0, K)`` from the global hidden state ``h (N, H)``.

    Attributes:
        proj: global hidden ``H`` -> local hidden ``d``, added at every local step.
        embed: ``(C * K, d)``: code ``k`` of codebook ``c`` (row ``c * K + k``) as the next step's
            input.
        pos: ``(C, d)`` step embeddings.
        head: ``(C, K, d)`` and ``head_bias (C, K)``: codebook ``c``'s output matrix.
    """

    def __init__(
        self,
        in_size: int,
        n_codebooks: int,
        codebook_size: int,
        hidden: int,
        layers: int,
        heads: int,
    ) -> None:
        super().__init__()
        self.n_codebooks, self.codebook_size = n_codebooks, codebook_size
        self.proj = nn.Linear(in_size, hidden)
        self.embed = nn.Embedding(n_codebooks * codebook_size, hidden)
        self.pos = nn.Embedding(n_codebooks, hidden)
        self.blocks = nn.ModuleList(LocalBlock(hidden, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Parameter(torch.empty(n_codebooks, codebook_size, hidden))
        self.head_bias = nn.Parameter(torch.zeros(n_codebooks, codebook_size))

    def forward(self, h: Tensor, prev: Tensor) -> Tensor:
        """``h (N, H)``, ``prev (N, L)`` the known codes of codebooks ``0..L-1`` (``L < C``) ->
        ``(N, L + 1, K)`` logits of codebooks ``0..L``."""
        length = prev.shape[1]
        if length >= self.n_codebooks:
            raise ValueError(f"prev holds {length} codebooks; at most {self.n_codebooks - 1}")
        steps = length + 1
        x = self.proj(h)[:, None, :] + self.pos.weight[:steps]
        if length:
            rows = prev + torch.arange(length, device=prev.device) * self.codebook_size
            x = x + F.pad(self.embed(rows), (0, 0, 1, 0))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return torch.einsum("nld,lkd->nlk", x, self.head[:steps]) + self.head_bias[:steps]

    @torch.no_grad()
    def generate(
        self,
        h: Tensor,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``h (N, H)`` -> ``(N, C)`` codes, codebook by codebook (greedy unless ``do_sample``)."""
        codes = torch.zeros(h.shape[0], 0, dtype=torch.long, device=h.device)
        for _ in range(self.n_codebooks):
            logits = self(h, codes)[:, -1]
            pick = sample(logits, do_sample, temperature, top_k, generator)
            codes = torch.cat([codes, pick[:, None]], dim=1)
        return codes


def sample(
    logits: Tensor,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``(N, V)`` logits -> ``(N,)`` ids: argmax, or a draw at ``temperature`` from the ``top_k``
    best (0: all)."""
    if not do_sample:
        return logits.argmax(-1)
    logits = logits.float() / max(temperature, 1e-5)
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
