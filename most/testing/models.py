"""Small stand-in models and the helpers the MoE tests share (tiny bases through ``most adapt``,
grouped expert dispatch against a per-token loop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from most.layout import TokenLayout
from most.testing.runs import TINY_MODEL

# Small stand-ins shared by tests of several modules.


class Chars:
    """A character-level stand-in tokenizer: one id per character."""

    eos_token_id = 0

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def tiny_lm(vocab_size: int = 64):
    """A random :data:`TINY_MODEL` ``Qwen3MoeForCausalLM`` (seed 0) over ``vocab_size`` ids."""
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(vocab_size, 0))


class Voice:
    """A vocoder/TTS stand-in: a "wav" is the unit list as floats."""

    def __init__(self, says: dict[str, list[int]]) -> None:
        self.says = says

    def vocode(self, units):

        return np.asarray(units, dtype=np.float32)

    def tts_units(self, texts, sampling=None, on_batch=None) -> list[list[int]]:
        if on_batch:
            on_batch(len(texts))
        return [self.says[t] for t in texts]


class Ear:
    """A judge stand-in: knows which "wav" means which words."""

    name = "ear"

    def __init__(self, hears: dict[tuple, str]) -> None:
        self.hears = hears

    def transcribe(self, wavs) -> list[str]:

        return [self.hears.get(tuple(np.asarray(w).tolist()), "") for w in wavs]


# What `most adapt` makes of the tiny MoE bases (the ``base_dirs`` fixture of tests/conftest.py).

TEXT_VOCAB = 64  # the bases' text vocabulary
LAYOUT_UNITS = 20  # unit tokens `layout_args` adds
ARCHS = (
    "qwen3_moe",
    "qwen2_moe",
    "olmoe",
    "mixtral",
    "deepseek_v3",
    "deepseek_v2",
    "gpt_oss",  # biased experts with their own gating, a router with a logit bias, tuple output
    "dbrx",  # experts as flat w1/v1/w2 matrices, MoE fields nested under ffn_config
    "qwen3_5_moe",  # a multimodal wrapper: the MoE fields nested under text_config
)
"""Tiny bases taken through `most adapt` end to end (the all-architecture test covers the rest in
memory: tests/moe/test_all_archs.py)."""


MUSIC_UNITS = 12  # music unit tokens `layout_args(music=True)` adds
BEGIN_OF_MUSIC = "<|begin_of_music|>"


def layout_args(music: bool = False):
    """The ``layout`` section of ``most adapt`` for the tiny bases: :data:`LAYOUT_UNITS` speech
    units; ``music``: also a third modality, ``music``, with :data:`MUSIC_UNITS` units of its own
    and two specials (G = 3: text, speech, music)."""
    from most.adapt import LayoutSection
    from most.layout import DEFAULT_SPECIALS, UnitModality

    if not music:
        return LayoutSection(n_units=LAYOUT_UNITS, unit_tokenizer_hash="test-units")
    specials = (BEGIN_OF_MUSIC, "<|end_of_music|>")
    return LayoutSection(
        n_units=LAYOUT_UNITS,
        unit_tokenizer_hash="test-units",
        specials=[*DEFAULT_SPECIALS, *specials],
        extra_modalities=[UnitModality("music", MUSIC_UNITS, "test-music", specials=specials)],
    )


def run_adapt(run: Path, base: Path, layout=None, **experts) -> Path:
    """``most adapt`` of ``base`` into ``run`` with ``ExpertsConfig(**experts)`` and the layout
    section ``layout`` (default :func:`layout_args`); the HF folder."""
    from most.adapt import SourceSection
    from most.moe.config import ExpertsConfig
    from most.stages.adapt import adapt

    return adapt(
        run=run,
        source=SourceSection(model=base),
        experts=ExpertsConfig(**experts),
        layout=layout or layout_args(),
    )


def load_adapted(
    run: Path, bases: dict[str, Path], arch: str = "qwen3_moe", layout=None, **experts
):
    """``run_adapt`` then load: ``(model in eval mode, TokenLayout)``."""
    from transformers import AutoModelForCausalLM

    from most.modeling import load_layout

    out = run_adapt(run, bases[arch], layout, **experts)
    return AutoModelForCausalLM.from_pretrained(out).eval(), load_layout(out)


def mixed_batch(
    layout: TokenLayout,
    batch: int = 2,
    n_text: int = 6,
    n_speech: int = 6,
    seed: int = 0,
    n_music: int = 0,
):
    """Text ids, then <|begin_of_audio|> and unit ids (then, with ``n_music``, <|begin_of_music|>
    and music unit ids): ``(B, n_text + 1 + n_speech [+ 1 + n_music])``."""

    g = torch.Generator().manual_seed(seed)
    text = torch.randint(4, TEXT_VOCAB, (batch, n_text), generator=g)
    boa = torch.full((batch, 1), layout.special_id("<|begin_of_audio|>"))
    units = layout.units_to_ids(torch.randint(0, layout.n_units, (batch, n_speech), generator=g))
    parts = [text, boa, units]
    if n_music:
        bom = torch.full((batch, 1), layout.special_id(BEGIN_OF_MUSIC))
        music = torch.randint(0, MUSIC_UNITS, (batch, n_music), generator=g)
        parts += [bom, layout.units_to_ids(music, "music")]
    return torch.cat(parts, dim=1)


# Grouped expert dispatch against a per-token reference loop.


def loop_experts(m, x, index, weight):
    """Reference for ``GroupedExperts``: every token slot through its expert, one at a time."""

    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for i, w in zip(index[t].tolist(), weight[t], strict=True):
            if i == m.num_experts:
                continue
            gate, up = (m.gate_up_proj[i] @ x[t]).chunk(2)
            out[t] = out[t] + w * (m.down_proj[i] @ (m.act_fn(gate) * up))
    return out


def skip_case():
    """6 experts with non-trivial weights; 20 tokens x 3 slots, id 6 = skip, token 0 served by
    nobody. Returns ``(experts, x, index)``."""

    from most.moe.experts import GroupedExperts

    torch.manual_seed(0)
    m = GroupedExperts(6, 16, 8)
    torch.nn.init.normal_(m.gate_up_proj, std=0.3)
    torch.nn.init.normal_(m.down_proj, std=0.3)
    x = torch.randn(20, 16, requires_grad=True)
    index = torch.randint(0, 7, (20, 3))
    index[0] = 6
    return m, x, index


def against_loop(m, x, index, weight, wrt: list):
    """``(ours, reference, our grads, reference grads)``, gradients of ``sum(out^2)`` wrt ``wrt``."""

    ours = m(x, index, weight, can_skip=True)
    ref = loop_experts(m, x, index, weight)
    grads = torch.autograd.grad(ours.square().sum(), wrt)
    return ours, ref, grads, torch.autograd.grad(ref.square().sum(), wrt)
