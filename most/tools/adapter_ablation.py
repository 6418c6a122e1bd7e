"""``most adapter_ablation``: how audio should enter the model (MoE-Adapter's claim, tested).

Three variants, each ``adapt -> stage1 -> stage2`` from the same inputs (the source run's data,
units and base), the same recipes, steps and seeds; only the audio input differs:

=======  ===================================================================================
moe      frozen features -> sparse MoE adapter (routed top-k + shared experts, load balance)
dense    the same frames through a dense adapter of equal active parameters and compute
units    discrete units (the default pipeline: no adapter)
=======  ===================================================================================

Every variant trains with the paralinguistic task in its mixture (``paraling_ratio``) in both
stages; stage 2 teaches spoken QA (S->T), so its steps are part of the comparison. Each variant is
scored by :func:`most.eval.audio_tasks.evaluate_audio_tasks` (ASR WER, S->T QA, one accuracy per
paralinguistic task) on held-out utterances. Each variant runs once per seed; the spread over
seeds is the run-to-run noise. ``OUT/adapter.json`` maps ``<variant>.<task>`` to
``{"mean", "std", "values"}`` (``std``: sample standard deviation over seeds, None for one seed;
the adapter variants also carry ``conflict.<a>|<b>``, the cosine between two tasks' gradients
inside the adapter, :mod:`most.eval.grad_conflict`),
``OUT/adapter.md`` holds the table. ``RUN/<variant>-s<seed>/`` holds each run (stages as
subprocesses, logs in ``logs/``; a finished run with the same settings is skipped).
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Literal

from most.io import atomic_write_json, atomic_write_text, read_json
from most.run import Run
from most.tools.ablation import _most, check_source, link_inputs

AdapterVariant = Literal["moe", "dense", "units"]
RESULT = "audio_tasks.json"
SETTINGS = "variant.json"
CONFLICT = "grad_conflict.json"
CONFLICT_PARALING = ("voice", "noise")
"""The paralinguistic questions whose adapter gradients are compared with ASR's and S->T's."""


def variant_args(
    variant: str, seed: int, frontend: list[str], max_steps: int | None, paraling_ratio: float
) -> list[str]:
    """The stage overrides that make ``variant`` (besides the shared recipe); ``frontend``: the
    ``--audio_frontend.*`` overrides of the adapter variants; ``max_steps`` None: the recipe's."""
    args = [f"--data.seed={seed}", f"--data.ratios.paraling={paraling_ratio}", "--data.pack=false"]
    args += ["--trainer.max_time_min=null", "--trainer.progress=false"]
    if max_steps:
        args.append(f"--trainer.max_steps={max_steps}")
    if variant != "units":
        args += [f"--adapter.kind={variant}", *frontend]
    return args


