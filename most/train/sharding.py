"""Sharded training: the Lightning strategy a recipe's ``trainer.strategy`` names, FSDP2 wrapping per
decoder layer, and the full state dict gathered for the HF export.

- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) on every decoder layer, then on the root
  (embeddings, final norm, LM head), through :class:`FSDP2Strategy` (Lightning's
  ``ModelParallelStrategy`` with all ranks on one data-parallel mesh dimension). Runs on GPUs (NCCL)
  and on CPUs (gloo). Under ``32-true`` and ``*-mixed`` each rank widens its shard to fp32 (a bf16
  checkpoint trains fp32 master weights) and ``bf16-mixed`` autocasts the compute, as on one device.
  Checkpoints are full, gathered on rank 0 into one ``.ckpt`` file (written atomically by
  :class:`~most.train.checkpoint.AtomicCheckpointIO`), or with ``trainer.sharded_checkpoint`` a
  folder of per-rank shards; both resume on any number of ranks.
- ``deepspeed_stage_2`` / ``deepspeed_stage_3``: Lightning's DeepSpeed strategy (the optional extra
  ``pip install -e '.[deepspeed]'``); checkpoints are DeepSpeed's sharded folders.

:func:`gathered_state_dict` is collective: every rank calls it, rank 0 receives the whole fp32 state
dict (FSDP: ``get_model_state_dict(full_state_dict=True, cpu_offload=True)``; ZeRO: each parameter's
fp32 master copy gathered from its partitions), so the export writes what one process would.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.strategies import ModelParallelStrategy, Strategy
from torch import nn

from most.io import atomic_dir


def check_available(strategy: str) -> None:
    """Refuse a DeepSpeed strategy when the optional ``deepspeed`` package is not installed."""
    if strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        raise ValueError(
            f"trainer.strategy={strategy} needs DeepSpeed, which is not installed: "
            "pip install -e '.[deepspeed]' (or pick trainer.strategy=fsdp)"
        )


def build_strategy(strategy: str, sharded_checkpoint: bool = False) -> str | Strategy:
    """What ``L.Trainer(strategy=...)`` gets for a recipe's ``trainer.strategy``."""
    check_available(strategy)
    return FSDP2Strategy(sharded_checkpoint) if strategy == "fsdp" else strategy


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over every rank (no tensor parallelism).

    Lightning's ``ModelParallelStrategy`` sizes the data-parallel dimension by the number of nodes
    and gives the rest to tensor parallelism; here every process is one data-parallel shard.
    :meth:`~most.train.module.CausalLMModule.configure_model` applies :func:`shard_model`.
    Checkpoints are one file gathered on rank 0, or with ``sharded`` a folder of per-rank shards
    (``torch.distributed.checkpoint``) written into a temporary sibling and renamed into place,
    so a kill mid-save leaves the previous checkpoint whole.
    """

    def __init__(self, sharded: bool = False) -> None:
        super().__init__(tensor_parallel_size=1, save_distributed_checkpoint=sharded)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None
    ) -> None:
        if not self._save_distributed_checkpoint:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        if not self.is_global_zero:
            tmp = self.broadcast(None)
            super().save_checkpoint(checkpoint, tmp, storage_options)
            self.barrier()
            return self.barrier()
        if path.is_file():
            path.unlink()
        with atomic_dir(path) as tmp:
            self.broadcast(str(tmp))
            super().save_checkpoint(checkpoint, tmp, storage_options)
            self.barrier()  # every rank's shard is written
        return self.barrier()  # renamed into place


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a ``transformers`` causal LM, however wrapped (MoST, peft).

    Found by class name from the ``_no_split_modules`` of the ``PreTrainedModel`` objects inside
    ``model`` (the units ``transformers`` itself never splits across devices); else the longest
    ``nn.ModuleList``. Raises ``ValueError`` when neither exists.
    """
    names = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if layers:
        return layers
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(
            f"{type(model).__name__}: no decoder layers found to shard (no _no_split_modules and "
            "no nn.ModuleList)"
        )
    return list(max(lists, key=len))


