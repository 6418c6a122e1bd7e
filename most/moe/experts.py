"""Routed experts with grouped dispatch: one sort, two grouped matmuls, no loop over experts.

Token-slot pairs are sorted by expert id so each expert's rows are contiguous; a per-expert count
(``histc``, no host sync) gives the offsets for ``grouped_mm``, which multiplies every expert's block
of rows by that expert's weights in one kernel. Slots whose id equals the number of experts (null
experts, unused Top-P slots) sort to the tail, are not counted, and cost no matmul.

Weights are stored the way transformers stores them for every supported architecture, so they copy
over (and LoRA ``target_parameters`` find them) unchanged:
``gate_up_proj (E, 2*I, H)`` ([gate; up] concatenated) and ``down_proj (E, H, I)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import torch
from torch import Tensor, nn

from most.cpu import cpu_bf16_is_faster


def grouped_mm(x: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    """``x (S, in)`` rows grouped by ``offs (E,)`` cumulative ends, ``w (E, in, out)`` -> ``(S, out)``.

    Rows past ``offs[-1]`` are left uninitialised by the kernel; callers mask them.
    """
    if hasattr(torch.nn.functional, "grouped_mm"):
        return torch.nn.functional.grouped_mm(x, w, offs=offs)
    if hasattr(torch, "_grouped_mm"):
        return torch._grouped_mm(x, w, offs=offs)
    # Old torch only: a loop with a host sync, kept so the model still runs there.
    out, start = x.new_zeros(x.shape[0], w.shape[-1]), 0
    for i, end in enumerate(offs.tolist()):
        out[start:end] = x[start:end] @ w[i]
        start = end
    return out


def _activation(name: str) -> nn.Module:
    # Imported here: importing transformers registers the adapted model (most/__init__.py), which
    # imports this package; a module-level import would do that while most.moe.block is half-built.
    from transformers.activations import ACT2FN

    return ACT2FN[name]


def _zero(t: Tensor, rows: Tensor | None) -> Tensor:
    """``t`` with the masked ``rows (S, 1)`` set to zero, in the forward and in the gradient."""
    return t if rows is None else t.masked_fill(rows, 0.0)


class GroupedExperts(nn.Module):
    """``num_experts`` gated MLPs (SwiGLU-style) evaluated with grouped matmuls.

    ``act``: activation name or module; ``glu``: the base's own gating of the ``(S, 2I)`` gate/up
    activations (gpt-oss: interleaved, clamped, its own activation) in place of ``act(gate) * up``;
    ``bias``: per-expert biases ``gate_up_proj_bias (E, 2I)`` and ``down_proj_bias (E, H)``.
    ``gated=False``: plain MLP experts ``act(up(x))`` (Nemotron-H), whose input projection is
    ``up_proj (E, I, H)`` (bias ``up_proj_bias``) instead of ``gate_up_proj``.
    """

    def __init__(
        self,
        num_experts: int,
        hidden_size: int,
        intermediate_size: int,
        act: str | nn.Module = "silu",
        bias: bool = False,
        glu: Callable[[Tensor], Tensor] | None = None,
        gated: bool = True,
    ) -> None:
        super().__init__()
        self.num_experts, self.gated = num_experts, gated
        self.in_name = "gate_up_proj" if gated else "up_proj"
        width = 2 * intermediate_size if gated else intermediate_size
        self.register_parameter(
            self.in_name, nn.Parameter(torch.empty(num_experts, width, hidden_size))
        )
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        in_bias = nn.Parameter(torch.zeros(num_experts, width)) if bias else None
        self.register_parameter(self.in_name + "_bias", in_bias)
        self.down_proj_bias = nn.Parameter(torch.zeros(num_experts, hidden_size)) if bias else None
        self.act_fn = _activation(act) if isinstance(act, str) else act
        self.glu = glu
        self.fused: Callable[[Tensor, Tensor], Tensor] | None = None

    @property
    def in_proj(self) -> nn.Parameter:
        """The input projection: ``gate_up_proj (E, 2I, H)``, or ``up_proj (E, I, H)`` ungated."""
        return getattr(self, self.in_name)

    def _gate(self, h: Tensor, rows: Tensor) -> Tensor:
        """``(S, 2I)`` gate/up activations of rows served by experts ``rows (S,)`` -> ``(S, I)``."""
        bias = getattr(self, self.in_name + "_bias")
        if bias is not None:
            h = h + bias.index_select(0, rows).to(h.dtype)
        if self.glu is not None:
            return self.glu(h)
        if not self.gated:
            return self.act_fn(h)
        gate, up = h.chunk(2, dim=-1)
        return self.act_fn(gate) * up

    def _activate(self, h: Tensor, rows: Tensor, w: Tensor) -> Tensor:
        """``(S, 2I)`` gate/up activations -> ``(S, I)`` gated, times the routing weights
        ``w (S, 1)``; one fused loop (forward and backward) after :meth:`compile_activation`."""
        if self.fused is not None:
            return self.fused(h, w)
        return self._gate(h, rows) * w

    def compile_activation(self) -> bool:
        """Runs the SiLU gate times the routing weights as one compiled loop (``torch.compile``,
        any row count) in place of four eager passes forward and eight backward; False, and
        nothing changed, for biased, ungated or custom-gated experts or other activations."""
        from transformers.activations import SiLUActivation

        bias = getattr(self, self.in_name + "_bias")
        if bias is not None or self.glu is not None or not self.gated:
            return False
        if not isinstance(self.act_fn, (nn.SiLU, SiLUActivation)):
            return False
        self.fused = _compiled_silu_gate()
        return True

    def _down_bias(self, h: Tensor, rows: Tensor, w: Tensor) -> Tensor:
        """Add each row's down-projection bias, weighted like the rest of the expert's output."""
        if self.down_proj_bias is None:
            return h
        return h + self.down_proj_bias.index_select(0, rows).to(h.dtype) * w

    def forward(self, x: Tensor, index: Tensor, weight: Tensor, can_skip: bool = True) -> Tensor:
        """``x (N, H)``, ``index (N, K)`` in ``[0, E]`` (E = skip), ``weight (N, K)`` -> ``(N, H)``.

        ``can_skip=False`` promises no skip ids and saves two masking passes.
        """
        low = _cpu_low_precision(x)
        if low is not None:
            return self._forward_cpu_blocks(x, index, weight, low)
        return self.forward_grouped(x, index, weight, can_skip)

    def forward_grouped(
        self, x: Tensor, index: Tensor, weight: Tensor, can_skip: bool = True
    ) -> Tensor:
        """:meth:`forward` with ragged groups in ``x``'s dtype (the weights' dtype)."""
        n, k = index.shape
        ids, perm = index.reshape(-1).sort()
        if can_skip and x.device.type == "cpu":
            return self._forward_live(x, ids, perm, weight, k)
        # index_select, not fancy indexing: its backward is index_add_, several times faster on CPU
        # than the accumulating index_put_ that x[idx] backpropagates through.
        xs = x.index_select(0, perm // k)  # (N*K, H), grouped by expert
        # histc on CPU wants floats; ids == E fall outside [0, E-1] and are not counted.
        hist_in = ids.float() if ids.device.type in ("cpu", "mps") else ids.int()
        counts = torch.histc(hist_in, bins=self.num_experts, min=0, max=self.num_experts - 1)
        offs = counts.cumsum(0).to(torch.int32)
        skip = (ids >= self.num_experts).unsqueeze(-1) if can_skip else None
        # The kernel leaves skipped rows uninitialised, in its output and in its input-gradient.
        # Every tensor that crosses a grouped_mm is masked on those rows, so garbage (possibly
        # NaN) reaches neither the output nor any gradient, the routing weights' included (a NaN
        # there times the zero weight of an unused Top-P slot is still NaN).
        rows = ids.clamp(max=self.num_experts - 1)
        h = grouped_mm(_zero(xs, skip), self.in_proj.transpose(1, 2), offs)  # (N*K, 2I)
        # Routing weights scale the (N*K, I) activations rather than the (N*K, H) outputs: the same
        # result (the down projection is linear) for a cheaper multiply, as I < H in MoE layers.
        w = weight.reshape(-1)[perm].unsqueeze(-1).to(h.dtype)
        h = self._activate(_zero(h, skip), rows, w)
        h = grouped_mm(_zero(h, skip), self.down_proj.transpose(1, 2), offs)
        h = _zero(self._down_bias(h, rows, w), skip)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        out = h.index_select(0, inverse)  # back to (token, slot) order
        # Sum over slots in the activation dtype: deterministic, unlike index_add_ on CUDA.
        return out.view(n, k, -1).sum(1).to(x.dtype)

    def _forward_live(self, x: Tensor, ids: Tensor, perm: Tensor, weight: Tensor, k: int) -> Tensor:
        """:meth:`forward_grouped` on the CPU for routings with skip ids: only the live slots
        (sorted first) are gathered, activated, multiplied and summed back, so a skipped slot
        costs nothing past the sort. Reading their count is a host read, free on the CPU; on
        a GPU it would stall the stream, so there the static, masked path runs instead."""
        e = self.num_experts
        hist_in = ids.float()
        counts = torch.histc(hist_in, bins=e, min=0, max=e - 1)
        offs = counts.cumsum(0).to(torch.int32)
        live = int(offs[-1])
        perm, rows = perm[:live], ids[:live]
        token = perm // k
        xs = x.index_select(0, token)  # (live, H), grouped by expert
        h = grouped_mm(xs, self.in_proj.transpose(1, 2), offs)
        w = weight.reshape(-1).index_select(0, perm).unsqueeze(-1).to(h.dtype)
        h = self._activate(h, rows, w)
        h = self._down_bias(grouped_mm(h, self.down_proj.transpose(1, 2), offs), rows, w)
        # index_add on the CPU adds in a fixed order: deterministic.
        return x.new_zeros(x.shape[0], h.shape[1], dtype=h.dtype).index_add(0, token, h).to(x.dtype)

    def _forward_cpu_blocks(
        self, x: Tensor, index: Tensor, weight: Tensor, dtype: torch.dtype
    ) -> Tensor:
        """:meth:`forward` in bf16/fp16 on the CPU, each expert's rows padded to a multiple of
        :data:`CPU_BLOCK`.

        oneDNN's bf16 matmuls (AMX) are fast only on row counts it has compiled a kernel for: on
        the ragged counts routing gives (new ones every step) a bf16 grouped matmul, forward and
        backward, took 46 ms vs 26 ms in fp32; with every group padded to a multiple of 128 the
        counts repeat and it takes 7 ms (8192 rows, 8 experts, 256 -> 512, 2 cores). A stage-1
        step of the tiny default: 0.46 s vs 0.62 s in fp32. Pad rows are zero and never read back, so
        they add nothing to the output or to any gradient; skipped slots get no row at all.
        """
        n, k = index.shape
        e = self.num_experts
        ids, perm = index.reshape(-1).sort()
        counts = torch.bincount(ids, minlength=e + 1)[:e]  # ids == E (skip) are not grouped
        padded = (counts + CPU_BLOCK - 1) // CPU_BLOCK * CPU_BLOCK
        rows = int(padded.sum())
        if rows > MAX_PAD_RATIO * max(n * k, 1):
            # Few rows per expert (decoding, small batches): padding would multiply the work, and
            # the ragged matmul in the weights' dtype is the faster one.
            wide = self.in_proj.dtype
            return self.forward_grouped(x.to(wide), index, weight.to(wide)).to(x.dtype)
        # Padded row of each sorted slot: it moves down by the padding of the groups before its
        # own. Skipped slots (sorted last) point one past the last row.
        extra = padded - counts
        dest = (
            torch.arange(ids.numel(), device=ids.device)
            + (extra.cumsum(0) - extra)[ids.clamp(max=e - 1)]
        )
        dest = torch.where(ids < e, dest, rows)
        # Slot held by each padded row (n * k = none: the zero row appended to x and weight).
        slot = torch.full((rows + 1,), n * k, dtype=torch.long, device=x.device)
        slot[dest] = perm
        slot = slot[:rows]
        xs = torch.cat([x, x.new_zeros(1, x.shape[1])]).index_select(0, slot // k).to(dtype)
        w = torch.cat([weight.reshape(-1), weight.new_zeros(1)]).index_select(0, slot)
        offs = padded.cumsum(0).to(torch.int32)
        rid = torch.repeat_interleave(torch.arange(e, device=x.device), padded, output_size=rows)
        w = w.unsqueeze(-1).to(dtype)
        h = grouped_mm(xs, self.in_proj.to(dtype).transpose(1, 2), offs)
        h = self._activate(h, rid, w)
        h = self._down_bias(grouped_mm(h, self.down_proj.to(dtype).transpose(1, 2), offs), rid, w)
        # Back to (token, slot) order; a skipped slot reads the appended zero row.
        pos = torch.empty_like(perm)
        pos[perm] = dest
        h = torch.cat([h, h.new_zeros(1, h.shape[1])])
        return h.index_select(0, pos).view(n, k, -1).sum(1).to(x.dtype)


def _silu_gate(h: Tensor, w: Tensor) -> Tensor:
    """``silu(gate) * up * w`` of ``h (S, 2I)`` = ``[gate; up]`` and ``w (S, 1)``."""
    gate, up = h.chunk(2, dim=-1)
    return nn.functional.silu(gate) * up * w


@cache
def _compiled_silu_gate() -> Callable[[Tensor, Tensor], Tensor]:
    """One compiled :func:`_silu_gate` per process, shared by every layer (dynamic row count)."""
    return torch.compile(_silu_gate, dynamic=True)


CPU_BLOCK = 128
"""Row multiple of each expert's group in the low-precision CPU path."""
MAX_PAD_RATIO = 2
"""The padded CPU path is taken only while padding at most doubles the rows (else: ragged, wide)."""


