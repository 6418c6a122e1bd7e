"""``RUN/eval/report.json`` and ``report.md``: the stable keys later tooling reads, and the table a
person reads.

``report.json`` = ``{"metrics": {flat key: number or list}, "details": {...}, "meta": {...}}``.
The flat keys (documented in ``docs/eval-report.md``) never change meaning:

- ``asr.<split>.wer|cer`` (``test`` = seen voices, ``test_voices`` = held-out voices);
  ``asr.<split>.peer.<judge>.wer|cer`` (a peer recogniser on the same utterances' audio)
- ``tts.<judge>.wer_original|wer_resynth|wer_model``; ``judge.<split>.wer`` (CTC judge training);
  ``tts.self_asr.wer_true_units|wer_model_units`` (the model's own ASR of true / its TTS units)
- ``sqa.s2t|s2s|text.accuracy`` (``qa_heldout``), ``sqa.<task>.train.accuracy`` (``qa_train``),
  ``sqa.s2s.text_accuracy``, ``sqa.s2s.original_accuracy|resynth_accuracy|tts_accuracy`` (the
  judge on the true answer recorded, resynthesised, spoken by the model),
  ``sqa.s2s.judge_fill_in|counterfactual_heard`` (the judge on answer sentences saying another
  answer: how often it writes the true one, how often the one said), ``sqa.heldout_leaks.*``
- ``qa_sets.<name>.accuracy`` (real spoken-QA sets, S->T), ``qa_sets.<name>.s2s.accuracy`` (S->S,
  what the judge hears), ``qa_sets.<name>.s2s.text_accuracy``, ``qa_sets.<name>.rejects``
- ``audio_lm.wuggy|blimp.accuracy``, ``audio_lm.<set>.length_baseline`` (a length-only scorer),
  ``audio_lm.<set>.accuracy_per_unit`` (mean instead of summed log-probabilities), ``.n`` (pairs)
- ``text.ppl_base``, ``text.ppl_model``
- ``router.<layer>.<modality>.load`` (list of shares), ``router.<layer>.<modality>.entropy``,
  ``router.<layer>.<modality>.experts_per_token``, ``router.<layer>.<modality>.null_share``
- ``music.note_acc|key_acc|tempo_acc|n`` (text to music, scored from the model's audio: runs with
  music), ``music.resynth.*`` and ``music.original.*`` (the same scores of the test melodies
  through the music tokenizer and as rendered: the ceiling and the scorer's own exactness),
  ``music.continue.*`` and ``music.continue.prompt_only.*`` (music continuation: the model
  writes the second half of each test melody; the first half alone for comparison)
- ``tasks.vtts|vc.wer|speaker_sim``, ``tasks.vtts.speaker_sim_real``, ``tasks.vc.speaker_sim_source``,
  ``tasks.se.si_sdr|stoi[_input|_resynth]``, ``tasks.se.si_sdr_gain|wer|wer_input|wer_resynth``,
  ``tasks.speech_continue.speaker_sim``,
  ``tasks.speaker_encoder.accuracy|eer_unseen`` (UniAudio's tasks, for models trained on them: :mod:`most.eval.uniaudio`)

``details`` keeps examples and counts; ``meta`` the model path, sizes and runtime.
"""

from __future__ import annotations

from pathlib import Path

from most.eval.summary import summarize
from most.io import atomic_write_json, atomic_write_text

#: Per-split S->S keys besides ``accuracy`` (see :mod:`most.eval.sqa`).
S2S_BREAKDOWN = (
    "text_accuracy",
    "original_accuracy",
    "resynth_accuracy",
    "tts_accuracy",
    "judge_fill_in",
    "counterfactual_heard",
)


