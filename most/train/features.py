"""The continuous-audio variant of the speech stages: audio enters through the model's adapter.

With ``adapter.kind`` moe or dense, the understanding tasks (``asr``, ``s2t``) read the audio itself
(``RUN/data``, not the unit datasets): each utterance becomes frozen frames
(:class:`~most.units.frontend.AudioFrontend`), the prompt holds one placeholder per adapter token
where the units would be, and the example carries the frames (:class:`~most.data.prompts.Example`
``features``/``audio_span``). Tasks that *write* speech (tts, s2s, speech_lm) keep their units.

    adapter:        {kind: moe, stack: 4, n_experts: 8, top_k: 2, n_shared: 1, expert_size: 64}
    audio_frontend: {kind: mel}            # or {kind: ctc, path: RUN/units}, {kind: hf, path: ...}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import datasets
import numpy as np
import torch

from most.corpora.schema import decode_audio
from most.data.prompts import Example, Prompts
from most.layout import BEGIN_OF_AUDIO
from most.moe.adapter import AdapterConfig, adapter_lengths
from most.train.mixing import Source
from most.train.sources import answer_column
from most.units.frontend import AudioFrontend, FrontendConfig


def attach(
    model, adapter: AdapterConfig, frontend: FrontendConfig, seed: int
) -> AudioFrontend | None:
    """The frontend of the adapter variant, attaching a fresh adapter (initialised from ``seed``)
    to ``model`` unless it has one already (a later stage continues the earlier stage's); None for
    ``adapter.kind: none``.

    A model that has an adapter must be asked for the same kind and frontend: the features it was
    trained on are what it understands.
    """
    if adapter.kind == "none":
        return None
    fe = AudioFrontend(frontend)
    have = getattr(model.config, "adapter", None)
    if have is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model.attach_adapter(adapter, frontend.to_dict(), fe.dim)
        return fe
    if have["kind"] != adapter.kind or model.config.audio_frontend != frontend.to_dict():
        raise ValueError(
            f"the model's adapter is {have['kind']} on {model.config.audio_frontend}; this stage "
            f"asks for {adapter.kind} on {frontend.to_dict()}"
        )
    return fe


def with_features(
    p: Prompts, build: Callable[[list[int]], Example], feats: torch.Tensor, stack: int
) -> Example:
    """``build(units)`` with one placeholder unit per adapter token of ``feats (F, D)``; the span
    follows the prompt's first ``<|begin_of_audio|>``."""
    n = int(adapter_lengths(feats.shape[0], stack))
    ex = build([0] * n)
    start = ex.input_ids.index(p.sp(BEGIN_OF_AUDIO)) + 1
    return Example(ex.input_ids, ex.labels, ex.task, feats, (start, start + n))


def _features(fe: AudioFrontend, cell: dict) -> torch.Tensor:
    return fe.features(np.asarray(decode_audio(cell), dtype=np.float32))


def asr(p: Prompts, ds: datasets.Dataset, fe: AudioFrontend, stack: int) -> Source:
    """ASR on the audio of ``ds`` (``audio``, ``text`` columns)."""

    def build(r: dict) -> Example:
        return with_features(p, lambda u: p.asr(u, r["text"]), _features(fe, r["audio"]), stack)

    return Source("asr", ds.select_columns(["audio", "text"]), build)


def s2t(
    p: Prompts, ds: datasets.Dataset, fe: AudioFrontend, stack: int, sentences: bool = True
) -> Source:
    """Spoken question (``audio``) -> text answer (:func:`~most.train.sources.answer_column`)."""
    col = answer_column(ds, sentences)

    def build(r: dict) -> Example:
        return with_features(p, lambda u: p.s2t(u, r[col]), _features(fe, r["audio"]), stack)

    return Source("s2t", ds.select_columns(["audio", col]), build)


def replace(sources: Sequence[Source], *new: Source) -> list[Source]:
    """``sources`` with each task of ``new`` swapped for its adapter version."""
    by_task = {s.task: s for s in new}
    return [by_task.get(s.task, s) for s in sources]
