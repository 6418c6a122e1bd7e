"""Placing modality specialists in their expert groups (:mod:`most.moe.merge`): group g's experts
and modality g's token rows come from specialist g, shared token rows add every specialist's
change, and a specialist that changed a weight no group owns is refused."""

from __future__ import annotations

import copy

import pytest
import torch

from most.moe.block import ModalityMoE
from most.moe.merge import merge_specialists
from most.testing import layout_args
from most.testing.tiny_moe import adapt_tiny, tiny_base

GROUPS = {"text": 4, "speech": 2, "music": 2}


def _start():
    model = adapt_tiny(tiny_base("qwen3_moe"), layout_args(music=True), groups=GROUPS)
    return model, model.layout


def _specialist(start, seed: int):
    """``start`` with every expert tensor and both embedding matrices changed (as a specialist's
    training changes them, other groups included)."""
    m = copy.deepcopy(start)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if ".experts." in name or "embed_tokens" in name or "lm_head" in name:
                p.add_(torch.randn(p.shape, generator=g))
    return m


def test_groups_and_rows_come_from_their_specialist() -> None:
    start, layout = _start()
    specs = {m: _specialist(start, i) for i, m in enumerate(("text", "speech", "music"), 1)}
    before = copy.deepcopy(start)
    merged = merge_specialists(start, specs, layout)
    blocks = [(n, b) for n, b in merged.named_modules() if isinstance(b, ModalityMoE)]
    assert blocks
    for name, block in blocks:
        for modality, ids in zip(layout.modalities, block.router.groups, strict=True):
            theirs = specs[modality].get_submodule(name).experts
            for pname, p in block.experts.named_parameters():
                assert torch.equal(p[list(ids)], getattr(theirs, pname)[list(ids)]), (name, pname)
    table = layout.modality_table(merged.get_input_embeddings().num_embeddings)
    emb = merged.get_input_embeddings().weight
    start_emb = before.get_input_embeddings().weight
    for i, modality in enumerate(layout.modalities):
        rows = table == i
        assert rows.any()
        if modality == "text":  # shared rows: start + the sum of every specialist's change
            delta = sum(
                s.get_input_embeddings().weight[rows] - start_emb[rows] for s in specs.values()
            )
            assert torch.allclose(emb[rows], start_emb[rows] + delta, atol=1e-5)
        else:
            assert torch.equal(emb[rows], specs[modality].get_input_embeddings().weight[rows])
    # everything no group owns: the start's, bit for bit
    for (name, p), (_, q) in zip(merged.named_parameters(), before.named_parameters(), strict=True):
        if ".experts." not in name and "embed_tokens" not in name and "lm_head" not in name:
            assert torch.equal(p, q), name


def test_a_missing_specialist_keeps_its_group_from_the_start() -> None:
    start, layout = _start()
    before = copy.deepcopy(start)
    merged = merge_specialists(start, {"speech": _specialist(start, 1)}, layout)
    name, block = next((n, b) for n, b in merged.named_modules() if isinstance(b, ModalityMoE))
    text_ids, speech_ids = list(block.router.groups[0]), list(block.router.groups[1])
    old = before.get_submodule(name).experts.gate_up_proj
    assert torch.equal(block.experts.gate_up_proj[text_ids], old[text_ids])
    assert not torch.equal(block.experts.gate_up_proj[speech_ids], old[speech_ids])


def test_a_changed_shared_weight_is_refused() -> None:
    start, layout = _start()
    spec = _specialist(start, 1)
    with torch.no_grad():
        next(p for n, p in spec.named_parameters() if "q_proj" in n).add_(1.0)
    with pytest.raises(ValueError, match="no expert group owns"):
        merge_specialists(start, {"speech": spec}, layout)
    with pytest.raises(ValueError, match="layout's modalities"):
        merge_specialists(start, {"vision": spec}, layout)
