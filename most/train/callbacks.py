"""Small Lightning callbacks: throughput on the progress bar, router telemetry, RNG state in checkpoints."""

from __future__ import annotations

import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from most.progress import clock


class TokensPerSecond(L.Callback):
    """Logs ``tok_s`` (non-padding tokens per second of wall time, this process) every step.

    The bar's value covers data wait + forward + backward + optimizer, the number a recipe's step
    budget is planned with; ``total_tokens / total_time`` covers the training batches only.
    """

    def __init__(self) -> None:
        self.t0: float | None = None
        self.tokens = 0
        self.total_tokens = 0
        self.total_time = 0.0
        self.batch_t0 = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_t0 = time.perf_counter()
        if self.t0 is None:
            self.t0 = self.batch_t0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        n = int((batch["task_ids"] >= 0).sum())
        self.tokens += n
        self.total_tokens += n
        self.total_time += time.perf_counter() - self.batch_t0
        elapsed = time.perf_counter() - self.t0
        pl_module.log("tok_s", self.tokens / max(elapsed, 1e-9), prog_bar=True, on_step=True)
        if elapsed > 30:  # a sliding window: the bar follows the current speed, not the average
            self.t0, self.tokens = time.perf_counter(), 0


class RngState(L.Callback):
    """Saves and restores Python, NumPy and torch RNG states, so dropout and any sampling in the
    model continue on a resumed run exactly as on an uninterrupted one.

    States are stored as tensors and plain tuples so checkpoints load with ``weights_only=True``.
    """

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        random.setstate(state_dict["python"])
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class RouterTelemetry(L.Callback):
    """Logs the adapted model's router telemetry every ``trainer.log_every_n_steps`` steps.

    Per modality, averaged over MoE layers: routing entropy, experts per token, null-expert share and
    load imbalance (busiest expert's load / mean load; 1 = perfectly balanced). Counters are reset
    after each log, so every value describes the last window. Models without ``most_telemetry``
    (a plain HF MoE such as the base LM) are left alone.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        if hasattr(pl_module.model, "most_telemetry"):
            pl_module.model.most_telemetry(enable=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        model = pl_module.model
        if not hasattr(model, "most_telemetry") or trainer.global_step % trainer.log_every_n_steps:
            return
        for key, value in telemetry_scalars(model.most_telemetry_summary()).items():
            pl_module.log(f"router/{key}", value, on_step=True)
        model.most_telemetry(enable=True, reset=True)


def telemetry_scalars(summary: dict) -> dict[str, float]:
    """``most_telemetry_summary()`` -> flat ``{"<modality>/<stat>": value}`` averaged over layers."""
    stats: dict[str, list[float]] = {}
    for per_modality in summary["layers"].values():
        for modality, s in per_modality.items():
            if s["tokens"] == 0:
                continue
            load = np.asarray(s["load"], dtype=np.float64)
            values = {
                "entropy": s["entropy"],
                "experts_per_token": s["experts_per_token"],
                "null_share": s["null_share"],
                "load_imbalance": load.max() / max(load.mean(), 1e-9),
            }
            for stat, v in values.items():
                stats.setdefault(f"{modality}/{stat}", []).append(float(v))
    return {k: float(np.mean(v)) for k, v in stats.items()}


class StageProgress(L.Callback):
    """Prints one line per ``every_s`` seconds of training: step, losses, tokens/s and the ETA.

    The training stream is infinite (a stage is a number of steps), so Lightning's bar has no total
    and no ETA; this line has both, and it reads the same in a terminal and in a log file. The ETA is
    the sooner of "remaining steps at the current pace" and the ``max_time_min`` safety stop.
    """

    def __init__(
        self, name: str, max_steps: int, max_time_min: float | None, every_s: float = 30.0
    ) -> None:
        self.name, self.max_steps, self.max_time_min = name, max_steps, max_time_min
        self.every_s = every_s
        self.t0 = self.last = 0.0
        self.step0 = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self.t0 = self.last = time.monotonic()
        self.step0 = trainer.global_step  # a resumed run paces from where it restarted

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        step = trainer.global_step
        if now - self.last < self.every_s and step < self.max_steps:
            return
        self.last = now
        if trainer.is_global_zero:
            print(self.line(step, now - self.t0, trainer.callback_metrics), flush=True)

    def line(self, step: int, elapsed: float, metrics: dict) -> str:
        done = step - self.step0
        eta = (self.max_steps - step) * elapsed / done if done > 0 else float("nan")
        if self.max_time_min is not None:
            eta = min(eta, max(0.0, 60 * self.max_time_min - elapsed))
        losses = " ".join(
            f"{k.removeprefix('train/loss_')} {float(v):.3f}"
            for k, v in sorted(metrics.items())
            if k.startswith("train/loss_")
        )
        tok_s = metrics.get("tok_s")
        speed = f" | {float(tok_s):,.0f} tok/s" if tok_s is not None else ""
        return (
            f"{self.name}: step {step}/{self.max_steps} ({100 * step / self.max_steps:.0f}%) | "
            f"loss {losses or '-'}{speed} | elapsed {clock(elapsed)} | ETA {clock(eta)}"
        )
