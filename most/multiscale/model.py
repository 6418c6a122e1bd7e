"""UniAudio's multi-scale decoder over an adapted MoE LLM.

The *global* model is a :class:`~most.modeling.MostForCausalLM` that reads one position per audio
frame instead of ``C`` (one per codebook): a frame's input embedding is the sum of the LLM's unit
embeddings of its ``C`` codes (rows ``unit_offset + c*K + code_c``); text and special tokens are read
as usual. Its last hidden state at position ``s`` conditions a small *local* transformer
(:class:`~most.multiscale.local.LocalDecoder`) that writes frame ``s + 1`` codebook by codebook. The
global sequence is ``C`` times shorter than the flat one, so the LLM (most of the compute) runs
``C`` times less often per second of audio.

**Targets and the end of audio.** The global head keeps its job of predicting the next position's
id: a text token, ``<|end_of_audio|>``, or - for a frame - the frame's codebook-0 unit id (the id
the position carries, see :mod:`most.multiscale.frames`). So the global model decides *whether* a
frame comes, the local model decides *which* codes it has (the global head's guess of codebook 0
is the alternative to stopping, never a generated code). When generating speech the choice is
between two events only: stop (logit of ``<|end_of_audio|>``) against another frame (log-sum-exp of
the codebook-0 unit logits); greedy stops when the first wins, sampling draws it.
``loss = global CE (next id, labelled positions) + local CE (all C codebooks of labelled frames)``
(+ the router aux loss while training).

Save and reload are transformers' own (safetensors, :class:`MultiScaleConfig` holding the global
model's :class:`~most.modeling.MostConfig`); after ``import most``,
``AutoModel.from_pretrained(dir)`` returns this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers import initialization as init
from transformers.configuration_utils import SubConfigSpec
from transformers.utils import ModelOutput

from most.layout import END_OF_AUDIO
from most.modeling import MostConfig, MostForCausalLM
from most.multiscale.local import LocalDecoder


class MultiScaleConfig(PreTrainedConfig):
    """Config of a multi-scale model.

    Attributes:
        global_config: the global model's :class:`MostConfig`; its layout's ``n_units`` is
            ``n_codebooks * K``.
        n_codebooks: codes per frame ``C``.
        local_hidden_size: width of the local transformer.
        local_layers: its number of blocks.
        local_heads: its attention heads.
    """

    model_type = "most_multiscale"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "global_config": SubConfigSpec(config_class=MostConfig)
    }
    global_config: dict | MostConfig | None = None
    n_codebooks: int = 2
    local_hidden_size: int = 64
    local_layers: int = 2
    local_heads: int = 4
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs) -> None:
        inner = self.global_config
        kept = _implementations(inner) if isinstance(inner, PreTrainedConfig) else []
        super().__post_init__(**kwargs)
        # A loaded global model keeps its attention and experts implementations: wrapping it must
        # not change how it runs (the base setter would push None down into it).
        for config, name, value in kept:
            setattr(config, f"{name}_internal", value)  # this config only, not its sub-configs
        if self.n_codebooks < 1:
            raise ValueError(f"n_codebooks must be >= 1, got {self.n_codebooks}")
        layout = self.global_config.layout
        if layout and layout["n_units"] % self.n_codebooks:
            raise ValueError(
                f"the layout's {layout['n_units']} units are not {self.n_codebooks} codebooks"
            )

    @property
    def layout(self) -> dict | None:
        """The global model's token layout (what readers of an adapted config look up)."""
        return self.global_config.layout

    @property
    def codebook_size(self) -> int:
        """Codes per codebook ``K``."""
        return self.global_config.layout["n_units"] // self.n_codebooks


def _implementations(config: PreTrainedConfig) -> list[tuple[PreTrainedConfig, str, str | None]]:
    """The attention and experts implementations set on ``config`` and its text config."""
    configs = [config, getattr(config, "text_config", None)]
    names = ("_attn_implementation", "_experts_implementation")
    return [(c, n, getattr(c, n, None)) for c in configs if c is not None for n in names]


