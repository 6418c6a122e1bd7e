"""Prompt formats: specials by layout id, loss only on answers, prompt-only = prefix of training."""

from __future__ import annotations

import pytest
import torch

from most.data.prompts import IGNORE, Prompts
from most.layout import BEGIN_OF_AUDIO, END_OF_AUDIO, TokenLayout
from most.testing import sentences
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    tok = train_text_tokenizer(sentences(64), TokenizerConfig(300))
    layout = TokenLayout(text_vocab_size=len(tok), n_units=16, unit_tokenizer_hash="h")
    return Prompts(layout, tok)


def cases(p: Prompts):
    units, answer_units = [3, 1, 4, 1, 5], [9, 2, 6]
    text = "The capital of Velmora is Tarsk."
    return [
        (p.asr(units, text), p.asr_prompt(units)),
        (p.tts(text, units), p.tts_prompt(text)),
        (p.text_lm(text), p.text_lm_prompt()),
        (p.s2t(units, "Tarsk"), p.s2t_prompt(units)),
        (p.s2s(units, "Tarsk", answer_units), p.s2s_prompt(units)),
        (p.s2s(units, "Tarsk", answer_units, "units"), p.s2s_prompt(units, "units")),
        (p.instruct("repeat Tarsk", "Tarsk"), p.instruct_prompt("repeat Tarsk")),
    ]


def test_labels_mask_exactly_the_prompt(prompts: Prompts) -> None:
    for ex, prompt in cases(prompts):
        n = len(prompt)
        assert ex.input_ids[:n] == prompt, ex.task  # generation asks what training taught
        assert ex.labels[:n] == [IGNORE] * n, ex.task
        assert ex.labels[n:] == ex.input_ids[n:], ex.task
        assert len(ex.input_ids) > n, ex.task


def test_answers_end_with_a_stop_token(prompts: Prompts) -> None:
    stops = set(prompts.stop_ids())
    for ex, _ in cases(prompts):
        assert ex.input_ids[-1] in stops, ex.task
    eoa = prompts.layout.special_id(END_OF_AUDIO)
    assert prompts.tts("hi", [1, 2]).input_ids[-1] == eoa
    assert prompts.s2s([1], "a", [2, 3]).input_ids[-1] == eoa


def test_specials_come_from_the_layout(prompts: Prompts) -> None:
    layout = prompts.layout
    ex = prompts.asr([0, 15], "Tarsk")
    assert ex.input_ids[:3] == [
        layout.special_id(s) for s in ("<|user|>", "<|asr|>", BEGIN_OF_AUDIO)
    ]
    assert ex.input_ids[3:5] == layout.units_to_ids(torch.tensor([0, 15])).tolist()
    # text never produces layout ids: specials exist only where the builders put them
    text_ids = prompts.text("<|asr|> <|u3|>")
    assert max(text_ids) < layout.text_vocab_size


def test_s2s_modes(prompts: Prompts) -> None:
    boa = prompts.layout.special_id(BEGIN_OF_AUDIO)
    both = prompts.s2s([1], "Tarsk", [2, 3])
    units = prompts.s2s([1], "Tarsk", [2, 3], "units")
    answer_both = [t for t, lab in zip(both.input_ids, both.labels, strict=True) if lab != IGNORE]
    answer_units = [
        t for t, lab in zip(units.input_ids, units.labels, strict=True) if lab != IGNORE
    ]
    assert answer_both[: len(prompts.text("Tarsk"))] == prompts.text("Tarsk")
    assert boa in answer_both and boa not in answer_units
    assert all(prompts.layout.is_unit(torch.tensor(answer_units[:-1])))


def test_bad_units_refused(prompts: Prompts) -> None:
    with pytest.raises(ValueError, match="out of range"):
        prompts.asr([16], "x")
    with pytest.raises(ValueError, match="layout"):
        Prompts(None, prompts.tokenizer).asr([1], "x")
    speech_only = Prompts(prompts.layout, tokenizer=None)
    assert speech_only.speech_lm([1, 2]).input_ids == prompts.speech_lm([1, 2]).input_ids
    with pytest.raises(ValueError, match="without a tokenizer"):
        speech_only.asr([1], "x")
