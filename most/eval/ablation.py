"""The ablation's table: one row per finished variant, comparisons between variants, verdicts and
``report.md``.

A row is read from a variant's run folder (``adapt`` report, ``stage1`` metrics, ``eval`` report);
:data:`COMPARISONS` pairs a variant with a feature against one without it and :func:`verdict` says
whether the feature helps, hurts or makes no clear difference. ``most ablation``
(:mod:`most.tools.ablation`) runs the variants.
"""

from __future__ import annotations

from pathlib import Path

from most.io import atomic_write_json, atomic_write_text, read_json
from most.run import Run

#: Beside each variant's stages: the exact stage arguments it was made with.
SETTINGS = "variant.json"

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


def collect(vdir: Path, judge: str) -> dict:
    """One table row from a finished variant's run folder; ``judge`` names the TTS judge."""
    r = Run(vdir)
    settings = read_json(r.root / SETTINGS)
    adapt_report = read_json(r.hf("adapt") / "adapt_report.json")
    train = read_json(r.stage("stage1") / "metrics.json")
    report = read_json(r.report)
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


def write_report(out_dir: Path, rows: dict[str, dict], meta: dict) -> dict:
    """``out_dir/report.json`` (rows, comparisons, meta) and ``out_dir/report.md`` (the table)."""
    comparisons = {
        question: {"with": a, "without": b, "most_claim": claim, **compare(rows, a, b)}
        for question, a, b, claim in COMPARISONS
        if a in rows and b in rows
    }
    report = {"variants": rows, "comparisons": comparisons, "meta": meta}
    atomic_write_json(Path(out_dir) / "report.json", report)
    atomic_write_text(Path(out_dir) / "report.md", markdown(report))
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
    """The table of :func:`write_report`'s ``report``, what it says, and notes on reading it."""
    rows, meta = report["variants"], report["meta"]
    steps = sorted({r["steps"] for r in rows.values()})
    lines = _intro(meta, steps) + _table(rows, meta) + _findings(report["comparisons"])
    lines += _notes(rows, meta, steps)
    return "\n".join(lines) + "\n"


def _intro(meta: dict, steps: list[int]) -> list[str]:
    sizes = meta["sizes"]
    return [
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


def _table(rows: dict[str, dict], meta: dict) -> list[str]:
    header = ["variant", "init", "router", "shared experts", "params (M)"]
    header += [f"{h} {'↓' if lower else '↑'}" for _, h, _, lower, _ in METRICS]
    header += [f"train loss {t}" for t in TASKS] + ["val loss", "stage1 min", "eval min"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
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
    return lines


def _findings(comparisons: dict[str, dict]) -> list[str]:
    lines = ["", "## What the table says", ""] if comparisons else []
    for question, c in comparisons.items():
        n = len(c["better"]) + len(c["worse"]) + len(c["tie"])
        word = verdict(c)
        claim = ""
        if c["most_claim"]:
            claim = {
                "helps": " MoST's claim holds here.",
                "hurts": " MoST's claim is refuted here.",
            }.get(word, " MoST's claim is not confirmed here.")
        lines.append(
            f"- **{question}** (`{c['with']}` vs `{c['without']}`): {word}; better on "
            f"{len(c['better'])} of {n} metrics, worse on {len(c['worse'])}.{claim}"
        )
        for key in ("better", "worse"):
            if c[key]:
                lines.append(f"  - {key}: " + "; ".join(c[key]))
    return lines


def _notes(rows: dict[str, dict], meta: dict, steps: list[int]) -> list[str]:
    lines = ["", "## Notes", ""]
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
    return lines
