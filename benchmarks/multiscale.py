"""Multi-scale decoder against the flat codebook sequence, at equal global model and steps.

UniAudio's claim: with ``C`` codes per frame, a global model over frames plus a small local model
over a frame's codebooks (:mod:`most.multiscale`) matches a model that reads all ``C`` codes as one
flat sequence, for a fraction of the compute, and generates faster. Measured here on a tiny task:

- corpus: ``--train`` + ``--test`` sentences of the text world ("the capital of X is Y"), spoken by
  espeak-ng (one voice), encoded by residual k-means (``rvq``: ``--codebooks`` x ``--k`` codes per
  frame at ``--frame-rate`` Hz, no dedup). Held-out sentences are new name pairs.
- tasks, mixed 50/50 in every batch: TTS (``chars <|tts|> <|begin_of_audio|> codes
  <|end_of_audio|>``, loss on the audio part) and ASR (``<|asr|> <|begin_of_audio|> codes
  <|end_of_audio|> chars <|end_of_turn|>``, loss on the text). Characters are the text ids.
- models: one random tiny Qwen3-MoE base adapted by ``most`` (the same initial weights for both);
  ``flat`` trains it on the flat ids, ``multiscale`` wraps it as the global model of
  :class:`~most.multiscale.MostMultiScale`. Same batches, same ``--steps``, AdamW, one thread.

Reported per model (held-out sentences): TTS teacher-forced code accuracy and cross-entropy per
code (the flat model's logits restricted to the due codebook, as its constraint decodes), greedy
generation's frame-count error and relative log-mel MSE of the generated frames (time-stretched to
the truth; 1.0 = a constant frame; the truth codes' own quantisation error is the floor); ASR
teacher-forced character accuracy; training FLOPs (torch's counter, one step x steps), wall and
CPU (thread) seconds; generation speed in audio frames per wall and per CPU second (greedy, batch
1, KV cache). Other processes share the CPU, so wall times vary; the CPU times and FLOPs less.

With ``--run RUN`` (a run with ``rvq`` or ``codec`` units and ``most adapt`` done, e.g.
``make data units judge base adapt RUN=runs/uniaudio OVERLAY=recipes/uniaudio``) the comparison is
per task instead: the run's adapted model is the global model, the batches are stage 1's mixture
of ``--recipe`` (every UniAudio task, unpacked, cut to whole frames), the multi-scale model trains
the steps that spend the flat model's training FLOPs (``--equal flops``, or the same steps), and
each task's held-out examples are scored teacher-forced: cross-entropy and accuracy per target code
(the flat model's logits restricted to the code's codebook) and per target text token, plus
training ids and generated frames per second.

Usage: ``python benchmarks/multiscale.py [--out runs/ablation] [--steps 300]`` ->
``OUT/multiscale_tiny.{json,md}``; ``python benchmarks/multiscale.py --run runs/uniaudio --steps 300
--lr 1.5e-3 --reference runs/uniaudio/stage1/hf`` -> ``OUT/multiscale.{json,md}`` (``--reference``:
a flat model trained elsewhere, scored on the same examples); ``--run RUN --score DIR [DIR ...]``
scores trained models only (flat or multi-scale, e.g. both stage-1 models) ->
``OUT/multiscale_stage1.{json,md}``. The result's JSON is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import datasets
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from transformers import AutoModelForCausalLM, LogitsProcessorList

import most  # noqa: F401  (registers the model classes)
from most.adapt import LayoutSection
from most.io import atomic_write_json, atomic_write_text
from most.multiscale import (
    CodebookConstraint,
    MostMultiScale,
    collate_frames,
    cut_to_frames,
    to_frames,
)
from most.testing.runs import NAMES
from most.testing.spoken import speak
from most.testing.tiny_moe import adapt_tiny, tiny_base
from most.units.codebooks import flatten
from most.units.rvq import RVQTokenizer, reconstruct

VOICE = "en-us+m3"
GLOBAL = dict(
    hidden_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    moe_intermediate_size=64,
    max_position_embeddings=2048,
    initializer_range=0.02,
)


def grouped_mm_flops(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """``(M, K) x (G, K, N)`` or ``(K, M) x (M, N)`` grouped by offsets: every row of ``a`` meets
    one group only, so ``2 * a0 * a1 * N``."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[-1]


