"""DPO on Lightning: the preference loss, the module that trains it, and the reference log-probs.

The loss is trl's ``DPOTrainer`` loss (``loss_type=["sigmoid", "sft"]``, ``loss_weights=[1,
sft_weight]``, ``precompute_ref_log_probs=True``) computed inside our Lightning module, so the stage
keeps the path every other stage trains on (resume with data position and RNG, FSDP/DeepSpeed,
LoRA with new rows, precision policy, HF export). trl 1.16 has no free loss function: the formula
lives inside ``DPOTrainer._compute_loss``, and ``tests/train/test_dpo.py`` checks this module
against that method on the same model and batch. trl's own pieces are used where they are
standalone: ``DataCollatorForPreference`` builds the batch and ``selective_log_softmax`` the
per-token log-probs.

The reference model is never held: its sequence log-probs are computed once, before training, by
:func:`reference_logps` with the same collation and the same forward as training, and stored with
the pairs (trl's ``precompute_ref_log_probs``). So the loss is, per pair,
``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))`` with ``pi``/``ref`` the summed
log-probs of the completion tokens, plus ``sft_weight`` x the mean NLL of the chosen completions'
tokens (trl's ``sft`` term), plus the router's load-balancing term as the model weighs it.

Batch keys (``P`` pairs, ``T`` the longest prompt + completion, chosen rows first then rejected,
as trl's collator lays them out):

- ``input_ids`` ``(2P, T)``, ``attention_mask`` ``(2P, T)``, ``completion_mask`` ``(2P, T)``
  (1 on completion tokens), ``position_ids`` ``(2P, T)``;
- ``ref_chosen_logps``, ``ref_rejected_logps`` ``(P,)``;
- ``task_ids`` ``(2P, T)``: the pair's task (:data:`~most.data.prompts.TASKS`) on real tokens, -1
  on padding (throughput and per-task logging).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import selective_log_softmax

from most.data.prompts import TASKS
from most.train.module import CausalLMModule
from most.train.optim import OptimConfig

#: Columns of a pairs dataset the collator reads (``ref_*`` only once computed).
PAIR_COLUMNS = ("task", "prompt_ids", "chosen_ids", "rejected_ids")
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


@dataclass
class DPOConfig:
    """The preference loss and its batches (``--dpo.*``)."""

    beta: float = 0.1
    """Strength of the tie to the reference (trl's ``beta``): higher keeps the model closer to
    stage 2."""
    sft_weight: float = 0.0
    """Weight of the chosen completions' NLL added to the DPO loss (trl's ``sft`` loss type, the
    RPO recipe): keeps the chosen readings likely while the margin grows; 0 = plain DPO."""
    batch_size: int = 4
    """Pairs per micro-batch and device (each pair is two rows)."""
    max_len: int = 512
    """Longest prompt + completion in tokens; longer ones are cut at the end (trl's
    ``keep_start``)."""
    seed: int = 1234
    """Order of the pairs: every epoch is a permutation drawn from ``(seed, epoch)``."""

    def __post_init__(self) -> None:
        if self.beta <= 0 or self.sft_weight < 0:
            raise ValueError(f"dpo: need beta > 0 and sft_weight >= 0 ({self})")
        if self.batch_size < 1 or self.max_len < 8:
            raise ValueError(f"dpo: need batch_size >= 1 and max_len >= 8 ({self})")


def collate_pairs(rows: Sequence[dict], pad_id: int, max_len: int) -> dict[str, torch.Tensor]:
    """Pairs -> a batch (keys in the module doc), by trl's ``DataCollatorForPreference``."""
    collator = DataCollatorForPreference(pad_token_id=pad_id, max_length=max_len)
    keep = [*PAIR_COLUMNS[1:], *(c for c in REF_COLUMNS if c in rows[0])]
    batch = collator([{k: r[k] for k in keep} for r in rows])
    mask = batch["attention_mask"]
    batch["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
    task = torch.tensor([TASKS.index(r["task"]) for r in rows] * 2)
    batch["task_ids"] = torch.where(mask.bool(), task[:, None], -1)
    return batch


def token_logps(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-prob of each next token ``(2P, T-1)``, 0 off the completion. ``logits (2P, T, V)``."""
    logps = selective_log_softmax(logits[:, :-1].float(), batch["input_ids"][:, 1:])
    return logps * batch["completion_mask"][:, 1:]


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair sigmoid DPO loss ``(P,)`` from summed completion log-probs ``(P,)`` each."""
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)
    return -F.logsigmoid(beta * margin)


class DPOModule(CausalLMModule):
    """Trains ``model`` on preference pairs with :func:`dpo_loss` (+ the ``sft`` term and the
    router aux term); optimizer, schedule, FSDP and embedding-row masks as :class:`CausalLMModule`.
    Logs ``loss``, ``dpo_loss``, ``reward_accuracy`` (share of pairs whose implicit reward ranks
    the chosen first), ``reward_margin`` and ``loss_<task>`` per task."""

    def __init__(
        self,
        model: nn.Module,
        optim: OptimConfig,
        dpo: DPOConfig,
        total_steps: int,
        n_old_embedding_rows: int | None = None,
    ) -> None:
        if optim.dropout:
            raise ValueError("optim.dropout must be 0 for DPO: the reference log-probs have none")
        super().__init__(model, optim, total_steps, n_old_embedding_rows)
        self.dpo = dpo

    def forward(self, batch: dict[str, torch.Tensor]):
        return self.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            use_cache=False,
        )

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's ``loss`` (what is optimised; the only value with gradient), ``dpo_loss``,
        ``reward_accuracy``, ``reward_margin``, ``loss_<task>`` and ``aux_loss``."""
        out = self(batch)
        per_token = token_logps(out.logits, batch)
        chosen, rejected = per_token.sum(1).chunk(2)
        ref_c, ref_r = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        pairs = dpo_loss(chosen, rejected, ref_c, ref_r, self.dpo.beta)
        loss = pairs.mean()
        if self.dpo.sft_weight:
            mask = batch["completion_mask"][:, 1:].chunk(2)[0].bool()
            loss = loss + self.dpo.sft_weight * -per_token.chunk(2)[0][mask].mean()
        aux = self.weighted_aux(out)
        stats = {"loss": loss if aux is None else loss + aux.to(loss.dtype)}
        with torch.no_grad():
            reward_c, reward_r = chosen - ref_c, rejected - ref_r
            stats["dpo_loss"] = pairs.mean()
            stats["reward_accuracy"] = (reward_c > reward_r).float().mean()
            stats["reward_margin"] = self.dpo.beta * (reward_c - reward_r).mean()
            tasks = batch["task_ids"][: len(chosen), 0]
            for t in tasks.unique().tolist():
                stats[f"loss_{TASKS[t]}"] = pairs[tasks == t].mean()
            if aux is not None:
                stats["aux_loss"] = aux.detach().float()
        return stats

    def _step(self, batch: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
        stats = self.losses(batch)
        on_step = prefix == "train"
        n_pairs = batch["ref_chosen_logps"].shape[0]
        for key, value in stats.items():
            self.log(
                f"{prefix}/{key}",
                value,
                prog_bar=key == "loss",
                batch_size=n_pairs,
                on_step=on_step,
                on_epoch=not on_step,
            )
        return stats["loss"]


@torch.no_grad()
def reference_logps(
    model: nn.Module,
    rows: Sequence[dict],
    pad_id: int,
    cfg: DPOConfig,
    autocast: torch.dtype | None = None,
) -> tuple[list[float], list[float]]:
    """Summed completion log-probs of every pair's chosen and rejected answer under ``model`` (the
    reference: the model DPO starts from), batched and collated exactly as training reads them.
    ``autocast``: the dtype training multiplies in under a ``*-mixed`` precision (None: the
    weights' own), so the policy's log-probs at step 0 equal these."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    context = torch.autocast(device.type, autocast) if autocast is not None else nullcontext()
    chosen: list[float] = []
    rejected: list[float] = []
    try:
        for s in range(0, len(rows), cfg.batch_size):
            batch = collate_pairs(rows[s : s + cfg.batch_size], pad_id, cfg.max_len)
            batch = {k: v.to(device) for k, v in batch.items()}
            with context:
                logits = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"],
                    use_cache=False,
                ).logits
            c, r = token_logps(logits, batch).sum(1).chunk(2)
            chosen += c.tolist()
            rejected += r.tolist()
    finally:
        model.train(was_training)
    return chosen, rejected
