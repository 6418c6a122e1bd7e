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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import torch

from most.eval.asr import evaluate_asr, peer_asr
from most.eval.audio_lm import evaluate_minimal_pairs
from most.eval.judges import load_judge
from most.eval.report import write_report
from most.eval.router_report import plot_heatmap, router_examples, router_summary
from most.eval.sqa import evaluate_qa_sets, evaluate_sqa, heldout_leaks
from most.eval.text_ppl import text_retention
from most.eval.ttm import MusicLM, evaluate_continuation, evaluate_ttm, find_music_tokenizer
from most.eval.tts import evaluate_tts, tts_reference
from most.eval.uniaudio import evaluate_tasks, trained_tasks
from most.generate import Sampling, SpeechLM
from most.io import atomic_dir, atomic_write_json, read_json
from most.layout import MUSIC, TokenLayout
from most.multiscale import MostMultiScale
from most.run import FINGERPRINT_FILE, Run, StaleOutput, changes, fingerprint, folder_id

_DEFAULT_SAMPLING = Sampling(max_new_tokens=200, batch_size=16)


@dataclass(frozen=True)
class Models:
    """What is evaluated (``--models.*``)."""

    model: Path | None = None
    """Adapted model folder; None = ``RUN/stage2/hf``."""
    base: Path | None = None
    """Base text LM for ``text.ppl_base``; None = ``RUN/base/hf`` (skipped if missing)."""
    units: Path | None = None
    """Unit tokenizer folder; None = ``RUN/units``."""


@dataclass(frozen=True)
class Sizes:
    """Items per section (``--sizes.*``); 0 skips the section."""

    asr: int = 100
    """Utterances per ASR test split."""
    tts: int = 40
    """Sentences spoken by the model and judged."""
    sqa: int = 60
    """Questions per spoken-QA split (heldout and train)."""
    text: int = 100
    """Held-out text paragraphs for perplexity."""
    wuggy: int = 60
    blimp: int = 60
    router: int = 32
    """Teacher-forced ASR+TTS examples read with router telemetry on."""
    music: int = 20
    """Captions of ``music/test`` played by the model (runs whose model has music only)."""
    tasks: int = 20
    """Items per UniAudio task (vtts, vc, se; only those the model was trained on)."""

    def __post_init__(self) -> None:
        if min(vars(self).values()) < 0:
            raise ValueError("sizes.* must be >= 0")


@dataclass(frozen=True)
class Judges:
    """TTS judges (``--judges.*``)."""

    names: list[str] = field(default_factory=lambda: ["ctc", "pocketsphinx"])
    """``ctc`` (RUN/judge), ``pocketsphinx``, or local HF ASR folders (Whisper, HuBERT-CTC)."""
    sqa: str = "ctc"
    """Judge that transcribes spoken S->S answers (one of ``names``)."""
    peers: list[str] = field(default_factory=list)
    """Recognisers that also read the ASR test audio, reported beside the model's WER
    (``asr_peers``): e.g. ``pocketsphinx`` on a real corpus."""


@dataclass(frozen=True)
class AudioLM:
    """Minimal pairs (``--audio_lm.*``)."""

    voice: str = "en-us+m3:160:50"
    """espeak-ng voice (``variant:rate:pitch``) that speaks generated pairs."""
    wuggy_dir: Path | None = None
    """Real sWUGGY folder (``gold.csv`` + wavs); replaces the generated word pairs."""
    blimp_dir: Path | None = None
    """Real sBLIMP folder; replaces the generated sentence pairs."""
    wuggy_per_word: int = 3
    """Generated pseudo-words per real word (:func:`most.eval.audio_lm.wuggy_pairs`)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.wuggy_per_word < 1:
            raise ValueError(f"audio_lm.wuggy_per_word must be >= 1, got {self.wuggy_per_word}")


@dataclass(frozen=True)
class SpokenQASets:
    """Real spoken-QA sets (Llama Q / WebQ / TriviaQA layouts) by name -> local folder, scored
    S->T and S->S (spoken answers transcribed by ``judges.sqa``)."""

    sets: dict[str, Path] = field(default_factory=dict)
    n: int = 100


_DEFAULT_MODELS, _DEFAULT_SIZES, _DEFAULT_JUDGES = Models(), Sizes(), Judges()
_DEFAULT_AUDIO_LM, _DEFAULT_QA_SETS = AudioLM(), SpokenQASets()


@dataclass(frozen=True)
class EvalSettings:
    """Everything that decides a report (the sections of :func:`evaluate`)."""

    models: Models = _DEFAULT_MODELS
    sizes: Sizes = _DEFAULT_SIZES
    judges: Judges = _DEFAULT_JUDGES
    audio_lm: AudioLM = _DEFAULT_AUDIO_LM
    qa_sets: SpokenQASets = _DEFAULT_QA_SETS
    sampling: Sampling = _DEFAULT_SAMPLING


def evaluate(
    run: Path,
    models: Models = _DEFAULT_MODELS,
    sizes: Sizes = _DEFAULT_SIZES,
    judges: Judges = _DEFAULT_JUDGES,
    audio_lm: AudioLM = _DEFAULT_AUDIO_LM,
    qa_sets: SpokenQASets = _DEFAULT_QA_SETS,
    sampling: Sampling = _DEFAULT_SAMPLING,
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
    model_dir = Path(models.model or R.hf("stage2"))
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
    model_dir = Path(models.model or R.hf("stage2"))
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
    model_dir = Path(settings.models.model or R.hf("stage2"))
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
    model_dir = Path(models.model or R.hf("stage2"))
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
