"""ASR learning curve from a stage's kept checkpoints: what more steps buy.

Every ``RUN/<stage>/ckpt/step=N.ckpt`` (the recipe's ``trainer.keep_last`` sets how many are kept)
is loaded into the stage's model and scored with greedy ASR on the first ``n`` utterances of
``test`` and ``test_voices``; the result is JSON on stdout and ``RUN/<stage>/asr_curve.json``::

    python -m eval.curve runs/demo [--stage stage1] [--n 60] [--device auto]

The model architecture comes from the stage's exported ``hf`` folder (or, for a stage still
running, from its ``init``: ``adapt/hf`` for stage1, ``stage1/hf`` for stage2).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from most.io import atomic_write_json

INIT = {"stage1": "adapt", "stage2": "stage1"}


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


def curve(run: Path, stage: str = "stage1", n: int = 60, device: str = "auto") -> list[dict]:
    from eval.asr import evaluate_asr
    from most.generate import Sampling, SpeechLM
    from most.train.sources import load_units

    stage_dir = run / stage
    found = checkpoints(stage_dir)
    if not found:
        raise FileNotFoundError(f"{stage_dir}/ckpt: no step=N.ckpt checkpoints")
    arch = stage_dir / "hf"
    if not (arch / "config.json").is_file():  # the stage is still running: its init has the shape
        arch = run / INIT[stage] / "hf"
    lm = SpeechLM.load(arch, units=run / "units", device=device)
    speech = load_units(run, lm.layout, "speech")
    points = []
    for step, path in found:
        load_weights(lm.model, path)  # load_state_dict keeps the eval mode SpeechLM set
        scores = evaluate_asr(lm, speech, ("test", "test_voices"), n, Sampling(max_new_tokens=60))
        point = {"step": step, **{f"wer_{s}": round(v["wer"], 4) for s, v in scores.items()}}
        print(json.dumps(point), flush=True)
        points.append(point)
    atomic_write_json(stage_dir / "asr_curve.json", points)
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--stage", default="stage1", choices=sorted(INIT))
    parser.add_argument("--n", type=int, default=60, help="utterances per test split")
    parser.add_argument("--device", default="auto", help="auto (a GPU if visible), cpu, cuda")
    args = parser.parse_args(argv)
    print(json.dumps(curve(args.run, args.stage, args.n, args.device)))


if __name__ == "__main__":
    main()