@dataclass
class MultiScaleOutput(ModelOutput):
    """``loss`` = ``global_loss + local_loss`` (+ ``aux_loss``); ``logits (B, S, V)``: the global
    head at every position; ``local_logits (N, C, K)``: the local model's, for the ``N`` labelled
    frames in batch order; ``last_hidden_state (B, S, H)``; ``cache``: the global model's KV cache."""

    loss: Tensor | None = None
    global_loss: Tensor | None = None
    local_loss: Tensor | None = None
    aux_loss: Tensor | None = None
    logits: Tensor | None = None
    local_logits: Tensor | None = None
    last_hidden_state: Tensor | None = None
    cache: object | None = None


class MostMultiScale(PreTrainedModel):
    """A global :class:`MostForCausalLM` over frames (``self.global_model``) and a local
    transformer over a frame's codebooks (``self.local``)."""

    config_class = MultiScaleConfig
    base_model_prefix = "global_model"
    _supports_sdpa = True
    _supports_attention_backend = True

    def __init__(
        self, config: MultiScaleConfig, global_model: MostForCausalLM | None = None
    ) -> None:
        """``global_model``: an adapted model to start from (its weights are used as they are);
        None builds the empty structure from ``config.global_config`` (reload)."""
        super().__init__(config)
        if global_model is not None:
            config.global_config = global_model.config
        self.global_model = global_model or MostForCausalLM(config.global_config)
        self.layout = self.global_model.layout
        c, k = config.n_codebooks, config.codebook_size
        self.local = LocalDecoder(
            config.global_config.text_config.hidden_size,
            c,
            k,
            config.local_hidden_size,
            config.local_layers,
            config.local_heads,
        )
        self.post_init()

    @classmethod
    def from_global(
        cls, global_model: MostForCausalLM, n_codebooks: int, **local
    ) -> MostMultiScale:
        """A fresh local model on top of ``global_model`` (``local``: ``local_hidden_size`` ...)."""
        config = MultiScaleConfig(
            global_config=global_model.config, n_codebooks=n_codebooks, **local
        )
        return cls(config, global_model)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, LocalDecoder):
            init.normal_(module.head, std=0.02)
            init.zeros_(module.head_bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.global_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.global_model.get_output_embeddings()

    # ---- forward ---------------------------------------------------------------------------
    def embed(self, input_ids: Tensor, codes: Tensor) -> Tensor:
        """``input_ids (B, S)``, ``codes (B, S, C)`` -> ``(B, S, H)``: the id's embedding, or at a
        frame (a speech unit id) the sum of its codebooks' unit embeddings."""
        table = self.get_input_embeddings()
        x = table(input_ids)
        frame = self.layout.is_unit(input_ids)
        c, k = self.config.n_codebooks, self.config.codebook_size
        first = torch.arange(c, device=codes.device) * k + self.layout.unit_offset
        frames = table(first + codes.clamp(min=0)).sum(-2)  # every position: no host sync
        return torch.where(frame[..., None], frames, x)

    def forward(
        self,
        input_ids: Tensor,
        codes: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs,
    ) -> MultiScaleOutput:
        """``input_ids (B, S)`` positions, ``codes (B, S, C)`` (``-1`` off frames), ``labels (B, S)``
        (``input_ids`` where the position is a target, else ``-100``; shifted here as in HF);
        ``kwargs`` go to the global model (``cache``, ``use_cache``, ``logits_to_keep``).
        ``codes`` may be None for a sequence without frames (text only)."""
        if codes is None:
            if bool(self.layout.is_unit(input_ids).any()):
                raise ValueError(
                    "input_ids hold speech units but no codes: read flat ids as frames first "
                    "(most.multiscale.to_frames)"
                )
            codes = input_ids.new_full((*input_ids.shape, self.config.n_codebooks), -1)
        out = self.global_model(
            inputs_embeds=self.embed(input_ids, codes),
            modality=self.global_model.modality_of(input_ids),
            attention_mask=attention_mask,
            output_hidden_states=True,
            **kwargs,
        )
        hidden = out.hidden_states[-1]
        result = MultiScaleOutput(
            logits=out.logits,
            last_hidden_state=hidden,
            cache=out.cache,
            aux_loss=out.aux_loss,
        )
        if labels is None:
            return result
        target = labels[:, 1:]
        logits = out.logits[:, :-1]
        global_loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten())
        frames = (target != -100) & self.layout.is_unit(input_ids[:, 1:])
        truth = codes[:, 1:][frames]  # (N, C)
        local_logits = self.local(hidden[:, :-1][frames], truth[:, :-1])
        if truth.numel():
            local_loss = F.cross_entropy(local_logits.flatten(0, 1).float(), truth.flatten())
        else:
            local_loss = local_logits.sum() * 0.0
        loss = global_loss + local_loss
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        result.loss, result.global_loss, result.local_loss = loss, global_loss, local_loss
        result.local_logits = local_logits
        return result

    # ---- generation ------------------------------------------------------------------------
    def end_of_audio(
        self,
        logits: Tensor,
        do_sample: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(B, V)`` global logits -> ``(B,)`` bool: does the audio end here? ``<|end_of_audio|>``
        against any frame (log-sum-exp of the codebook-0 unit logits)."""
        start = self.layout.unit_offset
        frame = logits[:, start : start + self.config.codebook_size].float().logsumexp(-1)
        margin = logits[:, self.layout.special_id(END_OF_AUDIO)].float() - frame
        if not do_sample:
            return margin > 0
        p = torch.sigmoid(margin / max(temperature, 1e-5))
        return torch.rand(p.shape, generator=generator, device=p.device) < p

    @torch.no_grad()
    def generate_speech(
        self,
        input_ids: Tensor,
        max_frames: int = 200,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        attention_mask: Tensor | None = None,
        codes: Tensor | None = None,
    ) -> list[Tensor]:
        """Frames after the prompts ``input_ids (B, P)`` (a TTS prompt ends with
        ``<|begin_of_audio|>``; prompts of different lengths are left-padded, with
        ``attention_mask (B, P)`` 0 on the padding; ``codes (B, P, C)`` the prompt's frames, None for a
        prompt without any) -> per prompt ``(T_b, C)`` codes, stopping at
        the end of audio or ``max_frames``. ``use_cache=False`` re-reads the whole sequence every
        frame (the reference the cached path must match)."""
        b, _ = input_ids.shape
        c = self.config.n_codebooks
        if codes is None:
            codes = input_ids.new_full((*input_ids.shape, c), -1)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask.long()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ids = input_ids
        out = self(ids, codes, mask, position_ids=positions, use_cache=use_cache, logits_to_keep=1)
        cache = out.cache if use_cache else None
        frames: list[Tensor] = []
        length = torch.full((b,), max_frames, dtype=torch.long)
        for step in range(max_frames):
            ended = self.end_of_audio(out.logits[:, -1], do_sample, temperature, generator).cpu()
            length = torch.where(ended & (length == max_frames), step, length)
            if bool((length < max_frames).all()):
                break
            frame = self.local.generate(
                out.last_hidden_state[:, -1], do_sample, temperature, top_k, generator
            )
            frames.append(frame)
            step_ids = frame[:, :1] + self.layout.unit_offset
            mask = torch.cat([mask, mask.new_ones(b, 1)], dim=1)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
            if use_cache:
                out = self(
                    step_ids,
                    frame[:, None],
                    mask,
                    position_ids=positions[:, -1:],
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                cache = out.cache
            else:
                ids = torch.cat([ids, step_ids], dim=1)
                codes = torch.cat([codes, frame[:, None]], dim=1)
                out = self(ids, codes, mask, position_ids=positions, logits_to_keep=1)
        stacked = torch.stack(frames, 1) if frames else codes.new_zeros(b, 0, c)
        return [stacked[i, : int(length[i])].cpu() for i in range(b)]

    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None, **kwargs) -> Tensor:
        """``transformers``' ``generate`` contract on flat ids (``(B, W)`` left-padded prompts ->
        ``(B, W + N)``), so :class:`~most.generate.SpeechLM` decodes this model as any other:
        :func:`~most.multiscale.decode.generate_flat` (``kwargs``: its sampling arguments;
        guidance, logits processors and the cache flag are accepted and do not apply)."""
        from most.multiscale.decode import generate_flat

        for unused in ("use_cache", "logits_processor", "guidance_scale", "negative_prompt_ids"):
            kwargs.pop(unused, None)
        return generate_flat(self, input_ids, attention_mask, **kwargs)


AutoConfig.register(MultiScaleConfig.model_type, MultiScaleConfig)
AutoModel.register(MultiScaleConfig, MostMultiScale)
# Also a causal LM to the Auto classes: every loader of a stage's model (most.weights) finds it.
AutoModelForCausalLM.register(MultiScaleConfig, MostMultiScale)
