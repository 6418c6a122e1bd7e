"""`most adapter_ablation`: every (variant, seed) trained once, scored, resumed; the report."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

import most  # noqa: F401  (registers the adapted model with the Auto classes)
from most.cli import main
from most.data.paraling import PARALING_TASKS
from most.io import atomic_write_json, read_json
from most.run import Run
from most.tools import adapter_ablation as AA

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "tiny"


@pytest.fixture
def source(base_dirs, tmp_path: Path) -> Path:
    """A finished-looking source run: data and units markers, and a real tiny base."""
    src = Run(tmp_path / "demo")
    src.dataset("speech").mkdir(parents=True)
    atomic_write_json(src.units_manifest, {})
    src.hf("base").parent.mkdir(parents=True)
    src.hf("base").symlink_to(base_dirs["qwen3_moe"])
    return src.root


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, list[str]]]:
    log: list[tuple[str, list[str]]] = []

    def fake_most(stage: str, args: list[str], log_file: Path) -> None:
        log.append((stage, args))

    def fake_score(vdir: Path, source: Path, n: int, stage: str) -> dict:
        log.append(("score", [stage]))
        variant, seed = vdir.name.split("-s")
        acc = {"moe": 0.8, "dense": 0.6, "units": 0.3}[variant] + int(seed) / 100
        return {"asr": {"wer": 1 - acc, "n": n}, "paraling.noise": {"accuracy": acc, "n": n}}

    def fake_conflict(vdir: Path, source: Path, stage: str) -> dict:
        log.append(("conflict", [stage]))
        return {"conflict.asr|s2t": {"cosine": -0.1 if vdir.name.startswith("moe") else 0.2}}

    monkeypatch.setattr(AA, "_most", fake_most)
    monkeypatch.setattr(AA, "score", fake_score)
    monkeypatch.setattr(AA, "conflict", fake_conflict)
    monkeypatch.setattr(AA, "majority", lambda source, n: {"paraling.noise": 0.66})
    return log


def test_every_variant_and_seed_runs_once_and_the_report_has_the_spread(source, calls, tmp_path):
    out = tmp_path / "ablation"
    kw = dict(run=tmp_path / "abl", source=source, seeds=(1, 2), recipes=RECIPES, out=out,
              max_steps=5, stage2_steps=3, n=3)  # fmt: skip
    report = AA.adapter_ablation(**kw)
    adapter_run = ["adapt", "stage1", "stage2", "score", "conflict"]
    assert [c[0] for c in calls] == adapter_run * 2 + ["adapt", "stage1", "stage2", "score"] + (
        adapter_run * 2 + ["adapt", "stage1", "stage2", "score"]
    )  # the units variant has no adapter to measure conflict in
    assert {c[1][0] for c in calls if c[0] == "score"} == {"stage2"}  # the last stage is scored
    runs = [c[1][c[1].index("--run") + 1] for c in calls if c[0] == "adapt"]
    assert [Path(r).name for r in runs[:3]] == ["moe-s1", "dense-s1", "units-s1"]  # seed-major
    stage1 = {c[1][c[1].index("--run") + 1]: c[1] for c in calls if c[0] == "stage1"}
    stage2 = {c[1][c[1].index("--run") + 1]: c[1] for c in calls if c[0] == "stage2"}
    moe2 = stage2[str(tmp_path / "abl" / "moe-s1")]
    assert "--adapter.kind=moe" in moe2 and "--trainer.max_steps=3" in moe2
    moe = stage1[str(tmp_path / "abl" / "moe-s1")]
    assert "--adapter.kind=moe" in moe and "--audio_frontend.kind=mel" in moe
    assert "--trainer.max_steps=5" in moe and "--data.seed=1" in moe
    assert "--data.pack=false" in moe and "--data.ratios.paraling=0.2" in moe
    units = stage1[str(tmp_path / "abl" / "units-s2")]
    assert not any(a.startswith("--adapter") for a in units) and "--data.seed=2" in units
    saved = read_json(out / "adapter.json")
    assert set(saved) == {f"{v}.{t}" for v in ("moe", "dense", "units")
                          for t in ("asr", "paraling.noise")} | {"_meta"} | {
        "moe.conflict.asr|s2t", "dense.conflict.asr|s2t"}  # fmt: skip
    assert saved["moe.conflict.asr|s2t"]["mean"] == pytest.approx(-0.1)
    assert saved["moe.paraling.noise"]["values"] == pytest.approx([0.81, 0.82])
    assert saved["moe.paraling.noise"]["std"] == pytest.approx(0.00707, abs=1e-4)
    assert report == {k: v for k, v in saved.items() if k != "_meta"}
    assert saved["_meta"]["runs_done"] == 6 and saved["_meta"]["stage2_steps"] == 3
    assert saved["_meta"]["majority"] == {"paraling.noise": 0.66}
    assert (
        "| paraling.noise | 0.815 ± 0.007 | 0.615 ± 0.007 | 0.315 ± 0.007 | 0.660 |"
        in (out / "adapter.md").read_text()
    )
    assert "| asr | " in (out / "adapter.md").read_text()
    assert (
        "| conflict.asr\\|s2t | -0.100 ± 0.000 | 0.200 ± 0.000 | - | - |"
        in (out / "adapter.md").read_text()
    )
    calls.clear()  # finished runs are skipped
    AA.adapter_ablation(**kw)
    assert calls == []
    stale = tmp_path / "abl" / "moe-s1" / "stage1" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from the earlier settings")
    AA.adapter_ablation(**{**kw, "n": 4})  # other settings: those runs again, from scratch
    assert len(calls) == 28 and not stale.exists()
    calls.clear()  # a conflict measured before its run's result is measured again
    conflict_file = tmp_path / "abl" / "moe-s2" / AA.CONFLICT
    os.utime(conflict_file, (0, 0))
    AA.adapter_ablation(**{**kw, "n": 4})
    assert calls == [("conflict", ["stage2"])]
    assert read_json(tmp_path / "abl" / "moe-s1" / AA.SETTINGS)["n"] == 4
    calls.clear()
    AA.adapter_ablation(**{**kw, "stage2_steps": 0, "variants": ("moe",), "seeds": (1,)})
    assert [c[0] for c in calls] == ["adapt", "stage1", "score", "conflict"]
    assert calls[2:] == [("score", ["stage1"]), ("conflict", ["stage1"])]


def test_refusals(source, calls, tmp_path):
    with pytest.raises(ValueError, match="unknown variants"):
        AA.adapter_ablation(run=tmp_path / "a", source=source, variants=("conv",))
    with pytest.raises(ValueError, match="source run"):
        AA.adapter_ablation(run=source, source=source)
    with pytest.raises(ValueError, match="stage2_steps is -1"):
        AA.adapter_ablation(run=tmp_path / "a", source=source, stage2_steps=-1)
    assert main(["adapter_ablation", "--run", str(tmp_path / "b"), "--source",
                 str(tmp_path / "none")]) == 2  # fmt: skip


@pytest.mark.slow
def test_moe_and_units_end_to_end(eval_run, tmp_path):
    """Real subprocess stages on the tiny spoken run: 2 steps a stage and variant, 2 utterances."""
    out = tmp_path / "ablation"
    report = AA.adapter_ablation(
        run=tmp_path / "abl", source=eval_run, variants=("moe", "units"), seeds=(1,),
        recipes=RECIPES, out=out, max_steps=2, stage2_steps=2, n=2,
    )  # fmt: skip
    assert {"moe.asr", "units.asr", "moe.s2t", "units.paraling.voice"} <= set(report)
    base = read_json(out / "adapter.json")["_meta"]["majority"]
    assert set(base) == {f"paraling.{t}" for t in PARALING_TASKS}
    assert all(1 / 8 <= v <= 1 for v in base.values())  # 2 utterances: at least half agree
    conflicts = {k for k in report if ".conflict." in k}
    assert conflicts == {f"moe.conflict.{a}|{b}" for a, b in itertools.combinations(
        ["asr", "s2t", "paraling.voice", "paraling.noise"], 2)}  # fmt: skip
    assert all(-1 <= report[k]["mean"] <= 1 for k in conflicts)
    cfg = AutoModelForCausalLM.from_pretrained(Run(tmp_path / "abl" / "moe-s1").hf("stage2")).config
    assert cfg.adapter["kind"] == "moe"
    assert (out / "adapter.md").is_file()


def test_an_interrupted_ablation_keeps_the_finished_runs_table(
    source, calls, monkeypatch, tmp_path
):
    out = tmp_path / "ablation"

    def fail_on_units(stage: str, args: list[str], log_file: Path) -> None:
        if stage == "stage1" and args[args.index("--run") + 1].endswith("units-s1"):
            raise RuntimeError("stage1 failed")

    monkeypatch.setattr(AA, "_most", fail_on_units)
    with pytest.raises(RuntimeError, match="stage1 failed"):
        AA.adapter_ablation(run=tmp_path / "abl", source=source, seeds=(1, 2), recipes=RECIPES,
                            out=out, stage2_steps=0)  # fmt: skip
    saved = read_json(out / "adapter.json")
    assert saved["_meta"]["runs_done"] == 2
    assert {k.split(".", 1)[0] for k in saved if k != "_meta"} == {"moe", "dense"}
    assert saved["dense.asr"]["std"] is None and "| asr |" in (out / "adapter.md").read_text()
