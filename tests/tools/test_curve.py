"""`most curve`: checkpoint discovery, Lightning checkpoints into the HF model, the scored points."""

import json

import pytest
import torch

from most.cli import main
from most.run import Run
from most.stages.eval import Judges
from most.testing import TINY_MODEL
from most.tools.curve import checkpoints, curve, load_weights


def tiny(seed: int):
    from transformers import Qwen3MoeForCausalLM

    torch.manual_seed(seed)
    return Qwen3MoeForCausalLM(TINY_MODEL.hf_config(64, 0))


def test_checkpoints_in_step_order_and_weights_loaded(tmp_path):
    stage = Run(tmp_path).stage("stage1")
    ckpt = stage / "ckpt"
    ckpt.mkdir(parents=True)
    trained = tiny(0)
    state = {f"model.{k}": v for k, v in trained.state_dict().items()}
    for step in (160, 80):
        torch.save({"state_dict": state}, ckpt / f"step={step}.ckpt")
    torch.save({"state_dict": state}, ckpt / "last.ckpt")  # not a step checkpoint
    found = checkpoints(stage)
    assert [s for s, _ in found] == [80, 160]
    fresh = tiny(1)
    load_weights(fresh, found[0][1])
    for (k, a), b in zip(trained.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    torch.save({"state_dict": {"model.other.weight": torch.zeros(1)}}, ckpt / "step=1.ckpt")
    with pytest.raises(ValueError, match="does not match"):
        load_weights(fresh, ckpt / "step=1.ckpt")


@pytest.fixture
def curve_run(eval_run, tmp_path):
    """A writable run on the shared tiny run's inputs, whose stage2 kept two checkpoints: step 1
    holds the exported model's weights, step 2 those weights scaled (another model)."""
    from most.generate import SpeechLM

    run, source = Run(tmp_path / "run"), Run(eval_run)
    ckpt = run.stage("stage2") / "ckpt"
    ckpt.mkdir(parents=True)
    for name in ("data", "units", "base", "judge"):
        run.stage(name).symlink_to(source.stage(name))
    run.hf("stage2").symlink_to(source.hf("stage2"))
    weights = SpeechLM.load(run.hf("stage2"), units=run.units).model.state_dict()
    for step, scale in ((1, 1.0), (2, 1.5)):
        state = {f"model.{k}": v * scale for k, v in weights.items()}
        torch.save({"state_dict": state}, ckpt / f"step={step}.ckpt")
    return run.root


def test_curve_scores_what_eval_scores(curve_run):
    """Each point is what `most eval` gives that checkpoint's weights: the TTS ratio, wuggy."""
    from most.generate import Sampling
    from most.stages.eval import Sizes, evaluate

    points = curve(
        curve_run, "stage2", n=2, device="cpu", tasks=("asr", "tts", "wuggy"), n_tts=2,
        n_wuggy=3, guidance=1.25, steps=[1, 2],
    )  # fmt: skip
    assert [p["step"] for p in points] == [1, 2]
    keys = {"wer_test", "wer_test_voices", "tts_wer", "tts_ratio", "tts_self_asr", "wuggy"}
    assert keys <= set(points[0])
    saved = json.loads((Run(curve_run).stage("stage2") / "curve.json").read_text())
    assert saved == points
    sizes = Sizes(asr=0, tts=2, sqa=0, text=0, wuggy=3, blimp=0, router=0)
    report = evaluate(
        run=curve_run, sizes=sizes, sampling=Sampling(max_new_tokens=200, guidance=1.25),
        judges=Judges(names=["ctc"]), device="cpu",
    )  # fmt: skip
    m = report["metrics"]
    assert points[0]["tts_wer"] == round(m["tts.ctc.wer_model"], 4)
    ratio = m["tts.ctc.wer_model"] / m["tts.ctc.wer_resynth"] if m["tts.ctc.wer_resynth"] else None
    assert points[0]["tts_ratio"] == (None if ratio is None else round(ratio, 2))
    assert points[0]["tts_self_asr"] == round(m["tts.self_asr.wer_model_units"], 4)
    assert points[0]["wuggy"] == round(m["audio_lm.wuggy.accuracy"], 4)
    assert points[0]["wuggy_margin"] == round(
        report["details"]["audio_lm"]["wuggy"]["mean_margin"], 4
    )
    # step 2 is scored with its own weights, not the exported model's
    assert points[1]["tts_self_asr"] != points[0]["tts_self_asr"]
    assert points[1]["wuggy_margin"] != points[0]["wuggy_margin"]


def test_curve_rejects_unknown_tasks_and_steps(curve_run, capsys):
    with pytest.raises(ValueError, match="tasks must be some of asr, tts, wuggy"):
        curve(curve_run, "stage2", tasks=("asr", "mos"))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint for steps \[3\] \(kept: 1, 2\)"):
        curve(curve_run, "stage2", steps=[2, 3], device="cpu")
    # the same through `most curve`: one line each, exit 2
    run = ["curve", "--run", str(curve_run), "--stage", "stage2"]
    assert main([*run, "--tasks=[asr,mos]"]) == 2
    assert "tasks" in capsys.readouterr().err
    assert main([*run, "--steps=[2,3]", "--device=cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no checkpoint for steps [3]" in err
