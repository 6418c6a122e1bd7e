"""The LightningModule every stage trains: a ``transformers`` causal LM plus loss bookkeeping.

The model is treated as a generic HF causal LM. With ``optim.loss_weighting="token"`` the optimised
loss is the model's own ``.loss`` (for an adapted MoST model it already includes the router's aux
loss); with ``"example"`` it is :func:`example_mean_loss` plus the model's router aux term, so every
example weighs the same whatever its answer length. Per-task losses are recomputed from the logits
without gradient, for logging only. The router aux loss is logged when the outputs carry
``aux_loss``; router telemetry by :class:`~most.train.callbacks.RouterTelemetry`.

Batch keys: see :mod:`most.data.collate` (``input_ids``, ``labels``, ``position_ids``, ``task_ids``
``(B, T)``; ``attention_mask`` ``(B, T)`` for padded batches; :data:`AUDIO_KEYS` with continuous
audio; :data:`FRAME_KEYS` for a multi-scale model, whose ``.loss`` adds its local codebook loss).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from most.data.prompts import IGNORE, TASKS
from most.train.optim import OptimConfig, build_optimizer, mask_old_embedding_rows
from most.train.regularize import add_residual_dropout
from most.train.sharding import load_from_rank0, meta_skeleton, shard_model

#: Batch keys of continuous audio (:mod:`most.data.collate`), passed to the model as they are.
AUDIO_KEYS = ("input_features", "input_features_mask", "audio_mask")
#: A multi-scale model's frame codes (:mod:`most.multiscale.batches`), passed likewise.
FRAME_KEYS = ("codes",)


class CausalLMModule(L.LightningModule):
    """Trains ``model`` with AdamW + warmup/cosine for ``total_steps`` optimizer steps."""

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        total_steps: int,
        n_old_embedding_rows: int | None = None,
    ) -> None:
        super().__init__()
        # from_pretrained returns a model in eval mode; Lightning keeps submodule modes as found.
        self.model = model.train()
        # The structure without weights, taken before any sharding: the export gathers into it.
        # In a tuple, so that Lightning does not register it as a submodule.
        self._skeleton = (meta_skeleton(model),)
        self.optim_cfg = optim
        self.total_steps = total_steps
        if optim.new_embedding_rows_only:
            if n_old_embedding_rows is None:
                raise ValueError(
                    "optim.new_embedding_rows_only needs a token layout (adapted model)"
                )
            mask_old_embedding_rows(model, n_old_embedding_rows)
        add_residual_dropout(model, optim.dropout)

    @property
    def skeleton(self) -> nn.Module:
        """A meta-device copy of the model from before sharding
        (:func:`~most.train.sharding.meta_skeleton`)."""
        return self._skeleton[0]

    def configure_model(self) -> None:
        """FSDP2 per decoder layer when the strategy gives a device mesh (``trainer.strategy=fsdp``),
        then fp32 shards for full and mixed precision; a no-op under every other strategy."""
        if self._device_mesh is None:
            return
        if self.optim_cfg.new_embedding_rows_only:
            raise ValueError(
                "optim.new_embedding_rows_only does not work with trainer.strategy=fsdp (its "
                "gradient hook sits on the unsharded embedding); use ddp or deepspeed_stage_2/3"
            )
        # Only global rank 0 read the weights (sharding.loads_weights); it keeps them until every
        # rank has received its shards.
        full = dict(self.model.state_dict()) if self.global_rank == 0 else None
        shard_model(self.model, self._device_mesh["data_parallel"])
        load_from_rank0(self.model, full, self.trainer.strategy.root_device)
        del full
        precision = str(self.trainer.precision)
        if precision.startswith("32") or precision.endswith("-mixed"):
            # fp32 master weights, as on one device (a bf16 checkpoint loads as bf16): each rank
            # widens only its own shard.
            self.model.to(torch.float32)

    def forward(self, batch: dict[str, torch.Tensor]):
        by_token = self.optim_cfg.loss_weighting == "token"
        # Continuous audio (the adapter variant) travels as these keys when the batch has any.
        audio = {k: batch[k] for k in (*AUDIO_KEYS, *FRAME_KEYS) if k in batch}
        return self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            position_ids=batch["position_ids"],
            labels=batch["labels"] if by_token else None,
            use_cache=False,
            **audio,
        )

    def loss(
        self, out, batch: dict[str, torch.Tensor], nll: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The optimised loss of a forward ``out`` on ``batch`` (see the module doc); ``nll``:
        :func:`answer_nll` of ``out``, when the caller already has it."""
        if self.optim_cfg.loss_weighting == "token":
            return out.loss
        if nll is None:
            nll = answer_nll(out.logits, batch)
        loss = example_mean(nll, batch)
        aux = self.weighted_aux(out)
        return loss if aux is None else loss + aux.to(loss.dtype)

    def weighted_aux(self, out) -> torch.Tensor | None:
        """The router's load-balancing term of a forward ``out`` as the model's own loss weighs it
        (None for a model without one): an adapted model returns its aux term already weighted;
        a plain HF MoE returns the raw loss and weighs it by its config inside ``.loss``."""
        aux = getattr(out, "aux_loss", None)
        if aux is None:
            return None
        config = self.model.config
        coef = 1.0 if config.model_type == "most" else config.router_aux_loss_coef
        return coef * aux

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        out = self(batch)
        # One cross-entropy a step: the example-weighted loss and the per-task logs share it (the
        # token-weighted loss is the model's own, so the logs' copy needs no graph).
        by_token = self.optim_cfg.loss_weighting == "token"
        nll = answer_nll(out.logits.detach() if by_token else out.logits, batch)
        loss = self.loss(out, batch, nll)
        bs = batch["input_ids"].shape[0]
        on_step = prefix == "train"
        self.log(
            f"{prefix}/loss",
            loss,
            prog_bar=True,
            batch_size=bs,
            on_step=on_step,
            on_epoch=not on_step,
        )
        for task, task_loss in task_means(nll.detach(), batch).items():
            self.log(
                f"{prefix}/loss_{task}",
                task_loss,
                batch_size=bs,
                on_step=on_step,
                on_epoch=not on_step,
            )
        local = getattr(out, "local_loss", None)  # a multi-scale model's codebook loss
        if local is not None:
            self.log(
                f"{prefix}/local_loss",
                local.detach().float(),
                batch_size=bs,
                on_step=on_step,
                on_epoch=not on_step,
            )
        aux = getattr(out, "aux_loss", None)
        if aux is not None:
            self.log(
                f"{prefix}/aux_loss",
                aux.float(),
                batch_size=bs,
                on_step=on_step,
                on_epoch=not on_step,
            )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss.detach()):
            # Stop before the optimizer writes NaN into every weight: a diverged run that carries
            # on trains hundreds of steps of nothing (and its checkpoints overwrite good ones).
            tasks = sorted({TASKS[t] for t in batch["task_ids"].unique().tolist() if t >= 0})
            raise FloatingPointError(
                f"training loss is {loss.item()} at step {self.global_step} (batch tasks: "
                f"{', '.join(tasks)}); stopped before the update. The checkpoints in the stage's "
                "ckpt/ folder are from before it: resume from them with a lower optim.lr or "
                "trainer.grad_clip, or report the bug if the loss was finite just before."
            )
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        # The fused kernel wherever no loss scaler unscales the gradients (fp16-mixed has one):
        # on the CPU it is several times faster than the per-tensor loop.
        fused = "mixed" not in precision or (
            precision == "bf16-mixed" and self.device.type == "cpu"
        )
        return build_optimizer(self.model, self.optim_cfg, self.total_steps, fused=fused)

    def configure_gradient_clipping(
        self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None
    ) -> None:
        """Lightning's clipping, except for a fused optimizer under bf16 autocast: Lightning refuses
        it (a fused step may unscale gradients itself), but bf16 has no loss scaler, so the
        gradients are clipped here as Lightning would clip them at full precision."""
        fused = optimizer.defaults.get("fused")
        if fused and gradient_clip_val and str(self.trainer.precision) == "bf16-mixed":
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm in (None, "norm"):
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)


