"""Dynamic capacity, trained: Top-P routing with null experts against top-k, in one run.

The same stack of modality-aware MoE layers (residual, RMS-normed, the project's own router and
grouped experts) is trained twice from the same initial weights on the same batches of a synthetic
two-modality regression task, once with the modality-aware top-k router and once with Top-P routing
with null experts and its regularisers (null-aware balance and routing entropy, ``most.moe.aux``):

- ``text`` targets are the input plus a random two-layer tanh teacher of it (hard: needs capacity);
- ``speech`` targets are the input plus a small linear map of it (easy: little or no expert
  compute is needed, and null experts can serve it).

Reported: the held-out loss of each (``equal_quality``: Top-P's mean loss over the modalities
within ``--tolerance`` of top-k's, relatively; per-modality differences beside it), the experts per
token Top-P learnt per modality and layer (router telemetry), each layer's forward + backward time
on ``--time-tokens`` tokens at the trained routing (interleaved rounds, fastest kept; top-k gets the
faster of its two dispatch paths; on a GPU only the static one, with skipped rows masked), the
routed experts' matmul FLOPs of each, and the speedup. Prints one JSON object and writes it to
``--out``::

    OMP_NUM_THREADS=1 python benchmarks/dynamic_capacity.py [--steps 500] [--out PATH]
    python benchmarks/dynamic_capacity.py --device cuda --out runs/bench/dynamic_capacity_cuda.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from most.io import atomic_write_json
from most.moe.block import ModalityMoE, RoutingState
from most.moe.experts import GroupedExperts
from most.moe.router import BaseRouting, ModalityRouter
from most.moe.telemetry import Telemetry

MODALITIES = ("text", "speech")


class Stack(nn.Module):
    """``layers`` residual MoE layers, ``h = h + moe(rms_norm(h))``; the output is ``h``."""

    def __init__(self, ns: argparse.Namespace, kind: str, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        h, e = ns.hidden, ns.experts
        half = e // 2
        groups = (tuple(range(half)), tuple(range(half, e)))
        self.state = RoutingState(
            aux_alpha=ns.aux_alpha,
            null_coef=ns.null_alpha if kind == "top_p" else 0.0,
            entropy_coef=ns.entropy_alpha if kind == "top_p" else 0.0,
        )
        self.norms = nn.ModuleList(nn.RMSNorm(h) for _ in range(ns.layers))
        blocks = []
        for i in range(ns.layers):
            router = ModalityRouter(
                h, groups, kind, BaseRouting(top_k=ns.top_k, norm_topk=True), top_p=ns.top_p,
                n_null=ns.n_null, max_k=ns.max_k,
            )  # fmt: skip
            experts = GroupedExperts(e, h, ns.inter)
            with torch.no_grad():
                # The same draws for both routers: the routed rows first, null rows start at 0
                # (as ``most adapt`` leaves them).
                router.weight[:e].normal_(0.0, 0.1)
                router.weight[e:].zero_()
                experts.gate_up_proj.normal_(0.0, h**-0.5)
                experts.down_proj.normal_(0.0, 0.1 * ns.inter**-0.5)
            blocks.append(ModalityMoE(router, experts, self.state, i))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, modality: Tensor, collect: bool = True) -> Tensor:
        """``x (N, H)``, ``modality (N,)`` -> ``(N, H)``; aux losses land in ``self.state``."""
        self.state.begin(modality.view(1, -1), None, collect)
        h = x.view(1, -1, x.shape[-1])
        for norm, block in zip(self.norms, self.blocks, strict=True):
            h = h + block(norm(h))
        return h.view_as(x)


class Task:
    """Two teachers, one per modality; ``batch(n, seed)`` draws half text and half speech inputs."""

    def __init__(self, hidden: int, seed: int = 1234) -> None:
        g = torch.Generator().manual_seed(seed)
        self.g = g
        self.hidden = hidden
        self.w1 = torch.randn(hidden, 4 * hidden, generator=g) * hidden**-0.5
        self.w2 = torch.randn(4 * hidden, hidden, generator=g) * (4 * hidden) ** -0.5
        self.lin = torch.randn(hidden, hidden, generator=g) * hidden**-0.5

    def target(self, x: Tensor, modality: Tensor) -> Tensor:
        hard = torch.tanh(2.0 * x @ self.w1) @ self.w2 * 2.0
        easy = 0.1 * x @ self.lin
        return x + torch.where(modality.unsqueeze(-1) == 0, hard, easy)

    def batch(self, n: int, seed: int, device: str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """Drawn on the CPU (the same batches on every device), returned on ``device``."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, self.hidden, generator=g)
        modality = (torch.arange(n) >= n // 2).long()
        return tuple(t.to(device) for t in (x, modality, self.target(x, modality)))


def loss_of(pred: Tensor, y: Tensor, modality: Tensor) -> Tensor:
    """Mean over modalities of each one's mean squared error per token."""
    err = (pred - y).square().mean(-1)
    return torch.stack([err[modality == m].mean() for m in range(len(MODALITIES))]).mean()


def train(model: Stack, task: Task, ns: argparse.Namespace) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=ns.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, ns.lr, total_steps=ns.steps, pct_start=0.1)
    curve = []
    for step in range(ns.steps):
        x, modality, y = task.batch(ns.batch, seed=step, device=ns.device)
        loss = loss_of(model(x, modality), y, modality)
        total = loss + torch.stack(model.state.losses).mean()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        curve.append(loss.item())
    return curve