def shard_model(model: nn.Module, mesh: Any) -> None:
    """FSDP2 ``fully_shard`` on each decoder layer, then on ``model`` (the rest: embeddings, norm,
    LM head, tied or not). Already sharded models are left as they are."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(model, FSDPModule):
        return
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


#: Environment variables that carry a process's rank under Lightning's launcher, torchrun and SLURM.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def loads_weights(strategy: str) -> bool:
    """Whether this process reads the checkpoint's weights: every process, except under ``fsdp``,
    where only global rank 0 does and the others build the model on the ``meta`` device and receive
    their shards from it (:func:`load_from_rank0`). Read from the launcher's environment, before
    any process group exists."""
    if strategy != "fsdp":
        return True
    return all(int(os.environ.get(name) or 0) == 0 for name in _RANK_VARIABLES)


def load_from_rank0(model: nn.Module, full: dict[str, torch.Tensor] | None, device) -> None:
    """Fill a sharded ``model`` with global rank 0's weights, one tensor at a time: ranks whose
    model is still on the ``meta`` device allocate their shards on ``device`` first; ``full`` is rank
    0's state dict taken before sharding (None elsewhere). Each FSDP parameter is scattered from
    rank 0 into its shards (``distribute_tensor``); unsharded parameters and buffers are broadcast."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor, distribute_tensor

    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model.to_empty(device=device)
    rank0 = full is not None
    with torch.no_grad():
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            if isinstance(t, DTensor):
                shape, local = t.shape, t.to_local()
                source = full[name] if rank0 else torch.empty(shape, dtype=t.dtype)
                shard = distribute_tensor(
                    source.to(local.device, t.dtype), t.device_mesh, t.placements, src_data_rank=0
                )
                local.copy_(shard.to_local())
            else:  # rank 0 holds it already (non-persistent buffers are in no state dict)
                dist.broadcast(t.data, src=0)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` holds FSDP2 shards or DeepSpeed ZeRO partitions."""
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(m, FSDPModule) for m in model.modules()):
        return True
    return any(hasattr(p, "ds_id") or hasattr(p, "_hp_mapping") for p in model.parameters())


def gathered_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole fp32 state dict of a sharded ``model`` on rank 0 (CPU tensors); ``{}`` elsewhere.

    Collective: every rank must call it.
    """
    from torch.distributed.fsdp import FSDPModule

    if any(isinstance(m, FSDPModule) for m in model.modules()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options)
    return _zero_state_dict(model)


def _zero_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """DeepSpeed ZeRO-2/3: each parameter's fp32 master gathered from its partitions (a frozen one,
    which has no master, gathered as it is); buffers as they are (ZeRO does not partition them)."""
    import torch.distributed as dist
    from deepspeed.utils import safe_get_full_fp32_param

    rank0 = dist.get_rank() == 0
    out: dict[str, torch.Tensor] = {}
    done: dict[int, torch.Tensor] = {}  # tied weights: gathered once, stored under both names
    for name, t in model.state_dict(keep_vars=True).items():
        if id(t) not in done:
            full = safe_get_full_fp32_param(t) if isinstance(t, nn.Parameter) else None
            if full is None:
                full = _gather_zero3(t)
            if rank0:
                done[id(t)] = full.detach().float().cpu() if t.is_floating_point() else full.cpu()
            else:
                done[id(t)] = full[:0]  # the gather was collective; only rank 0 keeps it
        if rank0:
            out[name] = done[id(t)]
    return out


def _gather_zero3(t: torch.Tensor) -> torch.Tensor:
    import deepspeed

    if not hasattr(t, "ds_id"):
        return t.data
    with deepspeed.zero.GatheredParameters([t]):
        return t.data.clone()


def meta_skeleton(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (wrappers, peft adapters, ties and all) whose parameters and buffers sit on
    the meta device: no weight is copied. Taken before sharding, it receives the gathered state dict
    for the export (:func:`fill_skeleton`)."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo.setdefault(id(p), nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad))
    for b in model.buffers():
        memo.setdefault(id(b), torch.empty_like(b, device="meta"))
    return copy.deepcopy(model, memo)


def fill_skeleton(
    skeleton: nn.Module, state: dict[str, torch.Tensor], live: nn.Module
) -> nn.Module:
    """``skeleton`` (:func:`meta_skeleton`) holding the gathered ``state``; tied parameters tied
    again, and the buffers no state dict carries (rotary tables) taken from the ``live`` model."""
    ties: dict[int, list[str]] = {}
    for name, p in skeleton.named_parameters(remove_duplicate=False):
        ties.setdefault(id(p), []).append(name)
    skeleton.load_state_dict(state, strict=True, assign=True)
    for names in ties.values():
        first = skeleton.get_parameter(names[0])
        for name in names[1:]:
            owner, _, attr = name.rpartition(".")
            setattr(skeleton.get_submodule(owner), attr, first)
    saved = set(state)
    for name, b in live.named_buffers():
        if name not in saved:
            owner, _, attr = name.rpartition(".")
            setattr(skeleton.get_submodule(owner), attr, b.detach().cpu())
    return skeleton
