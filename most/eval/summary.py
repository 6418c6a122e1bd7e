"""The demo's quality bar: one row per check of the eval report, printed by ``most summary``.

Targets (the end-to-end issue): ASR WER seen voices <= 10 %, held-out voices <= 20 %; TTS WER by
the embedded judge <= 2x the judge's WER on resynthesised true units; S->T held-out accuracy
>= 70 % and S->S >= 50 % of text-QA accuracy; sWUGGY-style >= 70 %, sBLIMP-style >= 60 %; text
perplexity after stage 2 <= 1.10x the base model's; the whole demo <= 45 min after setup (from the
per-stage wall times ``make demo`` writes to ``RUN/timings.tsv``, stages run side by side counted
once). Each training stage whose ``metrics.json`` is there adds a row that fails when its
``trainer.max_time_min`` safety stop cut the step budget (the model is then not the one the recipe
describes). A check whose inputs are
missing is ``None``. A report with peer recognisers (``asr.<split>.peer.<judge>.wer``, real corpora) adds one
row per peer: the model's WER on that split at most half the peer's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    name: str
    value: float | None
    target: str
    passed: bool | None


def _ratio(m: dict, num: str, den: str) -> float | None:
    if num not in m or den not in m or not m[den]:
        return None
    return m[num] / m[den]


def _tts_ratio(m: dict) -> float | None:
    """None when the judge cannot read even the resynthesised truth (WER >= 1): no ceiling."""
    if m.get("tts.ctc.wer_resynth", 1.0) >= 1.0:
        return None
    return _ratio(m, "tts.ctc.wer_model", "tts.ctc.wer_resynth")


CHECKS: list[tuple[str, Callable[[dict], float | None], str, Callable[[float], bool]]] = [
    ("ASR WER, seen voices", lambda m: m.get("asr.test.wer"), "<= 0.10", lambda v: v <= 0.10),
    (
        "ASR WER, held-out voices",
        lambda m: m.get("asr.test_voices.wer"),
        "<= 0.20",
        lambda v: v <= 0.20,
    ),
    (
        "TTS WER / resynth WER (ctc judge)",
        lambda m: _tts_ratio(m),
        "<= 2.0",
        lambda v: v <= 2.0,
    ),
    (
        "S->T / text QA (heldout)",
        lambda m: _ratio(m, "sqa.s2t.accuracy", "sqa.text.accuracy"),
        ">= 0.70",
        lambda v: v >= 0.70,
    ),
    (
        "S->S / text QA (heldout)",
        lambda m: _ratio(m, "sqa.s2s.accuracy", "sqa.text.accuracy"),
        ">= 0.50",
        lambda v: v >= 0.50,
    ),
    (
        "sWUGGY-style accuracy",
        lambda m: m.get("audio_lm.wuggy.accuracy"),
        ">= 0.70",
        lambda v: v >= 0.70,
    ),
    (
        "sBLIMP-style accuracy",
        lambda m: m.get("audio_lm.blimp.accuracy"),
        ">= 0.60",
        lambda v: v >= 0.60,
    ),
    (
        "text ppl model / base",
        lambda m: _ratio(m, "text.ppl_model", "text.ppl_base"),
        "<= 1.10",
        lambda v: v <= 1.10,
    ),
]


BUDGET_MIN = 45.0
PEER_RATIO = 0.5


def _peer_rows(metrics: dict) -> list[Row]:
    """One row per ``asr.<split>.peer.<judge>.wer``: the model's WER on the split over the peer's."""
    rows = []
    for key in sorted(metrics):
        parts = key.split(".")
        if len(parts) != 5 or parts[0] != "asr" or parts[2] != "peer" or parts[4] != "wer":
            continue
        split, judge = parts[1], parts[3]
        value = _ratio(metrics, f"asr.{split}.wer", key)
        name = f"ASR WER / {judge} WER ({split})"
        target = f"<= {PEER_RATIO:.2f}"
        rows.append(Row(name, value, target, None if value is None else value <= PEER_RATIO))
    return rows


def _timing_lines(path: Path) -> dict[str, tuple[float, float | None]]:
    """``stage -> (seconds, start)`` of the last line per stage; ``start`` (epoch seconds) is None
    on lines written before it was recorded."""
    times: dict[str, tuple[float, float | None]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) not in (2, 3):
                raise ValueError
            start = float(parts[2]) if len(parts) == 3 else None
            times[parts[0]] = (float(parts[1]), start)
        except ValueError:
            raise ValueError(
                f"{path}:{n}: expected '<stage><TAB><seconds>[<TAB><start>]', got {line!r}"
            ) from None
    return times


def read_timings(path: Path) -> dict[str, float]:
    """``RUN/timings.tsv`` (lines ``<stage>\t<seconds>\t<start>``, appended by ``make demo``) ->
    the last time recorded per stage."""
    return {stage: seconds for stage, (seconds, _) in _timing_lines(path).items()}


def wall_seconds(path: Path) -> float:
    """The demo's wall time from ``RUN/timings.tsv``: stages that ran side by side (``make demo``
    runs the judge beside base and adapt) count once, as the union of their intervals; a line
    without a start counts in full."""
    spans, total = [], 0.0
    for seconds, start in _timing_lines(path).values():
        if start is None:
            total += seconds
        else:
            spans.append((start, start + seconds))
    end = -math.inf
    for lo, hi in sorted(spans):
        total += max(0.0, hi - max(lo, end))
        end = max(end, hi)
    return total


def _budget_rows(training: dict[str, dict]) -> list[Row]:
    """One row per training stage's ``metrics.json``: its steps, failing when the time cap cut them."""
    rows = []
    for stage, m in training.items():
        if "cut_by_time_cap" not in m:
            continue
        cut = bool(m["cut_by_time_cap"])
        rows.append(Row(f"{stage} steps trained", m.get("steps"), "all (no time-cap cut)", not cut))
    return rows


