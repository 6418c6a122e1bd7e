"""``most ablation``: which parts of the modality-aware MoE earn their keep (MoST's claim, tested).

Every variant runs ``adapt -> stage1 -> eval`` from the same inputs (the source run's data, units,
judge and base model), with the same stage1 recipe, steps and seed; only the ``experts`` options of
``most adapt`` differ:

=========  =====================================================================================
modality   the reference: split init, modality-aware router (MoST)
vanilla    the base's own top-k router over all experts, no groups (at step 0: the base model)
upcycle    modality router, but each group starts as a copy of all pretrained experts
no_shared  the reference without shared experts
top_p      Top-P routing with null experts (UniMoE-Audio) instead of top-k inside the group
=========  =====================================================================================

Shared experts: a base without any (the embedded Qwen3-MoE, OLMoE, Mixtral) would make
``no_shared`` the same model as ``modality``. With ``add_shared`` (default) every variant but
``no_shared`` gets one added shared expert per MoE layer (``experts.add_shared``: a no-op at step 0
that learns), so that the shared-expert row is a real comparison; a base with its own shared experts
keeps them instead.

``RUN/<variant>/`` holds links ``data units judge base`` to the source run (read, never written), the
stages' usual ``adapt/ stage1/ eval/``, their output in ``logs/<stage>.log`` and ``variant.json``
(the exact stage arguments: a later call with other settings is refused unless ``force``).
``RUN/report.json`` and ``RUN/report.md`` hold the table.

Stages run as subprocesses (``python -m most.cli``): each variant trains in a fresh process, so no
memory or RNG state leaks between variants, and a killed ablation resumes where it stopped (finished
variants are skipped, a killed stage1 resumes from its checkpoint).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from most.cli import StageError
from most.io import atomic_write_json, atomic_write_text, read_json
from most.stages.eval import Sizes

Variant = Literal["modality", "vanilla", "upcycle", "no_shared", "top_p"]

#: variant -> its ``experts.*`` options for ``most adapt`` (the rest come from the adapt recipe).
VARIANTS: dict[str, dict[str, str | bool]] = {
    "modality": {"init": "split", "router": "modality", "shared_experts": True},
    "vanilla": {"init": "split", "router": "topk", "shared_experts": True},
    "upcycle": {"init": "upcycle", "router": "modality", "shared_experts": True},
    "no_shared": {"init": "split", "router": "modality", "shared_experts": False},
    "top_p": {"init": "split", "router": "top_p", "shared_experts": True},
}

#: (name, header, eval report key, lower is better, tie tolerance): the quality columns.
#: Tolerances: one point of WER/accuracy, 1 % of perplexity; a smaller difference is a tie.
METRICS: list[tuple[str, str, str, bool, float]] = [
    ("asr_seen", "ASR WER seen", "asr.test.wer", True, 0.01),
    ("asr_heldout", "ASR WER held-out voices", "asr.test_voices.wer", True, 0.01),
    ("tts", "TTS WER", "tts.{judge}.wer_model", True, 0.01),
    ("wuggy", "wuggy acc", "audio_lm.wuggy.accuracy", False, 0.01),
    ("blimp", "blimp acc", "audio_lm.blimp.accuracy", False, 0.01),
    ("text_ppl", "text ppl", "text.ppl_model", True, 0.01),
]
TASKS = ("asr", "tts", "text_lm")

#: (question, variant with the feature, variant without it, MoST claims it helps)
COMPARISONS: list[tuple[str, str, str, bool]] = [
    ("modality-aware routing", "modality", "vanilla", True),
    ("shared experts", "modality", "no_shared", True),
    ("split init instead of upcycle", "modality", "upcycle", False),
    ("Top-P routing with null experts instead of top-k", "top_p", "modality", False),
]

SETTINGS = "variant.json"
_DEFAULT_SIZES = Sizes(asr=100, tts=40, sqa=0, text=100, wuggy=60, blimp=60, router=32)


def ablation(
    run: Path = Path("runs/ablation"),
    source: Path = Path("runs/demo"),
    variants: tuple[Variant, ...] = ("modality", "vanilla", "upcycle", "no_shared", "top_p"),
    recipes: Path = Path("recipes/tiny"),
    max_steps: int | None = None,
    add_shared: bool = True,
    sizes: Sizes = _DEFAULT_SIZES,
    judge: str = "ctc",
    stage1_args: tuple[str, ...] = (),
    eval_args: tuple[str, ...] = (),
    force: bool = False,
) -> dict:
    """Adapt, train (stage1) and evaluate every variant; write ``RUN/report.{json,md}``.

    ``source``: the finished demo run whose data, units, judge and base every variant reads.
    ``recipes``: folder of the adapt, stage1 and eval recipes all variants share.
    ``max_steps``: stage1 optimizer steps of every variant (None = the recipe's); the recipe's
    time limit is lifted so that every variant trains the same number of steps.
    ``add_shared``: give a base without shared experts one per layer (see the module docstring).
    ``judge``: the TTS judge (``ctc`` = SOURCE/judge). ``sizes``: items per eval section (spoken
    QA is off by default: stage1 does not teach it). ``stage1_args`` / ``eval_args``: extra
    ``--key=value`` overrides given to every variant's stage.
    """
    run, source, recipes = Path(run), Path(source), Path(recipes)
    if unknown := sorted(set(variants) - set(VARIANTS)):
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    check_source(source, judge)
    if run.resolve() == source.resolve():
        raise ValueError(f"--run {run} is the source run; the ablation writes elsewhere")
    base_shared = base_has_shared(source / "base" / "hf")
    if "no_shared" in variants and not base_shared and not add_shared:
        raise ValueError(
            "variant no_shared: the base has no shared experts, so it would equal modality; "
            "set add_shared=true or leave no_shared out"
        )
    add = add_shared and not base_shared
    t_start = time.monotonic()
    for i, name in enumerate(variants, 1):
        vdir = run / name
        settings = variant_settings(
            name, vdir, source, recipes, max_steps, add, sizes, judge, stage1_args, eval_args
        )
        tag = f"[{i}/{len(variants)}] {name}"
        took = run_variant(vdir, source, settings, force, tag)
        if took:
            stages = ", ".join(f"{stage} {t / 60:.1f} min" for stage, t in took.items())
            total = (time.monotonic() - t_start) / 60
            print(f"{tag}: done ({stages}); ablation {total:.1f} min so far", flush=True)
    rows = {name: collect(run / name, judge) for name in variants}
    meta = {
        "source": str(source),
        "recipes": str(recipes),
        "base_has_shared": base_shared,
        "add_shared": add,
        "sizes": asdict(sizes),
        "judge": judge,
        "seconds": round(time.monotonic() - t_start, 1),
    }
    report = write_report(run, rows, meta)
    print(f"most ablation: wrote {run}/report.md")
    return report


def check_source(source: Path, judge: str) -> None:
    """One-line error naming the first missing input of the source run."""
    needed = [source / "data", source / "units" / "manifest.json", source / "base/hf/config.json"]
    if judge == "ctc":
        needed.append(source / "judge" / "judge.json")
    for path in needed:
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `make demo` (RUN={source}) first")


def base_has_shared(base: Path) -> bool:
    """Whether the base architecture has shared experts of its own (DeepSeek, Qwen2-MoE)."""
    from transformers import AutoConfig

    from most.moe.arch import spec_for

    return spec_for(AutoConfig.from_pretrained(base)).shared is not None


def experts_options(variant: str, add_shared: bool) -> dict[str, str | bool]:
    """The ``experts.*`` options of ``most adapt`` for ``variant``."""
    opts = VARIANTS[variant]
    return {**opts, "add_shared": add_shared and bool(opts["shared_experts"])}


def adapt_args(experts: dict[str, str | bool]) -> list[str]:
    return [
        f"--experts.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in experts.items()
    ]


def variant_settings(
    name: str,
    vdir: Path,
    source: Path,
    recipes: Path,
    max_steps: int | None,
    add_shared: bool,
    sizes: Sizes,
    judge: str,
    stage1_args: tuple[str, ...],
    eval_args: tuple[str, ...],
) -> dict:
    """Everything that makes a variant: the exact arguments of its three stages."""
    experts = experts_options(name, add_shared)
    # The recipe's time limit would stop a slower variant early: every variant trains max_steps.
    train = [f"--trainer.max_steps={max_steps}"] if max_steps else []
    train += ["--trainer.max_time_min=null", "--trainer.progress=false", *stage1_args]
    evaluate = [f"--models.model={vdir / 'stage1' / 'hf'}"]
    evaluate += [f"--sizes.{k}={v}" for k, v in asdict(sizes).items()]
    evaluate += [f"--judges.names=[{judge}]", f"--judges.sqa={judge}", *eval_args]
    return {
        "variant": name,
        "source": str(source),
        "experts": experts,
        "adapt": ["--config", str(recipes / "adapt.yaml"), *adapt_args(experts)],
        "stage1": ["--config", str(recipes / "stage1.yaml"), *train],
        "eval": ["--config", str(recipes / "eval.yaml"), *evaluate],
    }


def run_variant(
    vdir: Path, source: Path, settings: dict, force: bool, tag: str
) -> dict[str, float]:
    """Run the variant's stages unless it finished with the same settings; seconds per stage run."""
    recorded = read_json(vdir / SETTINGS) if (vdir / SETTINGS).is_file() else None
    if recorded is not None and recorded != settings and not force:
        raise StageError(
            f"{vdir} was made with other settings ({vdir / SETTINGS}); pass --force=true to redo "
            "it, or choose another --run"
        )
    if recorded == settings and (vdir / "eval" / "report.json").is_file() and not force:
        print(f"{tag}: finished earlier; skipped (--force=true redoes it)")
        return {}
    link_inputs(vdir, source)
    atomic_write_json(vdir / SETTINGS, settings)
    redo = ["--force=true"] if force else []
    took = {}
    for stage in ("adapt", "stage1", "eval"):
        log = vdir / "logs" / f"{stage}.log"
        print(f"{tag}: most {stage} (log: {log})", flush=True)
        t0 = time.monotonic()
        _most(stage, [*settings[stage], "--run", str(vdir), *redo], log)
        took[stage] = time.monotonic() - t0
    return took


def link_inputs(vdir: Path, source: Path) -> None:
    """``vdir/{data,units,judge,base}`` -> the source run's folders (what the stages read)."""
    vdir.mkdir(parents=True, exist_ok=True)
    for name in ("data", "units", "judge", "base"):
        link, target = vdir / name, (source / name).resolve()
        if link.is_symlink() and link.resolve() == target:
            continue
        if link.exists() or link.is_symlink():
            raise StageError(f"{link} exists and is not a link to {target}")
        if target.exists():
            link.symlink_to(target, target_is_directory=True)


def _most(stage: str, args: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"$ most {stage} {' '.join(args)}\n")
        f.flush()
        cmd = [sys.executable, "-m", "most.cli", stage, *args]
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc:
        raise StageError(f"`most {stage}` failed (exit {rc}); see {log}")


# ---- the report -----------------------------------------------------------------------------


def collect(vdir: Path, judge: str) -> dict:
    """One table row from a finished variant's files."""
    settings = read_json(vdir / SETTINGS)
    adapt_report = read_json(vdir / "adapt" / "hf" / "adapt_report.json")
    train = read_json(vdir / "stage1" / "metrics.json")
    report = read_json(vdir / "eval" / "report.json")
    m, final = report["metrics"], train.get("final", {})
    return {
        "experts": settings["experts"],
        "params": adapt_report["params_after"],
        "steps": train["steps"],
        "metrics": {name: m.get(key.format(judge=judge)) for name, _, key, *_ in METRICS},
        "train_loss": {t: final.get(f"train/loss_{t}") for t in TASKS},
        "val_loss": final.get("val/loss"),
        "stage1_min": round(train["wall_s"] / 60, 2),
        "eval_min": round(report["meta"]["total_seconds"] / 60, 2),
        "ceilings": {
            "tts_wer_resynth": m.get(f"tts.{judge}.wer_resynth"),
            "text_ppl_base": m.get("text.ppl_base"),
        },
    }


def compare(rows: dict[str, dict], with_: str, without: str) -> dict:
    """Metric by metric, is ``with_`` better, worse or tied against ``without``?"""
    out: dict[str, list[str]] = {"better": [], "worse": [], "tie": []}
    for name, header, _, lower, tol in METRICS:
        a, b = rows[with_]["metrics"][name], rows[without]["metrics"][name]
        if a is None or b is None:
            continue
        scale = b if name == "text_ppl" else 1.0  # perplexity ties are relative
        diff = (b - a) if lower else (a - b)
        key = "tie" if abs(diff) < tol * scale else ("better" if diff > 0 else "worse")
        out[key].append(f"{header} {_fmt(a)} vs {_fmt(b)}")
    return out


def verdict(c: dict) -> str:
    """``helps`` / ``hurts`` only when one side wins at least two metrics more than the other: with
    one seed and small eval sets, a 3-to-2 split is noise, not a finding."""
    margin = len(c["better"]) - len(c["worse"])
    if margin >= 2:
        return "helps"
    return "hurts" if margin <= -2 else "no clear difference"


def write_report(run: Path, rows: dict[str, dict], meta: dict) -> dict:
    """``RUN/report.json`` (rows, comparisons, meta) and ``RUN/report.md`` (the table)."""
    comparisons = {
        question: {"with": a, "without": b, "most_claim": claim, **compare(rows, a, b)}
        for question, a, b, claim in COMPARISONS
        if a in rows and b in rows
    }
    report = {"variants": rows, "comparisons": comparisons, "meta": meta}
    atomic_write_json(Path(run) / "report.json", report)
    atomic_write_text(Path(run) / "report.md", markdown(report))
    return report


def _fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _shared(experts: dict, meta: dict) -> str:
    if not experts["shared_experts"]:
        return "none"
    if experts["add_shared"]:
        return "1 added"
    return "base's" if meta.get("base_has_shared") else "none (base has none)"


def markdown(report: dict) -> str:
    rows, meta = report["variants"], report["meta"]
    steps = sorted({r["steps"] for r in rows.values()})
    sizes = meta["sizes"]
    lines = [
        "# Ablation: the modality-aware MoE, part by part",
        "",
        f"Every variant: the data, units, judge and base model of `{meta['source']}`, the recipes "
        f"in `{meta['recipes']}`, the same seed and {'/'.join(map(str, steps))} stage1 steps; "
        "only the `experts` options of `most adapt` differ. Eval (stage1 models): ASR on "
        f"{sizes['asr']} utterances per split, TTS on {sizes['tts']} sentences judged by "
        f"`{meta['judge']}`, {sizes['wuggy']} wuggy and {sizes['blimp']} blimp pairs, perplexity "
        f"on {sizes['text']} held-out paragraphs. Best value per column in bold.",
        "",
    ]
    header = ["variant", "init", "router", "shared experts", "params (M)"]
    header += [f"{h} {'↓' if lower else '↑'}" for _, h, _, lower, _ in METRICS]
    header += [f"train loss {t}" for t in TASKS] + ["val loss", "stage1 min", "eval min"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    best = {}
    for name, _, _, lower, _ in METRICS:
        values = [r["metrics"][name] for r in rows.values() if r["metrics"][name] is not None]
        # Bold marks a winner: none when every variant has the same value.
        best[name] = (min if lower else max)(values) if len(set(values)) > 1 else None
    for variant, r in rows.items():
        e = r["experts"]
        cells = [
            f"`{variant}`",
            e["init"],
            e["router"],
            _shared(e, meta),
            f"{r['params'] / 1e6:.2f}",
        ]
        for name, *_ in METRICS:
            v = r["metrics"][name]
            cells.append(f"**{_fmt(v)}**" if v is not None and v == best[name] else _fmt(v))
        cells += [_fmt(r["train_loss"][t]) for t in TASKS]
        cells += [_fmt(r["val_loss"]), _fmt(r["stage1_min"], 1), _fmt(r["eval_min"], 1)]
        lines.append("| " + " | ".join(cells) + " |")
    if report["comparisons"]:
        lines += ["", "## What the table says", ""]
    for question, c in report["comparisons"].items():
        n = len(c["better"]) + len(c["worse"]) + len(c["tie"])
        word = verdict(c)
        claim = ""
        if c["most_claim"]:
            claim = {
                "helps": " MoST's claim holds here.",
                "hurts": " MoST's claim is refuted here.",
            }
            claim = claim.get(word, " MoST's claim is not confirmed here.")
        lines.append(
            f"- **{question}** (`{c['with']}` vs `{c['without']}`): {word}; better on "
            f"{len(c['better'])} of {n} metrics, worse on {len(c['worse'])}.{claim}"
        )
        for key in ("better", "worse"):
            if c[key]:
                lines.append(f"  - {key}: " + "; ".join(c[key]))
    lines += ["", "## Notes", ""]
    lines.append(
        "- One seed, no error bars: differences under one point of WER/accuracy or 1 % of "
        "perplexity count as ties, and larger ones on small eval sets can still be noise."
    )
    if meta.get("add_shared"):
        lines.append(
            "- The base has no shared experts: every variant but `no_shared` got one added shared "
            "expert per MoE layer (`experts.add_shared`: gate/up from the mean of the routed "
            "experts, down projection zero, so step 0 is unchanged). `no_shared` is therefore the "
            "adapt recipe's own model."
        )
    if len(steps) > 1:
        lines.append(
            f"- **Step counts differ** ({steps}): a variant stopped early; compare with care."
        )
    first = next(iter(rows.values()), None)
    if first is not None:
        c = first["ceilings"]
        lines.append(
            f"- Ceilings: judge WER on resynthesised true units {_fmt(c['tts_wer_resynth'])}; "
            f"base text perplexity {_fmt(c['text_ppl_base'])}."
        )
    lines.append(
        "- Train losses are the last step's batch; each variant's full eval report (router heat "
        "map included) is in `<variant>/eval/report.md`."
    )
    return "\n".join(lines) + "\n"
