"""``TrainerConfig.resolved_precision``: ``auto`` picks bf16-mixed where the CPU multiplies bf16
natively (AMX or AVX512-BF16)."""

from __future__ import annotations

import pytest
import torch

from most.train import config as config_mod
from most.train.config import TrainerConfig


def test_auto_precision_follows_native_bf16(monkeypatch) -> None:
    cpu = TrainerConfig(accelerator="cpu")
    for amx, avx512_bf16, want in (
        (True, False, "bf16-mixed"),
        (False, True, "bf16-mixed"),
        (False, False, "32-true"),
    ):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert cpu.resolved_precision() == want, (amx, avx512_bf16)
    assert TrainerConfig(accelerator="cpu", precision="16-mixed").resolved_precision() == "16-mixed"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probes
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not config_mod.cpu_has_bf16()


def test_strategy_settings_checked() -> None:
    with pytest.raises(ValueError, match=r"sharded_checkpoint needs trainer\.strategy=fsdp"):
        TrainerConfig(strategy="ddp", sharded_checkpoint=True)
    with pytest.raises(ValueError, match="'fsdp2' is not one of"):
        TrainerConfig(strategy="fsdp2")
    assert TrainerConfig(strategy="fsdp", sharded_checkpoint=True).sharded_checkpoint