def summarize(
    report: dict,
    timings: dict[str, float] | None = None,
    training: dict[str, dict] | None = None,
    wall: float | None = None,
) -> list[Row]:
    """``report``: the ``report.json`` object (or just its ``metrics``) -> one row per check;
    ``timings`` (stage -> seconds) adds the wall-time row (``wall`` seconds, else their sum),
    ``training`` (stage -> its ``metrics.json``) a step-budget row per training stage."""
    metrics = report.get("metrics", report)
    rows = _budget_rows(training or {})
    for name, get, target, ok in CHECKS:
        value = get(metrics)
        rows.append(Row(name, value, target, None if value is None else bool(ok(value))))
    rows += _peer_rows(metrics)
    if timings:
        minutes = (sum(timings.values()) if wall is None else wall) / 60
        rows.insert(
            0, Row("demo wall time, min", minutes, f"<= {BUDGET_MIN:.0f}", minutes <= BUDGET_MIN)
        )
    return rows


def print_summary(
    report: dict,
    timings: dict[str, float] | None = None,
    training: dict[str, dict] | None = None,
    wall: float | None = None,
) -> bool:
    """Print the quality-bar table (rich); returns whether every available check passed."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if timings:
        stages = ", ".join(f"{s} {t / 60:.1f}" for s, t in timings.items())
        console.print(f"wall time per stage (min): {stages}")
    table = Table(title="MoST demo: quality bar")
    for col in ("check", "value", "target", "pass"):
        table.add_column(col)
    rows = summarize(report, timings, training, wall)
    for r in rows:
        value = (
            "-"
            if r.value is None
            else str(r.value)
            if isinstance(r.value, int)
            else f"{r.value:.3f}"
        )  # an int is a step count
        mark = {True: "[green]yes", False: "[red]no", None: "[yellow]n/a"}[r.passed]
        table.add_row(r.name, value, r.target, mark)
    console.print(table)
    return all(r.passed is not False for r in rows)
