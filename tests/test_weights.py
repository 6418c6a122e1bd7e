"""``most.weights``: HF folders loaded in their own dtype through pread, equal to transformers'
own loading; ``empty`` builds on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from most.weights import checkpoint_bytes, folder_dtype, load_causal_lm, resolve_dtype


@pytest.mark.parametrize("arch", ["qwen3_moe", "deepseek_v2"])
def test_loads_what_transformers_loads(arch, base_dirs):
    ours = load_causal_lm(base_dirs[arch])
    theirs = AutoModelForCausalLM.from_pretrained(base_dirs[arch])
    assert type(ours) is type(theirs) and ours.dtype == torch.float32
    a, b = ours.state_dict(), theirs.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ours.generation_config.eos_token_id == theirs.generation_config.eos_token_id


def test_checkpoint_dtype_is_kept_and_empty_reads_nothing(base_dirs, tmp_path: Path):
    AutoModelForCausalLM.from_pretrained(base_dirs["olmoe"], dtype=torch.bfloat16).save_pretrained(
        tmp_path
    )
    assert folder_dtype(tmp_path) == torch.bfloat16
    assert resolve_dtype("float32", tmp_path) == torch.float32
    with pytest.raises(ValueError, match="'fp8' is not 'auto'"):
        resolve_dtype("fp8", tmp_path)
    assert checkpoint_bytes(tmp_path) > 0
    model = load_causal_lm(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    wide = load_causal_lm(tmp_path, "float32")
    assert torch.equal(wide.lm_head.weight, model.lm_head.weight.float())
    empty = load_causal_lm(tmp_path, empty=True)
    assert {p.device.type for p in empty.parameters()} == {"meta"}
    assert {p.dtype for p in empty.parameters()} == {torch.bfloat16}
