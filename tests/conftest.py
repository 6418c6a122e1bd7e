"""Shared fixtures: tiny runs and tiny random models of real HF architectures, built inline with no
network. Tests import nothing from here (pytest hands fixtures over by name); helpers a test calls
itself live in :mod:`most.testing`.

- ``realdata``: real recordings and published configs (``../shared/realdata``);
- ``text_run`` / ``speech_run``: a RUN folder holding what stages 1 and 2 read;
- ``base_dirs``: a tiny random base of every supported MoE architecture, saved as an HF folder;
  ``word_tokenizer``: the bases' word-level tokenizer;
- ``eval_run``: a complete, untrained tiny run with real (espeak-ng) speech, for the eval, release
  and generation tests (:func:`most.testing.write_spoken_run`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Real recordings and published configs (../shared/realdata beside the checkout)."""
    assert REALDATA.is_dir(), (
        f"{REALDATA} is missing: tests expect ../shared/realdata beside the repo"
    )
    return REALDATA


@pytest.fixture
def text_run(tmp_path: Path) -> Path:
    """RUN/data/text and RUN/data/sqa (:func:`most.testing.write_text_run`)."""
    from most.testing import write_text_run

    write_text_run(tmp_path)
    return tmp_path


@pytest.fixture
def speech_run(tmp_path: Path) -> Path:
    """Everything stages 1 and 2 read (:func:`most.testing.write_speech_run`)."""
    from most.testing import write_speech_run

    write_speech_run(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def eval_run(tmp_path_factory) -> Path:
    """The shared tiny run (read-only for tests: copy before writing into it)."""
    from most.testing import write_spoken_run

    return write_spoken_run(tmp_path_factory.mktemp("eval-run"))


MLA = dict(kv_lora_rank=16, q_lora_rank=None, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8)


def tiny_config(arch: str):
    """A 2-3 layer, 8-expert, top-2 config of the real transformers class for ``arch`` (other types:
    :func:`most.testing.tiny_moe.tiny_config`)."""
    import transformers as T

    from most.testing import TEXT_VOCAB
    from most.testing.tiny_moe import tiny_config as any_tiny_config

    common = dict(
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
    moe = dict(num_experts_per_tok=2)
    deep = {**common, "num_hidden_layers": 3, "num_key_value_heads": 4}
    if arch == "qwen3_moe":
        return T.Qwen3MoeConfig(
            **common, **moe, head_dim=8, intermediate_size=64, moe_intermediate_size=16,
            num_experts=8, norm_topk_prob=True, tie_word_embeddings=False,
        )  # fmt: skip
    if arch == "qwen2_moe":
        return T.Qwen2MoeConfig(
            **common, **moe, intermediate_size=64, moe_intermediate_size=16, num_experts=8,
            shared_expert_intermediate_size=32, tie_word_embeddings=True,
        )  # fmt: skip
    if arch == "olmoe":
        return T.OlmoeConfig(**common, **moe, intermediate_size=16, num_experts=8)
    if arch == "mixtral":
        return T.MixtralConfig(
            **common, **moe, head_dim=8, intermediate_size=16, num_local_experts=8
        )
    if arch == "deepseek_v3":
        return T.DeepseekV3Config(
            **deep, **moe, **MLA, intermediate_size=64, moe_intermediate_size=16,
            n_routed_experts=8, n_shared_experts=1, n_group=2, topk_group=1,
            first_k_dense_replace=1, norm_topk_prob=True, routed_scaling_factor=2.5,
        )  # fmt: skip
    if arch == "deepseek_v2":
        return T.DeepseekV2Config(
            **deep, **moe, **MLA, intermediate_size=64, moe_intermediate_size=16,
            n_routed_experts=8, n_shared_experts=1, first_k_dense_replace=1, topk_method="greedy",
        )  # fmt: skip
    return any_tiny_config(arch)


def tiny_tokenizer():
    """A word-level tokenizer over the bases' vocabulary: 4 specials and ``w0`` ... ``w59``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from most.testing import TEXT_VOCAB

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
    import torch
    from transformers import AutoModelForCausalLM

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
    """``{arch: HF folder}``: a random tiny model of every arch in ``ARCHS``, with its tokenizer."""
    from most.testing import ARCHS

    root = tmp_path_factory.mktemp("bases")
    return {arch: save_base(arch, root / arch) for arch in ARCHS}


@pytest.fixture
def word_tokenizer():
    """A fresh copy of the bases' word-level tokenizer (tests may add tokens to it)."""
    return tiny_tokenizer()
