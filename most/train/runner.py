"""The one training path every stage goes through: Trainer + checkpoints + resume + HF export.

``RUN/<stage>/`` after a run::

    ckpt/      last.ckpt (resume point), step=N.ckpt (keep-last-k), best.ckpt (lowest val/loss)
    logs/      metrics.csv (CSVLogger) and TensorBoard events
    hf/        the exported ``transformers`` folder (written atomically, last): its presence marks
               the stage finished, so a re-run is a no-op unless forced
    metrics.json  wall time, tokens/s, final losses per task

Checkpoint files are written by :class:`~most.train.checkpoint.AtomicCheckpointIO` (a temporary file in
``ckpt/``, fsynced, renamed into place), so a kill or a full disk never leaves a torn ``last.ckpt``;
a resume starts from the newest checkpoint that reads back whole and renames broken ones to
``*.broken``. Sharded strategies (:mod:`most.train.sharding`) write folders of per-rank shards
instead (DeepSpeed; FSDP with ``trainer.sharded_checkpoint``), and their export gathers the weights. Resume restores model, optimizer, scheduler, loop counters, the data position
(:class:`~most.train.datamodule.MixtureDataModule`) and RNG states (:class:`~most.train.callbacks.RngState`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from most.io import atomic_dir, atomic_write_json
from most.layout import TokenLayout
from most.run import Run
from most.train.callbacks import RngState, RouterTelemetry, StageProgress, TokensPerSecond
from most.train.checkpoint import AtomicCheckpointIO, resume_point
from most.train.compile import CompileLayers
from most.train.config import TrainerConfig
from most.train.datamodule import MixtureDataModule
from most.train.module import CausalLMModule
from most.train.sharding import build_strategy, fill_skeleton, gathered_state_dict, is_sharded

if TYPE_CHECKING:
    from most.train.pairs import PairDataModule


@dataclass
class StagePaths:
    root: Path

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def ckpt(self) -> Path:
        return self.root / "ckpt"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def finished(self) -> bool:
        return (self.hf / "config.json").is_file()


#: Settings that never change the model: a finished stage ignores them when judging its outputs.
COSMETIC = (
    "trainer.log_every",
    "trainer.progress",
    "trainer.threads",
    "trainer.keep_last",
    "trainer.ckpt_every",
    "trainer.val_every",
    "trainer.sharded_checkpoint",
    "evaluation.",
)
#: Settings a resumed run may change besides those: its step budget and where it runs.
RESUMABLE = (
    "trainer.max_steps",
    "trainer.max_time_min",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.accelerator",
    "trainer.strategy",
)


def prepare(run: Run, stage: str, current: dict, force: bool) -> StagePaths | None:
    """The stage's paths, or None if it already finished from the same settings and inputs.

    A finished stage made from other settings or inputs, or a half-done one whose model or data
    settings changed, raises :class:`~most.run.StaleOutput` naming what changed; ``force`` deletes
    the stage folder and starts over. A half-done stage otherwise resumes (its step budget may
    change). ``current`` is :func:`most.run.fingerprint` of the settings and inputs.
    """
    paths = StagePaths(run.stage(stage))
    if force and paths.root.exists():
        shutil.rmtree(paths.root)
    if paths.finished():
        if run.recorded(stage) is None or run.check(stage, current, False, COSMETIC):
            print(f"{paths.hf} exists: {stage} is up to date (pass --force=true to redo it)")
            return None
    elif run.recorded(stage) is not None:
        run.check(stage, current, False, COSMETIC + RESUMABLE)
    paths.root.mkdir(parents=True, exist_ok=True)
    run.record(stage, current)
    return paths


def build_trainer(
    cfg: TrainerConfig, paths: StagePaths, has_val: bool, extra_callbacks: Sequence[L.Callback] = ()
) -> tuple[L.Trainer, TokensPerSecond]:
    throughput = TokensPerSecond()
    callbacks: list[L.Callback] = [
        # keep-last-k: rank checkpoints by step, highest kept.
        ModelCheckpoint(
            dirpath=paths.ckpt,
            filename="{step}",
            every_n_train_steps=cfg.ckpt_every,
            save_top_k=cfg.keep_last,
            monitor="step",
            mode="max",
            save_last=True,
        ),
        RngState(),
        RouterTelemetry(),
        throughput,
        LearningRateMonitor(logging_interval="step"),
        StageProgress(paths.root.name, cfg.max_steps, cfg.max_time_min),
        *extra_callbacks,
    ]
    if has_val and cfg.val_every:
        callbacks.append(
            ModelCheckpoint(dirpath=paths.ckpt, filename="best", monitor="val/loss", mode="min")
        )
    if cfg.compile:
        callbacks.append(CompileLayers(paths.root.name))
    if cfg.progress:
        callbacks.append(RichProgressBar())
    trainer = L.Trainer(
        max_steps=cfg.max_steps,
        max_time={"minutes": cfg.max_time_min} if cfg.max_time_min else None,
        accumulate_grad_batches=cfg.accumulate,
        gradient_clip_val=cfg.grad_clip or None,
        precision=cfg.resolved_precision(),
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=build_strategy(cfg.strategy, cfg.sharded_checkpoint),
        val_check_interval=cfg.val_every if has_val and cfg.val_every else None,
        check_val_every_n_epoch=None,
        limit_val_batches=None if has_val and cfg.val_every else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=cfg.log_every,
        logger=[
            CSVLogger(paths.logs, name="", version="", flush_logs_every_n_steps=cfg.log_every),
            TensorBoardLogger(paths.logs, name="", version="", default_hp_metric=False),
        ],
        callbacks=callbacks,
        enable_progress_bar=cfg.progress,
        enable_model_summary=False,
        default_root_dir=paths.root,
        # DeepSpeed writes its own sharded checkpoint folders.
        plugins=None if str(cfg.strategy).startswith("deepspeed") else [AtomicCheckpointIO()],
    )
    return trainer, throughput


def fit(
    paths: StagePaths,
    module: CausalLMModule,
    datamodule: MixtureDataModule | PairDataModule,
    cfg: TrainerConfig,
    extra_callbacks: Sequence[L.Callback] = (),
) -> tuple[L.Trainer, dict[str, Any]]:
    """Train (resuming from ``ckpt/last.ckpt`` if present); return the trainer and run metrics."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    has_val = datamodule.has_val
    trainer, throughput = build_trainer(cfg, paths, has_val, extra_callbacks)
    start, broken = resume_point(paths.ckpt)
    for path in broken:  # every rank runs this; the first rename wins
        target = path.with_name(path.name + ".broken")
        with contextlib.suppress(FileNotFoundError):
            path.rename(target)
            print(
                f"most {paths.root.name}: {path} is not a whole checkpoint (a write was cut "
                f"short); moved to {target.name}",
                flush=True,
            )
    if start is not None:
        print(f"most {paths.root.name}: resuming from {start}", flush=True)
    resumed = start is not None
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(start) if resumed else None)
    if trainer.interrupted:
        raise KeyboardInterrupt
    wall = time.perf_counter() - t0
    metrics = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items()}
    cut = trainer.global_step < cfg.max_steps  # only the max_time_min safety stop ends it early
    if cut and trainer.is_global_zero:
        print(
            f"most {paths.root.name}: WARNING: the trainer.max_time_min={cfg.max_time_min} safety "
            f"stop ended training at step {trainer.global_step} of {cfg.max_steps}; the learning-"
            "rate schedule did not finish, so this is not the model the recipe describes",
            file=sys.stderr,
            flush=True,
        )
    return trainer, {
        "cut_by_time_cap": cut,
        "resumed": resumed,
        "steps": trainer.global_step,
        "wall_s": round(wall, 1),
        "tokens": throughput.total_tokens,
        "tokens_per_s": round(throughput.total_tokens / max(throughput.total_time, 1e-9), 1),
        "final": metrics,
    }


