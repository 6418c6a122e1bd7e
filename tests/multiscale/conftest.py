"""A tiny adapted Qwen3-MoE (20 unit tokens = C=4 codebooks of K=5) saved and reloaded, as the
global model of the multi-scale tests (reloaded, so it runs with the implementations a user gets)."""

from __future__ import annotations

from pathlib import Path

import pytest

C, K = 4, 5


@pytest.fixture(scope="session")
def global_dir(tmp_path_factory) -> Path:
    from most.testing.tiny_moe import adapt_tiny, tiny_base

    out = tmp_path_factory.mktemp("global")
    adapt_tiny(tiny_base("qwen3_moe")).save_pretrained(out)
    return out


@pytest.fixture
def global_model(global_dir):
    from transformers import AutoModelForCausalLM

    import most  # noqa: F401  (registers the model classes)

    return AutoModelForCausalLM.from_pretrained(global_dir).eval()
