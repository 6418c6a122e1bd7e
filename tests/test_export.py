"""``most.export.merge_lora`` (`most release --source.lora=DIR`): the merged model computes what
model + adapter computed."""

import pytest
import torch
from transformers import AutoModelForCausalLM

import most  # noqa: F401
from most.export import merge_lora


def test_lora_merge_matches_adapter(eval_run, tmp_path):
    from peft import LoraConfig, get_peft_model

    hf = eval_run / "stage2" / "hf"
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(hf), LoraConfig(r=2, target_modules=["q_proj"])
    )
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # peft starts B at zero: make the adapter matter
    peft_model.save_pretrained(tmp_path / "adapter")
    ids = torch.arange(3, 15)[None]
    with torch.no_grad():
        want = peft_model.eval()(ids).logits
        base = AutoModelForCausalLM.from_pretrained(hf).eval()
        plain = base(ids).logits
        merged = merge_lora(base, tmp_path / "adapter").eval()
        got = merged(ids).logits
    assert not torch.allclose(plain, want, atol=1e-3)
    assert torch.allclose(got, want, atol=1e-4)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with pytest.raises(FileNotFoundError, match="adapter_config"):
        merge_lora(base, tmp_path)
