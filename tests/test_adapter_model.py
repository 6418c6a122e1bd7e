"""The adapted model with an audio adapter: splicing, speech routing, aux loss, save -> reload."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from most.layout import SPEECH
from most.moe.adapter import AdapterConfig
from most.moe.block import ModalityMoE
from most.testing.models import load_adapted

IN_DIM = 12
PLACEHOLDER = 5  # a *text* id: the audio positions must still route as speech


@pytest.fixture
def adapted(tmp_path, base_dirs):
    model, layout = load_adapted(tmp_path / "run", base_dirs)
    torch.manual_seed(0)
    model.attach_adapter(
        AdapterConfig(kind="moe", stack=2, expert_size=16, aux_alpha=0.5), {"kind": "mel"}, IN_DIM
    )
    return model.eval(), layout


def audio_batch(layout, frames=(8, 5), seed=0):
    """Rows ``text text <boa> [audio slots] <eoa> text``, right-padded; features and masks."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(frames), max(frames), IN_DIM, generator=g)
    fmask = torch.arange(max(frames))[None] < torch.tensor(frames)[:, None]
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    rows = [[10, 11, boa, *[PLACEHOLDER] * (-(-f // 2)), eoa, 12] for f in frames]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), 1)
    attn = torch.zeros_like(ids)
    amask = torch.zeros_like(ids, dtype=torch.bool)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row)
        attn[r, : len(row)] = 1
        amask[r, 3 : 3 + (len(row) - 5)] = True
    return dict(input_ids=ids, attention_mask=attn, input_features=feats,
                input_features_mask=fmask, audio_mask=amask)  # fmt: skip


def test_features_replace_the_audio_positions(adapted):
    model, layout = adapted
    batch = audio_batch(layout)
    out = model(**batch).logits
    assert out.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    other = dict(batch, input_features=batch["input_features"] + 1.0)
    moved = model(**other).logits
    # causal: the prefix before the audio is untouched; everything from the first frame on moves
    torch.testing.assert_close(moved[:, :3], out[:, :3])
    assert (moved[0, 3:] - out[0, 3:]).abs().amax(-1).gt(1e-4).all()
    # padding frames past a row's length change nothing
    padded = dict(batch, input_features=batch["input_features"].clone())
    padded["input_features"][1, 5:] = 50.0
    torch.testing.assert_close(model(**padded).logits, out)


def test_audio_positions_reach_the_speech_experts(adapted):
    model, layout = adapted
    batch = audio_batch(layout)
    picks = []
    blocks = [m for m in model.modules() if isinstance(m, ModalityMoE)]
    hooks = [b.router.register_forward_hook(lambda m, i, o: picks.append(o.index)) for b in blocks]
    model(**batch)
    for h in hooks:
        h.remove()
    speech = layout.modality_id(SPEECH)
    amask = batch["audio_mask"].reshape(-1)
    text_slots = (batch["attention_mask"].reshape(-1).bool()) & ~amask
    text_slots[batch["input_ids"].reshape(-1) >= layout.text_vocab_size] = False
    assert len(picks) == len(blocks) > 0
    for block, index in zip(blocks, picks, strict=True):
        speech_experts = set(block.router.groups[speech])
        assert set(index[amask].flatten().tolist()) <= speech_experts
        assert not set(index[text_slots].flatten().tolist()) & speech_experts
    # telemetry agrees: every audio position counted as a speech token
    model.most_telemetry()
    model(**batch)
    summary = model.most_telemetry_summary()
    boa_eoa = 2 * batch["input_ids"].shape[0]  # the delimiters are speech tokens too
    n_speech = int(amask.sum()) + boa_eoa
    for layer in summary["layers"].values():
        assert layer[SPEECH]["tokens"] == n_speech and layer[SPEECH]["in_group"] == 1.0


def test_adapter_aux_loss_joins_the_router_losses(adapted):
    model, layout = adapted
    batch = audio_batch(layout)
    labels = batch["input_ids"].masked_fill(batch["audio_mask"], -100)
    out = model(**batch, labels=labels)
    adapter_aux = model.audio_adapter.aux_loss
    assert adapter_aux is not None and float(adapter_aux.detach()) > 0
    model.audio_adapter.cfg.aux_alpha = 0.0
    plain = model(**batch, labels=labels)
    torch.testing.assert_close(out.aux_loss - plain.aux_loss, adapter_aux)
    torch.testing.assert_close(out.loss - plain.loss, adapter_aux)


def test_save_reload_gives_identical_outputs(adapted, tmp_path):
    model, layout = adapted
    batch = audio_batch(layout)
    before = model(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    assert again.config.adapter == model.config.adapter
    assert again.config.audio_frontend == {"kind": "mel"}
    # Bit-identical weights; the outputs agree to float rounding only, because the grouped
    # matmul's summation order depends on buffer alignment (safetensors are mmapped at 8-byte
    # offsets): copied into fresh aligned buffers, the reloaded experts give the exact outputs.
    saved, loaded = model.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    after = again(**batch).logits
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)
    assert torch.equal(after.argmax(-1), before.argmax(-1))
    names = {n for n, _ in again.named_parameters()}
    assert "audio_adapter.ffn.experts.gate_up_proj" in names


def test_generate_takes_features_on_the_first_step_only(adapted):
    model, layout = adapted
    batch = audio_batch(layout, frames=(6,))
    first = model(**batch).logits[0, -1].argmax()
    out = model.generate(**batch, max_new_tokens=3, do_sample=False, pad_token_id=1)
    assert out.shape == (1, batch["input_ids"].shape[1] + 3)
    assert int(out[0, batch["input_ids"].shape[1]]) == int(first)


def test_mismatched_audio_positions_are_refused(adapted):
    model, layout = adapted
    batch = audio_batch(layout)
    batch["audio_mask"][0, 3] = False
    with pytest.raises(ValueError, match="positions per row"):
        model(**batch)
    model.audio_adapter = None
    with pytest.raises(ValueError, match="no audio adapter"):
        model(**audio_batch(layout))


def test_dense_adapter_attaches_and_reloads(tmp_path, base_dirs):
    model, layout = load_adapted(tmp_path / "run", base_dirs)
    model.attach_adapter(AdapterConfig(kind="dense", stack=2), {"kind": "mel"}, IN_DIM)
    batch = audio_batch(layout)
    before = model.eval()(**batch).logits
    model.save_pretrained(tmp_path / "saved")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    torch.testing.assert_close(again(**batch).logits, before, atol=1e-5, rtol=1e-5)


def test_a_batch_without_audio_still_reaches_the_adapter(adapted):
    """Zero-weighted, so that DDP finds a gradient for every adapter weight in every step."""
    model, layout = adapted
    ids = audio_batch(layout)["input_ids"]
    model.train()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = [p.grad for p in model.audio_adapter.parameters()]
    assert all(g is not None and not g.any() for g in grads)
    model.eval()
    with torch.no_grad():
        plain = model(input_ids=ids, labels=ids)
    torch.testing.assert_close(plain.loss, out.loss.detach())
