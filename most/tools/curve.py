"""``most curve``: learning curves from a stage's kept checkpoints, what more steps buy.

Every ``step=N.ckpt`` the stage kept (the recipe's ``trainer.keep_last`` sets how many; ``steps``
picks some) is loaded into the stage's model and scored on the tasks asked for:

- ``asr``: greedy ASR WER on the first ``n`` utterances of ``test`` and ``test_voices``;
- ``tts``: the CTC judge's WER on ``n_tts`` test sentences spoken by the model (classifier-free
  guidance ``guidance``, as ``most eval``), its ratio to the judge's WER on vocoded true units
  (the demo's TTS row), and the model's own ASR of its units;
- ``wuggy``: accuracy on the eval's generated word / pseudo-word pairs (spoken and encoded once),
  per unit, and the mean log-probability margin of the word.

One JSON line per checkpoint on stdout; the list is written to ``curve.json`` in the stage folder::

    most curve --run runs/demo [--stage stage2] [--tasks [asr,tts,wuggy]] [--n 60] [--n_tts 100]
        [--steps [600,1200,2400]] [--device auto]

The model architecture comes from the stage's exported HF folder (or, for a stage still running,
from its init's: ``adapt`` for stage1, ``stage1`` for stage2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, get_args

import torch

from most.eval.asr import evaluate_asr
from most.eval.audio_lm import minimal_pair_units, pair_accuracy
from most.eval.judges import load_judge
from most.eval.tts import evaluate_tts, tts_reference
from most.generate import Sampling, SpeechLM
from most.io import atomic_write_json
from most.run import Run
from most.stages.eval import AudioLM

#: stage -> the stage whose HF folder it starts from (its architecture while it runs).
INIT = {"stage1": "adapt", "stage2": "stage1"}
Task = Literal["asr", "tts", "wuggy"]
TASKS: tuple[str, ...] = get_args(Task)


def checkpoints(stage_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of ``step=N.ckpt`` files, in step order."""
    found = []
    for path in (stage_dir / "ckpt").glob("step=*.ckpt"):
        m = re.fullmatch(r"step=(\d+)\.ckpt", path.name)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found)


def load_weights(model: torch.nn.Module, ckpt: Path) -> None:
    """Lightning checkpoint -> ``model`` (the module keeps the HF model as ``self.model``)."""
    state = torch.load(ckpt, map_location=model.device, weights_only=True)["state_dict"]
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # Tied LM heads are saved once; anything else missing means a different architecture.
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"{ckpt}: does not match the model ({missing[:3]}, {unexpected[:3]})")


def curve(
    run: Path,
    stage: Literal["stage1", "stage2"] = "stage1",
    n: int = 60,
    device: str = "auto",
    tasks: tuple[Task, ...] = ("asr",),
    n_tts: int = 100,
    n_wuggy: int = 300,
    guidance: float = 1.25,
    steps: list[int] | None = None,
) -> list[dict]:
    """Score a stage's kept checkpoints: one ``{"step", <task figures>}`` point each.

    Args:
        run: the run folder.
        stage: the stage whose checkpoints are scored.
        n: ASR utterances per test split.
        device: ``auto`` (a GPU if visible), ``cpu``, ``cuda``.
        tasks: some of ``asr``, ``tts``, ``wuggy`` (see the module docstring).
        n_tts: TTS test sentences.
        n_wuggy: wuggy pairs (at most).
        guidance: TTS classifier-free guidance (as ``most eval``).
        steps: the checkpoints to score; None = all kept.
    """

    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise ValueError(f"tasks must be some of {', '.join(TASKS)}; got {', '.join(tasks)}")
    r = Run(run)
    stage_dir = r.stage(stage)
    found = checkpoints(stage_dir)
    if steps is not None:
        missing = sorted(set(steps) - {s for s, _ in found})
        if missing:
            kept = ", ".join(str(s) for s, _ in found) or "none"
            raise FileNotFoundError(
                f"{stage_dir}/ckpt: no checkpoint for steps {missing} (kept: {kept})"
            )
        found = [(s, p) for s, p in found if s in steps]
    if not found:
        raise FileNotFoundError(f"{stage_dir}/ckpt: no step=N.ckpt checkpoints")
    arch = r.hf(stage)
    if not (arch / "config.json").is_file():  # the stage is still running: its init has the shape
        arch = r.hf(INIT[stage])
    lm = SpeechLM.load(arch, units=r.units, device=device)
    speech = r.load_units("speech", lm.layout.unit_tokenizer_hash)
    if "tts" in tasks:
        judge = load_judge("ctc", run)
        audio = r.load_data("speech")["test"]
        reference = tts_reference(lm, [judge], audio, speech["test"], n_tts)  # once, not per step
        spoken = Sampling(max_new_tokens=200, guidance=guidance)
    if "wuggy" in tasks:
        wuggy = minimal_pair_units(lm, run, AudioLM(), n_wuggy, 0)["wuggy"]
    points = []
    for step, path in found:
        load_weights(lm.model, path)  # load_state_dict keeps the eval mode SpeechLM set
        point: dict = {"step": step}
        if "asr" in tasks:
            scores = evaluate_asr(
                lm, speech, ("test", "test_voices"), n, Sampling(max_new_tokens=60)
            )
            point.update({f"wer_{s}": round(v["wer"], 4) for s, v in scores.items()})
        if "tts" in tasks:
            tts = evaluate_tts(lm, [judge], reference, spoken)
            model, resynth = tts[judge.name]["wer_model"], tts[judge.name]["wer_resynth"]
            point["tts_wer"] = round(model, 4)
            point["tts_ratio"] = round(model / resynth, 2) if resynth else None
            point["tts_self_asr"] = round(tts["_self_asr"]["wer_model_units"], 4)
        if "wuggy" in tasks:
            scores = pair_accuracy(lm.model, lm.layout, wuggy, "wuggy")
            point["wuggy"] = round(scores["accuracy"], 4)
            point["wuggy_per_unit"] = round(scores["accuracy_per_unit"], 4)
            point["wuggy_margin"] = round(scores["mean_margin"], 4)
        print(json.dumps(point), flush=True)
        points.append(point)
    atomic_write_json(stage_dir / "curve.json", points)
    return points
