"""``TrainerConfig.resolved_precision``: ``auto`` picks bf16-mixed where the CPU multiplies bf16
natively (AMX or AVX512-BF16) and a bf16 step measures faster than fp32 there."""

from __future__ import annotations

import math

import pytest
import torch

from most import cpu as cpu_mod
from most.train.config import TrainerConfig


def test_auto_precision_needs_native_bf16_and_a_faster_probe(monkeypatch, capsys) -> None:
    cpu = TrainerConfig(accelerator="cpu")
    for amx, avx512_bf16, times, want in (
        (True, False, (1.0, 0.5), "bf16-mixed"),
        (False, True, (1.0, 0.8), "bf16-mixed"),
        (False, True, (1.0, 1.6), "32-true"),  # AVX512-BF16 without AMX, bf16 slower: fp32
        (True, True, (1.0, 0.95), "32-true"),  # within the margin: fp32
        (False, False, (1.0, 0.5), "32-true"),  # no native bf16: not even probed
    ):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(cpu_mod, "bf16_probe", lambda t=times: t)
        cpu_mod.bf16_timings.cache_clear()
        assert cpu.resolved_precision() == want, (amx, avx512_bf16, times)
        err = capsys.readouterr().err
        assert (f"auto -> {want}" in err) == (amx or avx512_bf16), err
    cpu_mod.bf16_timings.cache_clear()
    assert TrainerConfig(accelerator="cpu", precision="16-mixed").resolved_precision() == "16-mixed"
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # a torch without the probes
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert not cpu_mod.cpu_has_bf16()
    cpu_mod.bf16_timings.cache_clear()


def test_bf16_probe_times_both_precisions() -> None:
    fp32, bf16 = cpu_mod.bf16_probe(tokens=256, width=64, rounds=2)
    assert all(0 < t < 5 and math.isfinite(t) for t in (fp32, bf16)), (fp32, bf16)


def test_strategy_settings_checked() -> None:
    with pytest.raises(ValueError, match=r"sharded_checkpoint needs trainer\.strategy=fsdp"):
        TrainerConfig(strategy="ddp", sharded_checkpoint=True)
    with pytest.raises(ValueError, match="'fsdp2' is not one of"):
        TrainerConfig(strategy="fsdp2")
    assert TrainerConfig(strategy="fsdp", sharded_checkpoint=True).sharded_checkpoint


def test_bf16_probe_runs_inside_a_no_grad_forward() -> None:
    """The experts may ask first from inside a decoding model's inference-mode forward."""
    with torch.inference_mode():
        fp32, bf16 = cpu_mod.bf16_probe(tokens=128, width=32, rounds=1)
    assert fp32 > 0 and bf16 > 0
