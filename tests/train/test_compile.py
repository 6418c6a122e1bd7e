"""trainer.compile: decoder layers under torch.compile, MoE blocks eager, same numbers as eager."""

from __future__ import annotations

import copy

import pytest
import torch

import most.train.compile as C
from most.testing.models import mixed_batch
from most.testing.tiny_moe import adapt_tiny, tiny_base
from most.train.config import TrainerConfig


def loss_and_grads(model, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    out = model(input_ids=ids, labels=ids, use_cache=False)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_compiled_layers_train_like_eager() -> None:
    torch._dynamo.reset()
    eager = adapt_tiny(tiny_base("qwen3_moe")).train()
    compiled = copy.deepcopy(eager)
    keys = list(compiled.state_dict())
    layers = C.compile_layers(compiled)
    assert layers == eager.config.text_config.num_hidden_layers
    assert list(compiled.state_dict()) == keys  # checkpoints and the export see the same model
    from most.layout import TokenLayout

    ids = mixed_batch(TokenLayout.from_dict(eager.config.layout), batch=2, n_text=8, n_speech=8)
    for _ in range(2):  # the second call runs the cached kernels
        loss, grads = loss_and_grads(eager, ids)
        closs, cgrads = loss_and_grads(compiled, ids)
        torch.testing.assert_close(closs, loss, atol=1e-5, rtol=1e-5)
        for name, g in grads.items():
            torch.testing.assert_close(cgrads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # The MoE blocks ran eager: their dispatch would otherwise break the graph on a host read.
    block = compiled.lm.model.layers[0].mlp
    assert getattr(block.forward, "_torchdynamo_disable", False)
    # ... all but its gated activation: one compiled loop, forward and backward.
    assert block.experts.fused is not None and eager.lm.model.layers[0].mlp.experts.fused is None


def test_no_cxx_compiler_is_said(monkeypatch) -> None:
    monkeypatch.setattr(C.shutil, "which", lambda name: None)
    why = C.can_compile(torch.device("cpu"))
    assert why is not None and "no C++ compiler" in why
    assert C.can_compile(torch.device("meta")) is None


def test_compile_refused_with_sharding_strategies() -> None:
    with pytest.raises(ValueError, match=r"trainer\.compile works with strategy auto"):
        TrainerConfig(compile=True, strategy="fsdp")
    assert TrainerConfig(compile=True, strategy="ddp").compile
