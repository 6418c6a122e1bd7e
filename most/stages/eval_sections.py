"""The sections of ``most eval`` (:mod:`most.stages.eval`), and their split between processes.

:func:`run_sections` scores any subset of the sections into one report folder;
:func:`split_sections` balances them between processes by an estimate of each one's time, and
:func:`run_lanes` runs the first lane in this process and every other in a spawned one.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from most.eval.asr import evaluate_asr, peer_asr
from most.eval.audio_lm import evaluate_minimal_pairs
from most.eval.judges import load_judge
from most.eval.router_report import plot_heatmap, router_examples, router_summary
from most.eval.sqa import evaluate_qa_sets, evaluate_sqa
from most.eval.text_ppl import text_retention
from most.eval.ttm import MusicLM, evaluate_continuation, evaluate_ttm, find_music_tokenizer
from most.eval.tts import evaluate_tts, tts_reference
from most.eval.uniaudio import evaluate_tasks, trained_tasks
from most.generate import SpeechLM
from most.layout import MUSIC, TokenLayout
from most.run import Run
from most.stages.eval_settings import EvalSettings

#: Sections (and the judge's own metrics) in the order the report lists them.
REPORT_ORDER = (
    *("asr", "asr_peers", "tts", "judge", "sqa", "qa_sets"),
    *("audio_lm", "text", "music", "tasks", "router"),
)


@dataclass
class Done:
    """What one process's sections gave: scores and seconds by section, plot files written, and
    the names of the judges it loaded."""

    results: dict
    timings: dict[str, float]
    plots: list[str]
    judges: list[str]


#: Seconds per item of each section on one CPU thread: what :func:`split_sections` balances the
#: processes by. Measured on the tiny default's demo model (``meta.seconds`` / items) for every
#: section but ``qa_sets`` (taken as ``sqa``), ``music`` and ``tasks`` (rough guesses).
SECONDS_PER_ITEM = {
    "asr": 0.02,
    "tts": 0.22,
    "sqa": 0.28,
    "qa_sets": 0.28,
    "audio_lm": 0.025,
    "text": 0.013,
    "music": 1.0,
    "tasks": 0.3,
    "router": 0.016,
}


def planned_sections(settings: EvalSettings, run: Path, layout: TokenLayout) -> list[str]:
    """The sections ``settings`` asks for that apply to the model, in report order."""
    R, sizes = Run(run), settings.sizes
    model_dir = settings.models.model_dir(run)
    wanted = {
        "asr": sizes.asr,
        "tts": sizes.tts,
        "sqa": sizes.sqa,
        "qa_sets": len(settings.qa_sets.sets),
        "audio_lm": sizes.wuggy or sizes.blimp,
        "text": sizes.text,
        "music": sizes.music and MUSIC in layout.modalities and R.has_data("music"),
        "tasks": sizes.tasks and bool(trained_tasks(model_dir, [R.hf("stage1")])),
        "router": sizes.router,
    }
    return [name for name, on in wanted.items() if on]


def section_items(name: str, settings: EvalSettings) -> int:
    """How many items ``settings`` has section ``name`` score (both splits where it has two)."""
    sizes = settings.sizes
    return {
        "asr": 2 * sizes.asr,
        "sqa": 2 * sizes.sqa,
        "qa_sets": len(settings.qa_sets.sets) * settings.qa_sets.n,
        "audio_lm": sizes.wuggy + sizes.blimp,
    }.get(name, getattr(sizes, name, 0))


def split_sections(names: list[str], settings: EvalSettings, workers: int) -> list[list[str]]:
    """``names`` split into at most ``workers`` lanes of about equal estimated time (longest
    section first, each to the least loaded lane). The first lane, the longest, runs in this
    process; the others pay a process start and a model load."""
    lanes: list[list[str]] = [[] for _ in range(max(1, min(workers, len(names))))]
    load = [0.0] * len(lanes)
    cost = {n: SECONDS_PER_ITEM[n] * section_items(n, settings) for n in names}
    for name in sorted(names, key=lambda n: -cost[n]):
        i = load.index(min(load))
        lanes[i].append(name)
        load[i] += cost[name]
    by_load = sorted(range(len(lanes)), key=lambda i: -load[i])
    return [sorted(lanes[i], key=names.index) for i in by_load]


def run_lanes(
    lanes: list[list[str]],
    run: Path,
    settings: EvalSettings,
    device: str,
    tmp: Path,
    lm: SpeechLM,
    threads: int,
) -> list[Done]:
    """Runs ``lanes[0]`` here (with ``lm``) and every other lane in its own spawned process."""
    if len(lanes) == 1:
        return [run_sections(lanes[0], run, settings, device, tmp, lm)]
    with ProcessPoolExecutor(len(lanes) - 1, mp_context=get_context("spawn")) as pool:
        others = [
            pool.submit(_lane, lane, run, settings, device, tmp, threads) for lane in lanes[1:]
        ]
        here = run_sections(lanes[0], run, settings, device, tmp, lm)
        return [here] + [f.result() for f in others]


def _lane(
    names: list[str], run: Path, settings: EvalSettings, device: str, tmp: Path, threads: int
) -> Done:
    if threads:
        torch.set_num_threads(threads)
    return run_sections(names, run, settings, device, tmp)


def run_sections(
    names: list[str],
    run: Path,
    settings: EvalSettings,
    device: str,
    tmp: Path,
    lm: SpeechLM | None = None,
) -> Done:
    """Scores the sections ``names`` (of :func:`planned_sections`), writing samples and plots
    into ``tmp``; loads the model (unless given as ``lm``) and the judges."""
    R = Run(run)
    models, sizes, judges = settings.models, settings.sizes, settings.judges
    audio_lm, qa_sets, sampling = settings.audio_lm, settings.qa_sets, settings.sampling
    model_dir = models.model_dir(run)
    if lm is None:
        lm = SpeechLM.load(model_dir, units=models.units or R.units, device=device)
    judge_list = [load_judge(name, run) for name in judges.names]
    done = Done({}, {}, [], [j.name for j in judge_list])
    h = lm.layout.unit_tokenizer_hash
    speech_units = R.load_units("speech", h)
    speech = R.load_data("speech")

    def timed(name: str, fn) -> None:
        t0 = time.monotonic()
        done.results[name] = fn()
        done.timings[name] = round(time.monotonic() - t0, 1)

    if "asr" in names:
        splits = ("test", "test_voices")
        timed("asr", lambda: evaluate_asr(lm, speech_units, splits, sizes.asr, sampling))
        if judges.peers:
            peers = [load_judge(name, run) for name in judges.peers]
            timed("asr_peers", lambda: peer_asr(peers, speech, speech_units, splits, sizes.asr))
    if "tts" in names:

        def tts() -> dict:
            ref = tts_reference(lm, judge_list, speech["test"], speech_units["test"], sizes.tts)
            return evaluate_tts(lm, judge_list, ref, sampling, tmp / "samples")

        timed("tts", tts)
    if "sqa" in names:
        judge = next((j for j in judge_list if j.name == judges.sqa), None)
        sqa_units = R.load_units("sqa", h)
        sqa_audio = R.load_data("sqa") if R.has_data("sqa") else None
        timed("sqa", lambda: evaluate_sqa(lm, sqa_units, sizes.sqa, sampling, judge, sqa_audio))
    if "qa_sets" in names:
        ear = next((j for j in judge_list if j.name == judges.sqa), None)
        timed("qa_sets", lambda: evaluate_qa_sets(lm, qa_sets.sets, qa_sets.n, sampling, ear))
    if "audio_lm" in names:
        timed(
            "audio_lm",
            lambda: evaluate_minimal_pairs(lm, run, audio_lm, sizes.wuggy, sizes.blimp),
        )
    if "text" in names:
        timed("text", lambda: text_retention(lm, run, models.base, sizes.text))
    if "music" in names:
        music_lm = MusicLM(lm, find_music_tokenizer(model_dir, R.music_units))
        # melodies run to 16 s at 25 units/s: more tokens than a spoken answer needs; guidance
        # (against the speech LM alone) is for speech only
        n = max(sampling.max_new_tokens, 400)
        music_sampling = replace(sampling, max_new_tokens=n, guidance=1.0)
        test = R.load_data("music")["test"]

        def music() -> dict:
            out = evaluate_ttm(music_lm, test, sizes.music, music_sampling, tmp / "samples")
            out["continue"] = evaluate_continuation(music_lm, test, sizes.music, music_sampling)
            return out

        timed("music", music)
    if "tasks" in names:  # recipes/uniaudio
        trained = trained_tasks(model_dir, [R.hf("stage1")])
        ear = next((j for j in judge_list if j.name == judges.sqa), judge_list[0])
        timed(
            "tasks",
            lambda: evaluate_tasks(lm, ear, speech, speech_units, trained, sizes.tasks, sampling),
        )
    if "router" in names:
        examples = router_examples(lm, speech_units["test"], sizes.router)
        timed("router", lambda: router_summary(lm.model, examples))
        plot_heatmap(done.results["router"], tmp / "router_heatmap.png")
        done.plots.append("router_heatmap.png")
    return done
