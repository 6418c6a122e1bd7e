"""The multi-scale model: shapes, which positions the loss reads, the local model's causality,
cached == uncached generation, stopping, learning, and save -> reload through ``import most``."""

from __future__ import annotations

import pytest
import torch

from most.multiscale import MostMultiScale, collate_frames, from_frames, to_frames

C, K = 4, 5


def make(global_model, seed: int = 0) -> MostMultiScale:
    torch.manual_seed(seed)
    return MostMultiScale.from_global(global_model, C, local_hidden_size=32, local_heads=2).eval()


def example(layout, text: list[int], codes: torch.Tensor, label_prompt: bool = False):
    """``text <|tts|> <|begin_of_audio|> frames <|end_of_audio|>`` as positions, labels on the
    audio part (and the prompt with ``label_prompt``)."""
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    prompt = torch.tensor([*text, layout.special_id("<|tts|>"), boa])
    flat = torch.cat([prompt, from_frames(codes, layout), torch.tensor([eoa])])
    labels = flat.clone()
    if not label_prompt:
        labels[: len(prompt)] = -100
    return to_frames(flat, layout, C, labels)


def batch(model, n_frames=(3, 2)):
    g = torch.Generator().manual_seed(1)
    items = [
        example(model.layout, [5 + i, 9, 11], torch.randint(0, K, (t, C), generator=g))
        for i, t in enumerate(n_frames)
    ]
    return collate_frames(items, pad_id=1)


def test_shapes_and_frame_embedding(global_model) -> None:
    model = make(global_model)
    b = batch(model)
    out = model(**b)
    s = b["input_ids"].shape[1]
    assert out.logits.shape == (2, s, model.layout.vocab_size)
    assert out.last_hidden_state.shape == (2, s, 32)
    assert out.local_logits.shape == (5, C, K)  # 3 + 2 labelled frames
    assert torch.isfinite(out.loss) and out.loss > 0
    x = model.embed(b["input_ids"], b["codes"])
    table = model.get_input_embeddings().weight
    rows = model.layout.unit_offset + torch.arange(C) * K + b["codes"][0, 5]
    assert torch.allclose(x[0, 5], table[rows].sum(0))  # a frame: the sum of its C unit rows
    assert torch.equal(x[0, 0], table[b["input_ids"][0, 0]])  # text: its own row


def test_loss_reads_only_labelled_targets(global_model) -> None:
    """The last frame is read by nobody: its codes matter to the loss only as a target, so changing
    them changes the loss when it is labelled and leaves it alone when it is not."""
    model = make(global_model)
    codes = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1], [2, 3, 4, 0]])
    ids, frames, labels = example(model.layout, [5, 9], codes)
    ids, frames, labels = ids[:-1], frames[:-1], labels[:-1]  # drop the end: the last is a frame
    other = frames.clone()
    other[-1] = (other[-1] + 1) % K

    def loss(f, lab):
        return model(**collate_frames([(ids, f, lab)], pad_id=1)).loss

    assert not torch.isclose(loss(frames, labels), loss(other, labels))
    unlabelled = labels.clone()
    unlabelled[-1] = -100
    assert torch.equal(loss(frames, unlabelled), loss(other, unlabelled))
    assert model(**collate_frames([(ids, frames, unlabelled)], 1)).local_logits.shape[0] == 2


def test_local_model_is_causal_over_codebooks(global_model) -> None:
    model = make(global_model)
    h = torch.randn(3, 32)
    prev = torch.randint(0, K, (3, C - 1))
    changed = prev.clone()
    changed[:, 1] = (changed[:, 1] + 1) % K
    a, b = model.local(h, prev), model.local(h, changed)
    assert a.shape == (3, C, K)
    assert torch.equal(a[:, :2], b[:, :2])  # codebooks 0 and 1 do not see codebook 1's code
    assert not torch.allclose(a[:, 2:], b[:, 2:])


def test_cached_generation_equals_uncached(global_model) -> None:
    model = make(global_model)
    prompts = torch.tensor([[5, 9, 11], [6, 9, 12]])
    tts = model.layout.special_id("<|tts|>")
    boa = model.layout.special_id("<|begin_of_audio|>")
    prompts = torch.cat([prompts, torch.tensor([[tts, boa]] * 2)], dim=1)
    cached = model.generate_speech(prompts, max_frames=10)
    uncached = model.generate_speech(prompts, max_frames=10, use_cache=False)
    assert sum(len(c) for c in cached) > 0
    assert all(torch.equal(a, b) for a, b in zip(cached, uncached, strict=True))
    assert not torch.equal(cached[0], cached[1])  # the prompt matters
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1 = model.generate_speech(prompts, 6, do_sample=True, top_k=3, generator=g1)
    s2 = model.generate_speech(prompts, 6, do_sample=True, top_k=3, generator=g2, use_cache=False)
    assert all(torch.equal(a, b) for a, b in zip(s1, s2, strict=True))
    assert all(((a >= 0) & (a < K)).all() for a in s1)


