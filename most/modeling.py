"""The adapted speech-text model: a pretrained HF MoE causal LM with modality-aware MoE blocks.

:class:`MostForCausalLM` *contains* the base architecture's own ``...ForCausalLM`` (attention, norms,
embeddings, cache handling and generation stay the base's code) and only swaps its MoE blocks for
:class:`~most.moe.block.ModalityMoE`. Its config stores the base config (``text_config``), the token
layout and the experts settings, so ``AutoModelForCausalLM.from_pretrained(dir)`` rebuilds the same
model after ``import most`` with no ``trust_remote_code``.

Token modality comes from the layout's ``modality_table`` indexed by ``input_ids``; callers feeding
``inputs_embeds`` pass ``modality (B, T)`` explicitly.

Continuous audio (MoE-Adapter): a model with ``config.adapter`` holds an
:class:`~most.moe.adapter.AudioAdapter` (saved in the same safetensors). ``forward`` then takes
``input_features (B, F, D)`` frozen frames (:mod:`most.units.frontend`, described by
``config.audio_frontend``), their ``input_features_mask (B, F)`` and ``audio_mask (B, T)``: the
positions of ``input_ids`` that the adapter's outputs replace, in order, one per adapter token. Those
positions are speech tokens for routing, so audio frames reach the speech experts.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GenerationMixin,
    PreTrainedConfig,
    PreTrainedModel,
)
from transformers.configuration_utils import SubConfigSpec
from transformers.modeling_outputs import MoeCausalLMOutputWithPast

from most.io import atomic_write_json
from most.layout import LAYOUT_FILE, SPEECH, TokenLayout
from most.moe.adapter import AdapterConfig, AudioAdapter, init_adapter_weights
from most.moe.arch import build_lm, find_spec
from most.moe.block import RoutingState
from most.moe.config import ExpertsConfig
from most.moe.router import BaseRouting
from most.moe.surgery import convert
from most.moe.telemetry import Telemetry


class MostConfig(PreTrainedConfig):
    """Config of an adapted model.

    Attributes:
        text_config: the base model's config (its own ``model_type``: qwen3_moe, deepseek_v2, ...).
        layout: :meth:`TokenLayout.to_dict` of the vocabulary layout.
        experts: :class:`ExpertsConfig` as a dict.
        routing: the base's routing rule (:class:`~most.moe.router.BaseRouting` as a dict), fitted
            on the pretrained weights when adapting; None (folders adapted before it was stored):
            the rule the base config declares.
        adapter: :class:`~most.moe.adapter.AdapterConfig` as a dict when the model reads
            continuous audio features; None: audio enters as units only.
        audio_frontend: :class:`~most.units.frontend.FrontendConfig` as a dict: the frozen
            features the adapter was trained on (how ``most asr``/``chat`` compute them).
    """

    model_type = "most"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="qwen3_moe")
    }
    text_config: dict | PreTrainedConfig | None = None
    layout: dict | None = None
    experts: dict | None = None
    routing: dict | None = None
    adapter: dict | None = None
    audio_frontend: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs) -> None:
        inner = self.text_config
        attn = getattr(inner, "_attn_implementation", None)
        super().__post_init__(**kwargs)
        if attn is not None and self.text_config._attn_implementation is None:
            # The base config, shared with a loaded base LM (``most adapt``), keeps its attention
            # implementation: wrapping it must not change how that LM runs.
            self.text_config._attn_implementation = attn
        # Tying is the base model's business; mirrored here because loading reads the top config.
        self.tie_word_embeddings = bool(getattr(self.text_config, "tie_word_embeddings", False))


class MostForCausalLM(PreTrainedModel, GenerationMixin):
    """Base MoE causal LM (``self.lm``) with modality-aware MoE blocks; a plain HF causal LM."""

    config_class = MostConfig
    base_model_prefix = "lm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: MostConfig, source: PreTrainedModel | None = None) -> None:
        """``source``: a pretrained base LM (vocabulary already extended) to convert in place with
        weight copies (``most adapt``); None builds the empty structure (reload, meta plans)."""
        super().__init__(config)
        self.layout = TokenLayout.from_dict(config.layout)
        experts = ExpertsConfig(**config.experts)
        self.routing = RoutingState(
            aux_alpha=experts.aux_alpha,
            z_coef=experts.z_loss,
            null_coef=experts.null_weight,
            entropy_coef=experts.entropy_weight,
        )
        lm = source if source is not None else build_lm(config.text_config)
        stored = BaseRouting(**config.routing) if config.routing else None
        rule = convert(
            lm,
            find_spec(lm),
            experts,
            self.layout.modalities,
            self.routing,
            copy_weights=source is not None,
            routing=stored,
        )
        config.routing = asdict(rule)
        self.lm = lm
        # Built on the CPU on purpose (not a buffer): it is derived from the config, never saved,
        # and must not be left on the meta device by from_pretrained.
        rows = config.text_config.vocab_size
        with torch.device("cpu"):
            self._modality_cpu = self.layout.modality_table(rows)
        self._modality_dev: Tensor | None = None
        self.audio_adapter: AudioAdapter | None = None
        if config.adapter is not None:
            settings = dict(config.adapter)
            widths = settings.pop("in_dim"), settings.pop("out_dim")
            self._build_adapter(AdapterConfig(**settings), *widths)
        self.post_init()

    def _build_adapter(self, cfg: AdapterConfig, in_dim: int, out_dim: int) -> AudioAdapter:
        self.audio_adapter = AudioAdapter(cfg, in_dim, out_dim)
        for m in self.audio_adapter.modules():
            m._most_adapter = True  # initialised by init_adapter_weights, not the base's rule
        return self.audio_adapter

    def attach_adapter(self, cfg: AdapterConfig, frontend: dict, in_dim: int) -> AudioAdapter:
        """Add a freshly initialised audio adapter reading ``in_dim``-dimensional frames of
        ``frontend`` (a :class:`~most.units.frontend.FrontendConfig` dict); it is stored in the
        config, so ``save_pretrained`` / ``from_pretrained`` keep it."""
        if cfg.kind == "none":
            raise ValueError("adapter.kind none: nothing to attach")
        hidden = self.get_input_embeddings().weight
        adapter = self._build_adapter(cfg, in_dim, hidden.shape[1])
        std = getattr(self.config.text_config, "initializer_range", 0.02) or 0.02
        for m in adapter.modules():
            init_adapter_weights(m, std)
        adapter.to(device=hidden.device)
        self.config.adapter = {**cfg.to_dict(), "in_dim": in_dim, "out_dim": hidden.shape[1]}
        self.config.audio_frontend = dict(frontend)
        return adapter

    # ---- plumbing the base LM expects ------------------------------------------------------
    def get_input_embeddings(self):
        return self.lm.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.lm.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.lm.set_output_embeddings(value)

    def _init_weights(self, module):
        if getattr(module, "_most_adapter", False):
            std = getattr(self.config.text_config, "initializer_range", 0.02) or 0.02
            init_adapter_weights(module, std)
            return
        self.lm._init_weights(module)

    def _supports_default_dynamic_cache(self) -> bool:
        # Generation builds the cache here, for the base LM: it decides (MiniMax has its own).
        return self.lm._supports_default_dynamic_cache()

    # ---- modality --------------------------------------------------------------------------
    def modality_of(self, input_ids: Tensor) -> Tensor:
        """``input_ids (B, T)`` -> ``(B, T)`` modality group ids from the layout."""
        table = self._modality_dev
        if table is None or table.device != input_ids.device:
            table = self._modality_dev = self._modality_cpu.to(input_ids.device)
        return table[input_ids]

    def embed_audio(
        self, input_ids: Tensor, audio_mask: Tensor, feats: Tensor, feats_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Token embeddings with the adapter's outputs at ``audio_mask``, and the modality.

        ``input_ids (B, T)``, ``audio_mask (B, T)`` bool, ``feats (B, F, D)``, ``feats_mask (B, F)``
        -> ``inputs_embeds (B, T, H)``, ``modality (B, T)`` (speech at the audio positions). Row b's
        k-th audio position gets row b's k-th adapter token; each row must have as many positions
        as adapter tokens (``most.moe.adapter.adapter_lengths`` of its frames).
        """
        if self.audio_adapter is None:
            raise ValueError("input_features given, but this model has no audio adapter")
        audio_mask = audio_mask.bool()
        emb = self.get_input_embeddings()(input_ids)
        tokens, valid = self.audio_adapter(feats, feats_mask)
        slots, made = audio_mask.sum(1), valid.sum(1)
        if not torch.equal(slots.cpu(), made.cpu()):
            raise ValueError(
                f"audio_mask has {slots.tolist()} positions per row, the adapter made "
                f"{made.tolist()} tokens"
            )
        emb = emb.masked_scatter(audio_mask.unsqueeze(-1), tokens[valid].to(emb.dtype))
        speech = self.layout.modality_id(SPEECH)
        return emb, self.modality_of(input_ids).masked_fill(audio_mask, speech)

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        modality: Tensor | None = None,
        input_features: Tensor | None = None,
        input_features_mask: Tensor | None = None,
        audio_mask: Tensor | None = None,
        **kwargs,
    ) -> MoeCausalLMOutputWithPast:
        """As the base ``...ForCausalLM.forward``; ``loss`` includes the router aux losses (also
        returned alone as ``aux_loss``) whenever labels are given or the model is training.

        ``modality (B, T)``: group id per token, required with ``inputs_embeds`` and no ids.
        ``input_features``, ``input_features_mask``, ``audio_mask``: continuous audio
        (:meth:`embed_audio`); ``generate`` passes the features to the first forward only.
        """
        adapted = input_features is not None
        if adapted:
            if input_ids is None or audio_mask is None:
                raise ValueError("input_features need input_ids and audio_mask (B, T)")
            inputs_embeds, modality = self.embed_audio(
                input_ids, audio_mask, input_features, input_features_mask
            )
            input_ids = None
        if modality is None:
            if input_ids is None:
                raise ValueError("pass modality=(B, T) group ids together with inputs_embeds")
            modality = self.modality_of(input_ids)
        t = modality.shape[-1]
        valid = None
        if attention_mask is not None and attention_mask.dim() == 2:
            # With a KV cache the mask covers past + current tokens; the current ones are last.
            valid = attention_mask[:, -t:].bool()
        self.routing.begin(modality, valid, collect=labels is not None or self.training)
        kwargs.pop("output_router_logits", None)
        out = self.lm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            labels=labels,
            **kwargs,
        )
        aux = self.routing.aux_loss()
        adapter_aux = self.audio_adapter.aux_loss if adapted else None
        if self.audio_adapter is not None and not adapted and torch.is_grad_enabled():
            # DDP wants every trainable weight in every step's graph: a batch without audio
            # still reaches the adapter, with zero weight.
            adapter_aux = sum(p.sum() for p in self.audio_adapter.parameters()) * 0.0
        if adapter_aux is not None and self.routing.collect:
            aux = adapter_aux if aux is None else aux + adapter_aux.to(aux.device)
        loss = out.loss
        if aux is not None and loss is not None:
            loss = loss + aux.to(loss.device)
        # The state keeps this batch's modality: activation checkpointing re-runs the blocks during
        # backward and must route exactly as the forward did. The next forward replaces it.
        return MoeCausalLMOutputWithPast(
            loss=loss,
            aux_loss=aux,
            logits=out.logits,
            cache=out.cache,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )

    # ---- telemetry -------------------------------------------------------------------------
    def most_telemetry(self, enable: bool = True, reset: bool = True) -> None:
        """Switch router telemetry on (fresh counters unless ``reset=False``) or off."""
        if not enable:
            self.routing.telemetry = None
        elif reset or self.routing.telemetry is None:
            self.routing.telemetry = Telemetry(self.layout.modalities)

    def most_telemetry_summary(self) -> dict:
        """Per layer, per modality: load histogram, entropy, experts/token, null share, dropped."""
        if self.routing.telemetry is None:
            raise RuntimeError("telemetry is off: call model.most_telemetry(enable=True) first")
        return self.routing.telemetry.summary()

    def most_telemetry_save(self, path: str | Path) -> Path:
        """Write :meth:`most_telemetry_summary` as JSON (atomically)."""
        return atomic_write_json(path, self.most_telemetry_summary())


def load_layout(source: str | Path | PreTrainedModel | PreTrainedConfig) -> TokenLayout:
    """The token layout of an adapted model: from its folder, the model, or its config."""
    if isinstance(source, (str, Path)):
        if (Path(source) / LAYOUT_FILE).is_file():
            return TokenLayout.load(source)
        source = AutoConfig.from_pretrained(source)
    cfg = source.config if isinstance(source, PreTrainedModel) else source
    return TokenLayout.from_dict(cfg.layout)


AutoConfig.register(MostConfig.model_type, MostConfig)
AutoModelForCausalLM.register(MostConfig, MostForCausalLM)