def cpu_sdpa_flops(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def cpu_sdpa_backward_flops(grad, q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad, q, k, v)


#: What torch's FLOP counter has no formula for: the routed experts' grouped matmul and the CPU
#: attention kernel (causal masking not discounted, as for the GPU kernels).
UNCOUNTED = {
    torch.ops.aten._grouped_mm: grouped_mm_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: cpu_sdpa_backward_flops,
}


def text_ids(text: str) -> list[int]:
    """Characters as text ids: a-z -> 4..29, space -> 30 (the rest dropped)."""
    return [4 + ord(c) - 97 if c.isalpha() else 30 for c in text.lower() if c.isalpha() or c == " "]


def corpus(n_train: int, n_test: int, folder: Path, args) -> tuple[RVQTokenizer, list, list]:
    """Spoken sentences -> (tokenizer fitted on the training audio, train items, test items); an
    item is ``(text, codes (T, C), log-mel (T, D))``."""
    pairs = [(a, b) for a in NAMES for b in NAMES if a != b]
    random.Random(0).shuffle(pairs)
    texts = [f"the capital of {a} is {b}".lower() for a, b in pairs[: n_train + n_test]]
    wavs = [speak(t, VOICE, folder / f"{i}.wav") for i, t in enumerate(texts)]
    tok = RVQTokenizer.fit(
        wavs[:n_train],
        n_codebooks=args.codebooks,
        k=args.k,
        frame_rate=args.frame_rate,
        dedup=False,
    )
    items = []
    for text, wav in zip(texts, wavs, strict=True):
        items.append((text, tok.encode_codes(wav, 16_000), tok.features(wav, 16_000)))
    return tok, items[:n_train], items[n_train:]


def flat_example(layout, item, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One task sequence as flat ids ``(S,)`` and labels ``(S,)``."""
    text, codes, _ = item
    sid = layout.special_id
    units = layout.unit_offset + flatten(codes, layout.n_units // codes.shape[1])
    audio = [sid("<|begin_of_audio|>"), *units.tolist(), sid("<|end_of_audio|>")]
    if task == "tts":
        prompt = [*text_ids(text), sid("<|tts|>"), audio[0]]
        ids = torch.tensor(prompt + audio[1:])
        labels = ids.clone()
        labels[: len(prompt)] = -100
    else:
        prompt = [sid("<|asr|>"), *audio]
        ids = torch.tensor(prompt + text_ids(text) + [sid("<|end_of_turn|>")])
        labels = ids.clone()
        labels[: len(prompt)] = -100
    return ids, labels


def flat_batch(examples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    s = max(len(ids) for ids, _ in examples)
    out = {
        "input_ids": torch.ones(len(examples), s, dtype=torch.long),
        "labels": torch.full((len(examples), s), -100, dtype=torch.long),
        "attention_mask": torch.zeros(len(examples), s, dtype=torch.long),
    }
    for row, (ids, labels) in enumerate(examples):
        out["input_ids"][row, : len(ids)] = ids
        out["labels"][row, : len(ids)] = labels
        out["attention_mask"][row, : len(ids)] = 1
    return out


def make_batch(kind: str, layout, c: int, examples) -> dict[str, torch.Tensor]:
    if kind == "flat":
        return flat_batch(examples)
    return collate_frames([to_frames(ids, layout, c, lab) for ids, lab in examples], pad_id=1)


def update(model, opt, sched, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss``: gradients clipped to norm 1, then the schedule's step."""
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def train(kind: str, model, layout, c: int, batches: list, lr: float) -> dict:
    """``batches`` (lists of flat examples) -> loss curve ends, FLOPs and wall seconds."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=len(batches), pct_start=0.1)
    with FlopCounterMode(display=False, custom_mapping=UNCOUNTED) as counter:
        model(**make_batch(kind, layout, c, batches[0])).loss.backward()
    opt.zero_grad()
    flops_step = counter.get_total_flops()
    losses = []
    start, cpu = time.perf_counter(), time.thread_time()
    for examples in batches:
        loss = model(**make_batch(kind, layout, c, examples)).loss
        update(model, opt, sched, loss)
        losses.append(loss.item())
    wall, cpu = time.perf_counter() - start, time.thread_time() - cpu
    model.eval()
    return {
        "train_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "flops_per_step": flops_step,
        "train_flops": flops_step * len(batches),
        "loss_first": round(sum(losses[:10]) / 10, 3),
        "loss_last": round(sum(losses[-10:]) / 10, 3),
    }


@torch.no_grad()
def teacher_forced(kind: str, model, layout, c: int, k: int, test: list) -> dict:
    """TTS code accuracy / CE per code and ASR character accuracy on held-out items."""
    hits, nll, n, asr_hits, asr_n = 0, 0.0, 0, 0, 0
    for item in test:
        ids, labels = flat_example(layout, item, "tts")
        truth = item[1]  # (T, C)
        if kind == "flat":
            logits = model(input_ids=ids[None]).logits[0, :-1]
            audio = layout.is_unit(ids[1:]).nonzero()[:, 0]
            pos = torch.arange(len(audio)) % c  # the codebook of each audio position
            lo = layout.unit_offset + pos * k
            rows = logits[audio]
            cols = lo[:, None] + torch.arange(k)
            restricted = rows.gather(1, cols)  # (T*C, K): the due codebook's logits
            target = truth.reshape(-1)
        else:
            b = make_batch(kind, layout, c, [(ids, labels)])
            restricted = model(**b).local_logits.reshape(-1, k)
            target = truth.reshape(-1)
        hits += int((restricted.argmax(-1) == target).sum())
        nll += float(F.cross_entropy(restricted.float(), target, reduction="sum"))
        n += target.numel()
        ids, labels = flat_example(layout, item, "asr")
        if kind == "flat":
            logits = model(input_ids=ids[None]).logits[0, :-1]
            pred = logits.argmax(-1)
            mask = labels[1:] != -100
            asr_hits += int((pred[mask] == labels[1:][mask]).sum())
            asr_n += int(mask.sum())
        else:
            b = make_batch(kind, layout, c, [(ids, labels)])
            logits = model(**b).logits[0, :-1]
            lab = b["labels"][0, 1:]
            mask = lab != -100
            asr_hits += int((logits.argmax(-1)[mask] == lab[mask]).sum())
            asr_n += int(mask.sum())
    return {
        "tts_code_accuracy": round(hits / n, 3),
        "tts_code_ce": round(nll / n, 3),
        "asr_char_accuracy": round(asr_hits / asr_n, 3),
    }


@torch.no_grad()
def generate(kind: str, model, layout, c: int, k: int, prompt: torch.Tensor, max_frames: int):
    """Greedy speech after ``prompt (1, P)`` -> ``(T, C)`` codes."""
    if kind == "multiscale":
        p, _, _ = to_frames(prompt[0], layout, c)
        return model.generate_speech(p[None], max_frames=max_frames)[0]
    rule = CodebookConstraint(layout, c)
    out = model.generate(
        prompt,
        logits_processor=LogitsProcessorList([rule]),
        max_new_tokens=max_frames * c + 1,
        do_sample=False,
        eos_token_id=rule.end,
        pad_token_id=1,
    )[0, prompt.shape[1] :]
    units = out[layout.is_unit(out)]
    units = units[: len(units) // c * c] - layout.unit_offset
    return (units.reshape(-1, c) - torch.arange(c) * k).clamp(0, k - 1)


def free_running(kind: str, model, layout, tok: RVQTokenizer, test: list, max_factor: float):
    """Greedy TTS of the held-out texts: frame-count error, relative log-mel MSE, frames/s."""
    c, k = tok.n_codebooks, tok.codebook_size
    errors, mses, frames, wall, cpu = [], [], 0, 0.0, 0.0
    for item in test:
        _, truth, mel = item
        ids, labels = flat_example(layout, item, "tts")
        prompt = ids[: int((labels == -100).sum())][None]
        start, thread = time.perf_counter(), time.thread_time()
        codes = generate(kind, model, layout, c, k, prompt, int(len(truth) * max_factor))
        wall += time.perf_counter() - start
        cpu += time.thread_time() - thread
        frames += len(codes)
        errors.append(abs(len(codes) - len(truth)) / len(truth))
        target = mel[: len(truth)]
        var = float((target - target.mean(0)).pow(2).mean())
        # (T_g, D); no frame at all reads as one all-zero log-mel frame
        got = reconstruct(codes, tok.centroids) if len(codes) else mel.new_zeros(1, mel.shape[1])
        stretched = F.interpolate(got.T[None], size=len(target), mode="linear")[0].T
        mses.append(float((stretched - target).pow(2).mean()) / var)
    return {
        "tts_length_error": round(sum(errors) / len(errors), 3),
        "tts_rel_mel_mse": round(sum(mses) / len(mses), 3),
        "gen_frames_per_s": round(frames / wall, 1),
        "gen_frames_per_cpu_s": round(frames / cpu, 1),
        "gen_frames": frames,
    }


def floor(tok: RVQTokenizer, test: list) -> float:
    """Relative log-mel MSE of the truth codes themselves (quantisation only)."""
    out = []
    for _, codes, mel in test:
        target = mel[: len(codes)]
        var = float((target - target.mean(0)).pow(2).mean())
        out.append(float((reconstruct(codes, tok.centroids) - target).pow(2).mean()) / var)
    return round(sum(out) / len(out), 3)


def markdown(result: dict) -> str:
    """The table: each metric's mean over seeds, the seeds' own values in brackets."""
    keys = [
        ("tts_code_accuracy", "TTS code acc (TF)"),
        ("tts_code_ce", "TTS CE/code (TF)"),
        ("tts_rel_mel_mse", "TTS rel. mel MSE (greedy)"),
        ("tts_length_error", "TTS length error (greedy)"),
        ("asr_char_accuracy", "ASR char acc (TF)"),
        ("gen_frames_per_s", "gen frames / wall s"),
        ("gen_frames_per_cpu_s", "gen frames / CPU s"),
        ("train_flops", "train FLOPs"),
        ("train_s", "train wall s"),
        ("train_cpu_s", "train CPU s"),
        ("params", "params"),
    ]
    runs = result["runs"]
    lines = [
        "# Multi-scale decoder vs flat codebooks",
        "",
        result["setup"],
        "",
        "| metric | flat | multiscale |",
        "|---|---|---|",
    ]

    def cell(kind: str, key: str) -> str:
        values = [run[kind][key] for run in runs.values()]
        fmt = "{:.3g}" if key in ("train_flops", "params") else "{:.4g}"
        each = " / ".join(fmt.format(v) for v in values)
        return fmt.format(sum(values) / len(values)) + (f" ({each})" if len(values) > 1 else "")

    for key, name in keys:
        lines.append(f"| {name} | {cell('flat', key)} | {cell('multiscale', key)} |")
    lines += [
        "",
        f"Mean over seeds {', '.join(runs)} (each seed's value in brackets). Quantisation floor of "
        f"the rel. mel MSE (truth codes): {result['mel_floor']}. Wall time {result['total_s']} s.",
        "",
    ]
    return "\n".join(lines)


def run_seed(seed: int, args, tok: RVQTokenizer, train_items: list, test_items: list) -> dict:
    """Both models from the same random global model (``seed``), on the same batches."""
    c, k = tok.n_codebooks, tok.codebook_size
    section = LayoutSection(n_units=c * k, unit_tokenizer_hash=tok.hash)
    with tempfile.TemporaryDirectory() as folder:
        adapt_tiny(tiny_base("qwen3_moe", seed=seed, **GLOBAL), layout=section).save_pretrained(
            folder
        )
        base = AutoModelForCausalLM.from_pretrained(folder)  # runs as a loaded model does
    layout = base.layout
    rng = random.Random(seed)
    tasks = ["tts", "asr"] * (args.batch // 2)
    batches = [
        [flat_example(layout, rng.choice(train_items), t) for t in tasks] for _ in range(args.steps)
    ]
    out = {}
    for kind in ("flat", "multiscale"):
        torch.manual_seed(seed)
        model = copy.deepcopy(base)
        if kind == "multiscale":
            model = MostMultiScale.from_global(
                model, c, local_hidden_size=args.local_hidden, local_layers=args.local_layers
            )
        out[kind] = {
            "params": sum(p.numel() for p in model.parameters()),
            **train(kind, model, layout, c, batches, args.lr),
            **teacher_forced(kind, model, layout, c, k, test_items),
            **free_running(kind, model, layout, tok, test_items, 1.5),
        }
        print(f"seed {seed}", kind, out[kind], flush=True, file=sys.stderr)
    return out


# ---- on a run: the adapted model and the stage-1 task mixture ------------------------------------
#: Speech-output tasks (scored per code) and text-output tasks (scored per token).
SPEECH_OUT = ("tts", "vtts", "vc", "se", "speech_continue", "speech_lm")
TEXT_OUT = ("asr", "text_lm")


def whole_frames(ex, c: int, layout, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An example as ``(ids, labels)`` tensors cut to ``max_len`` and whole frames."""
    return cut_to_frames(torch.tensor(ex.input_ids), torch.tensor(ex.labels), layout, c, max_len)


def task_items(run_dir: Path, p, speech, text, ratios: dict, n: int) -> dict[str, list]:
    """Up to ``n`` held-out examples a task (validation prompts: no augmentation): ``dev`` for
    ASR, TTS and speech-LM, ``heldout`` text, and UniAudio's tasks on the test splits (``vtts`` and
    ``vc`` with ``test_voices`` as the second voice, ``se`` on ``test_noisy``)."""
    from most.train import sources as S
    from most.train.uniaudio import task_sources

    held = [S.asr(p, speech["dev"]), S.tts(p, speech["dev"]), S.text_lm(p, text["heldout"])]
    held.append(S.speech_lm(p, speech["dev"]))
    splits = {"test": speech["test"]}
    if "test_voices" in speech:
        splits["test_parallel"] = speech["test_voices"]
    if "test_noisy" in speech:
        splits["test_noisy"] = speech["test_noisy"]
    held += task_sources(run_dir, p, datasets.DatasetDict(splits), ratios, split="test")
    out = {}
    for src in held:
        if ratios.get(src.task, 0.0) > 0:
            rows = range(min(n, len(src.dataset)))
            out[src.task] = [src.build(src.dataset[i]) for i in rows]
    return out


@torch.no_grad()
def task_scores(kind: str, model, layout, c: int, k: int, items, max_len: int) -> dict:
    """Teacher-forced held-out scores of one task's examples: ``code_ce`` / ``code_acc`` over
    its target codes (the flat model's logits restricted to the code's codebook, as its
    constrained decoding reads them; the multi-scale model's local logits), ``text_ce`` /
    ``text_acc`` over its other target tokens (both: the full vocabulary)."""
    sums = dict(code_nll=0.0, code_hits=0, codes=0, text_nll=0.0, text_hits=0, texts=0)
    for ex in items:
        ids, labels = whole_frames(ex, c, layout, max_len)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if kind == "flat":
                logits = model(input_ids=ids[None]).logits[0, :-1].float()
            else:
                b = collate_frames([to_frames(ids, layout, c, labels)], pad_id=1)
                out = model(**b)
                logits = out.logits[0, :-1].float()
        target = labels[1:] if kind == "flat" else b["labels"][0, 1:]
        is_unit = layout.is_unit(target.clamp(min=0)) & (target != -100)
        is_text = (target != -100) & ~is_unit
        if is_text.any():
            t = target[is_text]
            sums["text_nll"] += float(F.cross_entropy(logits[is_text], t, reduction="sum"))
            sums["text_hits"] += int((logits[is_text].argmax(-1) == t).sum())
            sums["texts"] += int(is_text.sum())
        if not is_unit.any():
            continue
        if kind == "flat":
            code = target[is_unit] - layout.unit_offset
            book = code // k
            cols = layout.unit_offset + book[:, None] * k + torch.arange(k)
            rows, truth = logits[is_unit].gather(1, cols), code % k
        else:
            rows, truth = out.local_logits.float().reshape(-1, k), b["codes"][0, 1:][is_unit]
            truth = truth.reshape(-1)
        sums["code_nll"] += float(F.cross_entropy(rows, truth, reduction="sum"))
        sums["code_hits"] += int((rows.argmax(-1) == truth).sum())
        sums["codes"] += truth.numel()
    out = {"n": len(items)}
    if sums["codes"]:
        out |= {
            "code_ce": sums["code_nll"] / sums["codes"],
            "code_acc": sums["code_hits"] / sums["codes"],
        }
    if sums["texts"]:
        out |= {
            "text_ce": sums["text_nll"] / sums["texts"],
            "text_acc": sums["text_hits"] / sums["texts"],
        }
    return {key: round(v, 4) if isinstance(v, float) else v for key, v in out.items()}


def step_flops(kind: str, model, layout, c: int, batches: list) -> float:
    """Mean FLOPs of a training step (forward + backward) over ``batches``."""
    total = 0
    for examples in batches:
        with FlopCounterMode(display=False, custom_mapping=UNCOUNTED) as counter:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(**make_batch(kind, layout, c, examples)).loss
            loss.backward()
        model.zero_grad(set_to_none=True)
        total += counter.get_total_flops()
    return total / len(batches)


def train_run(kind: str, model, layout, c: int, batches: list, lr: float, log_every: int) -> dict:
    """AdamW one-cycle over ``batches`` in bf16 autocast -> wall/CPU seconds, flat ids a second."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=len(batches), pct_start=0.05)
    losses, ids = [], 0
    start, cpu = time.perf_counter(), time.process_time()
    for step, examples in enumerate(batches, 1):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**make_batch(kind, layout, c, examples)).loss
        update(model, opt, sched, loss)
        losses.append(loss.item())
        ids += sum(len(x) for x, _ in examples)
        if step % log_every == 0 or step == len(batches):
            took = time.perf_counter() - start
            eta = took / step * (len(batches) - step)
            print(
                f"  {kind} step {step}/{len(batches)} loss {loss.item():.3f} "
                f"{took:.0f} s, eta {eta:.0f} s",
                flush=True,
                file=sys.stderr,
            )
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    model.eval()
    return {
        "steps": len(batches),
        "train_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "train_ids_per_s": round(ids / wall, 1),
        "loss_first": round(sum(losses[:10]) / min(10, len(losses)), 3),
        "loss_last": round(sum(losses[-10:]) / min(10, len(losses)), 3),
    }


def tts_speed(kind: str, model, layout, c: int, k: int, items: list, max_frames: int) -> dict:
    """Greedy speech after the prompts of held-out TTS ``items``: frames a wall second."""
    frames, wall = 0, 0.0
    for ex in items:
        ids, labels = whole_frames(ex, c, layout, 10**9)
        prompt = ids[: int((labels == -100).sum())][None]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            codes = generate(kind, model, layout, c, k, prompt, max_frames)
        wall += time.perf_counter() - start
        frames += len(codes)
    return {"gen_frames": frames, "gen_frames_per_s": round(frames / max(wall, 1e-9), 1)}


def run_tasks(args) -> dict:
    """Flat vs multi-scale from the run's adapted model on its stage-1 mixture (``--recipe``'s
    ratios), the multi-scale model given the flat model's training FLOPs (``--equal``: flops) or
    its steps (steps)."""
    import yaml

    from most.data.prompts import Prompts
    from most.run import Run
    from most.train import sources as S
    from most.train.mixing import MixtureStream
    from most.train.stage import STAGE1_RATIOS, load_model
    from most.train.uniaudio import task_sources
    from most.units.kinds import load_tokenizer

    run = Run(args.run)
    recipe = yaml.safe_load(Path(args.recipe).read_text()) or {}
    data = recipe.get("data", {})
    ratios = {**STAGE1_RATIOS, **data.get("ratios", {})}
    batch, max_len = int(data.get("batch_size", args.batch)), int(data.get("max_len", 2560))
    base, tok, layout = load_model(run.hf("adapt"), torch.float32)
    units = load_tokenizer(run.unit_tokenizer)
    c = int(getattr(units, "n_codebooks", 1))
    if c < 2:
        raise SystemExit(f"{args.run}: units of kind {type(units).__name__} have one codebook")
    k = layout.n_units // c
    speech = run.load_units("speech", layout.unit_tokenizer_hash)
    text = run.load_data("text")
    p = Prompts(layout, tok)
    train = [S.asr(p, speech["train"]), S.tts(p, speech["train"]), S.text_lm(p, text["train"])]
    train.append(S.speech_lm(p, S.speech_lm_train(speech)))
    train += task_sources(args.run, p, speech, ratios)
    sources, weights = S.mixture(train, STAGE1_RATIOS, data.get("ratios", {}))
    stream = MixtureStream(sources, weights, batch, max_len, pad_id=1, seed=args.seeds[0])

    def batch_of(b: int) -> list:
        return [whole_frames(ex, c, layout, max_len) for ex in stream.draw(b)]

    held = task_items(args.run, p, speech, text, ratios, args.items)
    out: dict = {"tasks": {}, "train": {}, "c": c, "k": k, "batch": batch, "max_len": max_len}
    models = {"flat": copy.deepcopy(base)}
    models["multiscale"] = MostMultiScale.from_global(
        copy.deepcopy(base), c, local_hidden_size=args.local_hidden, local_layers=args.local_layers
    )
    probe = [batch_of(b) for b in range(3)]
    flops = {kind: step_flops(kind, m, layout, c, probe) for kind, m in models.items()}
    steps = {"flat": args.steps}
    ratio = flops["flat"] / flops["multiscale"] if args.equal == "flops" else 1.0
    steps["multiscale"] = round(args.steps * ratio)
    for kind, model in models.items():
        torch.manual_seed(args.seeds[0])
        batches = [batch_of(b) for b in range(steps[kind])]
        result = train_run(kind, model, layout, c, batches, args.lr, args.log_every)
        result |= {"flops_per_step": flops[kind], "train_flops": flops[kind] * steps[kind]}
        result["params"] = sum(t.numel() for t in model.parameters())
        tts = held.get("tts", [])[: args.gen_items]
        result |= tts_speed(kind, model, layout, c, k, tts, args.max_frames)
        out["train"][kind] = result
        print(kind, result, flush=True, file=sys.stderr)
        for task, items in held.items():
            scores = task_scores(kind, model, layout, c, k, items, max_len)
            out["tasks"].setdefault(task, {})[kind] = scores
            print(f"  {kind} {task} {scores}", flush=True, file=sys.stderr)
    if args.reference is not None:  # a flat model trained elsewhere (e.g. RUN/stage1/hf)
        ref, _, _ = load_model(args.reference, torch.float32)
        out["reference"] = str(args.reference)
        for task, items in held.items():
            scores = task_scores("flat", ref.eval(), layout, c, k, items, max_len)
            out["tasks"][task]["reference"] = scores
            print(f"  reference {task} {scores}", flush=True, file=sys.stderr)
    return out


def score_models(args) -> dict:
    """``--score``: trained models (HF folders, flat or multi-scale, told apart by their class)
    scored per task, teacher-forced, on ``--run``'s held-out examples of ``--recipe``'s tasks."""
    import yaml

    from most.data.prompts import Prompts
    from most.run import Run
    from most.train.stage import STAGE1_RATIOS, load_model

    run = Run(args.run)
    data = (yaml.safe_load(Path(args.recipe).read_text()) or {}).get("data", {})
    ratios = {**STAGE1_RATIOS, **data.get("ratios", {})}
    max_len = int(data.get("max_len", 2560))
    c = run.unit_codebooks()
    out: dict = {"models": {}, "c": c, "max_len": max_len}
    for folder in args.score:
        model, tok, layout = load_model(folder, torch.float32)
        kind = "multiscale" if isinstance(model, MostMultiScale) else "flat"
        speech = run.load_units("speech", layout.unit_tokenizer_hash)
        held = task_items(
            args.run, Prompts(layout, tok), speech, run.load_data("text"), ratios, args.items
        )
        k = layout.n_units // c
        tasks = {
            task: task_scores(kind, model.eval(), layout, c, k, items, max_len)
            for task, items in held.items()
        }
        out["models"][str(folder)] = {"kind": kind, "tasks": tasks}
        print(f"  {folder} ({kind}) {tasks}", flush=True, file=sys.stderr)
    return out


def scores_markdown(result: dict) -> str:
    """The ``--score`` table: a row per task and score, a column per model."""
    models = result["models"]
    names = list(models)
    lines = ["# Trained models per task, teacher-forced", "", result["setup"], ""]
    lines += [
        "| task | score | " + " | ".join(f"`{n}` ({models[n]['kind']})" for n in names) + " |"
    ]
    lines.append("|---|---|" + "---|" * len(names))
    for task, scores in models[names[0]]["tasks"].items():
        for key in ("code_ce", "code_acc", "text_ce", "text_acc"):
            if key in scores:
                cells = " | ".join(
                    f"{models[n]['tasks'][task].get(key, float('nan')):.4g}" for n in names
                )
                lines.append(f"| {task} (n={scores['n']}) | {key} | {cells} |")
    lines += ["", f"Wall time {result['total_s']} s.", ""]
    return "\n".join(lines)


def tasks_markdown(result: dict) -> str:
    """The per-task table and the training and speed rows of a ``--run`` result."""
    r, tr = result["runs"], result["runs"]["train"]
    lines = ["# Multi-scale decoder vs flat codebooks, per task", "", result["setup"], ""]
    kinds = ["flat", "multiscale"] + (["reference"] if "reference" in r else [])
    lines += ["| task | score | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for task, scores in r["tasks"].items():
        for key in ("code_ce", "code_acc", "text_ce", "text_acc"):
            if key in scores["flat"]:
                cells = " | ".join(f"{scores[kind][key]:.4g}" for kind in kinds)
                lines.append(f"| {task} (n={scores['flat']['n']}) | {key} | {cells} |")
    if "reference" in r:
        lines += ["", f"reference: the flat model {r['reference']}, scored on the same examples."]
    lines += ["", "| training / speed | flat | multiscale |", "|---|---|---|"]
    for key in (
        "steps",
        "train_flops",
        "train_s",
        "train_cpu_s",
        "train_ids_per_s",
        "loss_first",
        "loss_last",
        "gen_frames_per_s",
        "params",
    ):
        fmt = "{:.3g}" if key in ("train_flops", "params") else "{:.4g}"
        lines.append(
            f"| {key} | {fmt.format(tr['flat'][key])} | {fmt.format(tr['multiscale'][key])} |"
        )
    lines += ["", f"Wall time {result['total_s']} s.", ""]
    return "\n".join(lines)


def emit(stem: Path, result: dict, table: str) -> None:
    """``stem``.json and ``stem``.md written atomically; the JSON printed."""
    atomic_write_json(stem.with_suffix(".json"), result)
    atomic_write_text(stem.with_suffix(".md"), table)
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--run", type=Path, help="a run with rvq/codec units and adapt done: per task")
    ap.add_argument("--recipe", type=Path, default=Path("recipes/uniaudio/stage1.yaml"))
    ap.add_argument("--equal", choices=["flops", "steps"], default="flops")
    ap.add_argument("--reference", type=Path, help="a flat model (HF folder) also scored per task")
    ap.add_argument(
        "--score", type=Path, nargs="+", help="trained models (HF folders) only scored, per task"
    )
    ap.add_argument("--items", type=int, default=16, help="held-out examples a task (--run)")
    ap.add_argument("--gen-items", type=int, default=4, help="TTS prompts timed (--run)")
    ap.add_argument("--max-frames", type=int, default=100, help="frames generated (--run)")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=48)
    ap.add_argument("--test", type=int, default=8)
    ap.add_argument("--codebooks", type=int, default=4)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--frame-rate", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--local-hidden", type=int, default=64)
    ap.add_argument("--local-layers", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    if args.score:
        if args.run is None:
            raise SystemExit("--score needs --run (the run whose held-out examples are scored)")
        result = score_models(args)
        result |= {
            "machine": platform.processor() or platform.machine(),
            "total_s": round(time.perf_counter() - t0, 1),
            "setup": (
                f"{args.run}'s held-out examples of {args.recipe}'s tasks ({args.items} a task), "
                "teacher-forced: code CE/acc over target codes (flat: its due codebook's logits; "
                "multi-scale: the local model's), text CE/acc over other target tokens."
            ),
        }
        emit(args.out / "multiscale_stage1", result, scores_markdown(result))
        return
    if args.run is not None:
        runs = run_tasks(args)
        result = {
            "machine": platform.processor() or platform.machine(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": runs,
            "total_s": round(time.perf_counter() - t0, 1),
            "setup": (
                f"{args.run}: its adapted model as the global model, its units ({runs['c']} "
                f"codebooks x {runs['k']}), the stage-1 mixture of {args.recipe} "
                f"({runs['batch']} x {runs['max_len']} ids, unpacked), bf16 autocast, AdamW "
                f"one-cycle lr {args.lr:g}, {args.threads} thread(s); multi-scale local "
                f"{args.local_layers}x{args.local_hidden}, given the flat model's "
                f"{'training FLOPs' if args.equal == 'flops' else 'steps'}. Held-out examples, "
                "teacher-forced: code CE/acc over target codes (flat: its due codebook's logits), "
                "text CE/acc over other target tokens."
            ),
        }
        emit(args.out / "multiscale", result, tasks_markdown(result))
        return
    with tempfile.TemporaryDirectory() as folder:
        tok, train_items, test_items = corpus(args.train, args.test, Path(folder), args)
    runs = {str(s): run_seed(s, args, tok, train_items, test_items) for s in args.seeds}
    c, k = tok.n_codebooks, tok.codebook_size
    frames = sum(len(x[1]) for x in train_items) / len(train_items)
    result = {
        "machine": platform.processor() or platform.machine(),
        "args": vars(args) | {"out": str(args.out)},
        "runs": runs,
        "mel_floor": floor(tok, test_items),
        "total_s": round(time.perf_counter() - t0, 1),
        "setup": (
            f"{args.train} train / {args.test} held-out espeak-ng sentences ({VOICE}), rvq {c}x{k} "
            f"at {args.frame_rate:g} Hz (mean {frames:.0f} frames/utterance); tiny Qwen3-MoE "
            f"global (hidden {GLOBAL['hidden_size']}, {GLOBAL['num_hidden_layers']} layers, 8 "
            f"experts top-2), local {args.local_layers}x{args.local_hidden}; {args.steps} steps x "
            f"{args.batch} (TTS/ASR 50/50), AdamW one-cycle lr {args.lr:g}, 1 thread. "
            "TF = teacher-forced on held-out sentences."
        ),
    }
    emit(args.out / "multiscale_tiny", result, markdown(result))


if __name__ == "__main__":
    main()