def test_end_of_audio_decision(global_model) -> None:
    """Stop when ``<|end_of_audio|>`` beats every frame together (log-sum-exp of codebook 0)."""
    model = make(global_model)
    eoa = model.layout.special_id("<|end_of_audio|>")
    logits = torch.zeros(3, model.layout.vocab_size)
    logits[0, eoa] = 10.0  # 10 > log(5): ends
    logits[1, eoa] = 1.5  # 1.5 < log(5) = 1.61: goes on
    logits[2, model.layout.unit_offset + K] = 50.0  # codebook 1 is no frame start: ends (0 > -inf)
    logits[2, model.layout.unit_offset : model.layout.unit_offset + K] = -1e4
    assert model.end_of_audio(logits).tolist() == [True, False, True]
    even = torch.zeros(4000, model.layout.vocab_size)
    even[:, eoa] = torch.tensor(float(K)).log()  # p(end) = 1/2
    g = torch.Generator().manual_seed(0)
    share = model.end_of_audio(even, do_sample=True, generator=g).float().mean()
    assert 0.45 < share < 0.55
    prompt = torch.tensor([[5, 9, model.layout.special_id("<|begin_of_audio|>")]])
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[eoa] = 0.0
        head[model.layout.unit_offset : model.layout.unit_offset + K] = 0.0  # 0 < log(5)
    assert model.generate_speech(prompt, max_frames=4)[0].shape == (4, C)


def test_learns_one_utterance(global_model) -> None:
    """A few steps on one example: greedy generation then writes its frames and stops."""
    model = make(global_model).train()
    codes = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1], [2, 3, 4, 0], [1, 1, 1, 1]])
    ids, frames, labels = example(model.layout, [5, 9, 11], codes)
    b = collate_frames([(ids, frames, labels)], pad_id=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        loss = model(**b).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        assert model(**b).loss.item() < 0.1 * first
    out = model.generate_speech(ids[None, :5], max_frames=8)[0]
    assert torch.equal(out, codes)


def test_save_reload_identical(global_model, tmp_path) -> None:
    from transformers import AutoModel

    model = make(global_model)
    b = batch(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = AutoModel.from_pretrained(tmp_path).eval()
    assert type(again) is MostMultiScale and again.config.n_codebooks == C
    assert again.config.codebook_size == K and again.config.local_hidden_size == 32
    x, y = model(**b), again(**b)
    assert torch.equal(x.logits, y.logits) and torch.equal(x.local_logits, y.local_logits)
    prompts = b["input_ids"][:, :5]
    assert all(
        torch.equal(p, q)
        for p, q in zip(
            model.generate_speech(prompts, 6), again.generate_speech(prompts, 6), strict=True
        )
    )


def test_loads_in_a_fresh_process_after_import_most(global_model, tmp_path) -> None:
    """``import most`` alone (nothing else of the package) makes ``AutoModel`` load the folder."""
    import subprocess
    import sys

    model = make(global_model)
    model.save_pretrained(tmp_path / "ms")
    prompt = torch.tensor([[5, 9, model.layout.special_id("<|begin_of_audio|>")]])
    want = model.generate_speech(prompt, 5)[0]
    script = (
        "import sys, torch, most\n"
        "from transformers import AutoModel\n"
        "m = AutoModel.from_pretrained(sys.argv[1]).eval()\n"
        "p = torch.tensor([[5, 9, int(sys.argv[2])]])\n"
        "torch.save(m.generate_speech(p, 5)[0], sys.argv[3])\n"
        "print(type(m).__name__)\n"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "ms"),
            str(int(prompt[0, -1])),
            str(tmp_path / "g.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "MostMultiScale"
    assert torch.equal(torch.load(tmp_path / "g.pt"), want)


def test_codebooks_must_divide_the_units(global_model) -> None:
    with pytest.raises(ValueError, match="20 units are not 3 codebooks"):
        MostMultiScale.from_global(global_model, 3)
    with pytest.raises(ValueError, match="at most 3"):
        make(global_model).local(torch.zeros(1, 32), torch.zeros(1, C, dtype=torch.long))


def test_left_padded_batch_generates_as_each_alone(global_model) -> None:
    model = make(global_model)
    boa = model.layout.special_id("<|begin_of_audio|>")
    short, long = [9, 11, boa], [5, 6, 7, 9, 12, boa]
    ids = torch.tensor([[1] * 3 + short, long])
    mask = torch.tensor([[0] * 3 + [1] * 3, [1] * 6])
    for use_cache in (True, False):
        both = model.generate_speech(ids, 6, attention_mask=mask, use_cache=use_cache)
        alone = [model.generate_speech(torch.tensor([p]), 6) for p in (short, long)]
        assert all(torch.equal(a, b[0]) for a, b in zip(both, alone, strict=True))
        assert not torch.equal(alone[0][0], alone[1][0])
