"""Bad inputs fail before any weight is written; published configs plan on the meta device; every
adapt recipe parses against the stage signature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonargparse import ArgumentParser
from transformers import GraniteMoeConfig, Qwen3Config
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from most.adapt import SourceSection, plan
from most.stages.adapt import adapt
from most.layout import LayoutError
from most.moe.arch import ArchError
from most.moe.config import ExpertsConfig
from tests.moe.conftest import layout_args, tiny_tokenizer

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(REPO.glob("recipes/*/adapt.yaml"))


def write_source(folder: Path, config, extra_tokens: list[str] = ()) -> Path:
    """A model folder with only config + tokenizer: adapt must fail before it needs weights."""
    config.save_pretrained(folder)
    tok = tiny_tokenizer()
    tok.add_tokens(list(extra_tokens))
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        (Qwen3Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, vocab_size=64), ArchError, "not a Mixture-of-Experts"),
        (GraniteMoeConfig(num_local_experts=4, vocab_size=64), ArchError, "unknown MoE architecture"),
    ],
)  # fmt: skip
def test_bad_models_rejected_before_writing(config, error, match, tmp_path):
    src = write_source(tmp_path / "src", config)
    with pytest.raises(error, match=match):
        adapt(run=tmp_path, source=SourceSection(model=src), layout=layout_args())
    assert not (tmp_path / "adapt").exists()


@pytest.mark.parametrize("token", ["<|asr|>", "<|u3|>"])
def test_colliding_layout_rejected_before_writing(token, base_dirs, tmp_path):
    src = tmp_path / "src"
    for f in base_dirs["qwen3_moe"].iterdir():
        (src / f.name).parent.mkdir(exist_ok=True)
        (src / f.name).write_bytes(f.read_bytes())
    tok = tiny_tokenizer()
    tok.add_tokens([token])
    tok.save_pretrained(src)
    with pytest.raises(LayoutError, match="already in the base tokenizer"):
        adapt(run=tmp_path, source=SourceSection(model=src), layout=layout_args())
    assert not (tmp_path / "adapt").exists()


def test_split_needs_divisible_experts(base_dirs, tmp_path):
    from transformers import Qwen3MoeConfig

    cfg = Qwen3MoeConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_experts=5, vocab_size=64
    )
    with pytest.raises(ArchError, match="divisible"):
        plan(cfg, ExpertsConfig(init="split"))


def parse_recipe(path: Path):
    parser = ArgumentParser()
    parser.add_function_arguments(adapt)
    return parser.parse_path(path)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_parses(recipe):
    cfg = parse_recipe(recipe)
    ExpertsConfig(**vars(cfg.experts))


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
        experts = ExpertsConfig(
            **vars(parse_recipe(REPO / "recipes" / recipe / "adapt.yaml").experts)
        )
    else:
        experts = ExpertsConfig(init="upcycle")
    report = plan(cfg, experts, n_groups=2, vocab_size=cfg.vocab_size + 1034)
    assert report["experts_per_layer"]["after"] == experts_after
    lo, hi = billions
    assert lo < report["params_before"] / 1e9 < hi
    if experts.init == "split":
        vocab = 1034 * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
        assert report["params_after"] - report["params_before"] == vocab
    else:
        assert report["params_after"] > 1.9 * report["params_before"] * 0.95


def test_cli_runs_adapt(base_dirs, tmp_path, capsys):
    from most.cli import main

    args = ["adapt", "--config", str(REPO / "recipes/tiny/adapt.yaml"), "--run", str(tmp_path)]
    args += [f"--source.model={base_dirs['olmoe']}", "--experts.router=top_p"]
    assert main(args) == 2  # no units stage output and no explicit n_units
    assert "most units" in capsys.readouterr().err
    args += ["--layout.n_units=7", "--layout.unit_tokenizer_hash=h"]
    assert main(args) == 0
    report = json.loads((tmp_path / "adapt/hf/adapt_report.json").read_text())
    assert report["model_type"] == "olmoe"
