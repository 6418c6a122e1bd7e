"""Tiny random models of the real transformers MoE classes, saved as HF folders with a tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    DeepseekV2Config,
    DeepseekV3Config,
    MixtralConfig,
    OlmoeConfig,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2MoeConfig,
    Qwen3MoeConfig,
)

from most.adapt import LayoutSection

TEXT_VOCAB = 64
N_UNITS = 20
COMMON = dict(
    vocab_size=TEXT_VOCAB,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    initializer_range=0.2,  # decisive routing: no near-ties between experts in the tests
    pad_token_id=1,
    eos_token_id=2,
    bos_token_id=0,
)
_MLA = dict(kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8)


def tiny_config(arch: str) -> PreTrainedConfig:
    """A 2-3 layer, 8-expert, top-2 config of the real transformers class for ``arch``."""
    moe = dict(num_experts_per_tok=2)
    if arch == "qwen3_moe":
        return Qwen3MoeConfig(
            **COMMON, **moe, head_dim=8, intermediate_size=64, moe_intermediate_size=16,
            num_experts=8, norm_topk_prob=True, tie_word_embeddings=False,
        )  # fmt: skip
    if arch == "qwen2_moe":
        return Qwen2MoeConfig(
            **COMMON, **moe, intermediate_size=64, moe_intermediate_size=16, num_experts=8,
            shared_expert_intermediate_size=32, tie_word_embeddings=True,
        )  # fmt: skip
    if arch == "olmoe":
        return OlmoeConfig(**COMMON, **moe, intermediate_size=16, num_experts=8)
    if arch == "mixtral":
        return MixtralConfig(**COMMON, **moe, head_dim=8, intermediate_size=16, num_local_experts=8)
    if arch == "deepseek_v3":
        return DeepseekV3Config(
            **{**COMMON, "num_hidden_layers": 3, "num_key_value_heads": 4}, **moe, **_MLA, intermediate_size=64,
            moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1, n_group=2,
            topk_group=1, first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
        )  # fmt: skip
    if arch == "deepseek_v2":
        return DeepseekV2Config(
            **{**COMMON, "num_hidden_layers": 3, "num_key_value_heads": 4}, **moe, **_MLA, intermediate_size=64,
            moe_intermediate_size=16, n_routed_experts=8, n_shared_experts=1,
            first_k_dense_replace=1, topk_method="greedy",
        )  # fmt: skip
    raise KeyError(arch)


ARCHS = ("qwen3_moe", "qwen2_moe", "olmoe", "mixtral", "deepseek_v3", "deepseek_v2")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    words = ["<s>", "<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(TEXT_VOCAB - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def save_base(arch: str, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(arch))
    if arch == "deepseek_v3":
        # A non-zero score correction, so copying it across groups is actually tested.
        for layer in model.model.layers[1:]:
            layer.mlp.gate.e_score_correction_bias.normal_(0, 0.1)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def base_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bases")
    return {arch: save_base(arch, root / arch) for arch in ARCHS}


def layout_args() -> LayoutSection:
    return LayoutSection(n_units=N_UNITS, unit_tokenizer_hash="test-units")
