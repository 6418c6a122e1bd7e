"""Training the small CTC recogniser of :mod:`most.ctc.model` from scratch on (audio, text) pairs.

Training runs for an epoch budget, so the weights depend only on the data and the seed. An optional
``max_minutes`` cap ends it early on a slow machine; the learning rate then follows the larger of
the two progress fractions, so a capped run still ends with a decayed rate (but its weights depend
on the machine's speed).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from most.audio import decode_audio
from most.cpu import cpu_bf16_is_faster
from most.ctc.model import CTCModelConfig, CTCRecognizer, features, pad, text_to_ids
from most.progress import progress
from most.threads import single_thread

#: The values of :attr:`CTCSchedule.precision`.
PRECISIONS = ("auto", "bf16-mixed", "32-true")
#: In bf16 a training batch is padded to a multiple of this many frames: oneDNN compiles its bf16
#: matmul kernels per shape, and a few shapes that repeat run faster than a new one each step
#: (``benchmarks/ctc.py``: ``ragged_ms``).
BF16_PAD_FRAMES = 64


@dataclass(frozen=True)
class CTCSchedule:
    """How long and how fast one recogniser trains."""

    batch_frames: int = 4_000
    """Feature frames (10 ms) per batch, padding included."""
    epochs: float = 4.0
    max_minutes: float | None = None
    """Optional wall-clock cap on the training loop (feature extraction not counted); None trains
    the full epoch budget (reproducible)."""
    lr: float = 3e-3
    warmup: float = 0.05
    """Share of the progress spent warming up the learning rate."""
    seed: int = 0
    threads: int = 0
    """Torch intra-op threads for training; 0 keeps torch's default. On a CPU shared with other
    jobs 1 is several times faster (measured 0.5 s vs 2.6 s per step with 2 threads)."""
    precision: str = "auto"
    """``bf16-mixed`` (bf16 autocast of the forward), ``32-true``, or ``auto``: bf16-mixed where
    this CPU trains faster in bf16 (:func:`most.cpu.cpu_bf16_is_faster`), else 32-true."""

    def __post_init__(self) -> None:
        if self.batch_frames <= 0 or self.epochs <= 0:
            raise ValueError("train.batch_frames and train.epochs must be > 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError("train.max_minutes must be > 0 or null (no cap)")

    def resolved_precision(self) -> str:
        """``bf16-mixed`` or ``32-true``: what ``auto`` means on this CPU."""
        if self.precision != "auto":
            return self.precision
        return "bf16-mixed" if cpu_bf16_is_faster() else "32-true"


def read_rows(ds: datasets.Dataset, rows: Sequence[int]) -> tuple[list[np.ndarray], list[str]]:
    """Audio ``(n_i,)`` float32 and text of the given rows, in that order."""
    picked = ds.select(list(rows)).select_columns(["audio", "text"]).with_format("numpy")
    wavs = [decode_audio(a) for a in picked["audio"]]
    return wavs, [str(t) for t in picked["text"]]


def batches(lengths: Sequence[int], batch_frames: int, rng: random.Random) -> list[list[int]]:
    """Length-sorted buckets of about ``batch_frames`` padded frames, in shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > batch_frames:
            out.append(cur)
            cur = []
        cur.append(i)
    out.append(cur)
    rng.shuffle(out)
    return out


def train_recognizer(
    wavs: Sequence[np.ndarray],
    texts: Sequence[str] | Sequence[Sequence[int]],
    model_cfg: CTCModelConfig,
    schedule: CTCSchedule,
    label: str = "ctc",
) -> tuple[CTCRecognizer, dict]:
    """Fit a fresh recogniser on 16 kHz ``wavs`` and their ``texts``; returns it (in eval mode)
    and a small training log. ``label`` prefixes the progress bars.

    A text is a transcript (spelt with :data:`~most.ctc.model.CHARS`) or already a list of target
    ids ``1..model_cfg.n_symbols`` (e.g. phonemes)."""
    cfg = schedule
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    feats: list[torch.Tensor] = []
    with progress() as bar, single_thread():
        task = bar.add_task(f"{label}: log-mel features", total=len(wavs))
        for s in range(0, len(wavs), 64):
            feats += [f.half() for f in features(wavs[s : s + 64])]
            bar.advance(task, len(wavs[s : s + 64]))
    targets = [torch.tensor(text_to_ids(t) if isinstance(t, str) else list(t)) for t in texts]
    bad = [
        i
        for i, t in enumerate(targets)
        if t.numel() and not 1 <= int(t.min()) <= int(t.max()) < model_cfg.vocab
    ]
    if bad:
        raise ValueError(f"target ids of utterance {bad[0]} are outside 1..{model_cfg.vocab - 1}")
    model = CTCRecognizer(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    lengths = [f.shape[0] for f in feats]
    total_steps = max(1, math.ceil(cfg.epochs * len(batches(lengths, cfg.batch_frames, rng))))
    low = cfg.resolved_precision() == "bf16-mixed"
    t0, step, losses = time.monotonic(), 0, []
    model.train()
    with progress() as bar:
        task = bar.add_task(f"{label}: CTC training", total=total_steps)
        while True:
            for batch in batches(lengths, cfg.batch_frames, rng):
                done = step / total_steps
                if cfg.max_minutes is not None:
                    done = max(done, (time.monotonic() - t0) / (60 * cfg.max_minutes))
                if done >= 1.0:
                    break
                warm = min(1.0, done / cfg.warmup) if cfg.warmup > 0 else 1.0
                lr = cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * done))
                for g in opt.param_groups:
                    g["lr"] = lr
                x, x_len = pad([feats[i].float() for i in batch], BF16_PAD_FRAMES if low else 1)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                    logp, out_len = model(x, x_len)
                y = [targets[i] for i in batch]
                loss = ctc(
                    logp.transpose(0, 1), torch.cat(y), out_len, torch.tensor([len(t) for t in y])
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                losses.append(loss.item())
                step += 1
                bar.update(task, completed=step, description=f"{label}: CTC loss {loss:.2f}")
            else:
                continue
            break
    log = {
        "steps": step,
        "planned_steps": total_steps,
        "capped": step < total_steps,
        "train_seconds": round(time.monotonic() - t0, 1),
        "utterances": len(wavs),
        "first_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "precision": "bf16-mixed" if low else "32-true",
    }
    return model.eval(), log
