"""A multi-scale model decoded through flat ids (``model.generate``, what SpeechLM calls): speech
prompts continue with whole frames, text prompts with text, each row as if alone."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from most.multiscale import MostMultiScale, from_frames, to_frames

C, K = 4, 5


def make(global_model, seed: int = 0) -> MostMultiScale:
    torch.manual_seed(seed)
    return MostMultiScale.from_global(global_model, C, local_hidden_size=32, local_heads=2).eval()


def left_pad(prompts: list[list[int]], pad: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def test_speech_prompt_continues_with_the_frames_generate_speech_writes(global_model) -> None:
    model = make(global_model)
    layout = model.layout
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    tts = layout.special_id("<|tts|>")
    voice = from_frames(torch.tensor([[1, 2, 3, 4], [0, 0, 1, 1]]), layout).tolist()
    prompts = [[5, 9, tts, boa], [6, tts, boa, *voice]]  # a TTS prompt; one ending in a frame
    ids, mask = left_pad(prompts)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=6 * C, eos_token_id=[eoa])
    assert torch.equal(out[:, : ids.shape[1]], ids)
    for r, prompt in enumerate(prompts):
        pos, codes, _ = to_frames(torch.tensor(prompt), layout, C)
        (frames,) = model.generate_speech(pos[None], 6, codes=codes[None])
        want = from_frames(frames, layout).tolist() + ([eoa] if len(frames) < 6 else [])
        got = out[r, ids.shape[1] :].tolist()
        assert got[: len(want)] == want
        assert all(t == 1 for t in got[len(want) :])  # right padding after the answer
    assert not torch.equal(out[0, ids.shape[1] :], out[1, ids.shape[1] :])


def test_text_prompt_continues_with_text_greedy_as_uncached(global_model) -> None:
    model = make(global_model)
    layout = model.layout
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    asr = layout.special_id("<|asr|>")
    speech = from_frames(torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1]]), layout).tolist()
    prompt = [boa, *speech, eoa, asr]
    ids, mask = left_pad([prompt, [7, 8, 9, 10, 11, 12, 13, asr]])
    out = model.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=[2])
    answer = out[0, ids.shape[1] :].tolist()
    assert len(answer) == 5 and not layout.is_unit(torch.tensor(answer)).any()
    # the same ids, one full forward per step without a cache
    pos, codes, _ = to_frames(torch.tensor(prompt), layout, C)
    want = []
    for _ in range(5):
        logits = model(pos[None], codes[None]).logits[0, -1]
        start, end = layout.unit_range()
        logits[start:end] = float("-inf")
        nxt = int(logits.argmax())
        want.append(nxt)
        pos = torch.cat([pos, torch.tensor([nxt])])
        codes = torch.cat([codes, torch.full((1, C), -1)])
    assert answer == want
    alone = model.generate(torch.tensor([prompt]), max_new_tokens=5, eos_token_id=[2])
    assert alone[0, len(prompt) :].tolist() == answer


def test_text_stops_at_a_stop_id(global_model) -> None:
    model = make(global_model)
    prompt = torch.tensor([[7, 8, 9]])
    free = model.generate(prompt, max_new_tokens=4, eos_token_id=[10**6])[0, 3:].tolist()
    out = model.generate(prompt, max_new_tokens=4, eos_token_id=[free[1]])[0, 3:].tolist()
    assert out == free[:2]


def test_speech_lm_speaks_through_a_multi_scale_model(global_model) -> None:
    """SpeechLM's guided speech decoding (guidance and the codebook constraint on) reaches the
    frames of ``generate_speech``."""
    from most.generate import Sampling, SpeechLM

    model = make(global_model)
    layout = model.layout
    units = SimpleNamespace(n_codebooks=C)
    lm = SpeechLM(model, SimpleNamespace(pad_token_id=1), layout, units)
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    prompt = [7, 8, layout.special_id("<|tts|>"), boa]
    sampling = Sampling(max_new_tokens=5 * C, guidance=1.5)
    (ids,) = lm.generate([prompt], [eoa], sampling, guided=True, keep_stop=True)
    (frames,) = model.generate_speech(torch.tensor([prompt]), 5)
    assert len(frames) > 0
    assert ids == from_frames(frames, layout).tolist() + ([eoa] if len(frames) < 5 else [])
