"""Place modality specialists in their expert groups: the merge step of UniMoE-Audio's curriculum.

Each specialist starts from the same adapted model and trains on one modality's data with only the
routed experts and the new token rows trainable (``recipes/curriculum/specialist_*.yaml``). The
merged model is that common start with, per modality ``m`` that has a specialist:

- the routed experts of ``m``'s group in every :class:`~most.moe.block.ModalityMoE` layer (rows of
  the stacked expert tensors, biases included) taken from ``m``'s specialist;
- the embedding and LM-head rows of ``m``'s own tokens (its units and specials, as
  :meth:`~most.layout.TokenLayout.modality_table` assigns them) taken from ``m``'s specialist,
  except the text-modality rows: the tokens every task uses (task tags such as ``<|asr|>``,
  ``<|ttm|>``) and the text vocabulary. Those get the start plus the sum of every specialist's
  change (the text vocabulary's rows are unchanged under ``new_embedding_rows_only``).

A specialist's changes to another group's experts are dropped: text tokens inside an ASR example
reach the text experts of the speech specialist, and that group is the text specialist's.
Everything else (attention, norms, routers, shared experts) must be unchanged in every specialist,
else the merge is refused: one group's training of a shared weight cannot be placed anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from most.layout import TEXT, TokenLayout
from most.moe.block import ModalityMoE


def merge_specialists(
    start: nn.Module, specialists: Mapping[str, nn.Module], layout: TokenLayout
) -> nn.Module:
    """Write into ``start`` (the model every specialist began from) each specialist's expert group
    and token rows (module docstring); returns ``start``. ``specialists``: modality -> model."""
    unknown = sorted(set(specialists) - set(layout.modalities))
    if unknown:
        raise ValueError(
            f"specialists for {unknown}: the layout's modalities are {layout.modalities}"
        )
    owned = _expert_rows(start, specialists, layout)
    emb = _embedding_weights(start)
    before = {n: p.detach().clone() for n, p in start.named_parameters() if n in emb}
    rows = _token_rows(start, layout)
    with torch.no_grad():
        params = dict(start.named_parameters())
        for modality, model in specialists.items():
            theirs = dict(model.named_parameters())
            for name, p in params.items():
                if name not in theirs or theirs[name].shape != p.shape:
                    raise ValueError(
                        f"specialist {modality!r} has no parameter {name} like the start's"
                    )
                q = theirs[name].detach().to(p.dtype)
                if name in owned:
                    ids = owned[name].get(modality)
                    if ids is not None:
                        p[ids] = q[ids]
                elif name in emb:
                    mine, shared = rows[modality], rows[TEXT]
                    if modality != TEXT:
                        p[mine] = q[mine]
                    p[shared] += q[shared] - before[name][shared]
                elif not torch.equal(q, p):
                    raise ValueError(
                        f"specialist {modality!r} changed {name}, which no expert group owns: "
                        "train only '\\.experts\\.' and the new token rows in specialists"
                    )
    return start


def _expert_rows(
    model: nn.Module, specialists: Mapping[str, nn.Module], layout: TokenLayout
) -> dict[str, dict[str, torch.Tensor]]:
    """``{parameter name: {modality: expert ids}}`` of every routed-expert tensor (dim 0 = expert)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for prefix, block in model.named_modules():
        if not isinstance(block, ModalityMoE):
            continue
        groups = block.router.groups
        if len(groups) != len(layout.modalities):
            raise ValueError(
                f"{prefix}: {len(groups)} expert groups for the layout's "
                f"{len(layout.modalities)} modalities; merging needs modality groups (router: modality)"
            )
        ids = {
            m: torch.tensor(g, dtype=torch.long)
            for m, g in zip(layout.modalities, groups, strict=True)
        }
        for name, _ in block.experts.named_parameters():
            out[f"{prefix}.experts.{name}"] = {m: ids[m] for m in specialists}
    if not out:
        raise ValueError("the model has no modality-aware MoE blocks to merge")
    return out


def _embedding_weights(model: nn.Module) -> set[str]:
    """Names of the input and output embedding matrices (one name when they are tied)."""
    mats = [model.get_input_embeddings().weight]
    out = model.get_output_embeddings()
    if out is not None:
        mats.append(out.weight)
    return {n for n, p in model.named_parameters() if any(p is m for m in mats)}


def _token_rows(model: nn.Module, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """Modality -> the embedding rows of its tokens (padding rows count as text)."""
    n = model.get_input_embeddings().num_embeddings
    table = layout.modality_table(n)
    return {m: (table == i).nonzero().squeeze(1) for i, m in enumerate(layout.modalities)}
