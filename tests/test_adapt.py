"""``most.adapt.plan``: what adapting a model would make of it, checked on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from most.adapt import plan
from most.cli import parse_command
from most.moe.arch import ArchError
from most.moe.config import ExpertsConfig

REPO = Path(__file__).resolve().parents[1]


def test_split_needs_divisible_experts():
    from transformers import Qwen3MoeConfig

    cfg = Qwen3MoeConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_experts=5, vocab_size=64
    )
    with pytest.raises(ValueError, match="divisible"):
        plan(cfg, ExpertsConfig(init="split"))


def recipe_experts(path: Path) -> ExpertsConfig:
    """The ``experts`` section of an adapt recipe as `most adapt --config PATH` builds it."""
    return parse_command("adapt", ["--config", str(path), "--run", "runs/x"])["experts"]


@pytest.mark.parametrize(
    ("name", "recipe", "experts_after", "billions"),
    [
        ("deepseek-v2-lite.config.json", "deepseek-v2-lite", 64, (15.0, 16.5)),
        ("qwen3-30b-a3b.config.json", "qwen3-30b-a3b", 128, (30.0, 31.5)),
        ("mixtral-8x7b-v0.1.config.json", None, 16, (46.0, 47.5)),
    ],
)
def test_published_configs_plan_on_meta(name, recipe, experts_after, billions, realdata):
    d = json.loads((realdata / "moe_configs" / name).read_text())
    cfg = CONFIG_MAPPING[d["model_type"]].from_dict(d)
    if recipe is not None:
        experts = recipe_experts(REPO / "recipes" / recipe / "adapt.yaml")
    else:
        experts = ExpertsConfig(init="upcycle")
    report = plan(cfg, experts, vocab_size=cfg.vocab_size + 1034)
    assert report["experts_per_layer"]["after"] == experts_after
    lo, hi = billions
    assert lo < report["params_before"] / 1e9 < hi
    if experts.init == "split":
        vocab = 1034 * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
        assert report["params_after"] - report["params_before"] == vocab
    else:
        assert report["params_after"] > 1.9 * report["params_before"] * 0.95


def test_text_config_and_moe_shape_see_through_wrappers():
    from transformers import Qwen3Config

    from most.modeling import MostConfig
    from most.moe.arch import moe_shape, text_config
    from most.testing.tiny_moe import tiny_config

    wrapped = tiny_config("qwen3_5_moe")  # a multimodal wrapper: MoE fields under text_config
    assert text_config(wrapped).model_type == "qwen3_5_moe_text"
    assert moe_shape(wrapped) == (8, 2)
    dbrx = tiny_config("dbrx")  # MoE fields under ffn_config
    assert text_config(dbrx) is dbrx and moe_shape(dbrx) == (8, 2)
    adapted = MostConfig(text_config=text_config(wrapped), layout={}, experts={})
    assert text_config(adapted) is adapted.text_config and moe_shape(adapted) == (8, 2)
    dense = Qwen3Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, vocab_size=64)
    assert moe_shape(dense) == (0, 0)


@pytest.mark.parametrize(
    ("model_type", "inner", "experts"),
    [("qwen3_5_moe", "qwen3_5_moe_text", 8), ("dbrx", "dbrx", 8), ("gpt_oss", "gpt_oss", 8)],
)
def test_plan_on_nested_and_odd_configs(model_type, inner, experts):
    from most.testing.tiny_moe import tiny_config

    report = plan(tiny_config(model_type), ExpertsConfig(init="upcycle"), vocab_size=100)
    assert report["model_type"] == inner and report["top_k"] == 2
    groups = {"text": 8, "speech": 8}
    assert report["experts_per_layer"] == {
        "before": experts,
        "after": 2 * experts,
        "groups": groups,
    }
    assert report["params_after"] > report["params_before"]


def test_plan_refuses_in_one_line():
    from most.testing.tiny_moe import tiny_config

    with pytest.raises(ArchError, match=r"^llama4_text: its MoE block scales each expert's input"):
        plan(tiny_config("llama4"), ExpertsConfig())
