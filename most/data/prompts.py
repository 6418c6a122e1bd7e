"""Prompt formats: the one place that decides how every task is laid out as token ids.

Training, generation and evaluation all build their sequences here, so a prompt the model was trained
on is byte-for-byte the prompt it is asked at inference. Special tokens are always inserted by id from
the :class:`~most.layout.TokenLayout` (never by tokenizing a look-alike string such as ``"<|asr|>"``),
and text is encoded with ``add_special_tokens=False`` so the tokenizer adds nothing of its own.

Formats (``|`` separates the prompt, whose labels are masked, from the answer the loss is taken on)::

    asr      <|user|> <|asr|> <|boa|> u.. <|eoa|> <|assistant|>   | text <|end_of_turn|>
    tts      <|user|> <|tts|> text <|assistant|> <|boa|>         | u.. <|eoa|>
    text_lm  <eos>                                               | text <eos>
    s2t      <|user|> <|boa|> u.. <|eoa|> <|text_answer|> <|assistant|>    | answer <|end_of_turn|>
    s2s      <|user|> <|boa|> u.. <|eoa|> <|speech_answer|> <|assistant|>  | answer <|boa|> u.. <|eoa|>
             (``speech_mode="units"``: the prompt also ends with <|boa|> and the answer is u.. <|eoa|>)
    instruct <|user|> prompt <|text_answer|> <|assistant|>      | response <|end_of_turn|>
    speech_lm <|user|> <|asr|> <|boa|>                           | u.. <|eoa|>
             (the speech itself is the answer: the unit LM that ``most.eval.audio_lm`` scores)
    ttm      <|user|> <|ttm|> caption <|assistant|> <|bom|>     | m.. <|eom|>
    music_continue <|user|> <|ttm|> <|assistant|> <|bom|> m..   | m.. <|eom|>
             (text to music, and the same with no caption: the music's start is the prompt;
             ``m`` are the music modality's units, ``<|bom|>``/``<|eom|>`` its delimiters)
    paraling <|user|> question <|boa|> u.. <|eoa|> <|text_answer|> <|assistant|> | answer <|end_of_turn|>
             (a question about how the audio was spoken: :mod:`most.data.paraling`)
    vtts     <|user|> <|vtts|> <|boa|> p.. <|eoa|> text <|assistant|> <|boa|>  | u.. <|eoa|>
    vc       <|user|> <|vc|> <|boa|> s.. <|eoa|> <|boa|> p.. <|eoa|> <|assistant|> <|boa|>  | u.. <|eoa|>
    se       <|user|> <|se|> <|boa|> n.. <|eoa|> <|assistant|> <|boa|>      | u.. <|eoa|>
    speech_continue <|user|> <|sc|> <|assistant|> <|boa|> u..            | u.. <|eoa|>
             (UniAudio's tasks: ``p`` a ~3-s prompt of the target voice, ``s`` the source speech
             whose words are kept, ``n`` noisy speech; the answer is speech in ``p``'s voice, or
             clean. ``speech_continue`` is ``speech_lm`` with its own marker and a spoken start as
             the prompt; ``speech_lm`` keeps ``<|asr|>``, the context the audio-LM scorer reads.
             Their markers (:data:`~most.layout.UNIAUDIO_SPECIALS`) exist only in layouts that
             list them: ``recipes/uniaudio``.)

A text answer ends with ``<|end_of_turn|>``, a spoken one with ``<|end_of_audio|>`` and music with
``<|end_of_music|>``: generation
stops on those (:meth:`Prompts.stop_ids`). The text-LM task reuses the base tokenizer's EOS as
document separator, exactly as the ``base`` stage pretrained it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from most.layout import (
    BEGIN_OF_AUDIO,
    BEGIN_OF_MUSIC,
    END_OF_AUDIO,
    END_OF_MUSIC,
    MUSIC,
    SPEECH_CONTINUATION,
    SPEECH_ENHANCEMENT,
    TEXT_TO_MUSIC,
    VOICE_CONVERSION,
    VOICE_TTS,
    TokenLayout,
)

IGNORE = -100
SpeechMode = Literal["text_then_units", "units"]
TASKS: tuple[str, ...] = (
    "asr", "tts", "text_lm", "s2t", "s2s", "instruct", "speech_lm", "ttm", "music_continue",
    "paraling", "vtts", "vc", "se", "speech_continue",
)  # fmt: skip


class TextTokenizer(Protocol):
    """The slice of a ``transformers`` tokenizer the prompt builders need."""

    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass(frozen=True)
class Example:
    """One training sequence. ``labels[i]`` is ``input_ids[i]`` on answer tokens, ``IGNORE`` elsewhere
    (unshifted, as ``transformers`` causal LMs expect).

    Continuous audio (the adapter path, :mod:`most.moe.adapter`): ``features (F, D)`` frozen frames
    whose adapter tokens replace ``input_ids[audio_span[0]:audio_span[1]]`` (placeholders)."""

    input_ids: list[int]
    labels: list[int]
    task: str
    features: torch.Tensor | None = None
    audio_span: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class Prompts:
    """Builds prompt-only sequences (for generation) and full (input_ids, labels) examples (training).

    ``units`` arguments are unit indices in ``[0, layout.n_units)``; they are mapped to token ids here.
    ``layout`` is None for the text-only base LM, which has only the text-LM format; ``tokenizer``
    is None for speech-only use (``speech_lm``, the audio-LM scorer), where no builder reads text.
    """

    layout: TokenLayout | None
    tokenizer: TextTokenizer | None

    # ---- token helpers -------------------------------------------------------------------------
    def sp(self, token: str) -> int:
        if self.layout is None:
            raise ValueError(f"{token!r} needs a token layout; this is a text-only model")
        return self.layout.special_id(token)

    def text(self, text: str) -> list[int]:
        return list(self._tokenizer().encode(text, add_special_tokens=False))

    def _tokenizer(self) -> TextTokenizer:
        if self.tokenizer is None:
            raise ValueError("this prompt has text; these Prompts were built without a tokenizer")
        return self.tokenizer

    def audio(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        """``<|begin_of_audio|> u.. <|end_of_audio|>`` as ids."""
        return [self.sp(BEGIN_OF_AUDIO), *self.unit_ids(units), self.sp(END_OF_AUDIO)]

    def unit_ids(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        if self.layout is None:
            raise ValueError("speech units need a token layout; this is a text-only model")
        units = torch.as_tensor(units, dtype=torch.long)
        if units.numel() and (units.min() < 0 or units.max() >= self.layout.n_units):
            raise ValueError(f"unit index out of range [0, {self.layout.n_units})")
        return self.layout.units_to_ids(units).tolist()

    def music_ids(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        """Music unit indices in ``[0, n)`` (``n``: the music modality's unit count) -> token ids."""
        if self.layout is None:
            raise ValueError("music units need a token layout; this is a text-only model")
        start, end = self.layout.unit_range(MUSIC)
        units = torch.as_tensor(units, dtype=torch.long)
        if units.numel() and (units.min() < 0 or units.max() >= end - start):
            raise ValueError(f"music unit index out of range [0, {end - start})")
        return self.layout.units_to_ids(units, MUSIC).tolist()

    @property
    def eos_id(self) -> int:
        if self._tokenizer().eos_token_id is None:
            raise ValueError("the text tokenizer has no eos_token_id (needed by the text-LM task)")
        return int(self.tokenizer.eos_token_id)

    def stop_ids(self) -> list[int]:
        """Ids that end a generated answer."""
        return [self.sp("<|end_of_turn|>"), self.sp(END_OF_AUDIO), self.eos_id]

    # ---- prompt-only variants (generation) --------------------------------------------------
    def asr_prompt(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        return [
            self.sp("<|user|>"),
            self.sp("<|asr|>"),
            *self.audio(units),
            self.sp("<|assistant|>"),
        ]

    def tts_prompt(self, text: str) -> list[int]:
        return [
            self.sp("<|user|>"),
            self.sp("<|tts|>"),
            *self.text(text),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_AUDIO),
        ]

    def s2t_prompt(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        return [
            self.sp("<|user|>"),
            *self.audio(units),
            self.sp("<|text_answer|>"),
            self.sp("<|assistant|>"),
        ]

    def s2s_prompt(
        self, units: Sequence[int] | torch.Tensor, speech_mode: SpeechMode = "text_then_units"
    ) -> list[int]:
        ids = [
            self.sp("<|user|>"),
            *self.audio(units),
            self.sp("<|speech_answer|>"),
            self.sp("<|assistant|>"),
        ]
        return [*ids, self.sp(BEGIN_OF_AUDIO)] if speech_mode == "units" else ids

    def instruct_prompt(self, prompt: str) -> list[int]:
        return [
            self.sp("<|user|>"),
            *self.text(prompt),
            self.sp("<|text_answer|>"),
            self.sp("<|assistant|>"),
        ]

    def ask_prompt(self, question: str, units: Sequence[int] | torch.Tensor) -> list[int]:
        """A question in text about audio: the chat format of a user turn with both."""
        return [
            self.sp("<|user|>"),
            *self.text(question),
            *self.audio(units),
            self.sp("<|text_answer|>"),
            self.sp("<|assistant|>"),
        ]

    def speech_lm_prompt(self) -> list[int]:
        """The ASR prompt up to its audio: what precedes speech the model reads."""
        return [self.sp("<|user|>"), self.sp("<|asr|>"), self.sp(BEGIN_OF_AUDIO)]

    def ttm_prompt(self, caption: str = "") -> list[int]:
        """Text to music up to the music; with no caption, the context of music continuation."""
        return [
            self.sp("<|user|>"),
            self.sp(TEXT_TO_MUSIC),
            *(self.text(caption) if caption else []),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_MUSIC),
        ]

    def music_continue_prompt(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        return [*self.ttm_prompt(), *self.music_ids(units)]

    def vtts_prompt(self, voice: Sequence[int] | torch.Tensor, text: str) -> list[int]:
        """Voice-prompted TTS up to the speech: ``voice`` (units of the target voice) then the text."""
        return [
            self.sp("<|user|>"),
            self.sp(VOICE_TTS),
            *self.audio(voice),
            *self.text(text),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_AUDIO),
        ]

    def vc_prompt(
        self, source: Sequence[int] | torch.Tensor, voice: Sequence[int] | torch.Tensor
    ) -> list[int]:
        """Voice conversion up to the speech: the ``source`` speech, then the target ``voice``."""
        return [
            self.sp("<|user|>"),
            self.sp(VOICE_CONVERSION),
            *self.audio(source),
            *self.audio(voice),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_AUDIO),
        ]

    def se_prompt(self, noisy: Sequence[int] | torch.Tensor) -> list[int]:
        return [
            self.sp("<|user|>"),
            self.sp(SPEECH_ENHANCEMENT),
            *self.audio(noisy),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_AUDIO),
        ]

    def speech_continue_prompt(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        return [
            self.sp("<|user|>"),
            self.sp(SPEECH_CONTINUATION),
            self.sp("<|assistant|>"),
            self.sp(BEGIN_OF_AUDIO),
            *self.unit_ids(units),
        ]

    def text_lm_prompt(self, text: str = "") -> list[int]:
        return [self.eos_id, *self.text(text)]

    # ---- full examples (training) -----------------------------------------------------------
    def asr(self, units: Sequence[int] | torch.Tensor, text: str) -> Example:
        answer = [*self.text(text), self.sp("<|end_of_turn|>")]
        return _join(self.asr_prompt(units), answer, "asr")

    def tts(
        self,
        text: str,
        units: Sequence[int] | torch.Tensor,
        history: Sequence[int] | torch.Tensor | None = None,
    ) -> Example:
        """``history``: units fed as input in place of ``units`` (same length; the labels stay
        ``units``), e.g. noisy ones (:func:`most.data.augment.substitute`)."""
        ex = _join(self.tts_prompt(text), [*self.unit_ids(units), self.sp(END_OF_AUDIO)], "tts")
        if history is None:
            return ex
        n = len(units)
        if len(history) != n:
            raise ValueError(f"TTS history has {len(history)} units, the target {n}")
        start = len(ex.input_ids) - n - 1
        ids = [*ex.input_ids[:start], *self.unit_ids(history), *ex.input_ids[start + n :]]
        return Example(ids, ex.labels, "tts")

    def speech_lm(self, units: Sequence[int] | torch.Tensor) -> Example:
        return _join(
            self.speech_lm_prompt(), [*self.unit_ids(units), self.sp(END_OF_AUDIO)], "speech_lm"
        )

    def ttm(self, caption: str, units: Sequence[int] | torch.Tensor) -> Example:
        if not caption.strip():
            raise ValueError("text to music needs a caption")
        answer = [*self.music_ids(units), self.sp(END_OF_MUSIC)]
        return _join(self.ttm_prompt(caption), answer, "ttm")

    def music_continue(self, units: Sequence[int] | torch.Tensor, start: int) -> Example:
        """``units[:start]`` is the prompt, the rest (and ``<|end_of_music|>``) the answer."""
        units = list(units)
        if not 0 < start < len(units):
            raise ValueError(f"music continuation: start {start} not inside 1..{len(units) - 1}")
        answer = [*self.music_ids(units[start:]), self.sp(END_OF_MUSIC)]
        return _join(self.music_continue_prompt(units[:start]), answer, "music_continue")

    def vtts(
        self, voice: Sequence[int] | torch.Tensor, text: str, units: Sequence[int] | torch.Tensor
    ) -> Example:
        return _join(self.vtts_prompt(voice, text), self._speech(units), "vtts")

    def vc(
        self,
        source: Sequence[int] | torch.Tensor,
        voice: Sequence[int] | torch.Tensor,
        units: Sequence[int] | torch.Tensor,
    ) -> Example:
        return _join(self.vc_prompt(source, voice), self._speech(units), "vc")

    def se(
        self, noisy: Sequence[int] | torch.Tensor, clean: Sequence[int] | torch.Tensor
    ) -> Example:
        return _join(self.se_prompt(noisy), self._speech(clean), "se")

    def speech_continue(self, units: Sequence[int] | torch.Tensor, start: int) -> Example:
        """``units[:start]`` is the prompt, the rest (and ``<|end_of_audio|>``) the answer."""
        units = list(units)
        if not 0 < start < len(units):
            raise ValueError(f"speech continuation: start {start} not inside 1..{len(units) - 1}")
        prompt = self.speech_continue_prompt(units[:start])
        return _join(prompt, self._speech(units[start:]), "speech_continue")

    def _speech(self, units: Sequence[int] | torch.Tensor) -> list[int]:
        """A spoken answer: ``u.. <|end_of_audio|>``."""
        return [*self.unit_ids(units), self.sp(END_OF_AUDIO)]

    def text_lm(self, text: str) -> Example:
        # Every token after the leading separator is a target: the whole document is the answer.
        return _join([self.eos_id], [*self.text(text), self.eos_id], "text_lm")

    def s2t(self, units: Sequence[int] | torch.Tensor, answer: str) -> Example:
        return _join(
            self.s2t_prompt(units), [*self.text(answer), self.sp("<|end_of_turn|>")], "s2t"
        )

    def s2s(
        self,
        units: Sequence[int] | torch.Tensor,
        answer: str,
        answer_units: Sequence[int] | torch.Tensor,
        speech_mode: SpeechMode = "text_then_units",
    ) -> Example:
        speech = [*self.unit_ids(answer_units), self.sp(END_OF_AUDIO)]
        if speech_mode == "text_then_units":
            speech = [*self.text(answer), self.sp(BEGIN_OF_AUDIO), *speech]
        return _join(self.s2s_prompt(units, speech_mode), speech, "s2s")

    def paraling(self, question: str, units: Sequence[int] | torch.Tensor, answer: str) -> Example:
        answer_ids = [*self.text(answer), self.sp("<|end_of_turn|>")]
        return _join(self.ask_prompt(question, units), answer_ids, "paraling")

    def instruct(self, prompt: str, response: str) -> Example:
        answer = [*self.text(response), self.sp("<|end_of_turn|>")]
        return _join(self.instruct_prompt(prompt), answer, "instruct")


def _join(prompt: list[int], answer: list[int], task: str) -> Example:
    return Example(prompt + answer, [IGNORE] * len(prompt) + answer, task)
