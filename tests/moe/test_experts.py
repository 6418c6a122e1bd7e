"""Grouped dispatch equals a per-expert loop (forward and gradients), skip ids cost nothing; LoRA
attaches to the adapted model."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from most.moe import experts as experts_mod
from most.testing import against_loop, load_adapted, loop_experts, mixed_batch, skip_case


def test_grouped_matches_loop_with_skips():
    m, x, index = skip_case()
    weight = torch.rand(20, 3)
    ours, ref, grads, ref_grads = against_loop(
        m, x, index, weight, [x, m.gate_up_proj, m.down_proj]
    )
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.equal(ours[0], torch.zeros(16))
    for a, b in zip(grads, ref_grads, strict=True):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-4)


class PoisonedGroupedMM(torch.autograd.Function):
    """``grouped_mm`` at its documented worst: rows past ``offs[-1]`` are NaN in the output and in
    the input-gradient (the real kernel leaves them uninitialised, which is NaN now and then)."""

    @staticmethod
    def forward(ctx, x, w, offs):
        ctx.save_for_backward(x, w, offs)
        out = REAL_GROUPED_MM(x, w, offs).clone()
        out[int(offs[-1]) :] = float("nan")
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w, offs = ctx.saved_tensors
        with torch.enable_grad():
            x_, w_ = x.detach().requires_grad_(), w.detach().requires_grad_()
            gx, gw = torch.autograd.grad(REAL_GROUPED_MM(x_, w_, offs), [x_, w_], grad)
        gx = gx.clone()
        gx[int(offs[-1]) :] = float("nan")
        return gx, gw, None


REAL_GROUPED_MM = experts_mod.grouped_mm


def test_skipped_slots_never_leak_garbage(monkeypatch):
    """Top-P's unused slots and null experts (skip ids) get exactly zero output and zero gradient,
    the routing weights' included, even where the kernel leaves those rows as NaN. (Before this was
    masked, a Top-P ablation run went NaN at step 3: NaN gradient x zero weight = NaN.)"""
    monkeypatch.setattr(experts_mod, "grouped_mm", PoisonedGroupedMM.apply)
    m, x, index = skip_case()
    weight = (torch.rand(20, 3) * (index < 6)).requires_grad_()  # skipped slots weigh 0, as Top-P
    out, ref, grads, ref_grads = against_loop(
        m, x, index, weight, [x, weight, m.gate_up_proj, m.down_proj]
    )
    assert torch.allclose(out, ref, atol=1e-5)
    for name, a, b in zip(["x", "weight", "gate_up", "down"], grads, ref_grads, strict=True):
        assert torch.isfinite(a).all(), name
        assert torch.allclose(a, b, atol=1e-4), name
    assert torch.equal(grads[1][index == 6], torch.zeros(int((index == 6).sum())))


def test_lora_attaches_to_attention_and_experts(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
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


def test_cpu_bf16_path_pads_groups_and_matches_loop(monkeypatch):
    """Under CPU bf16 autocast the experts run in bf16 with every expert's rows padded to a multiple
    of CPU_BLOCK (oneDNN is slow on the ragged row counts routing gives); pad rows and skipped slots
    add nothing: the result and every gradient track the fp32 loop to bf16 precision, with no NaN
    even where the kernel poisons rows past the last group."""
    seen = []

    def spy(x, w, offs):
        seen.append((x.dtype, w.dtype, offs.clone()))
        return PoisonedGroupedMM.apply(x, w, offs)

    monkeypatch.setattr(experts_mod, "grouped_mm", spy)
    monkeypatch.setattr(experts_mod, "MAX_PAD_RATIO", 10**9)  # pad this small case too
    monkeypatch.setattr(experts_mod, "cpu_bf16_is_faster", lambda: True)  # a CPU where bf16 pays
    m, x, index = skip_case()
    weight = (torch.rand(20, 3) * (index < 6)).requires_grad_()
    wrt = [x, weight, m.gate_up_proj, m.down_proj]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, index, weight, can_skip=True)
    grads = torch.autograd.grad(out.square().sum(), wrt)
    ref = loop_experts(m, x, index, weight)
    ref_grads = torch.autograd.grad(ref.square().sum(), wrt)
    assert out.dtype == torch.float32 and torch.equal(out[0], torch.zeros(16))
    assert (out - ref).abs().max() <= 0.02 * ref.abs().max()
    for name, a, b in zip(["x", "weight", "gate_up", "down"], grads, ref_grads, strict=True):
        assert torch.isfinite(a).all(), name
        assert (a - b).abs().max() <= 0.03 * b.abs().max(), name
    assert [d for d, _, _ in seen] == [torch.bfloat16] * 2
    sizes = torch.diff(seen[0][2], prepend=torch.zeros(1, dtype=torch.int32))
    real = torch.bincount(index[index < 6], minlength=6)
    block = experts_mod.CPU_BLOCK
    assert torch.equal(sizes.long(), (real + block - 1) // block * block)


def test_cpu_bf16_few_rows_run_ragged_in_the_weights_dtype(monkeypatch):
    """A decoding-sized batch, whose padding would more than double the rows, skips the padded
    bf16 path: ragged groups in the weights' fp32, the same result as without autocast."""
    seen = []

    def spy(x, w, offs):
        seen.append((x.dtype, w.dtype))
        return PoisonedGroupedMM.apply(x, w, offs)

    monkeypatch.setattr(experts_mod, "grouped_mm", spy)
    monkeypatch.setattr(experts_mod, "cpu_bf16_is_faster", lambda: True)
    m, x, index = skip_case()  # 60 slots on 6 experts: padding to 128 rows each would be 12x
    weight = torch.rand(20, 3) * (index < 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, index, weight, can_skip=True)
    assert seen == [(torch.float32, torch.float32)] * 2
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(out, m(x, index, weight, can_skip=True))
    ref = loop_experts(m, x, index, weight)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_cpu_bf16_experts_stay_wide_where_bf16_is_slower(monkeypatch):
    """On a CPU where bf16 measures slower than fp32 (the probe of :mod:`most.cpu`), the experts
    under bf16 autocast run the ragged groups in fp32 even for a large batch."""
    seen = []

    def spy(x, w, offs):
        seen.append(x.dtype)
        return PoisonedGroupedMM.apply(x, w, offs)

    monkeypatch.setattr(experts_mod, "grouped_mm", spy)
    monkeypatch.setattr(experts_mod, "MAX_PAD_RATIO", 10**9)  # padding alone would not decide
    monkeypatch.setattr(experts_mod, "cpu_bf16_is_faster", lambda: False)
    m, x, index = skip_case()
    weight = torch.rand(20, 3) * (index < 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, index, weight, can_skip=True)
    assert seen == [torch.float32] * 2
    assert torch.equal(out, m(x, index, weight, can_skip=True))


