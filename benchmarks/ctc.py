"""One training step of the CTC judge: torch's encoder layer vs ours, fp32 vs bf16 (JSON on stdout).

The judge's shape (``recipes/tiny/judge.yaml``: width 144, 3 layers, 4 heads, ff 576, dropout
0.1) on one batch of ``--batch`` utterances of ``--frames`` 10 ms frames (10 x 400: the recipe's
4,000 frames a batch), every other one 37 frames shorter (padding). A step is forward, CTC loss,
backward, gradient clipping and AdamW, as in :func:`most.ctc.train.train_recognizer`. Variants,
timed in interleaved rounds (fastest mean kept), all from the same initial weights:

- ``torch_layer_fp32``: each layer's own ``nn.TransformerEncoderLayer`` forward in training mode
  (torch's dropout, ``bernoulli_`` per element) -- the baseline;
- ``ours_fp32``: :class:`~most.ctc.model.CTCRecognizer`'s training forward (the same computation
  with :func:`most.dropout.dropout`'s mask);
- ``ours_bf16``: the same under CPU bf16 autocast, what ``train.precision: auto`` picks where
  bf16 trains faster (:func:`most.cpu.cpu_bf16_is_faster`, reported as ``auto_picks``).

``ragged_ms`` times what a real fit runs: a sequence of ``--ragged`` batches of utterances of 1.5-9 s
grouped by :func:`most.ctc.train.batches` (a new longest length, so a new shape, nearly every
step), our forward in fp32, in bf16 padded to the longest utterance, and in bf16 padded to a
multiple of :data:`most.ctc.train.BF16_PAD_FRAMES` frames (what the fits do in bf16).

    python benchmarks/ctc.py [--reps 4] [--batch 10] [--frames 400] [--ragged 120]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from most.cpu import cpu_bf16_is_faster
from most.ctc import model as ctc_model
from most.ctc.model import CTCModelConfig, CTCRecognizer, pad
from most.ctc.train import BF16_PAD_FRAMES, CTCSchedule, batches

JUDGE = CTCModelConfig(width=144, layers=3, heads=4, ff=576, dropout=0.1)
_ours = ctc_model._train_block


def _torch_block(block: nn.TransformerEncoderLayer, x: Tensor, blocked: Tensor, p: float) -> Tensor:
    """torch's own training forward of ``block``; ``blocked`` is key padding only (no window)."""
    return block(x, src_key_padding_mask=blocked[:, 0])


def _fresh() -> tuple[CTCRecognizer, torch.optim.Optimizer, nn.CTCLoss]:
    """The judge's recogniser from one seed, its AdamW and the CTC loss of the fits."""
    torch.manual_seed(0)
    model = CTCRecognizer(JUDGE).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return model, opt, nn.CTCLoss(blank=0, zero_infinity=True)


def _train_step(model, opt, ctc, x, lengths, labels, label_lengths, low: bool) -> None:
    """Forward (bf16 autocast when ``low``), CTC loss, backward, clipping and AdamW, as in
    :func:`most.ctc.train.train_recognizer`."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
        logp, out_len = model(x, lengths)
    loss = ctc(logp.transpose(0, 1), labels, out_len, label_lengths)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def make_step(forward: Callable, low: bool, batch: int, frames: int) -> Callable[[], None]:
    model, opt, ctc = _fresh()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, frames, 80, generator=gen)
    lengths = torch.full((batch,), frames)
    lengths[1::2] -= 37
    x[1::2, frames - 37 :] = 0.0
    labels = torch.randint(1, JUDGE.vocab, (batch * frames // 10,), generator=gen)
    label_lengths = torch.full((batch,), frames // 10)

    def step() -> None:
        ctc_model._train_block = forward
        try:
            _train_step(model, opt, ctc, x, lengths, labels, label_lengths, low)
        finally:
            ctc_model._train_block = _ours

    return step


def ragged_ms(n_batches: int, reps: int) -> dict[str, float]:
    """Mean ms a step over ``n_batches`` ragged batches (see the module doc), best of ``reps``."""
    rng = random.Random(0)
    lengths = [rng.randint(150, 900) for _ in range(40 * n_batches)]
    picked = batches(lengths, CTCSchedule().batch_frames, rng)[:n_batches]
    variants = {"fp32": (False, 1), "bf16": (True, 1), "bf16_padded": (True, BF16_PAD_FRAMES)}
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(reps):
        for name, (low, multiple) in variants.items():
            model, opt, ctc = _fresh()
            gen = torch.Generator().manual_seed(1)
            t = time.perf_counter()
            for batch in picked:
                feats = [torch.randn(lengths[i], 80, generator=gen) for i in batch]
                x, x_len = pad(feats, multiple)
                label_lengths = x_len // 10
                labels = torch.randint(1, JUDGE.vocab, (int(label_lengths.sum()),), generator=gen)
                _train_step(model, opt, ctc, x, x_len, labels, label_lengths, low)
            best[name] = min(best[name], (time.perf_counter() - t) / len(picked) * 1e3)
    return {k: round(v, 2) for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--inner", type=int, default=10)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--ragged", type=int, default=120, help="ragged batches (0: not timed)")
    args = ap.parse_args()
    steps = {
        "torch_layer_fp32": make_step(_torch_block, False, args.batch, args.frames),
        "ours_fp32": make_step(_ours, False, args.batch, args.frames),
        "ours_bf16": make_step(_ours, True, args.batch, args.frames),
    }
    for step in steps.values():  # warm-up: allocator, kernel selection
        step(), step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.reps):
        for name, step in steps.items():
            t = time.perf_counter()
            for _ in range(args.inner):
                step()
            best[name] = min(best[name], (time.perf_counter() - t) / args.inner * 1e3)
    base = best["torch_layer_fp32"]
    ragged = ragged_ms(args.ragged, 2) if args.ragged else {}
    print(
        json.dumps(
            {
                "shape": {"batch": args.batch, "frames": args.frames, **JUDGE.to_dict()},
                "threads": torch.get_num_threads(),
                "step_ms": {k: round(v, 2) for k, v in best.items()},
                "speedup_vs_torch_layer_fp32": {k: round(base / v, 3) for k, v in best.items()},
                "auto_picks": "bf16-mixed" if cpu_bf16_is_faster() else "32-true",
                "ragged_ms": ragged,
                "ragged_speedup_vs_fp32": {
                    k: round(ragged["fp32"] / v, 3) for k, v in ragged.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
