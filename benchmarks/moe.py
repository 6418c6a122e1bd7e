"""MoE layer benchmark: our modality-aware block against transformers' own block, in one run.

Two shapes, each in fp32 and under bf16 autocast:

- ``design``: DESIGN.md's layer, a DeepSeek-V2-Lite layer scaled down (hidden 512, 64 routed
  experts x 256, top-6, 2 shared experts), against ``DeepseekV2Moe``;
- ``qwen3-30b-a3b-like``: Qwen3-30B-A3B's routing (128 experts, top-8, no shared expert, top-k
  weights renormalised) at hidden 512 with its expert/hidden ratio (x 192), against
  ``Qwen3MoeSparseMoeBlock``.

Two modes:

- ``train``: forward + backward on a mixed text/speech batch of ``--tokens`` (4096) tokens, against
  the fastest of transformers' experts implementations (``eager``, ``batched_mm``, ``grouped_mm``;
  ``batched_mm`` copies each token's expert weights and is skipped where that exceeds 4 GB);
- ``decode``: forward only without gradients on ``--decode-tokens`` (8) tokens, one per sequence
  as in batched greedy decoding, against transformers' ``eager`` forward (and its fastest).

Every implementation of a row is timed in one process with interleaved rounds, fastest kept, so
load from other processes biases none more than another. The design shape's fp32 training row also
times a MoST-reference-style loop over experts and measures each block's peak memory in a fresh
process (CPU: resident-memory growth; CUDA: ``max_memory_allocated`` growth). Prints one JSON
object::

    python benchmarks/moe.py [--tokens 4096] [--decode-tokens 8] [--reps 3] [--device cpu|cuda]
                             [--shapes design,qwen3-30b-a3b-like] [--precisions fp32,bf16-mixed]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HF_IMPLS = ("eager", "batched_mm", "grouped_mm")
GOAL = 1.2  # ours at least this many times faster than transformers (train: fastest; decode: eager)


@dataclass(frozen=True)
class Shape:
    hidden: int
    experts: int
    inter: int
    top_k: int
    shared: int
    family: str  # deepseek_v2 | qwen3_moe

    def describe(self) -> str:
        shared = f", {self.shared} shared" if self.shared else ""
        return (
            f"hidden {self.hidden}, {self.experts} experts x {self.inter}, top-{self.top_k}{shared}"
        )


SHAPES = {
    "design": Shape(512, 64, 256, 6, 2, "deepseek_v2"),
    "qwen3-30b-a3b-like": Shape(512, 128, 192, 8, 0, "qwen3_moe"),
}


def hf_block(shape: Shape):
    """transformers' own MoE block of the shape's family, weights drawn N(0, 0.02)."""
    import torch

    if shape.family == "deepseek_v2":
        from transformers import DeepseekV2Config
        from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe

        cfg = DeepseekV2Config(
            hidden_size=shape.hidden,
            moe_intermediate_size=shape.inter,
            n_routed_experts=shape.experts,
            num_experts_per_tok=shape.top_k,
            n_shared_experts=shape.shared,
            topk_method="greedy",
            norm_topk_prob=False,
            routed_scaling_factor=1.0,
        )
        block = DeepseekV2Moe(cfg)
    else:
        from transformers import Qwen3MoeConfig
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

        cfg = Qwen3MoeConfig(
            hidden_size=shape.hidden,
            moe_intermediate_size=shape.inter,
            num_experts=shape.experts,
            num_experts_per_tok=shape.top_k,
            norm_topk_prob=True,
        )
        block = Qwen3MoeSparseMoeBlock(cfg)
    cfg._experts_implementation = "eager"
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.02)
    return block, cfg


def build(shape: Shape, impl: str, tokens: int, device: str):
    """``(fn(x) -> y, x)`` for one implementation, all from the same seeded weights and tokens.

    ``impl``: ``ours``, ``loop`` or ``hf:<experts implementation>``."""
    import torch

    from most.moe.block import ModalityMoE, RoutingState
    from most.moe.experts import GroupedExperts
    from most.moe.groups import resolve_groups
    from most.moe.router import BaseRouting, ModalityRouter

    torch.manual_seed(0)
    hf, cfg = hf_block(shape)
    rows = 4 if tokens >= 64 else tokens  # training: 4 sequences; decoding: one token each
    x = torch.randn(rows, tokens // rows, shape.hidden)
    modality = (torch.rand(x.shape[:2]) < 0.5).long().to(device)  # mixed text (0) / speech (1)
    base = BaseRouting(
        shape.top_k,
        norm_topk=shape.family == "qwen3_moe",
        fp32_logits=shape.family == "deepseek_v2",
    )
    groups = resolve_groups(None, ("text", "speech"), shape.experts, "split")  # halves, as in MoST
    router = ModalityRouter(shape.hidden, groups, "modality", base)
    experts = GroupedExperts(shape.experts, shape.hidden, shape.inter, cfg.hidden_act)
    with torch.no_grad():
        router.weight.copy_(hf.gate.weight)
        experts.gate_up_proj.copy_(hf.experts.gate_up_proj)
        experts.down_proj.copy_(hf.experts.down_proj)
    shared = getattr(hf, "shared_experts", None)
    if impl == "ours":
        module = ModalityMoE(router, experts, RoutingState(), 0, shared=shared)

        def fn(h):
            return module(h, modality=modality)
    elif impl.startswith("hf:"):
        module, name = hf, impl[3:]

        def fn(h):
            cfg._experts_implementation = name  # read by transformers at each call
            out = module(h)
            return out[0] if isinstance(out, tuple) else out
    else:
        module, fn = loop_block(shape, cfg, hf, router, shared, modality)
    module.to(device)
    return fn, x.to(device)


def loop_block(shape: Shape, cfg, hf, router, shared, modality):
    """MoST reference style: separate expert MLPs, a Python loop over all experts, boolean masks."""
    import torch
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2MLP

    mlps = torch.nn.ModuleList(
        DeepseekV2MLP(cfg, intermediate_size=shape.inter) for _ in range(shape.experts)
    )
    with torch.no_grad():
        for i, m in enumerate(mlps):
            gate, up = hf.experts.gate_up_proj[i].chunk(2)
            m.gate_proj.weight.copy_(gate)
            m.up_proj.weight.copy_(up)
            m.down_proj.weight.copy_(hf.experts.down_proj[i])
    module = torch.nn.ModuleDict({"router": router, "experts": mlps})
    if shared is not None:
        module["shared"] = shared

    def fn(h):
        flat = h.reshape(-1, shape.hidden)
        r = router(flat, modality.reshape(-1))
        idx = r.index.reshape(-1)
        rep = flat.repeat_interleave(shape.top_k, dim=0)
        y = torch.empty_like(rep)
        for i, expert in enumerate(mlps):
            y[idx == i] = expert(rep[idx == i]).to(y.dtype)
        y = (y.view(-1, shape.top_k, shape.hidden) * r.weight.unsqueeze(-1)).sum(1)
        y = y if shared is None else y + shared(flat)
        return y.view_as(h)

    return module, fn


def timed(fn, x, device: str, precision: str, train: bool) -> float:
    """Milliseconds of one forward (+ backward when ``train``)."""
    import torch

    t0 = time.perf_counter()
    with (
        torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"),
        torch.set_grad_enabled(train),
    ):
        y = fn(x)
    if train:
        y.float().square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def time_row(shape: Shape, impls: list[str], tokens: int, precision: str, train: bool, reps: int):
    """Fastest milliseconds of each implementation over ``reps`` interleaved rounds."""
    built = {impl: build(shape, impl, tokens, args.device) for impl in impls}
    for fn, x in built.values():
        x.requires_grad_(train)
        timed(fn, x, args.device, precision, train)  # warm-up
    best = dict.fromkeys(impls, float("inf"))
    for _ in range(reps):
        for impl, (fn, x) in built.items():
            best[impl] = min(best[impl], timed(fn, x, args.device, precision, train))
    return best


class PeakRss(threading.Thread):
    """Samples this process's resident memory every 0.5 ms; ``peak`` is the largest seen (MB)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak, self.running = rss_mb(), True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.0005)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_child(impl: str, precision: str, ns: argparse.Namespace, q) -> None:
    """Peak memory of one fwd+bwd step of ``impl`` in a fresh process, MB above the set-up."""
    import torch

    global args
    args = ns
    fn, x = build(SHAPES["design"], impl, args.tokens, args.device)
    x.requires_grad_(True)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        timed(fn, x, args.device, precision, True)
        q.put((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    base = rss_mb()
    sampler = PeakRss()
    sampler.start()
    timed(fn, x, args.device, precision, True)
    sampler.running = False
    sampler.join()
    q.put(sampler.peak - base)


def peak_mb(impl: str, precision: str) -> float:
    # Large blocks straight from mmap go back to the OS when freed, so resident memory follows the
    # live tensors instead of glibc's high-water mark.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(impl, precision, args, q))
    p.start()
    while True:  # a child that dies (e.g. a CUDA error) must not leave the parent waiting forever
        try:
            result = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive():
                msg = f"peak-memory child for {impl!r} died (exit {p.exitcode})"
                raise RuntimeError(msg) from None
    p.join()
    return result


MAX_GATHER_GB = 4.0


def gathered_gb(shape: Shape, impl: str, tokens: int) -> float:
    """GB of expert weights transformers' ``batched_mm`` copies out per call (one gate/up and one
    down matrix per token and slot, fp32); 0 for the others."""
    if impl != "hf:batched_mm":
        return 0.0
    return tokens * shape.top_k * 3 * shape.inter * shape.hidden * 4 / 1e9


def cpu_name() -> str:
    path = Path("/proc/cpuinfo")
    lines = path.read_text().splitlines() if path.is_file() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")


def main() -> None:
    import torch

    rows = []
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        for precision in args.precisions.split(","):
            hf = [f"hf:{impl}" for impl in HF_IMPLS]
            loop = ["loop"] if name == "design" and precision == "fp32" else []
            for mode, tokens, reps in (
                ("train", args.tokens, args.reps),
                ("decode", args.decode_tokens, args.reps * 20),
            ):
                runnable = [i for i in hf if gathered_gb(shape, i, tokens) <= MAX_GATHER_GB]
                impls = ["ours", *runnable, *loop]
                ms = time_row(shape, impls, tokens, precision, mode == "train", reps)
                hf_ms = {impl[3:]: round(ms[impl], 3) for impl in runnable}
                best = min(hf_ms, key=hf_ms.get)
                baseline = best if mode == "train" else "eager"
                skipped = {
                    i[3:]: f"gathers {gathered_gb(shape, i, tokens):.0f} GB of expert weights"
                    for i in hf
                    if i not in runnable
                }
                row = {
                    "shape": name,
                    "layer": shape.describe(),
                    "precision": precision,
                    "mode": mode,
                    "tokens": tokens,
                    "ours_ms": round(ms["ours"], 3),
                    "hf_ms": hf_ms,
                    "hf_skipped": skipped,
                    "hf_fastest": best,
                    "baseline": f"transformers {baseline}",
                    "speedup": round(ms[f"hf:{baseline}"] / ms["ours"], 3),
                    "speedup_vs_hf_fastest": round(ms[f"hf:{best}"] / ms["ours"], 3),
                }
                if loop:
                    row["loop_ms"] = round(ms["loop"], 3)
                    row["speedup_vs_loop"] = round(ms["loop"] / ms["ours"], 3)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    peaks = {}
    if not args.no_memory:
        for precision in args.precisions.split(","):
            for impl in ("ours", "hf:grouped_mm"):
                peaks[f"{precision}.{impl}"] = round(peak_mb(impl, precision), 1)
    print(
        json.dumps(
            {
                "device": args.device,
                "cpu": cpu_name(),
                "threads": torch.get_num_threads(),
                "goal": f"ours >= {GOAL}x transformers' fastest (train) and its eager (decode)",
                "goal_met": all(r["speedup"] >= GOAL for r in rows),
                "rows": rows,
                "design_train_peak_mb": peaks,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--decode-tokens", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--precisions", default="fp32,bf16-mixed")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    args = parser.parse_args()
    main()