def export_hf(
    model: torch.nn.Module,
    tokenizer: Any,
    layout: TokenLayout | None,
    dest: Path,
    skeleton: torch.nn.Module | None = None,
) -> Path:
    """Write a ``from_pretrained``-loadable folder (safetensors, tokenizer, layout) atomically.

    Every rank calls it: a sharded model (FSDP2, DeepSpeed ZeRO) is first gathered whole onto rank 0
    (a collective) into ``skeleton``, its meta-device copy from before sharding
    (:attr:`CausalLMModule.skeleton <most.train.module.CausalLMModule>`), and only rank 0 writes,
    the same files a single-process run writes. LoRA adapters are merged into the base weights
    first, so the folder needs no peft to load.
    """
    if is_sharded(model):
        if skeleton is None:
            raise ValueError("export_hf: a sharded model needs its skeleton (meta_skeleton)")
        state = gathered_state_dict(model)
        if not global_zero():
            return dest
        model = fill_skeleton(skeleton, state, model)
    elif not global_zero():
        return dest
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with atomic_dir(dest) as tmp:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if layout is not None:
            layout.save(tmp)
    return dest


def global_zero() -> bool:
    """Whether this process is rank 0 (or the only one)."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def write_metrics(paths: StagePaths, metrics: dict[str, Any]) -> None:
    atomic_write_json(paths.root / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