def answer_nll(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token loss of every target token: ``logits (B, T, V)`` -> ``(B, T - 1)`` in fp32,
    0 where the label is ``IGNORE`` (prompts, padding)."""
    labels = batch["labels"][:, 1:]
    valid = labels != IGNORE
    nll = logits.new_zeros(labels.shape, dtype=torch.float32)
    if not valid.any():  # still a function of the logits: a backward through it is defined
        return nll + 0.0 * logits.sum()
    return nll.masked_scatter(
        valid, F.cross_entropy(logits[:, :-1][valid].float(), labels[valid], reduction="none")
    )


def example_mean(nll: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """:func:`answer_nll` ``(B, T - 1)`` averaged over each example's answer tokens, then over
    examples. Examples are the segments of a row whose ``position_ids`` restart at 0 (packed rows
    hold several, padded rows one plus padding, which has no targets)."""
    starts = batch["position_ids"] == 0
    # Example index per target token: unique across rows (row r's segments are offset by r * T).
    seg = starts.long().cumsum(1)[:, 1:]
    seg = seg + torch.arange(seg.shape[0], device=seg.device)[:, None] * starts.shape[1]
    valid = batch["labels"][:, 1:] != IGNORE
    if not valid.any():
        return nll.sum() * 0.0
    ids, seg_index = torch.unique(seg[valid], return_inverse=True)
    answers = nll[valid]
    per_example = nll.new_zeros(len(ids)).index_add(0, seg_index, answers)
    counts = nll.new_zeros(len(ids)).index_add(0, seg_index, torch.ones_like(answers))
    return (per_example / counts).mean()


def example_mean_loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Next-token loss averaged over each example's answer tokens, then over examples
    (:func:`example_mean` of :func:`answer_nll`). ``logits (B, T, V)``."""
    return example_mean(answer_nll(logits, batch), batch)


@torch.no_grad()
def task_means(nll: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean of :func:`answer_nll` ``(B, T - 1)`` over each task's answer tokens: ``{task: scalar}``."""
    tasks = batch["task_ids"][:, 1:]
    valid = batch["labels"][:, 1:] != IGNORE
    out = {}
    for t in tasks[valid].unique().tolist():
        out[TASKS[t]] = nll[valid & (tasks == t)].mean()
    return out
