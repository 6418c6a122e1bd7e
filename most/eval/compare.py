"""Two eval reports of one run side by side: what changed, by how much, and whether it is noise.

``compare(before, after)`` -> ``{"before": metrics, "after": metrics, "checks": {key: {...}}}``:
``before`` and ``after`` are the reports' flat ``metrics`` (the keys of ``docs/eval-report.md``),
and ``checks`` has, for the keys a preference stage aims to move (:data:`AIMS`) and those it must
not hurt (:data:`GUARDS`), the two values, the change, its noise and a verdict.

Noise is the standard error of the change from the finite eval sets, the two reports taken as
independent samples: for an accuracy the binomial ``sqrt(p (1 - p) / (n + 4))`` of each, ``p``
taken as ``(hits + 2) / (n + 4)`` (Agresti-Coull: an accuracy of 0 or 1 on a few items is not
certain); for a corpus
WER the ratio estimator's ``sqrt(n / (n - 1) * sum((e_i - W w_i)^2)) / sum(w_i)`` over the
per-item ``[edits, words]`` the report keeps (``details.asr.<split>.word_errors``,
``details.tts._word_errors.<judge>``). A change counts when it exceeds twice that; a metric with
no noise estimate (perplexity) counts when it moves by more than :data:`PPL_TOLERANCE`.
"""

from __future__ import annotations

import math

#: Metric -> the better direction, for what preference tuning aims to improve ...
AIMS = {"tts.{judge}.wer_model": "lower", "sqa.s2s.accuracy": "higher"}
#: ... and for what it must keep.
GUARDS = {
    "asr.test.wer": "lower",
    "asr.test_voices.wer": "lower",
    "sqa.s2t.accuracy": "higher",
    "sqa.s2s.train.accuracy": "higher",
    "sqa.s2t.train.accuracy": "higher",
    "text.ppl_model": "lower",
}
#: Relative change of a metric without a noise estimate that counts as a change.
PPL_TOLERANCE = 0.01


def wer_se(items: list[list[int]]) -> float | None:
    """Standard error of a corpus WER from its per-item ``[edits, words]`` (None for < 2 items)."""
    n = len(items)
    words = sum(w for _, w in items)
    if n < 2 or words == 0:
        return None
    rate = sum(e for e, _ in items) / words
    ss = sum((e - rate * w) ** 2 for e, w in items)
    return math.sqrt(n / (n - 1) * ss) / words


def accuracy_se(p: float, n: int) -> float | None:
    """Standard error of an accuracy ``p`` on ``n`` items (Agresti-Coull, see the module doc)."""
    if n <= 0:
        return None
    q = (p * n + 2) / (n + 4)
    return math.sqrt(q * (1 - q) / (n + 4))


def standard_error(report: dict, key: str) -> float | None:
    """The standard error of ``report``'s metric ``key`` from its details (module doc)."""
    details, value = report.get("details", {}), report["metrics"].get(key)
    if value is None:
        return None
    parts = key.split(".")
    if parts[0] == "asr" and parts[-1] == "wer" and len(parts) == 3:
        items = details.get("asr", {}).get(parts[1], {}).get("word_errors")
        return wer_se(items) if items else None
    if parts[0] == "tts" and parts[-1] == "wer_model":
        items = details.get("tts", {}).get("_word_errors", {}).get(parts[1])
        return wer_se(items) if items else None
    if parts[0] == "sqa" and parts[-1] == "accuracy":
        split = "train" if len(parts) == 4 else "heldout"
        n = details.get("sqa", {}).get(parts[1], {}).get(split, {}).get("n")
        return accuracy_se(value, n) if n else None
    return None


def check(before: dict, after: dict, key: str, better: str) -> dict | None:
    """``{"before", "after", "change", "noise", "verdict"}`` for one metric of two reports;
    verdict ``better``, ``worse`` or ``same`` (within noise). None when a report lacks it."""
    b, a = before["metrics"].get(key), after["metrics"].get(key)
    if b is None or a is None:
        return None
    ses = [standard_error(before, key), standard_error(after, key)]
    noise = math.sqrt(sum(s * s for s in ses)) if None not in ses else None
    change = a - b
    if noise is not None:
        moved = abs(change) > 2 * noise
    else:
        moved = abs(change) > PPL_TOLERANCE * max(abs(b), 1e-12)
    improved = change < 0 if better == "lower" else change > 0
    verdict = "same" if not moved else ("better" if improved else "worse")
    return {
        "before": b,
        "after": a,
        "change": round(change, 6),
        "noise": None if noise is None else round(noise, 6),
        "better": better,
        "verdict": verdict,
    }


def compare(before: dict, after: dict, judges: list[str]) -> dict:
    """Both reports' metrics and the checks of :data:`AIMS` and :data:`GUARDS` (``judges``: the
    TTS judges whose ``wer_model`` counts)."""
    checks: dict = {}
    for group, keys in (("aim", AIMS), ("guard", GUARDS)):
        for pattern, better in keys.items():
            for key in sorted({pattern.format(judge=j) for j in judges}):
                row = check(before, after, key, better)
                if row is not None:
                    checks[key] = {"role": group, **row}
    return {"before": before["metrics"], "after": after["metrics"], "checks": checks}


def markdown(result: dict) -> str:
    """The checks as a table: metric, before, after, change, noise (2 SE), verdict."""
    lines = [
        "| metric | role | before | after | change | 2 x SE | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in result["checks"].items():
        noise = "-" if r["noise"] is None else f"{2 * r['noise']:.3f}"
        lines.append(
            f"| `{key}` | {r['role']} | {r['before']:.4g} | {r['after']:.4g} | "
            f"{r['change']:+.4g} | {noise} | {r['verdict']} |"
        )
    return "\n".join(lines) + "\n"
