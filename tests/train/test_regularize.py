"""Training-only regularisers: residual dropout hooks and label smoothing of the example loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from most.data.collate import pad_batch
from most.data.prompts import IGNORE, Example
from most.testing import TINY_MODEL
from most.train.module import CausalLMModule, example_mean_loss
from most.train.optim import OptimConfig
from most.train.regularize import add_residual_dropout, dropout
from tests.train.test_optim import tiny


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, use_cache=False).logits


def test_residual_dropout_acts_in_training_only_and_is_removable() -> None:
    model = tiny()
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

    model = tiny()
    CausalLMModule(model, OptimConfig(dropout=0.2), total_steps=4)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path)).train()
    ids = torch.randint(1, 64, (1, 10))
    torch.manual_seed(0)
    a, b = logits(reloaded, ids), logits(reloaded, ids)
    torch.testing.assert_close(a, b)  # no dropout travelled with the checkpoint


def test_residual_dropout_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        add_residual_dropout(tiny(), 1.0)
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


def test_label_smoothing_of_the_example_loss() -> None:
    torch.manual_seed(0)
    exs = [
        Example(list(range(1, 9)), [IGNORE] * 3 + list(range(4, 9)), "asr"),
        Example(list(range(1, 6)), [IGNORE] * 2 + list(range(3, 6)), "tts"),
    ]
    batch = pad_batch(exs, pad_id=0, max_len=16)
    lg = torch.randn(*batch["input_ids"].shape, 64)
    got = example_mean_loss(lg, batch, label_smoothing=0.1)
    want = []
    for r in range(2):
        labels = batch["labels"][r, 1:]
        keep = labels != IGNORE
        want.append(F.cross_entropy(lg[r, :-1][keep], labels[keep], label_smoothing=0.1))
    torch.testing.assert_close(got, torch.stack(want).mean())
    assert got > example_mean_loss(lg, batch) - 1.0  # sanity: same scale as the plain loss
    assert not torch.isclose(got, example_mean_loss(lg, batch))


def test_label_smoothing_trains_but_validation_stays_plain() -> None:
    module = CausalLMModule(
        tiny(), OptimConfig(label_smoothing=0.2, loss_weighting="example"), total_steps=4
    )
    exs = [Example(list(range(1, 9)), [IGNORE] * 3 + list(range(4, 9)), "asr")] * 2
    batch = pad_batch(exs, pad_id=0, max_len=16)
    module.model.eval()
    with torch.no_grad():
        out = module(batch)
        smoothed, plain = module.loss(out, batch), module.loss(out, batch, smooth=False)
    aux = out.aux_loss * module.model.config.router_aux_loss_coef
    torch.testing.assert_close(plain, example_mean_loss(out.logits, batch) + aux)
    torch.testing.assert_close(smoothed, example_mean_loss(out.logits, batch, 0.2) + aux)


def test_optim_config_checks_the_regularisers() -> None:
    with pytest.raises(ValueError, match=r"label_smoothing needs optim\.loss_weighting: example"):
        OptimConfig(label_smoothing=0.1, loss_weighting="token")
    with pytest.raises(ValueError, match="0 <= dropout < 1"):
        OptimConfig(dropout=-0.1)
