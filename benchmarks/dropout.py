"""Residual dropout: our 16-bit mask (most.dropout.dropout) vs torch's ``F.dropout``.

Two measurements in one process, interleaved rounds, fastest kept:

- ``op``: forward + backward of dropout alone on one residual branch output (8 x 512 x 256, the
  demo's stage-1 batch and width) -- the cost the mask adds, against ``identity`` (``x * 1``);
- ``step``: forward + backward of the tiny base model (recipes/tiny/base.yaml, 8 x 512 tokens)
  with residual dropout 0.1 on every layer, by each mask, and without dropout.

Prints one JSON object::

    python benchmarks/dropout.py [--reps 5] [--p 0.1]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from most.train import regularize

_ours = regularize.dropout


def best_ms(fns: dict[str, Callable[[], None]], reps: int, inner: int) -> dict[str, float]:
    """Fastest mean over ``reps`` interleaved rounds of ``inner`` calls, in ms."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / inner * 1e3)
    return {k: round(v, 3) for k, v in best.items()}


def op_times(p: float, reps: int) -> dict[str, float]:
    x = torch.randn(8, 512, 256, requires_grad=True)

    def run(f: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            f(x).sum().backward()

        return go

    return best_ms(
        {
            "torch_F_dropout": run(lambda t: F.dropout(t, p, training=True)),
            "ours": run(lambda t: _ours(t, p)),
            "identity": run(lambda t: t * 1.0),
        },
        reps,
        inner=20,
    )


def step_times(p: float, reps: int) -> dict[str, float]:
    from train import TINY, VOCAB  # benchmarks/train.py: the shape `make demo` trains
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(TINY.hf_config(VOCAB, 0)).train()
    regularize.add_residual_dropout(model, p)
    ids = torch.randint(0, VOCAB, (8, 512))

    def step(mask: Callable[[torch.Tensor, float], torch.Tensor] | None) -> Callable[[], None]:
        def go() -> None:
            regularize.dropout = mask if mask else (lambda t, q: t)
            try:
                model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            finally:
                regularize.dropout = _ours

        return go

    return best_ms(
        {
            "torch_F_dropout": step(lambda t, q: F.dropout(t, q, training=True)),
            "ours": step(_ours),
            "no_dropout": step(None),
        },
        reps,
        inner=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--p", type=float, default=0.1)
    args = parser.parse_args()
    op, step = op_times(args.p, args.reps), step_times(args.p, args.reps)
    added = {k: step[k] - step["no_dropout"] for k in ("torch_F_dropout", "ours")}
    print(
        json.dumps(
            {
                "p": args.p,
                "threads": torch.get_num_threads(),
                "op_ms": op,
                "step_ms": step,
                "step_added_ms": {k: round(v, 1) for k, v in added.items()},
                "step_speedup_vs_torch": round(step["torch_F_dropout"] / step["ours"], 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
