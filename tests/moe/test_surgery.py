"""``experts.add_shared``: a shared expert for bases without one, a no-op at step 0 that learns."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from most.moe.arch import ArchError
from most.moe.experts import SharedExpert
from most.testing import mixed_batch, run_adapt


def blocks(model) -> list:
    return [m for m in model.modules() if type(m).__name__ == "ModalityMoE"]


def test_added_shared_expert_is_a_noop_at_step_0_and_trains(base_dirs, tmp_path):
    plain = AutoModelForCausalLM.from_pretrained(run_adapt(tmp_path / "a", base_dirs["qwen3_moe"]))
    out = run_adapt(tmp_path / "b", base_dirs["qwen3_moe"], add_shared=True)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.experts["add_shared"] is True
    assert all(isinstance(b.shared_experts, SharedExpert) for b in blocks(model))
    assert all(b.shared_experts is None for b in blocks(plain))
    ids = mixed_batch(model.layout)
    plain.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, plain(ids).logits)

    # gate/up = mean of the pretrained experts, down = 0; the down projection gets gradient first
    shared = blocks(model)[0].shared_experts
    routed = blocks(plain)[0].experts.gate_up_proj
    assert torch.allclose(shared.gate_up_proj, routed.mean(0))
    assert shared.down_proj.abs().sum() == 0
    model.train()
    model(ids, labels=ids).loss.backward()
    assert shared.down_proj.grad.abs().sum() > 0

    # extra params: one expert's worth per MoE layer; a reload rebuilds the module and its weights
    n = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in plain.parameters())
    assert n == len(blocks(model)) * shared.gate_up_proj.numel() * 3 // 2
    with torch.no_grad():
        shared.down_proj.normal_()
        before = model.eval()(ids).logits
    model.save_pretrained(tmp_path / "again")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        assert torch.equal(again(ids).logits, before)


def test_add_shared_refused_for_bases_with_their_own(base_dirs, tmp_path):
    with pytest.raises(ArchError, match="shared experts of its own"):
        run_adapt(tmp_path, base_dirs["deepseek_v2"], add_shared=True)
    assert not (tmp_path / "adapt").exists()


def test_shared_experts_false_drops_the_added_one(base_dirs, tmp_path):
    out = run_adapt(tmp_path, base_dirs["qwen3_moe"], add_shared=True, shared_experts=False)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert all(b.shared_experts is None for b in blocks(model))


def test_routing_rule_is_the_first_candidate_that_reproduces_the_base(monkeypatch):
    """The rule read from the config is checked on the base block: a wrong first guess is passed
    over, and a model none of whose candidates match is refused in one line."""
    from dataclasses import asdict, replace

    from most.moe import surgery
    from most.moe.rules import declared_rule
    from most.testing.tiny_moe import adapt_tiny, tiny_base

    right = declared_rule(tiny_base("qwen3_moe").config)
    wrong = replace(right, scale=3.0)
    monkeypatch.setattr(surgery, "candidate_rules", lambda cfg, bias: iter([wrong, right]))
    assert adapt_tiny(tiny_base("qwen3_moe")).config.routing == asdict(right)
    monkeypatch.setattr(surgery, "candidate_rules", lambda cfg, bias: iter([wrong]))
    with pytest.raises(ArchError, match=r"^qwen3_moe: no routing rule .* model\.layers\[0\]\.mlp"):
        adapt_tiny(tiny_base("qwen3_moe"))


def test_a_block_the_generic_one_cannot_run_is_refused_in_one_line(monkeypatch):
    """A borrowed piece of the base block (an activation, a gate) that fails inside the generic
    block refuses the model in one line instead of crashing adapt."""
    from most.moe.experts import GroupedExperts
    from most.testing.tiny_moe import adapt_tiny, tiny_base

    def borrowed(self, h, rows):
        raise AttributeError("'SimpleNamespace' object has no attribute 'limit'")

    monkeypatch.setattr(GroupedExperts, "_gate", borrowed)
    with pytest.raises(ArchError) as err:
        adapt_tiny(tiny_base("qwen3_moe"))
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("qwen3_moe: the generic block cannot run the MoE block at")
    assert "AttributeError" in message and "limit" in message


def test_the_probe_runs_the_base_experts_eager_without_a_dispatch_warning(monkeypatch):
    """Building the adapted model leaves the base's config naming no experts implementation (None),
    for which transformers warns "something went wrong with the dispatch"; the probe runs the base
    block's experts eager instead and leaves their config as it found it."""
    from transformers.integrations import moe as hf_moe

    from most.testing.tiny_moe import adapt_tiny, tiny_base

    asked = []
    real = hf_moe.ExpertsInterface.get_interface

    def spy(self, implementation, default):
        asked.append(implementation)
        return real(self, implementation, default)

    monkeypatch.setattr(hf_moe.ExpertsInterface, "get_interface", spy)
    base = tiny_base("qwen3_moe")
    experts = base.model.layers[0].mlp.experts
    adapt_tiny(base)
    assert asked and set(asked) == {"eager"}
    assert experts.config._experts_implementation is None
