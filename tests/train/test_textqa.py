"""Greedy text completion scoring (base text QA and the `most facts` probe) on a tiny Qwen3-MoE."""

from __future__ import annotations

import torch
from transformers import Qwen3MoeForCausalLM

from most.testing import TINY_MODEL, sentences
from most.text import accuracy, normalize
from most.text_tokenizer import TokenizerConfig, train_text_tokenizer
from most.train.textqa import completion_accuracy, text_qa_accuracy


def test_completion_accuracy_scores_the_greedy_continuation() -> None:
    tok = train_text_tokenizer(sentences(200), TokenizerConfig(vocab_size=320, min_frequency=1))
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok), tok.eos_token_id))
    prompts = ["The capital of", "The capital of Velmora is"]
    first = completion_accuracy(model, tok, prompts, ["zzqx", "zzqx"], max_new_tokens=4)
    assert first["accuracy"] == 0.0 and first["n"] == 2
    said = [e["predicted"] for e in first["examples"]]
    assert any(said), "the random model should say something"
    again = completion_accuracy(model, tok, prompts, said, max_new_tokens=4)
    assert again["accuracy"] == 1.0  # its own greedy continuation, re-decoded, matches

    qa = text_qa_accuracy(model, tok, ["What is the capital of Velmora?"], ["zzqx"], 4)
    assert qa["accuracy"] == 0.0
    assert set(qa["examples"][0]) == {"question", "answer", "predicted", "correct"}
    assert qa["examples"][0]["question"] == "What is the capital of Velmora?"


def test_probe_matches_answers_as_the_eval_does() -> None:
    """An answer inside the continuation counts (containment, :func:`most.text.contains_answer`),
    the same rule as the eval's spoken-QA accuracy; a partial word does not."""
    tok = train_text_tokenizer(sentences(200), TokenizerConfig(vocab_size=320, min_frequency=1))
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(TINY_MODEL.hf_config(len(tok), tok.eos_token_id))
    said = completion_accuracy(model, tok, ["The capital of"], ["zzqx"], 6)["examples"][0]
    words = normalize(said["predicted"]).split()
    assert len(words) >= 2, said
    inside = completion_accuracy(model, tok, ["The capital of"], [words[-1]], 6)
    assert inside["accuracy"] == float(accuracy([said["predicted"]], [words[-1]])) == 1.0
    partial = completion_accuracy(model, tok, ["The capital of"], [words[-1] + "zz"], 6)
    assert partial["accuracy"] == 0.0