def test_compiled_activation_matches_eager_on_every_path(monkeypatch):
    """``compile_activation`` swaps the SiLU gate x routing weight for one compiled loop: the same
    output and gradients as the eager gate on the ragged fp32 path (skip slots included), with
    no skips (the masked static path) and on the padded CPU bf16 path, for row counts it has not
    seen before (one dynamic graph, no recompile per count)."""
    torch._dynamo.reset()
    m, x, index = skip_case()
    weight = (torch.rand(20, 3) * (index < 6)).requires_grad_()
    wrt = [x, weight, m.gate_up_proj, m.down_proj]

    def run(fused: bool, index=index, x=x, autocast: bool = False):
        m.fused = experts_mod._compiled_silu_gate() if fused else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = m(x, index, weight, can_skip=bool((index >= 6).any()))
        return out, torch.autograd.grad(out.square().sum(), wrt)

    full = index.clamp(max=5)
    for case in [dict(), dict(index=full), dict(index=full[:13], x=x[:13])]:
        x_ = case.get("x", x)
        wrt[0] = x_
        (out, grads), (ref, ref_grads) = run(True, **case), run(False, **case)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    wrt[0] = x
    monkeypatch.setattr(experts_mod, "MAX_PAD_RATIO", 10**9)
    monkeypatch.setattr(experts_mod, "cpu_bf16_is_faster", lambda: True)
    (out, grads), (ref, ref_grads) = run(True, autocast=True), run(False, autocast=True)
    torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)
    for a, b in zip(grads, ref_grads, strict=True):
        assert (a - b).abs().max() <= 0.01 * b.abs().max()
    assert m.compile_activation() and m.fused is experts_mod._compiled_silu_gate()


def test_compiled_activation_only_for_plain_silu_gates():
    """Biased, ungated, custom-gated experts and other activations keep their eager gate."""
    from most.moe.experts import GroupedExperts

    assert GroupedExperts(2, 8, 4).compile_activation()
    for m in [
        GroupedExperts(2, 8, 4, bias=True),
        GroupedExperts(2, 8, 4, gated=False),
        GroupedExperts(2, 8, 4, act="gelu"),
        GroupedExperts(2, 8, 4, glu=lambda h: h[:, :4]),
    ]:
        assert not m.compile_activation() and m.fused is None
