"""``most adapt``: turn a pretrained HF MoE causal LM into a modality-aware speech-text model.

Steps, each checked before any weight is written:

1. read the base config and find its architecture entry (:mod:`most.moe.arch`): dense or unknown
   models stop here with a clear error;
2. build the :class:`~most.layout.TokenLayout` (text vocab + specials + unit tokens) and refuse
   layouts whose tokens already exist in the base tokenizer;
3. load the weights in the checkpoint's dtype (:func:`most.weights.load_causal_lm`), extend
   embeddings / LM head, add the tokens to the tokenizer;
4. swap every MoE block for a :class:`~most.moe.block.ModalityMoE` (``split`` or ``upcycle``), one
   layer at a time, each new block created in the weights' dtype;
5. save an HF folder (safetensors with the experts stacked as in memory, config, tokenizer,
   ``token_layout.json``) atomically.

Host memory stays near one copy of the model plus one layer's new experts
(``benchmarks/adapt_rss.py`` measures it); ``--dry-run`` prints the estimate for any config.

New embedding rows are the mean of the pretrained rows plus small Gaussian noise
(``noise * per-dimension std``): starting at the centre of the embedding cloud gives new tokens
average logits (none dominates or is unreachable at step 0), and the noise breaks the symmetry
between the many unit tokens, which would otherwise receive identical gradients.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from transformers import PreTrainedConfig
from transformers.tokenization_utils_base import AddedToken

from most.layout import (
    DEFAULT_SPECIALS,
    DEFAULT_SPEECH_SPECIALS,
    MUSIC,
    MUSIC_SPECIALS,
    SPEECH,
    TEXT,
    TEXT_TO_MUSIC,
    LayoutError,
    TokenLayout,
    UnitModality,
)
from most.modeling import MostConfig
from most.moe.arch import (
    build_lm,
    expert_weights,
    find_spec,
    get_path,
    moe_layers,
    moe_shape,
    text_config,
)
from most.moe.block import RoutingState
from most.moe.config import ExpertsConfig
from most.moe.surgery import convert, layer_groups
from most.run import Run
from most.units.music import music_tokenizer_info

#: Filler tokens that pad a tokenizer shorter than the embedding table, so that added token ids
#: start exactly at ``text_vocab_size`` as the layout says.
RESERVED = "<|most_reserved_{}|>"


@dataclass
class SourceSection:
    """The pretrained MoE model to adapt."""

    model: Path | None = None
    """Local HF folder (config, safetensors, tokenizer). None: ``RUN/base/hf`` (the base stage)."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Dtype the weights are loaded, adapted and saved in; ``auto`` = the checkpoint's own (its
    config's ``dtype``), so no copy in a wider dtype is ever made."""


@dataclass
class LayoutSection:
    """The tokens added to the vocabulary."""

    n_units: int | None = None
    """Speech-unit vocabulary size. None: read ``RUN/units/tokenizer/unit_tokenizer.json``."""
    unit_tokenizer_hash: str | None = None
    """Hash of the unit tokenizer; required with ``n_units``, else read with it."""
    specials: list[str] = field(default_factory=lambda: list(DEFAULT_SPECIALS))
    """Special tokens (audio delimiters, task and role markers) in id order."""
    speech_specials: list[str] = field(default_factory=lambda: list(DEFAULT_SPEECH_SPECIALS))
    """The specials served by the speech experts (the model speaks ``<|end_of_audio|>``)."""
    extra_modalities: list[UnitModality] | None = None
    """Modalities beyond text and speech (music, ...), each with its unit count, tokenizer hash,
    unit spelling and the specials (listed in ``specials`` too) its expert group serves; their
    units follow the speech units. None: text and speech only."""
    modalities: list[str] | None = None
    """Modality order: a token's expert group id is its modality's index here. None: text, speech,
    then the extra modalities as listed."""
    init_noise: float = 0.02
    """New embedding rows: mean row + ``init_noise`` x per-dimension std x N(0, 1)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.n_units is None) != (self.unit_tokenizer_hash is None):
            raise ValueError("layout.n_units and layout.unit_tokenizer_hash go together")


def build_layout(run: Path, section: LayoutSection, text_vocab_size: int) -> TokenLayout:
    """The layout ``section`` describes over a base of ``text_vocab_size`` ids; the speech units'
    count and hash come from the run's unit tokenizer unless the section gives them."""
    n_units, unit_hash = section.n_units, section.unit_tokenizer_hash
    if n_units is None:
        info = Run(run).unit_info()
        n_units, unit_hash = int(info["vocab_size"]), str(info["hash"])
    extra = tuple(section.extra_modalities or ())
    modalities = section.modalities or [TEXT, SPEECH, *(m.name for m in extra)]
    return TokenLayout(
        text_vocab_size=text_vocab_size,
        n_units=n_units,
        unit_tokenizer_hash=unit_hash,
        specials=tuple(section.specials),
        speech_specials=tuple(section.speech_specials),
        modalities=tuple(modalities),
        extra_modalities=extra,
    )


