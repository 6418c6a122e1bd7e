"""``most.train.dryrun``: parameter counts, GPU memory and host RAM of the MoST-scale models from
their published configs, base and adapted, no weights loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from most.adapt import adapted_config, plan
from most.layout import TokenLayout
from most.moe.config import ExpertsConfig
from most.stages.stage1 import stage1
from most.testing import run_adapt
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dryrun import adapt_dry_run, dry_run, load_config
from most.train.optim import OptimConfig

DATA = DataConfig(batch_size=4, max_len=2048)

# Published totals / activated parameters (billions). Qwen and Mistral count the input embedding
# table as active; DeepSeek does not (it reads one row per token): ``active_compute``.
PUBLISHED = [
    ("deepseek-v2-lite", 15.7, 2.4, "active_compute"),
    ("mixtral-8x7b-v0.1", 46.7, 12.9, "active"),
    ("qwen3-30b-a3b", 30.5, 3.3, "active"),
]


def adapted(config, n_units: int = 1000, init: str = "split"):
    """The config ``most adapt`` would write for ``config`` with ``n_units`` unit tokens."""
    layout = TokenLayout(
        text_vocab_size=config.vocab_size, n_units=n_units, unit_tokenizer_hash="u"
    )
    experts = ExpertsConfig(init=init)
    report = plan(config, experts, layout.modalities, layout.vocab_size)
    return adapted_config(config, layout, experts), report


@pytest.mark.parametrize(("name", "total_b", "active_b", "key"), PUBLISHED)
def test_published_parameter_counts_base_and_adapted(
    realdata: Path, name: str, total_b: float, active_b: float, key: str
) -> None:
    config = load_config(realdata / "moe_configs" / f"{name}.config.json")
    trainer = TrainerConfig(strategy="fsdp", devices=8, num_nodes=2)
    base = dry_run(config, DATA, trainer, OptimConfig())["params"]
    assert base["total"] / 1e9 == pytest.approx(total_b, rel=0.02)
    assert base[key] / 1e9 == pytest.approx(active_b, rel=0.025)
    # adapted with 1000 units, split init: the same experts, a few new rows and router columns
    cfg, report = adapted(config)
    after = dry_run(cfg, DATA, trainer, OptimConfig())["params"]
    assert after["total"] == report["params_after"]
    assert 0 < after["total"] - base["total"] < 0.002 * base["total"]
    assert after[key] == pytest.approx(base[key], rel=0.002)


def test_upcycle_doubles_experts_not_active_params(realdata: Path) -> None:
    config = load_config(realdata / "moe_configs" / "qwen3-30b-a3b.config.json")
    cfg, _ = adapted(config, init="upcycle")
    base = dry_run(config, DATA, TrainerConfig(), OptimConfig())["params"]
    up = dry_run(cfg, DATA, TrainerConfig(), OptimConfig())["params"]
    assert up["routed_experts"] == 2 * base["routed_experts"]
    assert up["active"] == pytest.approx(base["active"], rel=0.01)  # + router rows, new tokens


@pytest.mark.parametrize("name", ["deepseek-v2-lite", "qwen3-30b-a3b"])
def test_memory_and_host_ram_by_strategy(realdata: Path, name: str) -> None:
    config = load_config(realdata / "moe_configs" / f"{name}.config.json")
    zero2 = TrainerConfig(strategy="deepspeed_stage_2", devices=8, num_nodes=8)
    zero3 = TrainerConfig(strategy="deepspeed_stage_3", devices=8, num_nodes=8)
    fsdp = TrainerConfig(strategy="fsdp", devices=8, num_nodes=8)
    r2, r3, rf = (dry_run(config, DATA, t, OptimConfig()) for t in (zero2, zero3, fsdp))
    total = r2["params"]["total"]
    assert r2["global_batch"] == 4 * 64
    mem2, mem3 = r2["memory_gib_per_gpu"], r3["memory_gib_per_gpu"]
    assert mem2["weights"] == pytest.approx(2 * total / 2**30, rel=0.01)  # bf16, unsharded
    assert mem3["weights"] == pytest.approx(mem2["weights"] / 64, rel=0.01)
    assert rf["memory_gib_per_gpu"]["weights"] < mem2["weights"] / 16  # FSDP shards them too
    # host RAM: bf16 weights once (rank 0) under FSDP, once per rank under DDP and ZeRO
    ram2, ram3, ramf = (r["host_ram_per_node"] for r in (r2, r3, rf))
    assert ramf["weights_gib"] == pytest.approx(2 * total / 2**30, rel=0.01)
    assert ram2["weights_gib"] == ram3["weights_gib"]
    assert ram2["weights_gib"] == pytest.approx(8 * ramf["weights_gib"], rel=0.01)
    assert ramf["total_gib"] < ram2["total_gib"]
    frozen = dry_run(config, DATA, zero2, OptimConfig(train=["embed_tokens"]))
    assert frozen["params"]["trainable"] < r2["params"]["trainable"] / 50
    assert frozen["memory_gib_per_gpu"]["optimizer"] < mem2["optimizer"] / 50


def test_adapt_host_ram_is_one_model_copy(realdata: Path) -> None:
    config = load_config(realdata / "moe_configs" / "deepseek-v2-lite.config.json")
    cfg, report = adapted(config)
    ram = adapt_dry_run(config, cfg, report, 2)
    weights = report["params_after"] * 2 / 2**30
    assert weights < ram["host_ram_gib"] < 1.1 * weights


def test_stage1_dry_run_on_an_adapted_folder(base_dirs, tmp_path: Path, capsys) -> None:
    """An adapted model's config nests the base's under ``text_config``."""
    out = run_adapt(tmp_path, base_dirs["deepseek_v2"])
    trainer = TrainerConfig(strategy="fsdp", devices=2, accelerator="cpu")
    capsys.readouterr()
    stage1(run=tmp_path, init=out, data=DataConfig(), trainer=trainer, dry_run=True)
    report = json.loads(capsys.readouterr().out)
    assert report["model_type"] == "most"
    assert 0 < report["params"]["active"] < report["params"]["total"]
    assert report["host_ram_per_node"]["ranks_loading_weights"] == 1
    assert report["host_ram_per_node"]["training_state_gib"] > 0  # CPU: training state in RAM
