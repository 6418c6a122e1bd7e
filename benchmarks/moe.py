"""MoE layer benchmark: our modality-aware block vs transformers' own block vs a per-expert loop.

One DeepSeek-V2-Lite-like layer scaled down (hidden 512, 64 routed experts x 256, top-6, 2 shared
experts), a mixed text/speech batch of 4096 tokens, fp32, forward + backward. Each implementation
is timed in one process (interleaved rounds, fastest kept), and its peak memory is measured in a
fresh process of its own (CPU: sampled resident-memory growth over one step, large allocations
unpooled; CUDA: ``max_memory_allocated`` growth).
Prints one JSON object::

    python benchmarks/moe.py [--tokens 4096] [--reps 3] [--device cpu|cuda] [--precision fp32|bf16-mixed]
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

HIDDEN, EXPERTS, INTER, TOP_K, SHARED = 512, 64, 256, 6, 2


def hf_config():
    from transformers import DeepseekV2Config

    cfg = DeepseekV2Config(
        hidden_size=HIDDEN,
        moe_intermediate_size=INTER,
        n_routed_experts=EXPERTS,
        num_experts_per_tok=TOP_K,
        n_shared_experts=SHARED,
        topk_method="greedy",
        norm_topk_prob=False,
        routed_scaling_factor=1.0,
    )
    cfg._experts_implementation = "grouped_mm"  # transformers' fastest experts path here
    return cfg


def build(impl: str, device: str):
    """``(fn(x) -> y, x, modality)`` for one implementation, all from the same seeded weights."""
    import torch
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2MLP, DeepseekV2Moe

    from most.moe.block import ModalityMoE, RoutingState
    from most.moe.experts import GroupedExperts
    from most.moe.groups import resolve_groups
    from most.moe.router import BaseRouting, ModalityRouter

    torch.manual_seed(0)
    cfg = hf_config()
    hf = DeepseekV2Moe(cfg)
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(4, args.tokens // 4, HIDDEN)
    modality = (torch.rand(x.shape[:2]) < 0.5).long()  # mixed text (0) / speech (1) tokens
    groups = resolve_groups(None, ("text", "speech"), EXPERTS, "split")  # halves, as in MoST
    router = ModalityRouter(HIDDEN, groups, "modality", BaseRouting(TOP_K, fp32_logits=True))
    experts = GroupedExperts(EXPERTS, HIDDEN, INTER, cfg.hidden_act)
    with torch.no_grad():
        router.weight.copy_(hf.gate.weight)
        experts.gate_up_proj.copy_(hf.experts.gate_up_proj)
        experts.down_proj.copy_(hf.experts.down_proj)
    ours = ModalityMoE(router, experts, RoutingState(), 0, shared=hf.shared_experts)
    if impl == "ours":
        module, fn = ours, lambda h: ours(h, modality=modality.to(h.device))
    elif impl == "hf":
        module, fn = hf, hf
    else:
        # MoST reference style: separate expert MLPs, a Python loop over all experts, boolean masks.
        mlps = torch.nn.ModuleList(
            DeepseekV2MLP(cfg, intermediate_size=INTER) for _ in range(EXPERTS)
        )
        with torch.no_grad():
            for i, m in enumerate(mlps):
                gate, up = hf.experts.gate_up_proj[i].chunk(2)
                m.gate_proj.weight.copy_(gate)
                m.up_proj.weight.copy_(up)
                m.down_proj.weight.copy_(hf.experts.down_proj[i])
        module = torch.nn.ModuleDict(
            {"router": router, "experts": mlps, "shared": hf.shared_experts}
        )

        def fn(h):
            flat = h.reshape(-1, HIDDEN)
            r = router(flat, modality.to(h.device).reshape(-1))
            idx = r.index.reshape(-1)
            rep = flat.repeat_interleave(TOP_K, dim=0)
            y = torch.empty_like(rep)
            for i, expert in enumerate(mlps):
                y[idx == i] = expert(rep[idx == i]).to(y.dtype)
            y = (y.view(-1, TOP_K, HIDDEN) * r.weight.unsqueeze(-1)).sum(1)
            return (y + hf.shared_experts(flat)).view_as(h)

    module.to(device)
    return fn, x.to(device)


def timed_step(fn, x, device: str) -> float:
    import torch

    t0 = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
        y = fn(x)
    y.float().square().mean().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000


def time_all(impls: tuple[str, ...]) -> dict[str, float]:
    """Fastest fwd+bwd milliseconds of each implementation over ``args.reps`` rounds.

    Rounds interleave the implementations and the minimum is kept, so that load from other
    processes on a shared machine biases no implementation more than another.
    """
    built = {impl: build(impl, args.device) for impl in impls}
    for fn, x in built.values():
        x.requires_grad_(True)
        timed_step(fn, x, args.device)  # warm-up
    best = dict.fromkeys(impls, float("inf"))
    for _ in range(args.reps):
        for impl, (fn, x) in built.items():
            best[impl] = min(best[impl], timed_step(fn, x, args.device))
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


def _peak_child(impl: str, ns: argparse.Namespace, q) -> None:
    """Peak memory of one fwd+bwd step of ``impl`` in a fresh process, MB above the set-up."""
    import torch

    global args
    args = ns
    fn, x = build(impl, args.device)
    x.requires_grad_(True)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        timed_step(fn, x, args.device)
        q.put((torch.cuda.max_memory_allocated() - base) / 2**20)
        return
    base = rss_mb()
    sampler = PeakRss()
    sampler.start()
    timed_step(fn, x, args.device)
    sampler.running = False
    sampler.join()
    q.put(sampler.peak - base)


def peak_mb(impl: str) -> float:
    # Large blocks straight from mmap go back to the OS when freed, so resident memory follows the
    # live tensors instead of glibc's high-water mark.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_peak_child, args=(impl, args, q))
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


def main() -> None:
    impls = ("ours", "hf", "loop")
    ms = time_all(impls)
    print(f"fwd+bwd ms: {ms}", file=sys.stderr, flush=True)
    mb = {impl: peak_mb(impl) for impl in impls}
    print(
        json.dumps(
            {
                "shape": f"hidden {HIDDEN}, {EXPERTS} experts x {INTER}, top-{TOP_K}, {SHARED} shared, "
                f"{args.tokens} tokens {args.precision} fwd+bwd",
                "device": args.device,
                "ours_ms": round(ms["ours"], 1),
                "hf_ms": round(ms["hf"], 1),
                "loop_ms": round(ms["loop"], 1),
                "speedup_vs_hf": round(ms["hf"] / ms["ours"], 3),
                "speedup_vs_loop": round(ms["loop"] / ms["ours"], 3),
                "ours_peak_mb": round(mb["ours"], 1),
                "hf_peak_mb": round(mb["hf"], 1),
                "loop_peak_mb": round(mb["loop"], 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16-mixed"])
    args = parser.parse_args()
    main()
