"""Dynamic capacity: Top-P routing with null experts, trained on purpose, and the compute it skips."""

from __future__ import annotations

import pytest
import torch

import most.moe.experts as experts_mod
from most.moe.aux import null_balance, routing_entropy
from most.moe.block import ModalityMoE
from most.moe.config import ExpertsConfig
from most.testing import load_adapted, loop_experts, mixed_batch, skip_case
from most.testing.tiny_moe import adapt_tiny, tiny_base


def top_p_model(**experts):
    settings = dict(router="top_p", n_null=2, max_k=4, top_p=0.7) | experts
    return adapt_tiny(tiny_base("qwen3_moe"), **settings)


def routing_stats(model) -> dict[str, float]:
    """Mean over MoE layers of experts_per_token and null_share per modality, on held-out ids."""
    model.most_telemetry(enable=True)
    with torch.no_grad():
        model(mixed_batch(model.layout, batch=8, seed=99))
    layers = model.most_telemetry_summary()["layers"].values()
    model.most_telemetry(enable=False)
    out = {}
    for key in ("experts_per_token", "null_share"):
        for m in ("text", "speech"):
            out[f"{m}.{key}"] = sum(v[m][key] for v in layers) / len(layers)
    return out


def trained(steps: int = 40, **experts) -> dict[str, float]:
    """Routing stats of the tiny Top-P model after ``steps`` AdamW steps on mixed batches."""
    model = top_p_model(**experts).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(steps):
        ids = mixed_batch(model.layout, batch=8, seed=step)
        opt.zero_grad()
        model(ids, labels=ids).loss.backward()
        opt.step()
    return routing_stats(model.eval())


def test_regularisers_are_config_keys_with_defaults():
    cfg = ExpertsConfig(router="top_p")
    assert cfg.null_weight > 0 and cfg.entropy_weight > 0
    assert top_p_model().routing.null_coef == cfg.null_weight
    with pytest.raises(ValueError, match="entropy_alpha"):
        ExpertsConfig(entropy_alpha=-1.0)
    model = top_p_model(null_alpha=0.25, entropy_alpha=0.5)
    assert (model.routing.null_coef, model.routing.entropy_coef) == (0.25, 0.5)


def test_adapt_stage_carries_the_regularisers_into_the_saved_model(base_dirs, tmp_path):
    """``most adapt``'s experts section -> the saved config -> the reloaded model's routing state
    (what stage 1 trains with)."""
    model, _ = load_adapted(
        tmp_path, base_dirs, router="top_p", n_null=2, null_alpha=0.05, entropy_alpha=0.0
    )
    assert (model.routing.null_coef, model.routing.entropy_coef) == (0.05, 0.0)
    assert model.config.experts["null_alpha"] == 0.05


