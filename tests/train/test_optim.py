"""What trains: LoRA alone trains only adapters, freeze/train regexes, new-embedding rows, per-group LRs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from most.stages.stage1 import stage1
from most.testing import TINY_MODEL
from most.train.config import TrainerConfig
from most.train.datamodule import DataConfig
from most.train.optim import (
    LoraConfig,
    OptimConfig,
    apply_lora,
    param_groups,
    select_trainable,
    warmup_cosine,
)

SHORT = TrainerConfig(max_steps=4, val_every=0, ckpt_every=4, progress=False)
DATA = DataConfig(batch_size=4, max_len=48)


def tiny():
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(64, 0))


def trained_module(run: Path, **kw):
    """Run stage1 and return (weights before, LightningModule state after) from the checkpoint."""
    from transformers import AutoModelForCausalLM

    # state_dict of the loaded model, not the file: transformers renames expert weights on load
    before = AutoModelForCausalLM.from_pretrained(str(run / "adapt" / "hf")).state_dict()
    stage1(run=run, data=DATA, trainer=SHORT, **kw)
    ckpt = torch.load(run / "stage1" / "ckpt" / "last.ckpt", weights_only=True)
    return before, ckpt["state_dict"]


def test_lora_without_rows_and_routers_trains_only_adapters(speech_run: Path) -> None:
    """Stage 1 with LoRA alone (tests/train/test_lora.py covers the rows and routers): the base
    weights stay, metrics.json counts the adapters, the export has them merged."""
    import json

    lora = LoraConfig(enabled=True, r=4, alpha=8, train_new_rows=False, train_routers=False)
    before, after = trained_module(
        speech_run, lora=lora, optim=OptimConfig(lr=1e-2, warmup_steps=1)
    )
    adapters = {k: v for k, v in after.items() if "lora_" in k}
    assert adapters
    metrics = json.loads((speech_run / "stage1" / "metrics.json").read_text())
    assert metrics["trainable_params"] == sum(v.numel() for v in adapters.values())
    assert any(not torch.all(v == 0) for k, v in adapters.items() if "lora_B" in k)  # B starts at 0
    for k, v in after.items():
        if "lora_" in k:
            continue
        name = k.removeprefix("model.base_model.model.").replace(".base_layer", "")
        assert torch.equal(v, before[name]), f"{name} changed under LoRA"
    # the exported folder has the adapters merged in: plain transformers loads it, weights moved
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(speech_run / "stage1" / "hf"))
    q = "lm.model.layers.0.self_attn.q_proj.weight"  # the adapted MostForCausalLM holds the base as lm
    assert not torch.equal(merged.state_dict()[q], before[q])


def test_train_regex_and_new_embedding_rows(speech_run: Path) -> None:
    from most.layout import TokenLayout

    layout = TokenLayout.load(speech_run / "adapt" / "hf")
    optim = OptimConfig(
        lr=1e-2,
        warmup_steps=1,
        train=["embed_tokens", r"\.experts\."],
        new_embedding_rows_only=True,
    )
    before, after = trained_module(speech_run, optim=optim)
    emb = after["model.lm.model.embed_tokens.weight"]  # MostForCausalLM holds the base as lm
    old = layout.text_vocab_size
    assert torch.equal(emb[:old], before["lm.model.embed_tokens.weight"][:old])
    assert not torch.equal(emb[old:], before["lm.model.embed_tokens.weight"][old:])
    for k, v in after.items():
        name = k.removeprefix("model.")
        moved = not torch.equal(v, before[name])
        assert moved == any(s in name for s in (".experts.", "embed_tokens", "lm_head")), name


def test_select_trainable_and_lr_groups() -> None:
    model = tiny()
    cfg = OptimConfig(lr=1.0, freeze=["layers\\.1\\."], lr_groups={r"mlp\.gate\.": 0.1})
    names = select_trainable(model, cfg)
    assert names and not any("layers.1." in n for n in names)
    groups = param_groups(model, cfg)
    router = [g for g in groups if g["lr_mult"] == 0.1]
    assert router and all(p.shape[0] == TINY_MODEL.num_experts for g in router for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(names)
    with pytest.raises(ValueError, match="no trainable"):
        select_trainable(tiny(), OptimConfig(train=["nothing_matches"]))
    assert len(apply_lora(tiny(), LoraConfig(enabled=True)).peft_config) == 1


def test_warmup_cosine_schedule() -> None:
    lr = [warmup_cosine(s, 10, 100, 0.1) for s in range(100)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)
    assert max(lr) == pytest.approx(1.0) and lr[-1] == pytest.approx(0.1, abs=1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lr[10:]))


def test_router_telemetry_scalars() -> None:
    from most.train.callbacks import telemetry_scalars

    per = {
        "text": {
            "tokens": 10,
            "load": [5, 5, 10],
            "entropy": 1.0,
            "experts_per_token": 2.0,
            "null_share": 0.0,
        },
        "speech": {
            "tokens": 0,
            "load": [0, 0, 0],
            "entropy": 0.0,
            "experts_per_token": 0.0,
            "null_share": 0.0,
        },
    }
    out = telemetry_scalars({"modalities": ["text", "speech"], "layers": {"0": per, "1": per}})
    assert out["text/load_imbalance"] == pytest.approx(1.5)
    assert out["text/experts_per_token"] == 2.0
    assert not any(k.startswith("speech/") for k in out)  # no speech tokens: nothing to report


def test_stage_progress_line_has_pace_and_eta() -> None:
    from most.train.callbacks import StageProgress

    bar = StageProgress("stage1", max_steps=100, max_time_min=None)
    metrics = {"train/loss_asr": 1.5, "train/loss_tts": 3.25, "tok_s": 2900.0}
    line = bar.line(step=25, elapsed=60.0, metrics=metrics)
    # 25 steps in 60 s -> 75 more steps take 180 s
    assert "step 25/100 (25%)" in line and "ETA 3:00" in line and "elapsed 1:00" in line
    assert "asr 1.500" in line and "tts 3.250" in line and "2,900 tok/s" in line
    capped = StageProgress("base", max_steps=100, max_time_min=2.0)
    assert "ETA 1:00" in capped.line(step=25, elapsed=60.0, metrics={})  # the time cap is sooner
    assert "ETA ?" in bar.line(step=0, elapsed=0.0, metrics={})


def test_non_finite_loss_stops_before_the_update() -> None:
    """A diverged step raises (naming the step and the batch's tasks) instead of letting the
    optimizer write NaN into every weight and training on for hundreds of steps."""
    from most.data.collate import pad_batch
    from most.data.prompts import IGNORE, Example
    from most.train.module import CausalLMModule

    module = CausalLMModule(tiny(), OptimConfig(), total_steps=4)
    exs = [Example(list(range(1, 9)), [IGNORE] * 3 + list(range(4, 9)), "asr")] * 2
    batch = pad_batch(exs, pad_id=0, max_len=16)
    assert torch.isfinite(module.training_step(batch, 0))
    with torch.no_grad():
        module.model.lm_head.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"step 0 \(batch tasks: asr\)"):
        module.training_step(batch, 0)


def test_bf16_mixed_on_the_cpu_trains_with_the_fused_adamw_and_clips() -> None:
    """Lightning refuses to clip for a fused optimizer under autocast; bf16 has no loss scaler, so
    the module clips itself and the CPU keeps the fused kernel."""
    import lightning as L

    from most.data.collate import pad_batch
    from most.data.prompts import IGNORE, Example
    from most.train.module import CausalLMModule

    norms: list[float] = []

    class Recorded(CausalLMModule):
        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
            assert optimizer.defaults["fused"] is True
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    exs = [Example(list(range(1, 9)), [IGNORE] * 3 + list(range(4, 9)), "asr")] * 2
    batch = pad_batch(exs, pad_id=0, max_len=16)
    for clip in (1e-3, 0.0):
        norms.clear()
        trainer = L.Trainer(
            accelerator="cpu", precision="bf16-mixed", gradient_clip_val=clip or None, max_steps=2,
            logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False,
        )  # fmt: skip
        loader = torch.utils.data.DataLoader([batch, batch], batch_size=None)
        trainer.fit(Recorded(tiny(), OptimConfig(), total_steps=2), loader)
        assert len(norms) == 2
        if clip:
            assert norms == pytest.approx([clip, clip], rel=1e-3)
        else:
            assert min(norms) > 10 * 1e-3  # unclipped, the same step's gradient is much larger


def test_a_batch_without_answer_tokens_still_backpropagates() -> None:
    from most.train.module import answer_nll, example_mean

    logits = torch.randn(2, 6, 10, requires_grad=True)
    batch = {
        "labels": torch.full((2, 6), -100),
        "position_ids": torch.arange(6).repeat(2, 1),
        "task_ids": torch.zeros(2, 6, dtype=torch.long),
    }
    loss = example_mean(answer_nll(logits, batch), batch)
    loss.backward()
    assert float(loss) == 0.0 and logits.grad is not None and not logits.grad.any()