def with_music(run: Path, section: LayoutSection) -> LayoutSection:
    """``section`` plus the ``music`` modality that ``most units`` made from ``RUN/data/music``:
    its units (count and hash from ``RUN/units/music/tokenizer``) after the other modalities',
    ``<|begin_of_music|>``/``<|end_of_music|>`` (served by the music experts) and the task marker
    ``<|ttm|>`` (text)."""
    extra = list(section.extra_modalities or [])
    if any(m.name == MUSIC for m in extra):
        raise LayoutError("music: layout.extra_modalities already lists a music modality")
    n_music, music_hash = music_tokenizer_info(Run(run))
    music = UnitModality(MUSIC, n_music, music_hash, specials=MUSIC_SPECIALS)
    new = [t for t in (TEXT_TO_MUSIC, *MUSIC_SPECIALS) if t not in section.specials]
    return replace(section, specials=[*section.specials, *new], extra_modalities=[*extra, music])


def check_collisions(layout: TokenLayout, vocab: dict[str, int]) -> None:
    clash = [t for t in layout.new_tokens() if t in vocab]
    if clash:
        raise LayoutError(
            f"layout tokens already in the base tokenizer: {clash[:5]} ({len(clash)} total)"
        )


def extend_vocab(lm: torch.nn.Module, new_size: int, noise: float, seed: int) -> None:
    """Grow input embeddings and (untied) LM head to ``new_size`` rows; see the module docstring."""
    old = lm.get_input_embeddings().weight.shape[0]
    lm.resize_token_embeddings(new_size, mean_resizing=False)
    if getattr(lm.config, "unpadded_vocab_size", None) is not None:
        # LM heads sized by their own field (Inkling-2) are rebuilt from it on reload.
        lm.config.unpadded_vocab_size = new_size
    gen = torch.Generator().manual_seed(seed)
    heads = [lm.get_input_embeddings().weight]
    out = lm.get_output_embeddings()
    if out is not None and out.weight is not heads[0]:
        heads.append(out.weight)
    with torch.no_grad():
        for w in heads:
            ref = w[:old].float()
            fresh = torch.randn(new_size - old, w.shape[1], generator=gen)
            w[old:] = (ref.mean(0) + noise * ref.std(0) * fresh).to(w.dtype)
        if out is not None and getattr(out, "bias", None) is not None:
            out.bias[old:] = out.bias[:old].mean()


def extend_tokenizer(tokenizer, layout: TokenLayout):
    """Add the layout's tokens so ids match the layout and ``decode`` shows them."""
    filler = [RESERVED.format(i) for i in range(layout.text_vocab_size - len(tokenizer))]
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in filler])
    tokenizer.add_special_tokens({"additional_special_tokens": list(layout.specials)})
    units = layout.new_tokens()[len(layout.specials) :]  # speech units, then other modalities'
    # Units are ordinary added tokens (not "special"): decode(skip_special_tokens=True) keeps them.
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in units])
    got = tokenizer.convert_tokens_to_ids(layout.new_tokens())
    want = list(range(layout.text_vocab_size, layout.vocab_size))
    if got != want:
        raise LayoutError("tokenizer ids of the new tokens do not follow the layout")
    return tokenizer


def adapted_config(cfg: PreTrainedConfig, layout: TokenLayout, experts: ExpertsConfig):
    """The config of the model adapt builds from a base with config ``cfg`` (nothing is loaded)."""
    text = copy.deepcopy(cfg)
    text.vocab_size = layout.vocab_size
    config = MostConfig(text_config=text, layout=layout.to_dict(), experts=experts.to_dict())
    config.dtype = cfg.dtype
    return config


def plan(
    cfg: PreTrainedConfig,
    experts: ExpertsConfig,
    modalities: tuple[str, ...] = (TEXT, SPEECH),
    vocab_size: int | None = None,
) -> dict:
    """What adapt would build, computed on the ``meta`` device (no weights, any model size).

    ``cfg``: the base config, a wrapper around it (``text_config``) or an adapted model's config;
    ``modalities``: the layout's, one expert group each.
    """
    cfg = text_config(cfg)
    with torch.device("meta"):
        lm = build_lm(cfg)
    spec = find_spec(lm)
    before = sum(p.numel() for p in lm.parameters())
    layers = moe_layers(lm, spec)
    _, down = expert_weights(get_path(getattr(layers[0][1], spec.block), spec.experts))
    e = down.shape[0]
    groups = layer_groups(experts, modalities, e, moe_shape(cfg)[1])
    convert(lm, spec, experts, modalities, RoutingState(), copy_weights=False)
    after = sum(p.numel() for p in lm.parameters())
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    added_rows = 0 if vocab_size is None else vocab_size - cfg.vocab_size
    vocab_params = added_rows * cfg.hidden_size * (1 if tied else 2)
    return {
        "model_type": cfg.model_type,
        "moe_layers": [i for i, _ in layers],
        "experts_per_layer": {
            "before": e,
            "after": sum(len(ids) for ids in groups),
            "groups": {m: len(ids) for m, ids in zip(modalities, groups, strict=True)},
        },
        "top_k": moe_shape(cfg)[1],
        "params_before": before,
        "params_after": after + vocab_params,
    }
