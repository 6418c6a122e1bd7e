"""UniAudio task prompts (vtts, vc, se, speech_continue): exact layouts, loss only on the answer."""

from __future__ import annotations

import pytest

from most.data.prompts import IGNORE, Prompts
from most.layout import (
    BEGIN_OF_AUDIO,
    DEFAULT_SPECIALS,
    END_OF_AUDIO,
    SPEECH_CONTINUATION,
    SPEECH_ENHANCEMENT,
    UNIAUDIO_SPECIALS,
    VOICE_CONVERSION,
    VOICE_TTS,
    LayoutError,
    TokenLayout,
)
from most.testing import sentences
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer

TEXT = "The capital of Velmora is Tarsk."
SOURCE, VOICE, TARGET = [3, 1, 4, 1], [7, 7, 2], [9, 2, 6, 5, 0]


@pytest.fixture(scope="module")
def tok():
    return train_text_tokenizer(sentences(64), TokenizerConfig(300))


@pytest.fixture(scope="module")
def p(tok) -> Prompts:
    specials = (*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS)
    layout = TokenLayout(len(tok), n_units=16, unit_tokenizer_hash="h", specials=specials)
    return Prompts(layout, tok)


def _u(p: Prompts, units: list[int]) -> list[int]:
    return p.unit_ids(units)


def _check(ex, prompt: list[int], answer: list[int], task: str) -> None:
    assert ex.task == task
    assert ex.input_ids == prompt + answer
    assert ex.labels == [IGNORE] * len(prompt) + answer


def test_vtts_layout(p: Prompts) -> None:
    boa, eoa = p.sp(BEGIN_OF_AUDIO), p.sp(END_OF_AUDIO)
    prompt = [
        p.sp("<|user|>"), p.sp(VOICE_TTS), boa, *_u(p, VOICE), eoa, *p.text(TEXT),
        p.sp("<|assistant|>"), boa,
    ]  # fmt: skip
    assert p.vtts_prompt(VOICE, TEXT) == prompt
    _check(p.vtts(VOICE, TEXT, TARGET), prompt, [*_u(p, TARGET), eoa], "vtts")


def test_vc_layout_source_then_voice(p: Prompts) -> None:
    boa, eoa = p.sp(BEGIN_OF_AUDIO), p.sp(END_OF_AUDIO)
    prompt = [
        p.sp("<|user|>"), p.sp(VOICE_CONVERSION), boa, *_u(p, SOURCE), eoa,
        boa, *_u(p, VOICE), eoa, p.sp("<|assistant|>"), boa,
    ]  # fmt: skip
    assert p.vc_prompt(SOURCE, VOICE) == prompt
    _check(p.vc(SOURCE, VOICE, TARGET), prompt, [*_u(p, TARGET), eoa], "vc")
    assert p.vc_prompt(VOICE, SOURCE) != prompt  # the order says which is the voice


def test_se_layout(p: Prompts) -> None:
    boa, eoa = p.sp(BEGIN_OF_AUDIO), p.sp(END_OF_AUDIO)
    prompt = [p.sp("<|user|>"), p.sp(SPEECH_ENHANCEMENT), boa, *_u(p, SOURCE), eoa]
    prompt += [p.sp("<|assistant|>"), boa]
    assert p.se_prompt(SOURCE) == prompt
    _check(p.se(SOURCE, TARGET), prompt, [*_u(p, TARGET), eoa], "se")


def test_speech_continue_layout_and_split(p: Prompts) -> None:
    head = [p.sp("<|user|>"), p.sp(SPEECH_CONTINUATION), p.sp("<|assistant|>")]
    head.append(p.sp(BEGIN_OF_AUDIO))
    ex = p.speech_continue(TARGET, 2)
    _check(
        ex, [*head, *_u(p, TARGET[:2])], [*_u(p, TARGET[2:]), p.sp(END_OF_AUDIO)], "speech_continue"
    )
    assert p.speech_continue_prompt(TARGET[:2]) == [*head, *_u(p, TARGET[:2])]
    for bad in (0, len(TARGET)):
        with pytest.raises(ValueError, match="speech continuation"):
            p.speech_continue(TARGET, bad)


def test_speech_lm_keeps_its_asr_context(p: Prompts) -> None:
    """The unit LM the audio-LM scorer reads is unchanged: continuation has its own marker."""
    assert p.speech_lm_prompt()[1] == p.sp("<|asr|>")
    assert p.speech_continue_prompt([])[1] != p.sp("<|asr|>")


def test_markers_need_a_layout_that_lists_them(tok) -> None:
    plain = Prompts(TokenLayout(len(tok), n_units=16, unit_tokenizer_hash="h"), tok)
    with pytest.raises(LayoutError, match="vtts"):
        plain.vtts(VOICE, TEXT, TARGET)
    assert not set(UNIAUDIO_SPECIALS) & set(DEFAULT_SPECIALS)  # existing layouts keep their ids