def adapter_ablation(
    run: Path,
    source: Path,
    variants: tuple[AdapterVariant, ...] = ("moe", "dense", "units"),
    seeds: tuple[int, ...] = (1234, 1235),
    recipes: Path = Path("recipes/tiny"),
    out: Path = Path("runs/ablation"),
    frontend: Literal["mel", "ctc"] = "mel",
    max_steps: int | None = None,
    stage2_steps: int | None = None,
    paraling_ratio: float = 0.2,
    n: int = 50,
    force: bool = False,
) -> dict:
    """Train and score every (variant, seed); write ``OUT/adapter.{json,md}``.

    ``frontend``: the adapters' frozen features (``ctc``: the source run's unit tokenizer's CTC
    recogniser). ``max_steps``/``stage2_steps``: stage 1's and stage 2's steps (None: the
    recipe's; ``stage2_steps=0`` stops after stage 1, leaving S->T untrained). ``n``: held-out
    utterances per task.
    """
    run, source, out = Path(run), Path(source), Path(out)
    if unknown := sorted(set(variants) - {"moe", "dense", "units"}):
        raise ValueError(f"unknown variants {unknown}; choose from moe, dense, units")
    if not seeds:
        raise ValueError("give at least one seed")
    if stage2_steps is not None and stage2_steps < 0:
        raise ValueError(f"stage2_steps is {stage2_steps}; give 0 (no stage 2) or more")
    check_source(source, judge="none")
    if run.resolve() == source.resolve():
        raise ValueError(f"--run {run} is the source run; the ablation writes elsewhere")
    fe = [f"--audio_frontend.kind={frontend}"]
    if frontend == "ctc":
        fe.append(f"--audio_frontend.path={Run(source).units.resolve()}")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    t0 = time.monotonic()
    meta = {"source": str(source), "seeds": list(seeds), "frontend": frontend, "n": n,
            "max_steps": max_steps, "stage2_steps": stage2_steps,
            "majority": majority(source, n)}  # fmt: skip
    for seed in seeds:  # seed-major: an interrupted ablation has every variant at the first seeds
        for variant in variants:
            vdir = run / f"{variant}-s{seed}"
            args = variant_args(variant, seed, fe, max_steps, paraling_ratio)
            args2 = None if stage2_steps == 0 else variant_args(
                variant, seed, fe, stage2_steps, paraling_ratio)  # fmt: skip
            settings = {"variant": variant, "seed": seed, "stage1": args, "stage2": args2, "n": n}
            results[variant].append(run_one(vdir, source, recipes, settings, force))
            done = {v: r for v, r in results.items() if r}
            partial = {"runs_done": sum(map(len, done.values())),
                       "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
            write_report(out, summarize(done), meta | partial)
    report = summarize(results)
    print(f"most adapter_ablation: wrote {out}/adapter.md")
    return report


def run_one(vdir: Path, source: Path, recipes: Path, settings: dict, force: bool) -> dict:
    """Adapt, train (stage 1, then stage 2 unless its settings are None) and score one
    (variant, seed) unless done with the same settings. ``vdir`` made with other settings is
    removed first (it holds only this tool's outputs and links to the source's inputs); with the
    same settings an interrupted run resumes."""
    done = vdir / RESULT
    before = read_json(vdir / SETTINGS) if (vdir / SETTINGS).is_file() else None
    stages = [("adapt", []), ("stage1", settings["stage1"])]
    if settings["stage2"] is not None:
        stages.append(("stage2", settings["stage2"]))
    if not force and done.is_file() and before == settings:
        result = read_json(done)
    else:
        if before is not None and before != settings:
            shutil.rmtree(vdir)
        link_inputs(vdir, source)
        atomic_write_json(vdir / SETTINGS, settings)
        redo = ["--force=true"] if force else []
        for stage, args in stages:
            cfg = ["--config", str(recipes / f"{stage}.yaml")]
            _most(stage, [*cfg, *args, "--run", str(vdir), *redo], vdir / "logs" / f"{stage}.log")
        result = score(vdir, source, settings["n"], stages[-1][0])
        atomic_write_json(done, result)
    if settings["variant"] == "units":  # no adapter: no gradient conflict inside one
        return result
    if (
        force
        or not (vdir / CONFLICT).is_file()
        or (vdir / CONFLICT).stat().st_mtime < done.stat().st_mtime
    ):
        atomic_write_json(vdir / CONFLICT, conflict(vdir, source, stages[-1][0]))
    return result | read_json(vdir / CONFLICT)


def score(vdir: Path, source: Path, n: int, stage: str) -> dict:
    """:func:`~most.eval.audio_tasks.evaluate_audio_tasks` of ``vdir``'s ``stage`` model."""
    from most.eval.audio_tasks import evaluate_audio_tasks
    from most.generate import SpeechLM

    src = Run(source)
    lm = SpeechLM.load(Run(vdir).hf(stage), units=src.units)
    sqa = src.load_data("sqa") if src.has_data("sqa") else None
    return evaluate_audio_tasks(lm, src.load_data("speech"), sqa, n)


def conflict(vdir: Path, source: Path, stage: str) -> dict:
    """``{"conflict.<task a>|<task b>": {"cosine", "parts"}}``: the gradient conflict inside the
    adapter of ``vdir``'s ``stage`` model (:func:`~most.eval.grad_conflict.gradient_conflict`)
    between ASR, S->T and the voice and noise questions, on training utterances."""
    from dataclasses import replace

    from most.eval.grad_conflict import gradient_conflict
    from most.generate import SpeechLM
    from most.train import features as F
    from most.train.paraling import paraling

    src = Run(source)
    lm = SpeechLM.load(Run(vdir).hf(stage), units=src.units)
    p, fe, k = lm.prompts, lm.frontend, lm.stack
    speech = src.load_data("speech")["train"]
    sources = [F.asr(p, speech, fe, k)]
    if src.has_data("sqa"):
        sources.append(F.s2t(p, src.load_data("sqa")["qa_train"], fe, k))
    for task in CONFLICT_PARALING:
        sources.append(replace(paraling(p, speech, [task], fe, k), task=f"paraling.{task}"))
    pairs = gradient_conflict(lm.model, sources, lm.pad_id)
    return {f"conflict.{pair}": {"cosine": c["all"], "parts": c} for pair, c in pairs.items()}


def majority(source: Path, n: int) -> dict[str, float]:
    """``{"paraling.<task>": share}``: the share of the most common answer to each paralinguistic
    question on the utterances :func:`score` asks about (the accuracy of always giving it)."""
    from most.data.paraling import PARALING_TASKS, answer

    rows = Run(source).load_data("speech")["test"]
    rows = rows.select(range(min(n, len(rows))))
    pairs = list(zip(rows["voice"], rows["id"], strict=True))
    return {
        f"paraling.{t}": max(Counter(answer(t, v, i) for v, i in pairs).values()) / len(pairs)
        for t in PARALING_TASKS
    }


def _headline(task: str, r: dict) -> float:
    if task == "asr":
        return r["wer"]
    return r["cosine"] if task.startswith("conflict.") else r["accuracy"]


def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """``{"<variant>.<task>": {"mean", "std", "values"}}`` over the seeds of each variant."""
    out = {}
    for variant, runs in results.items():
        for task in runs[0]:
            values = [_headline(task, r[task]) for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else None
            out[f"{variant}.{task}"] = {"mean": statistics.fmean(values), "std": std,
                                        "values": values}  # fmt: skip
    return out


def write_report(out: Path, report: dict[str, dict], meta: dict) -> None:
    """``OUT/adapter.json`` (the report and ``_meta``) and ``OUT/adapter.md`` (variants x tasks);
    rewritten after every finished run, ``_meta.runs_done`` says how many it holds."""
    atomic_write_json(out / "adapter.json", {**report, "_meta": meta})
    variants = list(dict.fromkeys(k.split(".", 1)[0] for k in report))
    tasks = list(dict.fromkeys(k.split(".", 1)[1] for k in report))
    steps1 = meta["max_steps"] if meta["max_steps"] is not None else "as the recipe"
    steps2 = meta["stage2_steps"] if meta["stage2_steps"] is not None else "as the recipe"
    lines = [
        "# Audio input ablation: MoE adapter vs dense adapter vs units",
        "",
        f"{meta['runs_done']} runs of seeds {meta['seeds']}, {meta['n']} held-out utterances per "
        f"task, frontend {meta['frontend']}, stage-1 steps {steps1}, stage-2 steps {steps2}. "
        "ASR: WER (lower is better); conflict.a|b: cosine between tasks a's and b's gradients "
        "inside the adapter (below 0: they pull apart); others: accuracy. Mean ± std over seeds. "
        "majority: the accuracy of always giving the most common answer.",
        "",
        "| task | " + " | ".join(variants) + " | majority |",
        "|---|" + "---|" * (len(variants) + 1),
    ]
    for task in tasks:
        cells = []
        for v in variants:
            r = report.get(f"{v}.{task}")
            if r is None:
                cells.append("-")
                continue
            noise = f" ± {r['std']:.3f}" if r["std"] is not None else ""
            cells.append(f"{r['mean']:.3f}{noise}")
        base = meta.get("majority", {}).get(task)
        cells.append("-" if base is None else f"{base:.3f}")
        name = task.replace("|", "\\|")  # a pair's bar, escaped out of the table's columns
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    atomic_write_text(out / "adapter.md", "\n".join(lines) + "\n")
