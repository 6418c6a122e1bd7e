"""``most.train.dryrun``: parameter counts and memory of the MoST-scale models from their published
configs, no weights loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.dryrun import dry_run, load_config
from most.train.optim import OptimConfig


@pytest.mark.parametrize(
    ("name", "total_b", "active_b"),
    [("deepseek-v2-lite", 15.7, 2.66), ("qwen3-30b-a3b", 30.5, 3.35)],
)
def test_parameter_counts_and_memory(
    realdata: Path, name: str, total_b: float, active_b: float
) -> None:
    config = load_config(realdata / "moe_configs" / f"{name}.config.json")
    zero2 = TrainerConfig(strategy="deepspeed_stage_2", devices=8, num_nodes=8)
    zero3 = TrainerConfig(strategy="deepspeed_stage_3", devices=8, num_nodes=8)
    data = DataConfig(batch_size=4, max_len=2048)
    r2 = dry_run(config, data, zero2, OptimConfig())
    assert r2["params"]["total"] / 1e9 == pytest.approx(total_b, rel=0.02)
    assert r2["params"]["active"] / 1e9 == pytest.approx(active_b, rel=0.02)
    assert r2["global_batch"] == 4 * 64
    mem2, mem3 = (
        r2["memory_gib_per_gpu"],
        dry_run(config, data, zero3, OptimConfig())["memory_gib_per_gpu"],
    )
    assert mem2["weights"] == pytest.approx(2 * total_b * 1e9 / 2**30, rel=0.02)  # bf16, unsharded
    assert mem3["weights"] == pytest.approx(mem2["weights"] / 64, rel=0.01)
    frozen = dry_run(config, data, zero2, OptimConfig(train=["embed_tokens"]))
    assert frozen["params"]["trainable"] < r2["params"]["trainable"] / 50
    assert frozen["memory_gib_per_gpu"]["optimizer"] < mem2["optimizer"] / 50
