"""LoRA on an adapted model: the adapters, the speech rows of ``embed_tokens``/``lm_head`` and the
routers train; LoRA on the stacked experts (``target_parameters``) changes the expert function; the
text rows stay bit-identical; the merged export computes the adapter model's logits under the
parameter names of a plain export; ``optim.train``/``freeze`` combine with LoRA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from most.data.collate import pad_batch
from most.data.prompts import Example
from most.testing import load_adapted, mixed_batch
from most.train.module import CausalLMModule
from most.train.optim import LoraConfig, OptimConfig, apply_lora, plain_name, select_trainable
from most.train.runner import export_hf

EXPERTS = ["experts.gate_up_proj", "experts.down_proj"]
OPTIM = OptimConfig(lr=1e-2, warmup_steps=0)


def train(model, layout, optim: OptimConfig = OPTIM, steps: int = 4) -> None:
    """A few AdamW steps of :class:`CausalLMModule` on text-then-speech sequences."""
    ids = mixed_batch(layout, batch=4)
    batch = pad_batch([Example(r.tolist(), r.tolist(), "asr") for r in ids], 0, ids.shape[1])
    module = CausalLMModule(model, optim, total_steps=steps)
    opt = module.configure_optimizers()["optimizer"]
    for _ in range(steps):
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    model.eval()


def trainable(model) -> set[str]:
    return {plain_name(n) for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("arch", ["qwen3_moe", "qwen2_moe"])  # untied / tied embeddings
def test_lora_learns_speech_and_merges_exactly(arch, base_dirs, tmp_path: Path, word_tokenizer):
    model, layout = load_adapted(tmp_path / "run", base_dirs, arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tied = model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert tied == (arch == "qwen2_moe")
    peft_model = apply_lora(model, LoraConfig(enabled=True, r=4, target_parameters=EXPERTS))
    select_trainable(peft_model, OPTIM)
    train(peft_model, layout)

    # The expert LoRA is part of the expert function the grouped dispatch computes.
    experts = peft_model.base_model.model.lm.model.layers[1].mlp.experts  # peft's wrapper
    base = experts.get_base_layer()  # the GroupedExperts, its own weights untouched
    x = torch.randn(5, base.gate_up_proj.shape[-1])
    index, weight = torch.tensor([[0, 1]] * 5), torch.full((5, 2), 0.5)
    with torch.no_grad():
        adapted, plain = experts(x, index, weight), base(x, index, weight)
    assert not torch.allclose(adapted, plain, atol=1e-4)

    ids = mixed_batch(layout, seed=1)
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    dest = export_hf(peft_model, word_tokenizer, layout, tmp_path / "hf")
    assert not (dest / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(dest).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
    after = merged.state_dict()
    assert after.keys() == before.keys()  # the names of a plain export: no peft left

    n_old = layout.text_vocab_size
    moved = {k for k in before if not torch.equal(after[k], before[k])}
    for k in ("lm.model.embed_tokens.weight", "lm.lm_head.weight"):
        assert torch.equal(after[k][:n_old], before[k][:n_old]), f"{k}: text rows moved"
        assert not torch.equal(after[k][n_old:], before[k][n_old:]), f"{k}: speech rows did not"
    assert (merged.get_input_embeddings().weight is merged.get_output_embeddings().weight) == tied
    routers = {k for k in before if k.endswith("router.weight")}
    attention = tuple(f"{m}.weight" for m in LoraConfig().target_modules)
    lora_targets = {k for k in before if k.endswith((*attention, *EXPERTS))}
    assert routers and routers <= moved
    assert lora_targets <= moved
    rows = {"lm.model.embed_tokens.weight", "lm.lm_head.weight"}
    assert moved == routers | lora_targets | rows  # norms, shared experts: frozen


def test_lora_options_and_optim_train_freeze(base_dirs, tmp_path: Path) -> None:
    """``optim.train`` adds base weights to what LoRA trains, ``freeze`` removes any (adapters
    included); regexes read the names without peft's wrapping. Then one step moves just those."""
    model, layout = load_adapted(tmp_path / "run", base_dirs, "qwen3_moe")
    bare = apply_lora(model, LoraConfig(enabled=True, train_new_rows=False, train_routers=False))
    assert trainable(bare) and all("lora_" in n for n in trainable(bare))

    model, layout = load_adapted(tmp_path / "run2", base_dirs, "qwen3_moe")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model = apply_lora(model, LoraConfig(enabled=True, r=4))
    optim = OptimConfig(lr=1e-2, warmup_steps=0, train=[r"experts\.down_proj$"], freeze=["q_proj"])
    select_trainable(peft_model, optim)
    names = trainable(peft_model)
    layer0 = "lm.model.layers.0.mlp."
    assert {layer0 + "experts.down_proj", layer0 + "router.weight"} <= names
    assert any(n.endswith("embed_tokens.trainable_tokens_delta.default") for n in names)
    assert any("v_proj.lora_B" in n for n in names)
    assert not any("q_proj" in n or n.endswith("gate_up_proj") for n in names)
    train(peft_model, layout, optim, steps=1)
    after = peft_model.merge_and_unload().state_dict()
    moved = {k for k in before if not torch.equal(after[k], before[k])}
    assert {k for k in moved if "experts" in k} == {k for k in before if k.endswith("down_proj")}
    assert not any("q_proj" in k for k in moved)


def test_lora_on_a_meta_model_counts_its_trainable_parameters(base_dirs, tmp_path: Path) -> None:
    """What ``--dry-run`` does: LoRA with every option on a model with no storage."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from most.testing import run_adapt

    config = AutoConfig.from_pretrained(run_adapt(tmp_path, base_dirs["qwen3_moe"]))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    layout, hidden = model.layout, config.text_config.hidden_size
    routers = sum(p.numel() for n, p in model.named_parameters() if n.endswith("router.weight"))
    peft_model = apply_lora(model, LoraConfig(enabled=True, target_parameters=EXPERTS))
    select_trainable(peft_model, OptimConfig())
    params = dict(peft_model.named_parameters())
    assert {p.device.type for p in params.values()} == {"meta"}
    adapters = sum(p.numel() for n, p in params.items() if "lora_" in n)
    assert any("experts.lora_B" in n for n in params)
    n_new = config.text_config.vocab_size - layout.text_vocab_size
    count = sum(p.numel() for p in params.values() if p.requires_grad)
    assert count == adapters + routers + 2 * n_new * hidden


def test_lora_config_refuses_dropout_on_parameter_targets() -> None:
    with pytest.raises(ValueError, match=r"lora\.dropout must be 0 with lora\.target_parameters"):
        LoraConfig(enabled=True, dropout=0.1, target_parameters=EXPERTS)
    LoraConfig(enabled=True, dropout=0.1)