def test_regularisers_enter_the_training_loss():
    """The model's loss is LM + the per-layer mean of the weighted terms: here exactly
    0.5 x null-aware balance + 0.25 x routing entropy of each layer's routing."""
    model = top_p_model(aux_alpha=0.0, null_alpha=0.5, entropy_alpha=0.25)
    ids = mixed_batch(model.layout, batch=2)
    expected = []

    def recompute(block, args):
        x = args[0].reshape(-1, args[0].shape[-1])
        r = block.router(x, model.routing.modality.reshape(-1))
        t = args[0].shape[1]
        expected.append(0.5 * null_balance(r, None, t) + 0.25 * routing_entropy(r, None))

    for block in (m for m in model.modules() if isinstance(m, ModalityMoE)):
        block.register_forward_pre_hook(recompute)
    with torch.no_grad():
        out = model(ids, labels=ids)
    lm = torch.nn.functional.cross_entropy(out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    assert len(expected) == 2
    assert torch.allclose(out.aux_loss, torch.stack(expected).mean(), atol=1e-6)
    assert torch.allclose(out.loss, lm + out.aux_loss, atol=1e-5)
    assert out.aux_loss > 0.5 * 0.99  # the balance is >= 1 when picks follow probabilities
    off = top_p_model(aux_alpha=0.0, null_alpha=0.0, entropy_alpha=0.0)
    with torch.no_grad():
        assert off(ids, labels=ids).aux_loss == 0.0


def test_gradients_reach_null_expert_rows():
    """Null experts add nothing to the output, yet their router rows learn: the regularisers
    (and the softmax they share with the real experts) pass gradients to them."""
    model = top_p_model(aux_alpha=0.0).train()
    ids = mixed_batch(model.layout, batch=4)
    model(ids, labels=ids).aux_loss.backward()  # the regularisers alone
    for block in (m for m in model.modules() if isinstance(m, ModalityMoE)):
        grad = block.router.weight.grad
        e = block.router.num_experts
        assert grad[e:].abs().sum() > 0, "null rows get no gradient"
        assert grad[:e].abs().sum() > 0


def test_null_balance_asks_for_the_null_share():
    """Balanced means each of the Eg + n_null members takes an equal share of the picks."""
    model = top_p_model()
    block = next(m for m in model.modules() if isinstance(m, ModalityMoE))
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    r = block.router(x, torch.zeros(64, dtype=torch.long))
    assert r.null_hits.sum() == r.n_null_picks.sum()
    assert torch.allclose((r.probs.sum(-1) + r.null_probs.sum(-1)), torch.ones(64), atol=1e-5)
    # picks follow the probabilities, so f and P rise together: the sum is >= 1 (Chebyshev)
    assert null_balance(r, None, 64) >= 1.0 - 1e-4
    assert routing_entropy(r, None) <= torch.log(torch.tensor(6.0)) + 1e-5


def test_training_learns_the_number_of_experts():
    """A few dozen steps of the tiny model: the LM loss alone lets null experts fall out of use;
    the null-aware balance keeps them taking a share of the picks; the entropy term makes tokens
    reach p with fewer experts."""
    plain = trained(null_alpha=0.0, entropy_alpha=0.0)
    balanced = trained(null_alpha=0.1, entropy_alpha=0.0)
    sharp = trained(null_alpha=0.0, entropy_alpha=0.1)
    for m in ("text", "speech"):
        assert balanced[f"{m}.null_share"] > plain[f"{m}.null_share"] + 0.1
        assert sharp[f"{m}.experts_per_token"] < plain[f"{m}.experts_per_token"] - 0.2


def test_skipped_slots_feed_no_rows_to_the_expert_matmuls(monkeypatch):
    """On the CPU only live (token, expert) slots reach the grouped matmuls: as many rows as real
    experts picked, not tokens x slots; the result and gradients match a per-slot loop."""
    seen = []

    def spy(x, w, offs):
        seen.append((x.shape[0], int(offs[-1])))
        return torch.nn.functional.grouped_mm(x, w, offs=offs)

    monkeypatch.setattr(experts_mod, "grouped_mm", spy)
    m, x, index = skip_case()  # 6 experts, 20 tokens x 3 slots, id 6 = skip
    weight = (torch.rand(20, 3) * (index < 6)).requires_grad_()
    live = int((index < 6).sum())
    assert live < index.numel()
    out = m(x, index, weight, can_skip=True)
    assert seen == [(live, live)] * 2
    ref = loop_experts(m, x, index, weight)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    wrt = [x, weight, m.gate_up_proj, m.down_proj]
    ours = torch.autograd.grad(out.square().sum(), wrt)
    theirs = torch.autograd.grad(ref.square().sum(), wrt)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    seen.clear()
    none = m(x, torch.full_like(index, 6), torch.zeros(20, 3), can_skip=True)  # all skipped
    assert seen == [(0, 0)] * 2 and torch.equal(none, torch.zeros_like(none))


def test_top_p_block_feeds_only_live_slots_to_the_experts(monkeypatch):
    """The whole block: where null experts win, the tokens' slots never reach the experts; the
    rows the matmuls see are the real picks, fewer than the tokens' top-k would be."""
    model = top_p_model()
    block = next(m for m in model.modules() if isinstance(m, ModalityMoE))
    e = block.router.num_experts
    with torch.no_grad():
        block.router.weight[e:] = 0.0
        block.router.weight[e:, 0] = 50.0  # nulls win for x[:, 0] > 0
    x = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(0))
    x[0, :8, 0] = 5.0
    x[0, 8:, 0] = -5.0
    modality = torch.zeros(1, 16, dtype=torch.long)
    rows = []

    def spy(x, w, offs):
        rows.append(x.shape[0])
        return torch.nn.functional.grouped_mm(x, w, offs=offs)

    monkeypatch.setattr(experts_mod, "grouped_mm", spy)  # after adapt's own probe runs
    with torch.no_grad():
        live = int((block.router(x[0], modality[0]).index < e).sum())
        block(x, modality=modality)
    assert rows == [live, live]
    assert 8 <= live < 16 * block.router.base.top_k  # the first 8 tokens cost nothing


def test_benchmark_reports_the_issue_keys(tmp_path):
    """``benchmarks/dynamic_capacity.py`` at toy size: both variants trained and timed, the keys
    the issue asks for, FLOPs from the live slots the timing saw."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "dynamic_capacity.py"
    spec = importlib.util.spec_from_file_location("dynamic_capacity", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    small = "--hidden 32 --inter 16 --steps 5 --batch 64 --eval-tokens 64 --time-tokens 64 --reps 1"
    r = bench.main(bench.parse([*small.split(), "--out", str(tmp_path / "r.json")]))
    assert set(r["experts_per_token"]) == {"text", "speech"}
    assert 0 <= min(r["experts_per_token"].values()) <= max(r["experts_per_token"].values()) <= 4
    for key in ("layer_ms_topk", "layer_ms_top_p", "expert_flops_topk", "expert_flops_top_p"):
        assert len(r[key]) == 2 and all(v > 0 for v in r[key]), key
    assert r["expert_flops_topk"][0] == 64 * 2 * 6 * 32 * 16  # 64 tokens x top-2 x 6HI
    ratio = sum(r["layer_ms_topk"]) / sum(r["layer_ms_top_p"])  # of the rounded times
    assert r["speedup"] == pytest.approx(ratio, rel=0.02)
    assert isinstance(r["equal_quality"], bool)
