"""``most eval``: every score of the model in one report (``RUN/eval/``).

Reads the model (``RUN/stage2/hf`` by default), the base LM (``RUN/base/hf``, for text retention),
the unit shards and tokenizer (``RUN/units``), the data (``RUN/data``) and the judges (``RUN/judge``
for the CTC judge). Writes atomically ``RUN/eval/``: ``report.json`` (stable keys, see
:mod:`most.eval.report`), ``report.md``, ``router_heatmap.png`` and a few ``samples/*.wav``.

Every section is subsampled (``--sizes.*``) so the embedded default evaluates in a few minutes on
2 CPU cores; decoding is batched greedy with the KV cache. A section set to 0 is skipped. A
multi-scale model (`most stage1 --multiscale.enabled=true`) is scored on every section but the
audio-LM pairs and the router telemetry, which read flat unit ids through the model.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from most.eval.report import write_report
from most.eval.sqa import heldout_leaks
from most.eval.uniaudio import trained_tasks
from most.generate import Sampling, SpeechLM
from most.io import atomic_dir, atomic_write_json, read_json
from most.layout import MUSIC, TokenLayout
from most.multiscale import MostMultiScale
from most.run import FINGERPRINT_FILE, Run, StaleOutput, changes, fingerprint, folder_id
from most.stages.eval_sections import REPORT_ORDER, planned_sections, run_lanes, split_sections
from most.stages.eval_settings import (
    DEFAULT_AUDIO_LM,
    DEFAULT_JUDGES,
    DEFAULT_MODELS,
    DEFAULT_QA_SETS,
    DEFAULT_SAMPLING,
    DEFAULT_SIZES,
    AudioLM,
    EvalSettings,
    Judges,
    Models,
    Sizes,
    SpokenQASets,
)


def evaluate(
    run: Path,
    models: Models = DEFAULT_MODELS,
    sizes: Sizes = DEFAULT_SIZES,
    judges: Judges = DEFAULT_JUDGES,
    audio_lm: AudioLM = DEFAULT_AUDIO_LM,
    qa_sets: SpokenQASets = DEFAULT_QA_SETS,
    sampling: Sampling = DEFAULT_SAMPLING,
    threads: int = 0,
    workers: int = 1,
    device: str = "auto",
    force: bool = False,
) -> dict:
    """Evaluate the adapted model; write ``RUN/eval/report.{json,md}`` and plots.

    ``threads``: torch intra-op threads of each process (0 = torch's default; 1 is faster on a
    busy shared CPU). ``workers``: processes the sections are split between (1 = this one only).
    ``device``: where the model runs: ``auto`` (the first GPU if there is one, else the CPU),
    ``cpu``, ``cuda`` or ``cuda:N``. The judges and the vocoder stay on the CPU.
    """
    if threads:
        torch.set_num_threads(threads)
    settings = EvalSettings(models, sizes, judges, audio_lm, qa_sets, sampling)
    return evaluate_into(Run(run).eval, run, settings, device, force, workers, threads)


def eval_fingerprint(run: Path, settings: EvalSettings) -> dict:
    """The fingerprint a report made with ``settings`` records: the settings, and the ids of the
    model, data, units, judge (when ``ctc`` is one) and base it reads."""
    R = Run(run)
    models, judges = settings.models, settings.judges
    model_dir = models.model_dir(run)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no model to evaluate; run `most stage2` first")
    base_dir = Path(models.base or R.hf("base"))
    inputs = {"model": folder_id(model_dir), "data": R.output_id("data")}
    inputs["units"] = folder_id(Path(models.units)) if models.units else R.output_id("units")
    if "ctc" in judges.names:
        inputs["judge"] = R.output_id("judge")
    if (base_dir / "config.json").is_file():
        inputs["base"] = folder_id(base_dir)
    recorded = asdict(settings)
    if MUSIC not in TokenLayout.load(model_dir).modalities:  # the fingerprint it always had
        recorded["sizes"].pop("music")
    if not trained_tasks(model_dir, [R.hf("stage1")]):  # likewise
        recorded["sizes"].pop("tasks")
    return fingerprint(recorded, inputs)


def evaluate_into(
    out: Path,
    run: Path,
    settings: EvalSettings,
    device: str = "auto",
    force: bool = False,
    workers: int = 1,
    threads: int = 0,
) -> dict:
    """:func:`evaluate` writing its report folder at ``out`` (``RUN/eval`` for ``most eval``).

    ``workers`` > 1 splits the sections between that many processes (:func:`split_sections`),
    each with ``threads`` torch threads; every score is the same as in one process.

    A report already in ``out`` made from the same settings and inputs is returned as it is; one
    made from others is refused naming what changed, unless ``force``."""
    run, out = Path(run), Path(out)
    R = Run(run)
    models, sizes = settings.models, settings.sizes
    model_dir = models.model_dir(run)
    current = eval_fingerprint(run, settings)
    report_file = out / "report.json"
    if report_file.is_file() and not force:
        record = out / FINGERPRINT_FILE
        old = read_json(record) if record.is_file() else None
        diff = changes(old, current) if old is not None else []
        if not diff:
            print(f"{report_file} is up to date (pass --force=true to redo it)")
            return read_json(report_file)
        raise StaleOutput(
            f"{out} was made from other settings or inputs ({'; '.join(diff)}); "
            "pass --force to redo eval (its outputs are replaced)"
        )
    t_start = time.monotonic()
    lm = SpeechLM.load(model_dir, units=models.units or R.units, device=device)
    if isinstance(lm.model, MostMultiScale):  # both read flat unit ids through the model
        sizes = replace(sizes, wuggy=0, blimp=0, router=0)
        settings = replace(settings, sizes=sizes)
        print("most eval: a multi-scale model: audio_lm and router are not scored", flush=True)
    names = planned_sections(settings, run, lm.layout)
    lanes = split_sections(names, settings, workers)
    with atomic_dir(out) as tmp:
        done = run_lanes(lanes, run, settings, device, tmp, lm, threads)
        results: dict = {}
        timings: dict[str, float] = {}
        for d in done:  # the lanes ran disjoint sections
            results |= d.results
            timings |= d.timings
        if R.judge_file.is_file():
            results["judge"] = read_json(R.judge_file)["metrics"]
        if "sqa" in results:
            results["sqa"]["heldout_leaks"] = heldout_leaks(run)
        results = {k: results[k] for k in REPORT_ORDER if k in results}
        plots = [plot for d in done for plot in d.plots]
        meta = {
            "model": str(model_dir),
            "layout_hash": lm.layout.hash,
            "unit_tokenizer_hash": lm.layout.unit_tokenizer_hash,
            "sizes": vars(sizes),
            "sampling": asdict(settings.sampling),
            "device": lm.model.device.type,
            "workers": len(lanes),
            "judges": done[0].judges,
            "seconds": timings,
            "total_seconds": round(time.monotonic() - t_start, 1),
        }
        report = write_report(tmp, results, meta, plots)
        atomic_write_json(tmp / FINGERPRINT_FILE, current)
    print(f"most eval: wrote {out}/report.md ({meta['total_seconds']} s)")
    return report
