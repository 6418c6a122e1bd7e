"""The curriculum ablation's table: UniMoE-Audio's curriculum against naive joint training at the
same total steps, with the seed-to-seed spread as the yardstick of noise.

A row is one (variant, seed) run folder: its eval report and the training phases' metrics.
:func:`summarize` averages the seeds of each variant, measures the noise (the largest difference
between two seeds of the same variant, per metric) and calls each curriculum-vs-joint difference
``better`` / ``worse`` only when it exceeds that noise. ``most curriculum_ablation``
(:mod:`most.tools.curriculum_ablation`) runs the variants.
"""

from __future__ import annotations

from pathlib import Path

from most.io import atomic_write_json, atomic_write_text, read_json
from most.run import Run

#: (name, header, eval report key, lower is better): the quality columns.
METRICS: list[tuple[str, str, str, bool]] = [
    ("asr", "ASR WER seen", "asr.test.wer", True),
    ("asr_heldout", "ASR WER held-out voices", "asr.test_voices.wer", True),
    ("tts", "TTS WER", "tts.{judge}.wer_model", True),
    ("music_note", "music note acc", "music.note_acc", False),
    ("music_key", "music key acc", "music.key_acc", False),
    ("music_tempo", "music tempo acc", "music.tempo_acc", False),
    ("music_continue", "music continuation note acc", "music.continue.note_acc", False),
    ("text_ppl", "text ppl", "text.ppl_model", True),
]


def collect(vdir: Path, judge: str) -> dict:
    """One row from a finished (variant, seed) folder: metrics, training steps and minutes summed
    over every phase (``RUN/curriculum/*/stage1`` and ``RUN/stage1``)."""
    r = Run(vdir)
    m = read_json(r.report)["metrics"]
    phases = sorted((vdir / "curriculum").glob("*/stage1/metrics.json"))
    phases.append(r.stage("stage1") / "metrics.json")
    train = [read_json(p) for p in phases]
    return {
        "metrics": {name: m.get(key.format(judge=judge)) for name, _, key, _ in METRICS},
        "steps": sum(t["steps"] for t in train),
        "phases": len(train),
        "train_min": round(sum(t["wall_s"] for t in train) / 60, 2),
        "ceilings": {
            "tts_wer_resynth": m.get(f"tts.{judge}.wer_resynth"),
            "text_ppl_base": m.get("text.ppl_base"),
            "music_note_resynth": m.get("music.resynth.note_acc"),
        },
    }


def summarize(rows: dict[str, dict[int, dict]]) -> dict:
    """``rows``: variant -> seed -> row. Per variant the mean of its seeds; per metric the noise
    (largest seed-to-seed difference within any variant, None with one seed each); and the
    curriculum-minus-joint verdict per metric."""
    means, noise = {}, {}
    for name, *_ in METRICS:
        spreads = []
        for variant, seeds in rows.items():
            values = [v for s in seeds.values() if (v := s["metrics"].get(name)) is not None]
            means.setdefault(variant, {})[name] = sum(values) / len(values) if values else None
            if len(values) > 1:
                spreads.append(max(values) - min(values))
        noise[name] = max(spreads) if spreads else None
    verdicts = {}
    if "curriculum" in means and "joint" in means:
        for name, _, _, lower in METRICS:
            a, b = means["curriculum"][name], means["joint"][name]
            if a is None or b is None:
                continue
            gain = (b - a) if lower else (a - b)
            if noise[name] is None:
                word = "no noise estimate"
            elif abs(gain) <= noise[name]:
                word = "within noise"
            else:
                word = "better" if gain > 0 else "worse"
            verdicts[name] = {"curriculum": a, "joint": b, "gain": gain, "verdict": word}
    return {"means": means, "noise": noise, "verdicts": verdicts}


def write_report(out_dir: Path, rows: dict[str, dict[int, dict]], meta: dict) -> dict:
    """``out_dir/report.json`` (rows, summary, meta) and ``out_dir/report.md``."""
    report = {"rows": rows, "summary": summarize(rows), "meta": meta}
    atomic_write_json(Path(out_dir) / "report.json", report)
    atomic_write_text(Path(out_dir) / "report.md", markdown(report))
    return report


def _fmt(v: object, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    rows, s, meta = report["rows"], report["summary"], report["meta"]
    header = ["variant", "seed"] + [f"{h} {'↓' if lo else '↑'}" for _, h, _, lo in METRICS]
    header += ["phases", "steps", "train min"]
    lines = [
        "# Ablation: UniMoE-Audio's curriculum against naive joint training",
        "",
        f"From the adapted model of `{meta['source']}`. `curriculum`: specialists "
        f"({', '.join(f'{k} {v}' for k, v in meta['steps'].items() if k not in ('integrate', 'joint'))}"
        f" steps) -> merge -> integration ({meta['steps'].get('integrate', 0)} steps, experts "
        f"frozen) -> joint ({meta['steps']['joint']} steps); `joint`: the joint phase's mixture "
        f"for all {meta['total_steps']} steps. Recipes: {', '.join(meta['recipes'])}. Eval sizes: "
        + ", ".join(f"{k} {v}" for k, v in meta["sizes"].items() if v)
        + f"; TTS judged by `{meta['judge']}`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for variant, seeds in rows.items():
        for seed, r in seeds.items():
            cells = [f"`{variant}`", str(seed)] + [_fmt(r["metrics"][n]) for n, *_ in METRICS]
            cells += [str(r["phases"]), str(r["steps"]), _fmt(r["train_min"], 1)]
            lines.append("| " + " | ".join(cells) + " |")
    noise = ["**noise** (seed spread)", ""] + [_fmt(s["noise"][n]) for n, *_ in METRICS]
    lines.append("| " + " | ".join([*noise, "", "", ""]) + " |")
    lines += ["", "## What the table says", ""]
    for name, header_, _, _ in METRICS:
        v = s["verdicts"].get(name)
        if v is None:
            continue
        lines.append(
            f"- {header_}: curriculum {_fmt(v['curriculum'])} vs joint {_fmt(v['joint'])} "
            f"(gain {_fmt(v['gain'])}, noise {_fmt(s['noise'][name])}): **{v['verdict']}**"
        )
    lines += [
        "",
        "## Notes",
        "",
        "- Noise is the largest difference between two seeds (data order and dropout) of one "
        "variant; a gain within it is not a finding. With one or two seeds it is itself a rough "
        "estimate, and small eval sets add sampling noise on top.",
        "- Steps count every phase, specialists included; the curriculum's specialists train "
        "fewer weights per step, so its training minutes differ at equal steps.",
    ]
    first = next((r for seeds in rows.values() for r in seeds.values()), None)
    if first is not None:
        c = first["ceilings"]
        lines.append(
            f"- Ceilings: judge WER on resynthesised true units {_fmt(c['tts_wer_resynth'])}; "
            f"music note acc of resynthesised melodies {_fmt(c['music_note_resynth'])}; base "
            f"text perplexity {_fmt(c['text_ppl_base'])}."
        )
    return "\n".join(lines) + "\n"
