"""Training-only regularisers: residual dropout hooks."""

from __future__ import annotations

import pytest
import torch

from most.dropout import dropout
from most.testing import TINY_MODEL, tiny_lm
from most.train.module import CausalLMModule
from most.train.optim import OptimConfig
from most.train.regularize import add_residual_dropout


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits


def test_residual_dropout_acts_in_training_only_and_is_removable() -> None:
    model = tiny_lm()
    ids = torch.randint(1, 64, (2, 12))
    model.eval()
    clean = logits(model, ids)
    handles = add_residual_dropout(model, 0.3)
    # one hook per attention and per MLP of every layer
    assert len(handles) == 2 * TINY_MODEL.num_hidden_layers
    torch.testing.assert_close(logits(model, ids), clean)  # eval mode: the full network
    model.train()
    torch.manual_seed(1)
    a = logits(model, ids)
    torch.manual_seed(2)
    b = logits(model, ids)
    assert not torch.allclose(a, b) and not torch.allclose(a, clean)
    for h in handles:
        h.remove()
    torch.testing.assert_close(logits(model, ids), clean)  # hooks gone: training mode is clean


def test_residual_dropout_leaves_the_saved_model_plain(tmp_path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_lm()
    CausalLMModule(model, OptimConfig(dropout=0.2), total_steps=4)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).train()
    ids = torch.randint(1, 64, (1, 10))
    torch.manual_seed(0)
    a, b = logits(reloaded, ids), logits(reloaded, ids)
    torch.testing.assert_close(a, b)  # no dropout travelled with the checkpoint


def test_residual_dropout_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        add_residual_dropout(tiny_lm(), 1.0)
    with pytest.raises(ValueError, match=r"no layers\.N\.self_attn"):
        add_residual_dropout(torch.nn.Linear(2, 2), 0.1)
    assert add_residual_dropout(torch.nn.Linear(2, 2), 0.0) == []


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask_statistics_scale_and_gradient(p: float) -> None:
    x = torch.rand(64, 64, 64) + 0.5  # no zeros: a zero in the output is a dropped element
    x.requires_grad_(True)
    torch.manual_seed(0)
    y = dropout(x, p)
    kept = y != 0
    dropped_p = round(p * 65536) / 65536
    # 262,144 Bernoulli draws: the share is within 4 standard deviations of p
    sd = (p * (1 - p) / x.numel()) ** 0.5
    assert abs(1 - kept.float().mean().item() - p) < 4 * sd
    scale = 1 / (1 - dropped_p)
    torch.testing.assert_close(y[kept], x[kept] * scale)  # kept elements: inverted dropout scale
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, kept.float() * scale)  # gradient flows through kept only
    # four elements share one 64-bit draw: each of the four 16-bit lanes must drop p on its own
    # (a biased high word, e.g. from a non-negative draw, would show in lane 3)
    lanes = 1 - kept.flatten().view(-1, 4).float().mean(dim=0)
    assert torch.all((lanes - p).abs() < 8 * sd), lanes


def test_dropout_is_reproducible_under_the_seed() -> None:
    x = torch.ones(3, 1000)
    torch.manual_seed(7)
    a = dropout(x, 0.3)
    torch.manual_seed(7)
    b = dropout(x, 0.3)
    c = dropout(x, 0.3)
    torch.testing.assert_close(a, b)
    assert not torch.equal(b, c)
    assert torch.equal(dropout(x, 0.0), x)


def test_optim_config_checks_the_regularisers() -> None:
    with pytest.raises(ValueError, match="0 <= dropout < 1"):
        OptimConfig(dropout=-0.1)
