"""``most.train.dpo`` and ``most.train.pairs``: the DPO loss on a tiny model against a hand
computation and against trl's own ``DPOTrainer``, the reference log-probs, and the pair stream's
resumable order."""

from __future__ import annotations

import copy
import math

import datasets
import pytest
import torch

from most.testing import tiny_lm
from most.train.dpo import DPOConfig, DPOModule, collate_pairs, reference_logps
from most.train.optim import OptimConfig
from most.train.pairs import PairStream

PAIRS = [
    {"task": "tts", "prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 2], "rejected_ids": [10, 2]},
    {"task": "s2s", "prompt_ids": [11, 12], "chosen_ids": [13, 2], "rejected_ids": [14, 15, 16]},
]
REF = [(-7.5, -6.0), (-4.0, -9.25)]  # (chosen, rejected) reference log-probs per pair


def rows(pairs=PAIRS, ref=REF) -> list[dict]:
    return [
        {**p, "ref_chosen_logps": c, "ref_rejected_logps": r}
        for p, (c, r) in zip(pairs, ref, strict=True)
    ]


def model(aux: bool = False):
    m = tiny_lm()
    m.config.output_router_logits = aux
    return m


def hand_logps(m, prompt: list[int], answer: list[int]) -> float:
    """Sum of log p(answer token | everything before it), one unpadded sequence at a time."""
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logp = torch.log_softmax(m(input_ids=ids).logits[0].double(), -1)
    return sum(float(logp[len(prompt) + i - 1, t]) for i, t in enumerate(answer))


def test_loss_equals_a_hand_computation() -> None:
    m, beta, sft = model(), 0.3, 0.5
    module = DPOModule(m, OptimConfig(), DPOConfig(beta=beta, sft_weight=sft), total_steps=1)
    batch = collate_pairs(rows(), pad_id=0, max_len=64)
    with torch.no_grad():
        stats = module.losses(batch)
    per_pair, margins, nll, n_tokens = [], [], 0.0, 0
    for p, (ref_c, ref_r) in zip(PAIRS, REF, strict=True):
        pi_c = hand_logps(m, p["prompt_ids"], p["chosen_ids"])
        pi_r = hand_logps(m, p["prompt_ids"], p["rejected_ids"])
        z = beta * ((pi_c - ref_c) - (pi_r - ref_r))
        per_pair.append(math.log1p(math.exp(-z)))  # -log sigmoid(z)
        margins.append(z)
        nll -= pi_c
        n_tokens += len(p["chosen_ids"])
    dpo = sum(per_pair) / len(per_pair)
    assert float(stats["dpo_loss"]) == pytest.approx(dpo, rel=1e-5)
    assert float(stats["loss"]) == pytest.approx(dpo + sft * nll / n_tokens, rel=1e-5)
    assert float(stats["reward_margin"]) == pytest.approx(sum(margins) / 2, rel=1e-5)
    assert float(stats["reward_accuracy"]) == sum(z > 0 for z in margins) / 2
    assert float(stats["loss_tts"]) == pytest.approx(per_pair[0], rel=1e-5)
    assert float(stats["loss_s2s"]) == pytest.approx(per_pair[1], rel=1e-5)


def test_reference_logps_are_the_policy_at_step_zero() -> None:
    """Stored reference log-probs equal the hand computation, so at step 0 every pair's margin
    is 0 and the loss is log 2."""
    m = model()
    chosen, rejected = reference_logps(m, PAIRS, pad_id=0, cfg=DPOConfig(batch_size=1))
    for p, c, r in zip(PAIRS, chosen, rejected, strict=True):
        assert c == pytest.approx(hand_logps(m, p["prompt_ids"], p["chosen_ids"]), abs=1e-4)
        assert r == pytest.approx(hand_logps(m, p["prompt_ids"], p["rejected_ids"]), abs=1e-4)
    module = DPOModule(m, OptimConfig(), DPOConfig(), total_steps=1)
    with torch.no_grad():
        stats = module.losses(
            collate_pairs(rows(ref=list(zip(chosen, rejected, strict=True))), 0, 64)
        )
    assert float(stats["dpo_loss"]) == pytest.approx(math.log(2), abs=1e-5)


def test_loss_matches_trl_dpo_trainer(word_tokenizer, tmp_path) -> None:
    """The same batch through trl's ``DPOTrainer._compute_loss`` (sigmoid + sft, precomputed
    reference log-probs, the router aux term of the MoE) gives the same loss."""
    from trl import DPOConfig as TrlConfig
    from trl import DPOTrainer

    ours, theirs = model(aux=True), model(aux=True)
    beta, sft = 0.2, 0.7
    args = TrlConfig(
        output_dir=str(tmp_path), beta=beta, loss_type=["sigmoid", "sft"], loss_weights=[1.0, sft],
        precompute_ref_log_probs=False, report_to=[], use_cpu=True, bf16=False, fp16=False,
    )  # fmt: skip
    text = datasets.Dataset.from_dict({"prompt": ["w1 w2"], "chosen": [" w3"], "rejected": [" w4"]})
    trainer = DPOTrainer(
        model=theirs, ref_model=copy.deepcopy(theirs), args=args, train_dataset=text,
        processing_class=word_tokenizer,
    )  # fmt: skip
    trainer.precompute_ref_logps = True  # read the reference from the batch, as we do
    batch = collate_pairs(rows(), pad_id=0, max_len=64)
    trl_batch = {k: v for k, v in batch.items() if k not in ("task_ids", "position_ids")}
    trainer.model.train()
    with torch.no_grad():
        expected = trainer._compute_loss(trainer.model, trl_batch, return_outputs=False)
    module = DPOModule(ours, OptimConfig(), DPOConfig(beta=beta, sft_weight=sft), total_steps=1)
    with torch.no_grad():
        got = module.losses(batch)["loss"]
    assert "aux_loss" in module.losses(batch)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_pair_stream_is_a_function_of_the_batch_index() -> None:
    """Every pair is read once per epoch, and a stream started at batch k (a resumed run) reads
    what an uninterrupted one reads from k on."""
    ds = datasets.Dataset.from_list(rows(PAIRS * 3, REF * 3))
    cfg = DPOConfig(batch_size=2, seed=7)
    whole = PairStream(ds, cfg, pad_id=0)
    epoch = sorted(i for b in range(3) for i in whole.rows(b))
    assert epoch == list(range(6))
    it = iter(whole)
    first = [next(it) for _ in range(5)]
    resumed = PairStream(ds, cfg, pad_id=0)
    resumed.start = 3
    again = iter(resumed)
    for want in first[3:]:
        got = next(again)
        assert all(torch.equal(got[k], want[k]) for k in want)
    ranks = [PairStream(ds, cfg, 0, rank=r, world_size=2).rows(0) for r in (0, 1)]
    assert ranks == [whole.rows(0), whole.rows(1)]  # DDP ranks read disjoint global batches
