"""Writes ``v1_reference.json``: what the two-modality code of commit ddd89e8 (equal contiguous
expert groups, text and speech only) produced, for ``test_v1_compat.py`` to hold newer code to.

Run once at that commit, from the repository root::

    python tests/moe/make_v1_reference.py

It records a saved token layout (file text and hash), the ``most adapt`` settings fingerprint of
the tiny test recipe, the config and state-dict shapes of a tiny adapted Qwen3-MoE, and the
router's decisions for fixed inputs under every router kind. The inputs are stored too, so the
check does not depend on any random number generator.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from most.adapt import SourceSection
from most.layout import LAYOUT_FILE, TokenLayout
from most.moe.config import ExpertsConfig
from most.moe.router import BaseRouting, ModalityRouter
from most.run import fingerprint
from most.testing import layout_args
from most.testing.tiny_moe import adapt_tiny, tiny_base

OUT = Path(__file__).with_name("v1_reference.json")
N, H, G, EG = 12, 16, 2, 4

RULES = {
    "softmax": BaseRouting(top_k=2, norm_topk=True),
    "sigmoid_grouped": BaseRouting(
        top_k=2, scoring="sigmoid", norm_topk=True, scale=2.5, n_group=2, topk_group=1,
        group_score="top2sum", fp32_logits=True,
    ),
}  # fmt: skip
CASES = [
    ("softmax", "topk", {}),
    ("softmax", "modality", {}),
    ("softmax", "modality", {"has_logit_bias": True}),
    ("softmax", "most_compat", {}),
    ("softmax", "top_p", {"top_p": 0.7, "n_null": 1, "max_k": 4}),
    ("sigmoid_grouped", "modality", {"has_bias": True}),
    ("sigmoid_grouped", "topk", {"has_bias": True}),
]


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(N, H, generator=g),
        "weight": torch.randn(G * EG + 1, H, generator=g),
        "bias": 0.1 * torch.randn(G * EG, generator=g),
        "logit_bias": torch.randn(G * EG, generator=g),
        "modality": torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0]),
    }


def routing_cases(t: dict[str, torch.Tensor]) -> list[dict]:
    out = []
    for rule, kind, kw in CASES:
        router = ModalityRouter(H, G, EG, kind, RULES[rule], **kw)
        with torch.no_grad():
            router.weight.copy_(t["weight"][: router.weight.shape[0]])
            if router.bias is not None:
                router.bias.copy_(t["bias"])
            if router.logit_bias is not None:
                router.logit_bias.copy_(t["logit_bias"])
            r = router(t["x"], t["modality"])
        out.append({
            "rule": rule, "kind": kind, "kwargs": kw,
            "index": r.index.tolist(), "local_index": r.local_index.tolist(),
            "weight": r.weight.tolist(), "probs": r.probs.tolist(),
            "n_null_picks": r.n_null_picks.tolist(),
        })  # fmt: skip
    return out


def main() -> None:
    t = inputs()
    layout = TokenLayout(text_vocab_size=64, n_units=20, unit_tokenizer_hash="test-units")
    with tempfile.TemporaryDirectory() as d:
        layout_text = (layout.save(d)).read_text()
    settings = dict(
        source=SourceSection(model=Path("/models/base")),
        experts=ExpertsConfig(),
        layout=layout_args(),
    )
    model = adapt_tiny(tiny_base("qwen3_moe"))
    ref = {
        "commit": "ddd89e8",
        "layout_file": {"name": LAYOUT_FILE, "text": layout_text, "hash": layout.hash},
        "adapt_settings": fingerprint(settings, {})["settings"],
        "config": {"layout": model.config.layout, "experts": model.config.experts,
                   "routing": model.config.routing},
        "state_shapes": {k: list(v.shape) for k, v in model.state_dict().items()},
        "routing_inputs": {k: v.tolist() for k, v in t.items()},
        "rules": {k: asdict(v) for k, v in RULES.items()},
        "routing": routing_cases(t),
    }  # fmt: skip
    OUT.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
