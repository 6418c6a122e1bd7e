"""What this CPU computes fastest: whether bf16 autocast beats fp32 here, measured once per process.

Native bf16 (AMX tiles, or AVX512-BF16) is necessary but not enough: on a 2-core Xeon with
AVX512-BF16 and no AMX a stage-1 step is 1.7x slower in bf16. ``trainer.precision: auto`` and the
CPU experts path (:mod:`most.moe.experts`) both follow :func:`cpu_bf16_is_faster`.
"""

from __future__ import annotations

import functools
import math
import time

#: bf16 counts as faster when its probe step takes at most this share of the fp32 step's time.
BF16_GAIN = 0.9


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively: on AMX tiles (Intel Sapphire Rapids on) or with
    AVX512-BF16 (AMD Zen 4, Intel Cooper Lake). Without either, bf16 has no native matmul."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(probe()) for name in probes if (probe := getattr(torch.cpu, name, None)))


@functools.cache
def bf16_timings() -> tuple[float, float] | None:
    """``(fp32 s, bf16 s)`` of :func:`bf16_probe` on this CPU (~0.5 s, once per process); None
    without native bf16 (not probed)."""
    return bf16_probe() if cpu_has_bf16() else None


def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast trains faster than fp32 on this CPU (:func:`bf16_timings`)."""
    times = bf16_timings()
    return times is not None and times[1] <= BF16_GAIN * times[0]


def bf16_probe(tokens: int = 4096, width: int = 256, rounds: int = 4) -> tuple[float, float]:
    """Best seconds of one forward + backward of a width-``width`` SwiGLU-sized MLP on ``tokens``
    rows, in fp32 and under CPU bf16 autocast (the tiny default's shape), timed alternately."""
    import torch

    # Also when first asked from inside a no-grad forward (the experts of a decoding model).
    with torch.inference_mode(False), torch.enable_grad():
        return _timed_probe(tokens, width, rounds)


def _timed_probe(tokens: int, width: int, rounds: int) -> tuple[float, float]:
    import torch

    gen = torch.Generator().manual_seed(0)
    up = torch.randn(width, 4 * width, generator=gen, requires_grad=True)
    down = torch.randn(4 * width, width, generator=gen, requires_grad=True)
    x = torch.randn(tokens, width, generator=gen, requires_grad=True)

    def step(low: bool) -> float:
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            y = torch.nn.functional.silu(x @ up) @ down
        y.float().square().mean().backward()
        return time.perf_counter() - t

    step(False), step(True)  # warm-up: kernel selection
    best = [math.inf, math.inf]
    for _ in range(rounds):
        for i, low in enumerate((False, True)):
            best[i] = min(best[i], step(low))
    return best[0], best[1]
