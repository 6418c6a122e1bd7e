"""Router semantics: group masking, MoST compatibility, Top-P, aux losses, telemetry."""

from __future__ import annotations

import json

import pytest
import torch

from most.moe.block import ModalityMoE
from most.testing import TEXT_VOCAB, load_adapted, mixed_batch
from most.testing.tiny_moe import adapt_tiny, tiny_base


def blocks(model) -> list[ModalityMoE]:
    return [m for m in model.modules() if isinstance(m, ModalityMoE)]


@pytest.mark.parametrize("router", ["modality", "most_compat", "top_p"])
@pytest.mark.parametrize("arch", ["qwen3_moe", "deepseek_v3"])
def test_tokens_only_reach_their_group(arch, router, base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, arch, router=router)
    model.most_telemetry(enable=True)
    with torch.no_grad():
        model(mixed_batch(layout, batch=3))
    summary = model.most_telemetry_summary()
    assert set(summary["layers"]) == {str(b.layer_idx) for b in blocks(model)}
    for per in summary["layers"].values():
        eg = len(per["text"]["load"]) // 2
        assert sum(per["speech"]["load"][:eg]) == 0 and sum(per["speech"]["load"][eg:]) > 0
        assert sum(per["text"]["load"][eg:]) == 0 and sum(per["text"]["load"][:eg]) > 0
        assert per["speech"]["tokens"] == 3 * 7  # <|begin_of_audio|> is speech too


def reference_most_block(
    block: ModalityMoE, x: torch.Tensor, modality: torch.Tensor
) -> torch.Tensor:
    """MoST semantics written from the paper's description, one token and one expert at a time:
    fp32 softmax over all experts, zero outside the token's group, greedy top-k, no renorm."""
    e = block.router.num_experts
    eg = e // 2
    k = block.router.base.top_k
    gate_up, down = block.experts.gate_up_proj, block.experts.down_proj
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        probs = torch.softmax((x[t].float() @ block.router.weight[:e].float().T), dim=-1)
        in_group = torch.zeros(e, dtype=torch.bool)
        in_group[modality[t] * eg : (modality[t] + 1) * eg] = True
        probs = torch.where(in_group, probs, torch.zeros_like(probs))
        weights, experts = probs.topk(k)
        for w, i in zip(weights, experts, strict=True):
            gate, up = (gate_up[i] @ x[t]).chunk(2)
            out[t] += w * (down[i] @ (torch.nn.functional.silu(gate) * up))
    return out


def test_most_compat_matches_reference(base_dirs, tmp_path):
    model, _ = load_adapted(tmp_path, base_dirs, "qwen3_moe", router="most_compat")
    block = blocks(model)[0]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 10, 32, generator=g)
    modality = torch.tensor([[0, 1, 0, 0, 1, 1, 1, 0, 1, 0]])
    with torch.no_grad():
        ours = block(x, modality=modality)[0]
        ref = reference_most_block(block, x[0], modality[0])
    assert (ours - ref).abs().max() <= 1e-5
    # and it is not the renormalised top-k: weights sum to less than 1
    r = block.router(x[0], modality[0])
    assert (r.weight.sum(-1) < 1).all()


def test_most_compat_multiplies_in_routed_scaling_factor():
    """MoST's gate multiplies its weights by the base's routed_scaling_factor (DeepSeek-V2: 16)."""
    model = adapt_tiny(tiny_base("deepseek_v2", routed_scaling_factor=16.0), router="most_compat")
    block = blocks(model)[0]
    assert block.router.base.scale == 16.0  # read from the config, checked against the base gate
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 10, 32, generator=g)
    modality = torch.tensor([[0, 1, 0, 0, 1, 1, 1, 0, 1, 0]])
    with torch.no_grad():
        r = block.router(x[0], modality[0])
        ours = block(x, modality=modality)[0] - block.shared_experts(x[0])  # routed part
        ref = reference_most_block(block, x[0], modality[0])
    e, eg = block.router.num_experts, len(block.router.groups[0])
    probs = torch.softmax(x[0] @ block.router.weight[:e].T, dim=-1)
    own = probs.view(10, 2, eg)[torch.arange(10), modality[0]]
    assert torch.allclose(r.weight, 16.0 * own.topk(2).values, atol=1e-5)
    assert (r.weight.sum(-1) > 1).all()  # unscaled MoST weights sum to less than 1
    assert (ours - 16.0 * ref).abs().max() <= 1e-4


