"""The LightningModule every stage trains: a ``transformers`` causal LM plus loss bookkeeping.

The model is treated as a generic HF causal LM. The optimised loss is the model's own ``.loss`` (for
an adapted MoST model it already includes the router's aux loss); per-task losses are recomputed from
the logits without gradient, for logging only. The router aux loss is logged when the outputs carry
``aux_loss``; router telemetry by :class:`~most.train.callbacks.RouterTelemetry`.

Batch keys: see :mod:`most.data.collate` (``input_ids``, ``labels``, ``position_ids``, ``task_ids``
``(B, T)``; ``attention_mask`` ``(B, T)`` for padded batches).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from most.data.prompts import IGNORE, TASKS
from most.train.optim import OptimConfig, build_optimizer, mask_old_embedding_rows


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
        self.optim_cfg = optim
        self.total_steps = total_steps
        if optim.new_embedding_rows_only:
            if n_old_embedding_rows is None:
                raise ValueError(
                    "optim.new_embedding_rows_only needs a token layout (adapted model)"
                )
            mask_old_embedding_rows(model, n_old_embedding_rows)

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch.get("attention_mask"),
            position_ids=batch["position_ids"],
            labels=batch["labels"],
            use_cache=False,
        )

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        out = self(batch)
        bs = batch["input_ids"].shape[0]
        on_step = prefix == "train"
        self.log(
            f"{prefix}/loss",
            out.loss,
            prog_bar=True,
            batch_size=bs,
            on_step=on_step,
            on_epoch=not on_step,
        )
        for task, loss in task_losses(out.logits.detach(), batch).items():
            self.log(
                f"{prefix}/loss_{task}", loss, batch_size=bs, on_step=on_step, on_epoch=not on_step
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
        return out.loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self):
        return build_optimizer(self.model, self.optim_cfg, self.total_steps)


@torch.no_grad()
def task_losses(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mean next-token loss per task over answer tokens. ``logits (B, T, V)`` -> ``{task: scalar}``."""
    labels = batch["labels"][:, 1:]
    tasks = batch["task_ids"][:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1].float().flatten(0, 1),
        labels.flatten(),
        ignore_index=IGNORE,
        reduction="none",
    ).view_as(labels)
    valid = labels != IGNORE
    out = {}
    for t in tasks[valid].unique().tolist():
        sel = valid & (tasks == t)
        out[TASKS[t]] = nll[sel].mean()
    return out
