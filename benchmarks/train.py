"""Training-step throughput and MFU of the tiny base model on this CPU (JSON on stdout).

MFU = achieved model FLOP/s / peak matmul FLOP/s of the precision the step runs in, the peak
measured in the same run (square matmuls in fp32, or in bf16 for ``bf16-mixed``), so a machine
shared with other jobs is compared against itself at the same moment; ``mfu_vs_fp32_peak`` is
reported beside it.
Model FLOPs per token: 6 x (matmul parameters active per token) + 6 x layers x seq x heads x head_dim
(causal attention scores and values, forward + backward); the embedding lookup is not a matmul.

    python benchmarks/train.py [--steps 3] [--batch 16] [--seq 256] [--precision auto|fp32|bf16-mixed]
                               [--compile]

``--compile`` also times a copy of the model with its decoder layers compiled the way
``trainer.compile`` does it (:func:`most.train.compile.compile_layers`), from the same weights, in
rounds interleaved with the eager model (the baseline): its figures go under ``"compiled"``.

``auto`` (the default) is what the demo's ``trainer.precision: auto`` picks on this CPU (a probe
step: ``bf16-mixed`` where it runs faster than fp32); ``bf16-mixed`` runs the step under CPU
autocast.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
import yaml

from most.train.config import ModelConfig

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "base.yaml"
_recipe = yaml.safe_load(RECIPE.read_text())
TINY = ModelConfig(**_recipe["model"])  # the shape `make demo` trains, so the two cannot drift
VOCAB = int(_recipe["tokenizer"]["vocab_size"])


def peak_gflops(n: int = 2048, seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_token(cfg: ModelConfig, seq: int) -> float:
    h, hd = cfg.hidden_size, cfg.head_dim
    attn = h * hd * (2 * cfg.num_attention_heads + 2 * cfg.num_key_value_heads)
    router = h * cfg.num_experts
    experts = cfg.num_experts_per_tok * 3 * h * cfg.moe_intermediate_size
    matmul_params = cfg.num_hidden_layers * (attn + router + experts) + h * VOCAB  # + LM head
    attention_scores = 6 * cfg.num_hidden_layers * seq * cfg.num_attention_heads * hd
    return 6 * matmul_params + attention_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16-mixed"])
    ap.add_argument("--compile", action="store_true", help="also time compiled decoder layers")
    args = ap.parse_args()
    from transformers import Qwen3MoeForCausalLM

    from most.train.config import TrainerConfig

    if args.precision == "auto":
        picked = TrainerConfig(precision="auto", accelerator="cpu").resolved_precision()
        args.precision = "bf16-mixed" if picked == "bf16-mixed" else "fp32"

    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(TINY.hf_config(VOCAB, 0)).train()
    x = torch.randint(0, VOCAB, (args.batch, args.seq))
    pos = torch.arange(args.seq).expand(args.batch, -1)
    low = args.precision == "bf16-mixed"
    variants = {"eager": model}
    if args.compile:
        from most.train.compile import compile_layers

        variants["compiled"] = copy.deepcopy(model)
        compile_layers(variants["compiled"])
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in variants.items()}

    def step(name: str) -> None:
        m, opt = variants[name], opts[name]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            out = m(input_ids=x, position_ids=pos, labels=x, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for name in variants:
        for _ in range(2):  # warm-up: allocator, kernel selection, compiling
            step(name)
    dtype = torch.bfloat16 if low else torch.float32
    peak_before, fp32_before = peak_gflops(dtype=dtype), peak_gflops()
    spent = dict.fromkeys(variants, 0.0)
    for _ in range(args.steps):  # interleaved: a drift in the machine's speed hits both alike
        for name in variants:
            t = time.perf_counter()
            step(name)
            spent[name] += time.perf_counter() - t
    peak = max(peak_before, peak_gflops(dtype=dtype))
    fp32_peak = max(fp32_before, peak_gflops())

    def figures(name: str) -> dict:
        dt = spent[name] / args.steps
        tokens_per_s = args.batch * args.seq / dt
        achieved = tokens_per_s * flops_per_token(TINY, args.seq) / 1e9
        return {
            "step_s": round(dt, 3),
            "tokens_per_s": round(tokens_per_s, 1),
            "achieved_gflops": round(achieved, 2),
            "mfu": round(achieved / peak, 4),
            "mfu_vs_fp32_peak": round(achieved / fp32_peak, 4),
        }

    eager = figures("eager")
    compiled = {"compiled": figures("compiled")} if args.compile else {}
    if args.compile:
        compiled["speedup"] = round(spent["eager"] / spent["compiled"], 3)
    print(
        json.dumps(
            {
                "model": "tiny Qwen3-MoE (recipes/tiny/base.yaml shape)",
                "params": sum(p.numel() for p in model.parameters()),
                "experts_implementation": model.config._experts_implementation,
                "threads": torch.get_num_threads(),
                "precision": args.precision,
                "batch": args.batch,
                "seq": args.seq,
                **eager,
                "peak_gflops": round(peak, 2),
                "peak_dtype": str(dtype).removeprefix("torch."),
                "fp32_peak_gflops": round(fp32_peak, 2),
                **compiled,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