@torch.no_grad()
def evaluate(model: Stack, task: Task, ns: argparse.Namespace) -> tuple[dict, dict]:
    """Held-out loss (overall and per modality) and the router telemetry of that batch."""
    x, modality, y = task.batch(ns.eval_tokens, seed=10**6, device=ns.device)
    model.state.telemetry = Telemetry(MODALITIES)
    pred = model(x, modality, collect=False)
    summary = model.state.telemetry.summary()
    model.state.telemetry = None
    err = (pred - y).square().mean(-1)
    losses = {m: err[modality == i].mean().item() for i, m in enumerate(MODALITIES)}
    losses["mean"] = sum(losses.values()) / len(MODALITIES)
    return losses, summary


def layer_inputs(model: Stack, x: Tensor, modality: Tensor) -> list[Tensor]:
    """The normed input each MoE layer sees for ``x`` (what its timing runs on)."""
    model.state.begin(modality.view(1, -1), None, collect=False)
    outs, h = [], x.view(1, -1, x.shape[-1])
    with torch.no_grad():
        for norm, block in zip(model.norms, model.blocks, strict=True):
            outs.append(norm(h).reshape(-1, h.shape[-1]).clone())
            h = h + block(norm(h))
    return outs


def layer_step(block: ModalityMoE, x: Tensor, modality: Tensor, live_path: bool):
    """One forward + backward of ``block``'s router and routed experts on ``x (N, H)``; returns
    the number of live (token, expert) slots. ``live_path`` sends a routing without skip ids
    through the CPU's compacting dispatch too (the faster of the two for top-k)."""
    xg = x.detach().requires_grad_()
    r = block.router(xg, modality)
    y = block.experts.forward_grouped(xg, r.index, r.weight, r.can_skip or live_path)
    y.sum().backward()
    return int((r.index < r.num_experts).sum())


def time_layers(models: dict[str, Stack], task: Task, ns: argparse.Namespace) -> dict:
    """Per layer, per variant: fastest forward + backward ms over ``reps`` interleaved rounds."""
    x, modality, _ = task.batch(ns.time_tokens, seed=10**6 + 1, device=ns.device)
    sync = torch.cuda.synchronize if ns.device == "cuda" else (lambda: None)
    inputs = {name: layer_inputs(m, x, modality) for name, m in models.items()}
    variants = {
        "topk_static": ("topk", False),
        "topk_live": ("topk", True),
        "top_p": ("top_p", False),
    }
    best = {v: [float("inf")] * ns.layers for v in variants}
    slots = {v: [0] * ns.layers for v in variants}
    for _ in range(ns.reps):
        for v, (name, live) in variants.items():
            for i, block in enumerate(models[name].blocks):
                block.zero_grad(set_to_none=True)
                sync()
                t = time.perf_counter()
                slots[v][i] = layer_step(block, inputs[name][i], modality, live)
                sync()
                best[v][i] = min(best[v][i], (time.perf_counter() - t) * 1e3)
    return {"ms": best, "slots": slots}


