"""eval.curve: checkpoint discovery and loading Lightning checkpoints into the HF model."""

import pytest
import torch

from eval.curve import checkpoints, load_weights
from most.train.testing import TINY_MODEL


def tiny(seed: int):
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(64, 0))


def test_checkpoints_in_step_order_and_weights_loaded(tmp_path):
    ckpt = tmp_path / "stage1" / "ckpt"
    ckpt.mkdir(parents=True)
    trained = tiny(0)
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    for step in (160, 80):
        torch.save({"state_dict": state}, ckpt / f"step={step}.ckpt")
    torch.save({"state_dict": state}, ckpt / "last.ckpt")  # not a step checkpoint
    found = checkpoints(tmp_path / "stage1")
    assert [s for s, _ in found] == [80, 160]
    fresh = tiny(1)
    load_weights(fresh, found[0][1])
    for (k, a), b in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    torch.save({"state_dict": {"model.other.weight": torch.zeros(1)}}, ckpt / "step=1.ckpt")
    with pytest.raises(ValueError, match="does not match"):
        load_weights(fresh, ckpt / "step=1.ckpt")