def _cpu_low_precision(x: Tensor) -> torch.dtype | None:
    """The bf16/fp16 dtype the experts should run in on the CPU (autocast's or ``x``'s), else None;
    None for bf16 where this CPU does not run bf16 faster than fp32 (:mod:`most.cpu`)."""
    if x.device.type != "cpu":
        return None
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    if dtype == torch.bfloat16 and not cpu_bf16_is_faster():
        return None  # e.g. AVX512-BF16 without AMX: the ragged groups in x's dtype are faster
    return dtype if dtype in (torch.bfloat16, torch.float16) else None


class SharedExpert(nn.Module):
    """One gated MLP that sees every token, stored like one routed expert:
    ``gate_up_proj (2*I, H)`` and ``down_proj (H, I)``.

    Only built for ``experts.add_shared`` (bases without shared experts of their own); the shared
    experts of Qwen2-MoE / DeepSeek are the base's own modules, moved over unchanged.
    """

    def __init__(self, hidden_size: int, intermediate_size: int, act: str = "silu") -> None:
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.empty(2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(hidden_size, intermediate_size))
        self.act_fn = _activation(act)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N, H)`` -> ``(N, H)``."""
        gate, up = nn.functional.linear(x, self.gate_up_proj).chunk(2, dim=-1)
        return nn.functional.linear(self.act_fn(gate) * up, self.down_proj)
