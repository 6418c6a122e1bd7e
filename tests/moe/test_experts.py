"""Grouped dispatch equals a per-expert loop (forward and gradients), skip ids cost nothing; LoRA
attaches to the adapted model."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from most.moe.experts import GroupedExperts
from tests.moe.test_adapt import mixed_batch
from tests.moe.test_routing import load


def loop_experts(m: GroupedExperts, x, index, weight):
    """Reference: every token slot through its expert, one at a time."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for i, w in zip(index[t].tolist(), weight[t], strict=True):
            if i == m.num_experts:
                continue
            gate, up = (m.gate_up_proj[i] @ x[t]).chunk(2)
            out[t] = out[t] + w * (m.down_proj[i] @ (m.act_fn(gate) * up))
    return out


def test_grouped_matches_loop_with_skips():
    torch.manual_seed(0)
    m = GroupedExperts(6, 16, 8)
    torch.nn.init.normal_(m.gate_up_proj, std=0.3)
    torch.nn.init.normal_(m.down_proj, std=0.3)
    x = torch.randn(20, 16, requires_grad=True)
    index = torch.randint(0, 7, (20, 3))  # id 6 = skip
    index[0] = 6  # a token served by nobody
    weight = torch.rand(20, 3)
    ours = m(x, index, weight, can_skip=True)
    grads = torch.autograd.grad(ours.square().sum(), [x, m.gate_up_proj, m.down_proj])
    ref = loop_experts(m, x, index, weight)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, m.gate_up_proj, m.down_proj])
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.equal(ours[0], torch.zeros(16))
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-4)


def test_lora_attaches_to_attention_and_experts(base_dirs, tmp_path):
    model, layout = load(tmp_path, base_dirs, "qwen3_moe")
    ids = mixed_batch(layout)
    with torch.no_grad():
        before = model(ids).logits
    cfg = LoraConfig(
        r=4,
        target_modules=["q_proj", "v_proj"],
        target_parameters=["experts.gate_up_proj", "experts.down_proj"],
    )
    peft_model = get_peft_model(model, cfg)
    out = peft_model(ids, labels=ids)
    assert torch.allclose(out.logits, before, atol=1e-6)  # LoRA B starts at zero
    out.loss.backward()
    names = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("experts" in n and "lora_B" in n for n in names)
    assert any("q_proj" in n and "lora_B" in n for n in names)
    expert_b = next(p for n, p in peft_model.named_parameters() if "experts" in n and "lora_B" in n)
    assert expert_b.grad is not None and expert_b.grad.abs().sum() > 0
