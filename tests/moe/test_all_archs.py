"""Every MoE causal-LM type of the installed transformers: adapted through the whole life cycle, or
refused in one line that names it and says what is missing."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

import most  # noqa: F401  (registers the adapted model with the Auto classes)
from most.moe.arch import ArchError
from most.moe.block import ModalityMoE
from most.testing import TEXT_VOCAB, mixed_batch
from most.testing.tiny_moe import adapt_tiny, moe_model_types, tiny_base

TYPES = moe_model_types()

#: Types refused, with the words their one-line reason must contain.
REFUSED = {
    "axk1": "parts the generic block lacks: post_mlp_layernorm",
    "deepseek_v4": "with more than the hidden states",
    "doge": "CDMoE keeps single-vector experts",
    "inkling_text": "scores the shared experts as a sink",
    "jetmoe": "no stacked gate_up_proj/down_proj",
    "kolibri1": "adds the selection bias to the raw logits",
    "llama4": "scales each expert's input",
    "llama4_text": "scales each expert's input",
    "longcat_flash": "zero_expert_num identity",
    "phimoe": "SparseMixer",
    "zaya": "with more than the hidden states",
}


def blocks(model) -> list[ModalityMoE]:
    return [m for m in model.modules() if isinstance(m, ModalityMoE)]


def test_the_census_is_complete():
    """A new transformers release adding or dropping MoE types shows up here, not silently."""
    adapted = [t for t in TYPES if t not in REFUSED]
    assert set(REFUSED) <= set(TYPES)
    assert (len(TYPES), len(adapted), len(REFUSED)) == (63, 52, 11)


@pytest.mark.parametrize("model_type", TYPES)
def test_adapt_or_refuse(model_type, tmp_path):
    if model_type in REFUSED:
        with pytest.raises(ArchError) as err:
            adapt_tiny(tiny_base(model_type))
        msg = str(err.value)
        named = msg.split(": ", 1)[0]  # a wrapper's refusal names its text model type
        assert named == model_type or named == f"{model_type}_text"
        assert "\n" not in msg
        assert REFUSED[model_type] in msg
        return
    model = adapt_tiny(tiny_base(model_type))
    layout = model.layout
    assert blocks(model)

    # forward with labels -> LM loss + aux loss; backward reaches experts, router, new rows
    model.train()
    ids = mixed_batch(layout)
    out = model(ids, attention_mask=torch.ones_like(ids), labels=ids)
    assert torch.isfinite(out.loss) and out.aux_loss is not None
    out.loss.backward()
    block = blocks(model)[0]
    assert block.experts.in_proj.grad.abs().sum() > 0
    assert block.router.weight.grad.abs().sum() > 0
    assert model.get_input_embeddings().weight.grad[layout.unit_offset :].abs().sum() > 0
    model.zero_grad()

    # greedy generation with and without the KV cache agree
    model.eval()
    prompt = ids[:1, :9]
    kw = dict(max_new_tokens=4, do_sample=False, attention_mask=torch.ones_like(prompt))
    cached = model.generate(prompt, use_cache=True, **kw)
    assert torch.equal(cached, model.generate(prompt, use_cache=False, **kw))

    # modality isolation: speech tokens only reach speech experts, and the speech group's experts
    # and router rows do not touch text-only logits
    model.most_telemetry(enable=True)
    text = torch.randint(4, TEXT_VOCAB, (2, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        model(ids)
        before = model(text).logits
        for b in blocks(model):
            eg = len(b.router.groups[0])  # the text group: experts [0, eg)
            b.experts.in_proj[eg:].normal_()
            b.router.weight[eg : 2 * eg].normal_()
        after = model(text).logits
    assert torch.equal(before, after)
    for per in model.most_telemetry_summary()["layers"].values():
        eg = len(per["text"]["load"]) // 2
        assert sum(per["speech"]["load"][:eg]) == 0 and sum(per["speech"]["load"][eg:]) > 0
        assert sum(per["text"]["load"][eg:]) == 0
    model.most_telemetry(enable=False)

    # save -> reload -> identical logits
    with torch.no_grad():
        before = model(ids).logits
    model.save_pretrained(tmp_path / "adapted")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "adapted").eval()
    assert again.config.routing == model.config.routing
    with torch.no_grad():
        # same weights and buffers; a few types differ by float rounding (<= 1e-6) after a reload
        assert (again(ids).logits - before).abs().max() <= 1e-5

    # the modality-blind router over the split experts is the base model
    base = tiny_base(model_type)
    blind = adapt_tiny(tiny_base(model_type), init="split", router="topk")
    with torch.no_grad():
        ref = base(text).logits
        diff = (blind(text).logits[..., :TEXT_VOCAB] - ref).abs().max()
    assert diff <= 1e-5 * max(1.0, float(ref.abs().max()))