def test_aux_loss_ignores_padding(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
    ids = mixed_batch(layout, batch=2)
    mask = torch.ones_like(ids)
    mask[1, -4:] = 0  # right padding on the second sequence
    other = ids.clone()
    other[1, -4:] = layout.units_to_ids(
        torch.tensor([1, 2, 3, 4])
    )  # different tokens under the pad
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a = model(ids, attention_mask=mask, labels=labels).aux_loss
        b = model(other, attention_mask=mask, labels=labels).aux_loss
        c = model(other, attention_mask=torch.ones_like(ids), labels=labels).aux_loss
    assert torch.allclose(a, b, atol=1e-7)
    assert not torch.allclose(b, c, atol=1e-7)  # the same tokens do count once unmasked


def test_aux_loss_in_total_loss_and_z_loss(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe", aux_alpha=0.5, z_loss=0.1)
    ids = mixed_batch(layout)
    with torch.no_grad():
        out = model(ids, labels=ids)
    plain = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()
    )
    assert torch.allclose(out.loss, plain + out.aux_loss, atol=1e-5)
    assert out.aux_loss > 0.5 * 0.99  # alpha * balance (>= ~1) + z term


def test_top_p_experts_per_token_moves_with_p(base_dirs, tmp_path):
    per_p = {}
    for p in (0.3, 0.6, 0.95):
        model, layout = load_adapted(
            tmp_path / str(p), base_dirs, "qwen3_moe", router="top_p", top_p=p, n_null=1, max_k=5
        )
        model.most_telemetry(enable=True)
        with torch.no_grad():
            model(mixed_batch(layout, batch=4))
        s = model.most_telemetry_summary()["layers"]
        per_p[p] = [v[m]["experts_per_token"] for v in s.values() for m in ("text", "speech")]
        assert all(1 / 5 <= e <= 5 for e in per_p[p])
    mean = {p: sum(v) / len(v) for p, v in per_p.items()}
    assert mean[0.3] < mean[0.6] < mean[0.95]


def test_top_p_null_experts_skip_compute(base_dirs, tmp_path):
    model, _ = load_adapted(tmp_path, base_dirs, "qwen3_moe", router="top_p", top_p=0.99, n_null=2)
    block = blocks(model)[0]
    with torch.no_grad():
        block.router.weight[block.router.num_experts :] = 0.0
        block.router.weight[block.router.num_experts :, 0] = 50.0  # nulls win for x[:, 0] > 0
    x = torch.randn(1, 8, 32)
    x[0, :4, 0] = 5.0
    x[0, 4:, 0] = -5.0
    mod = torch.zeros(1, 8, dtype=torch.long)
    model.most_telemetry(enable=True)
    with torch.no_grad():
        y = block(x, modality=mod)
    assert torch.equal(y[0, :4], torch.zeros_like(y[0, :4]))  # only null experts: no output
    assert y[0, 4:].abs().sum() > 0
    s = model.most_telemetry_summary()["layers"]["0"]["text"]
    assert s["dropped"] == 4 and s["null_share"] > 0


def test_inputs_embeds_need_explicit_modality(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
    ids = mixed_batch(layout)
    embeds = model.get_input_embeddings()(ids)
    with torch.no_grad():
        from_ids = model(ids).logits
        from_embeds = model(inputs_embeds=embeds, modality=model.modality_of(ids)).logits
        with pytest.raises(ValueError, match="modality"):
            model(inputs_embeds=embeds)
    assert torch.allclose(from_ids, from_embeds, atol=1e-6)


def test_telemetry_json(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen2_moe")
    with pytest.raises(RuntimeError):
        model.most_telemetry_summary()
    model.most_telemetry(enable=True)
    with torch.no_grad():
        model(mixed_batch(layout))
        model(torch.randint(4, TEXT_VOCAB, (1, 5)))
    s = json.loads(model.most_telemetry_save(tmp_path / "telemetry.json").read_text())
    layer = next(iter(s["layers"].values()))
    assert layer["text"]["tokens"] == 2 * 6 + 5
    assert sum(layer["text"]["load"]) == 2 * layer["text"]["tokens"]  # top-2
    assert 0 < layer["speech"]["entropy"] <= torch.log(torch.tensor(4.0)).item() + 1e-6
    model.most_telemetry(enable=False)
    assert model.routing.telemetry is None


def test_activation_checkpointing_routes_as_forward(base_dirs, tmp_path):
    model, layout = load_adapted(tmp_path, base_dirs, "qwen3_moe")
    model.train()
    ids = mixed_batch(layout)
    model(ids, labels=ids).loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model(ids, labels=ids).loss.backward()
    for a, p in zip(ref, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)
