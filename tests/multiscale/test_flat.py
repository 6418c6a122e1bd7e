"""The flat baseline's constraint: position p after <|begin_of_audio|> is a code of codebook p % C."""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList

from most.multiscale import CodebookConstraint
from most.units.codebooks import unflatten

C, K = 4, 5


def test_allowed_ids_follow_the_codebook(global_model) -> None:
    layout = global_model.layout
    rule = CodebookConstraint(layout, C)
    boa, eoa, u = rule.begin, rule.end, layout.unit_offset
    v = layout.vocab_size
    rows = torch.tensor(
        [
            [7, 8, 9, 10, 11, boa],  # audio starts: codebook 0 or the end
            [7, 8, 9, boa, u + 1, u + K + 2],  # two codes in: codebook 2
            [boa, u, u + K, u + 2 * K, u + 3 * K, u + 4],  # a frame and one code: codebook 1
            [7, 8, 9, 10, 11, 12],  # no audio: free
            [boa, u, u + K, u + 2 * K, u + 3 * K, eoa],  # audio over: free
        ]
    )
    inside, ok = rule.allowed(rows, v)
    assert inside.tolist() == [True, True, True, False, False]
    ids = torch.arange(v)

    def only(c: int, end: bool) -> torch.Tensor:
        want = (ids >= u + c * K) & (ids < u + (c + 1) * K)
        return want | ((ids == eoa) & end)

    assert torch.equal(ok[0], only(0, True))
    assert torch.equal(ok[1], only(2, False))
    assert torch.equal(ok[2], only(1, False))
    scores = torch.randn(5, v)
    out = rule(rows, scores)
    assert torch.equal(out[3:], scores[3:])
    assert torch.isinf(out[1][~only(2, False)]).all() and torch.equal(
        out[1][only(2, False)], scores[1][only(2, False)]
    )


def test_constrained_generation_yields_whole_frames(global_model) -> None:
    layout = global_model.layout
    rule = CodebookConstraint(layout, C)
    prompt = torch.tensor([[7, 8, 9, layout.special_id("<|tts|>"), rule.begin]])
    kw = dict(max_new_tokens=4 * C, do_sample=False, eos_token_id=rule.end, pad_token_id=1)
    free = global_model.generate(prompt, **kw)[0, prompt.shape[1] :]
    held = global_model.generate(prompt, logits_processor=LogitsProcessorList([rule]), **kw)
    held = held[0, prompt.shape[1] :]
    units = held[held != rule.end]
    assert len(units) % C == 0 and len(units) > 0
    codes = unflatten(units - layout.unit_offset, C, K)  # raises if a code is off its codebook
    assert codes.shape == (len(units) // C, C)
    try:
        unflatten(free[free != rule.end] - layout.unit_offset, C, K)
        free_ok = True
    except ValueError:
        free_ok = False
    assert not free_ok  # the untrained model alone does not keep to the codebooks


def test_speech_lm_writes_whole_frames_with_multi_codebook_units(global_model) -> None:
    """SpeechLM applies the constraint when its unit tokenizer has codebooks, guided or not, and
    vocodes an answer cut inside a frame up to its last whole frame."""
    from types import SimpleNamespace

    from most.generate import Sampling, SpeechLM

    layout = global_model.layout
    decoded = []
    units = SimpleNamespace(
        n_codebooks=C, decode=lambda ids: decoded.append(ids.tolist()) or torch.zeros(3)
    )
    lm = SpeechLM(global_model, SimpleNamespace(pad_token_id=1), layout, units)
    boa, eoa = layout.special_id("<|begin_of_audio|>"), layout.special_id("<|end_of_audio|>")
    prompts = [[7, 8, 9, layout.special_id("<|tts|>"), boa], [7, layout.special_id("<|tts|>"), boa]]
    for guided in (False, True):
        out = lm.generate(
            prompts, [eoa], Sampling(max_new_tokens=3 * C, guidance=1.5), guided=guided
        )
        for ids in out:
            units_ = torch.tensor(lm.units_of(ids))
            assert len(units_) % C == 0 and len(units_) == len(ids) > 0
            unflatten(units_, C, K)  # raises if a code is off its codebook
    lm.vocode([*range(C), K])  # a frame and one code of the next
    assert decoded == [list(range(C))]
    assert lm.vocode([0, K]).size == 0