def flat_metrics(results: dict) -> dict:
    """Nested stage results -> the flat documented keys."""
    m: dict = {}
    for split, r in results.get("asr", {}).items():
        m[f"asr.{split}.wer"], m[f"asr.{split}.cer"] = r["wer"], r["cer"]
    for split, per in results.get("asr_peers", {}).items():
        for judge, r in per.items():
            m[f"asr.{split}.peer.{judge}.wer"] = r["wer"]
            m[f"asr.{split}.peer.{judge}.cer"] = r["cer"]
    for judge, r in results.get("tts", {}).items():
        if judge.startswith("_"):
            continue
        for key in ("wer_original", "wer_resynth", "wer_model"):
            m[f"tts.{judge}.{key}"] = r[key]
    for key, value in results.get("tts", {}).get("_self_asr", {}).items():
        m[f"tts.self_asr.{key}"] = value
    for split, r in results.get("judge", {}).items():
        m[f"judge.{split}.wer"] = r["wer"]
    sqa = results.get("sqa", {})
    for task in ("s2t", "s2s", "text"):
        for split, r in sqa.get(task, {}).items():
            suffix = "" if split == "heldout" else f".{split}"
            m[f"sqa.{task}{suffix}.accuracy"] = r["accuracy"]
            for key in S2S_BREAKDOWN:
                if key in r:
                    m[f"sqa.{task}{suffix}.{key}"] = r[key]
    for key, value in sqa.get("heldout_leaks", {}).items():
        m[f"sqa.heldout_leaks.{key}"] = value
    for name, r in results.get("qa_sets", {}).items():
        m[f"qa_sets.{name}.accuracy"] = r["accuracy"]
        for key in ("accuracy", "text_accuracy"):
            if key in r.get("s2s", {}):
                m[f"qa_sets.{name}.s2s.{key}"] = r["s2s"][key]
        if "rejects" in r:
            m[f"qa_sets.{name}.rejects"] = r["rejects"]
    for name, r in results.get("audio_lm", {}).items():
        m[f"audio_lm.{name}.accuracy"] = r["accuracy"]
        m[f"audio_lm.{name}.length_baseline"] = r["length_baseline"]
        m[f"audio_lm.{name}.accuracy_per_unit"] = r["accuracy_per_unit"]
        m[f"audio_lm.{name}.n"] = r["n"]
    for key, value in results.get("text", {}).items():
        m[f"text.{key}"] = value
    music = results.get("music", {})
    for key in ("note_acc", "key_acc", "tempo_acc", "n"):
        if key in music:
            m[f"music.{key}"] = music[key]
            for reading in ("resynth", "original"):
                m[f"music.{reading}.{key}"] = music.get(reading, {}).get(key)
            if "continue" in music:
                m[f"music.continue.{key}"] = music["continue"].get(key)
                m[f"music.continue.prompt_only.{key}"] = music["continue"]["prompt_only"].get(key)
    for task, r in results.get("tasks", {}).items():
        for key, value in r.items():
            if not key.startswith("_"):
                m[f"tasks.{task}.{key}"] = value
    for layer, per in results.get("router", {}).items():
        for modality, r in per.items():
            m[f"router.{layer}.{modality}.load"] = r["load"]
            m[f"router.{layer}.{modality}.entropy"] = r["entropy"]
            m[f"router.{layer}.{modality}.experts_per_token"] = r["experts_per_token"]
            m[f"router.{layer}.{modality}.null_share"] = r["null_share"]
    return m


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown(metrics: dict, meta: dict, plots: list[str], summary_rows: list) -> str:
    """The human report: quality-bar table, every scalar metric, embedded plots."""
    lines = ["# Evaluation report", ""]
    lines += [f"- {k}: `{_fmt(v)}`" for k, v in meta.items()]
    if summary_rows:
        lines += [
            "",
            "## Quality bar",
            "",
            "| check | value | target | pass |",
            "|---|---|---|---|",
        ]
        for row in summary_rows:
            ok = {True: "yes", False: "**no**", None: "n/a"}[row.passed]
            lines.append(f"| {row.name} | {_fmt(row.value)} | {row.target} | {ok} |")
    lines += ["", "## Metrics", "", "| key | value |", "|---|---|"]
    lines += [
        f"| `{k}` | {_fmt(v)} |"
        for k, v in metrics.items()
        if not isinstance(v, list)  # router load vectors live in the heat map
    ]
    for plot in plots:
        lines += ["", f"![{Path(plot).stem}]({plot})"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, results: dict, meta: dict, plots: list[str]) -> dict:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (atomic); returns the JSON."""

    metrics = flat_metrics(results)
    report = {"metrics": metrics, "details": results, "meta": meta}
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", markdown(metrics, meta, plots, summarize(report)))
    return report
