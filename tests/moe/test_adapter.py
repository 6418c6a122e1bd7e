"""The audio adapters (:mod:`most.moe.adapter`): shapes, routing, load balance, matched size."""

from __future__ import annotations

import pytest
import torch

from most.moe.adapter import (
    AdapterConfig,
    AudioAdapter,
    SparseFFN,
    adapter_lengths,
    init_adapter_weights,
    stack_frames,
)
from most.testing.models import loop_experts


def build(kind: str = "moe", **kw) -> AudioAdapter:
    torch.manual_seed(0)
    cfg = AdapterConfig(kind=kind, expert_size=16, **kw)
    adapter = AudioAdapter(cfg, 10, 32)
    for m in adapter.modules():
        init_adapter_weights(m, std=0.2)
    return adapter.eval()


def test_stack_frames_shapes_and_mask():
    feats = torch.arange(2 * 7 * 3, dtype=torch.float).view(2, 7, 3)
    mask = torch.tensor([[True] * 7, [True] * 5 + [False] * 2])
    x, out = stack_frames(feats, mask, 3)
    assert x.shape == (2, 3, 9)
    assert out.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(x[0, 0], feats[0, :3].reshape(-1))
    # the tail of a stack is zero: padding frames and the frames past F
    assert torch.equal(x[1, 1, 6:], torch.zeros(3))
    assert torch.equal(x[0, 2, 3:], torch.zeros(6))
    assert adapter_lengths(torch.tensor([7, 5]), 3).tolist() == [3, 2]


@pytest.mark.parametrize("kind", ["moe", "dense"])
def test_shapes_and_batch_independence(kind):
    adapter = build(kind, stack=2)
    feats = torch.randn(3, 9, 10)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 5:] = False
    y, out = adapter(feats, mask)
    assert y.shape == (3, 5, 32) and out.sum(1).tolist() == [5, 3, 5]
    alone, _ = adapter(feats[1:2, :5], None)
    torch.testing.assert_close(y[1, :3], alone[0], atol=1e-5, rtol=1e-5)


def test_routing_is_top_k_of_distinct_experts_with_normalised_weights():
    adapter = build("moe", n_experts=8, top_k=3)
    adapter(torch.randn(2, 16, 10))
    r = adapter.ffn.last_routing
    assert r.index.shape == (2 * 4, 3)
    assert all(len(set(row)) == 3 for row in r.index.tolist())
    assert int(r.index.max()) < 8
    torch.testing.assert_close(r.weight.sum(-1), torch.ones(8))
    # the chosen experts are the k most probable ones
    best = r.probs.topk(3, dim=-1).indices.sort(-1).values
    assert torch.equal(best, r.index.sort(-1).values)


def test_sparse_ffn_matches_a_per_token_loop():
    adapter = build("moe", n_experts=4, top_k=2, n_shared=1)
    ffn: SparseFFN = adapter.ffn
    x = torch.randn(12, 32)
    y = ffn(x)
    r = ffn.last_routing
    ref = loop_experts(ffn.experts, x, r.index, r.weight) + ffn.shared[0](x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_shared_experts_see_every_frame():
    """With the routed experts zeroed, the FFN output is the shared experts' alone, on every frame."""
    adapter = build("moe", n_shared=2)
    with torch.no_grad():
        adapter.ffn.experts.down_proj.zero_()
    x = torch.randn(5, 32)
    ref = adapter.ffn.shared[0](x) + adapter.ffn.shared[1](x)
    assert ref.abs().sum(-1).gt(0).all()
    torch.testing.assert_close(adapter.ffn(x), ref)


def test_load_balance_loss_is_high_when_collapsed_and_training_lowers_it():
    adapter = build("moe", n_experts=4, top_k=1, aux_alpha=1.0, stack=1).train()
    with torch.no_grad():  # every frame prefers expert 0
        adapter.ffn.router.weight.zero_()
        adapter.ffn.router.weight[0] = 0.1
        adapter.norm.bias.fill_(1.0)  # normalised frames sum to 0: the bias gives them a direction
    feats = torch.randn(4, 32, 10).abs()
    adapter(feats)
    collapsed = float(adapter.aux_loss.detach())
    r = adapter.ffn.last_routing
    assert (r.index == 0).float().mean() > 0.9
    assert collapsed > 2.5  # E * f0 * P0 with f0 ~ 1, P0 ~ 1 -> about E = 4
    opt = torch.optim.Adam(adapter.ffn.router.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        adapter(feats)
        adapter.aux_loss.backward()
        opt.step()
    adapter(feats)
    assert float(adapter.aux_loss.detach()) < 0.5 * collapsed
    assert len(set(adapter.ffn.last_routing.index.flatten().tolist())) >= 3


def test_padding_frames_do_not_count_in_the_balance():
    adapter = build("moe", aux_alpha=1.0)
    feats = torch.randn(2, 8, 10)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 4:] = False
    adapter(feats, mask)
    with_pad = float(adapter.aux_loss)
    garbage = feats.clone()
    garbage[1, 4:] = 100.0  # masked frames are zeroed before the adapter sees them
    adapter(garbage, mask)
    assert float(adapter.aux_loss) == pytest.approx(with_pad)


def test_dense_baseline_matches_active_parameters():
    moe, dense = build("moe", n_experts=8, top_k=2, n_shared=1), build("dense", top_k=2, n_shared=1)
    router = moe.ffn.router.weight.numel()
    assert moe.active_params() - router == dense.active_params()
    total = sum(p.numel() for p in moe.parameters())
    assert total > dense.active_params() + 5 * 3 * 32 * 16  # 6 idle experts per frame


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="kind"):
        AdapterConfig(kind="conv")
    with pytest.raises(ValueError, match="top_k"):
        AdapterConfig(kind="moe", n_experts=2, top_k=3)
    with pytest.raises(ValueError, match="widths"):
        AudioAdapter(AdapterConfig(kind="moe"), 0, 32)
    with pytest.raises(ValueError, match="none"):
        AudioAdapter(AdapterConfig(), 10, 32)
    with pytest.raises(ValueError, match="10"):
        build()(torch.randn(1, 4, 7))


def test_gradients_reach_router_experts_and_projection():
    adapter = build("moe").train()
    y, _ = adapter(torch.randn(2, 12, 10))
    (y.square().mean() + adapter.aux_loss).backward()
    for name in ("in_proj.weight", "ffn.router.weight", "ffn.experts.gate_up_proj"):
        grad = dict(adapter.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