def main(ns: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    task = Task(ns.hidden)
    models, curves, quality, telemetry = {}, {}, {}, {}
    for name, kind in (("topk", "modality"), ("top_p", "top_p")):
        models[name] = Stack(ns, kind, seed=ns.seed).to(ns.device)
        curves[name] = train(models[name], task, ns)
        quality[name], telemetry[name] = evaluate(models[name], task, ns)
        print(f"{name}: trained, held-out loss {quality[name]}", file=sys.stderr, flush=True)
    timing = time_layers(models, task, ns)
    ms = timing["ms"]
    topk_ms = [min(a, b) for a, b in zip(ms["topk_static"], ms["topk_live"], strict=True)]
    flops_per_slot = 2 * 3 * ns.hidden * ns.inter  # gate/up (H -> 2I) and down (I -> H), forward
    layers = telemetry["top_p"]["layers"]
    per_layer = {
        layer: {
            m: {k: round(stats[m][k], 4) for k in ("experts_per_token", "null_share")}
            | {"dropped": stats[m]["dropped"], "tokens": stats[m]["tokens"]}
            for m in MODALITIES
        }
        for layer, stats in layers.items()
    }
    ept = {
        m: round(sum(v[m]["experts_per_token"] for v in per_layer.values()) / ns.layers, 4)
        for m in MODALITIES
    }
    rel = (quality["top_p"]["mean"] - quality["topk"]["mean"]) / quality["topk"]["mean"]
    flops_topk = [s * flops_per_slot for s in timing["slots"]["topk_static"]]
    flops_top_p = [s * flops_per_slot for s in timing["slots"]["top_p"]]
    return {
        "task": "synthetic regression: target = x + random 2-layer tanh teacher (text) or "
        "x + 0.1 x random linear map (speech)",
        "layer": f"hidden {ns.hidden}, {ns.experts} experts x {ns.inter} in 2 modality groups, "
        f"top-{ns.top_k} vs Top-P p={ns.top_p} with {ns.n_null} null experts (max {ns.max_k or 2 * ns.top_k})",
        "layers": ns.layers,
        "steps": ns.steps,
        "batch_tokens": ns.batch,
        "regularisers": {"null_alpha": ns.null_alpha, "entropy_alpha": ns.entropy_alpha},
        "loss_topk": {k: round(v, 5) for k, v in quality["topk"].items()},
        "loss_top_p": {k: round(v, 5) for k, v in quality["top_p"].items()},
        "loss_relative_diff": round(rel, 4),
        "loss_relative_diff_per_modality": {
            m: round((quality["top_p"][m] - quality["topk"][m]) / quality["topk"][m], 4)
            for m in MODALITIES
        },
        "tolerance": ns.tolerance,
        "equal_quality": rel <= ns.tolerance,
        "experts_per_token": ept,
        "experts_per_token_topk": ns.top_k,
        "top_p_per_layer": per_layer,
        "time_tokens": ns.time_tokens,
        "layer_ms_topk": [round(v, 2) for v in topk_ms],
        "layer_ms_topk_paths": {
            "static": [round(v, 2) for v in ms["topk_static"]],
            "live": [round(v, 2) for v in ms["topk_live"]],
        },
        "layer_ms_top_p": [round(v, 2) for v in ms["top_p"]],
        "expert_flops_topk": flops_topk,
        "expert_flops_top_p": flops_top_p,
        "flops_ratio": round(sum(flops_top_p) / sum(flops_topk), 4),
        "speedup": round(sum(topk_ms) / sum(ms["top_p"]), 3),
        "device": ns.device,
        "gpu": torch.cuda.get_device_name() if ns.device == "cuda" else None,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def cpu_name() -> str:
    path = Path("/proc/cpuinfo")
    lines = path.read_text().splitlines() if path.is_file() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--inter", type=int, default=256)
    parser.add_argument("--experts", type=int, default=8, help="split into two modality groups")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--top-p", type=float, default=0.7)
    parser.add_argument("--n-null", type=int, default=2)
    parser.add_argument("--max-k", type=int, default=0, help="0 = twice top-k")
    parser.add_argument("--aux-alpha", type=float, default=0.01)
    parser.add_argument("--null-alpha", type=float, default=0.01)
    parser.add_argument("--entropy-alpha", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=1024, help="tokens per training step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-tokens", type=int, default=4096)
    parser.add_argument("--time-tokens", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="runs/bench/dynamic_capacity.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ns = parse()
    result = main(ns)
    atomic_write_json(ns.out, result)
    print(json.dumps(result, indent=2))
