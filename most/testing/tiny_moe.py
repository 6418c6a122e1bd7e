"""Tiny random models of every MoE causal-LM type of the installed transformers, and an in-memory
``most adapt`` of them, for the all-architecture lifecycle test.

Each type's own config class is built with only the sizes overridden (hidden 32, 2 layers, 8
experts, top-2, MoE in every layer it allows); :data:`OVERRIDES` holds what a type needs beyond
that to be tiny and MoE (its validators, hybrid layer patterns).
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from most.moe.rules import EXPERT_KEYS, TOPK_KEYS, moe_shape

TINY_VOCAB = 64

SIZES: dict[str, object] = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=8,
    intermediate_size=64,
    moe_intermediate_size=16,
    shared_expert_intermediate_size=32,
    shared_experts_intermediate_size=32,
    moe_shared_expert_intermediate_size=32,
    expert_ffn_hidden_size=16,
    vocab_size=TINY_VOCAB,
    max_position_embeddings=128,
    kv_lora_rank=16,
    q_lora_rank=16,
    qk_rope_head_dim=8,
    qk_nope_head_dim=8,
    v_head_dim=8,
    first_k_dense_replace=0,
    moe_layer_start_index=0,
    n_group=2,
    topk_group=1,
    num_expert_group=2,
    initializer_range=0.2,  # decisive routing: no near-ties between experts
    pad_token_id=1,
    eos_token_id=2,
    bos_token_id=0,
    tie_word_embeddings=False,
    **dict.fromkeys(EXPERT_KEYS, 8),
    **dict.fromkeys(TOPK_KEYS, 2),
)

#: What a type needs beyond :data:`SIZES` (merged into the LM config's keyword arguments).
HYBRID = dict(layer_types=["linear_attention", "full_attention"])
QWEN_LINEAR = dict(
    **HYBRID,
    linear_key_head_dim=8,
    linear_value_head_dim=8,
    linear_num_key_heads=2,
    linear_num_value_heads=4,
)

QWEN4 = dict(
    **QWEN_LINEAR,
    indexer_n_heads=2,
    indexer_kv_heads=1,
    indexer_head_dim=8,
    indexer_budget=8,
    indexer_compress_ratio=4,
)

OVERRIDES: dict[str, dict[str, object]] = {
    "zaya": dict(num_experts_per_tok=1),
    "qwen3_next": QWEN_LINEAR,
    "qwen3_5_moe": QWEN_LINEAR,
    "qwen3_5_moe_text": QWEN_LINEAR,
    "qwen4_exp": QWEN4,
    "qwen4_exp_text": QWEN4,
    "kimi_linear": dict(
        **HYBRID, mlp_layer_types=["sparse", "sparse"], linear_head_dim=8, linear_num_heads=4
    ),
    "bailing_hybrid": HYBRID,
    "jamba": dict(
        attn_layer_period=2,
        attn_layer_offset=1,
        expert_layer_period=1,
        expert_layer_offset=0,
        use_mamba_kernels=False,
    ),
    "lfm2_moe": dict(num_dense_layers=0, layer_types=["conv", "full_attention"]),
    "beam": dict(mlp_layer_types=["sparse", "sparse"]),
    "flint": dict(decoder_sparse_step=1, mlp_only_layers=[]),
    "doge": dict(is_moe=True),
    "granitemoehybrid": dict(mamba_n_heads=4, mamba_d_head=16, **HYBRID),
    "mimo_v2_flash": dict(mlp_layer_types=["sparse", "sparse"], num_key_value_heads=2),
    "dots3_note": dict(
        outer=dict(vision_config=dict(adapter_out_dim=32), audio_config=dict(adapter_out_dim=32))
    ),
    "inkling2_text": dict(unpadded_vocab_size=TINY_VOCAB),
    "inkling2_loop_text": dict(unpadded_vocab_size=TINY_VOCAB),
    "dbrx": dict(
        d_model=32,
        n_heads=4,
        n_layers=2,
        max_seq_len=128,
        attn_config=dict(kv_n_heads=4, rope_theta=10000.0, clip_qkv=8.0),
        ffn_config=dict(moe_num_experts=8, moe_top_k=2, ffn_hidden_size=16, hidden_size=32),
    ),
}


def moe_model_types() -> list[str]:
    """Every model type with a causal-LM class whose default config (or its ``text_config`` /
    ``ffn_config``) has an expert count."""
    found = []
    for model_type in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        try:
            cfg = CONFIG_MAPPING[model_type]()
        except Exception:  # a default config its own validators reject
            continue
        if moe_shape(cfg)[0]:
            found.append(model_type)
    return found


def tiny_config(model_type: str, **changes) -> PretrainedConfig:
    """A tiny config of ``model_type``'s own class (a wrapper's sizes go into its text config);
    ``changes`` override the LM config's fields."""
    cls = CONFIG_MAPPING[model_type]
    defaults = cls().to_dict()
    extra = {**OVERRIDES.get(model_type, {}), **changes}
    outer = extra.pop("outer", {})
    sub = defaults.get("text_config")
    if isinstance(sub, dict):
        inner = {k: v for k, v in SIZES.items() if k in sub}
        return cls(text_config={"model_type": sub.get("model_type"), **inner, **extra}, **outer)
    return cls(**{**{k: v for k, v in SIZES.items() if k in defaults}, **extra})


def tiny_base(model_type: str, seed: int = 0, **changes):
    """A random tiny base causal LM of ``model_type`` (fp32, eval mode; ``changes`` to its config),
    with non-zero selection biases so that copying them is tested."""
    from most.moe.arch import build_lm, text_config

    torch.manual_seed(seed)
    lm = build_lm(text_config(tiny_config(model_type, **changes)))
    with torch.no_grad():
        for name, t in [*lm.named_buffers(), *lm.named_parameters()]:
            if name.rsplit(".", 1)[-1] in ("e_score_correction_bias", "expert_bias"):
                t.normal_(0, 0.1)
    return lm.eval()


def adapt_tiny(lm, layout=None, **experts):
    """``most adapt`` in memory: ``lm`` (changed in place) gains the unit rows of the layout
    section ``layout`` (default :func:`most.testing.layout_args`) and modality-aware blocks; the
    adapted model in eval mode."""
    from pathlib import Path

    from most.adapt import build_layout, extend_vocab
    from most.modeling import MostConfig, MostForCausalLM
    from most.moe.config import ExpertsConfig
    from most.testing.models import layout_args

    args = layout or layout_args()
    layout = build_layout(Path("."), args, lm.config.vocab_size)
    extend_vocab(lm, layout.vocab_size, args.init_noise, args.seed)
    config = MostConfig(
        text_config=lm.config,
        layout=layout.to_dict(),
        experts=ExpertsConfig(**experts).to_dict(),
    )
    return MostForCausalLM(config, source=lm).eval()
