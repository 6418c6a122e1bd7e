"""`most ablation`: variants -> adapted models, orchestration (resume, settings, force), the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import most  # noqa: F401  (registers the adapted model with the Auto classes)
from most.cli import main
from most.eval import ablation as table
from most.io import atomic_write_json
from most.moe.experts import SharedExpert
from most.run import Run
from most.stages.eval import Sizes
from most.testing import LAYOUT_UNITS, TEXT_VOCAB
from most.tools import ablation as A

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "tiny"
TINY_SIZES = Sizes(asr=2, tts=1, sqa=0, text=1, wuggy=2, blimp=2, router=2)


def settings(name: str, vdir: Path, add_shared: bool = True, max_steps: int | None = 3) -> dict:
    return A.variant_settings(
        name, vdir, Path("src"), RECIPES, max_steps, add_shared, TINY_SIZES, "ctc", (), ()
    )


def blocks(model) -> list:
    return [m for m in model.modules() if type(m).__name__ == "ModalityMoE"]


def test_each_variant_adapts_to_a_different_model(base_dirs, tmp_path):
    """The variant's stage arguments, through the real CLI, build the model the variant names."""
    base = base_dirs["qwen3_moe"]  # 8 experts, top-2, no shared experts
    assert not A.base_has_shared(base)
    layout = [f"--layout.n_units={LAYOUT_UNITS}", "--layout.unit_tokenizer_hash=test-units"]
    configs = {}
    for name in A.VARIANTS:
        vdir = tmp_path / name
        args = settings(name, vdir)["adapt"]
        assert main(["adapt", *args, "--run", str(vdir), f"--source.model={base}", *layout]) == 0
        model = AutoModelForCausalLM.from_pretrained(Run(vdir).hf("adapt"))
        configs[name] = model.config.experts
        router, experts = blocks(model)[0].router, blocks(model)[0].experts
        assert router.kind == configs[name]["router"]
        shared = [b.shared_experts for b in blocks(model)]
        if name == "no_shared":
            assert configs[name]["shared_experts"] is False and shared == [None, None]
        else:
            assert all(isinstance(s, SharedExpert) for s in shared), name
        if name == "upcycle":
            assert configs[name]["init"] == "upcycle" and experts.num_experts == 16
        else:
            assert configs[name]["init"] == "split" and experts.num_experts == 8
        if name == "top_p":
            assert router.n_null == 1 and router.weight.shape[0] == 8 + 1
        else:
            assert router.n_null == 0 and router.weight.shape[0] == experts.num_experts
    assert configs["modality"]["router"] == "modality" and configs["vanilla"]["router"] == "topk"
    as_json = {json.dumps(c, sort_keys=True) for c in configs.values()}
    assert len(as_json) == len(A.VARIANTS)  # five different models
    # vanilla = split + blind top-k: before training, the base model plus a zero shared expert
    vanilla = AutoModelForCausalLM.from_pretrained(Run(tmp_path / "vanilla").hf("adapt")).eval()
    original = AutoModelForCausalLM.from_pretrained(base).eval()
    ids = torch.randint(4, TEXT_VOCAB, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (vanilla(ids).logits[..., :TEXT_VOCAB] - original(ids).logits).abs().max()
    assert diff <= 1e-5


def test_a_base_with_shared_experts_keeps_its_own(base_dirs):
    assert A.base_has_shared(base_dirs["deepseek_v2"])
    for name in A.VARIANTS:
        opts = A.experts_options(name, add_shared=False)
        assert opts["add_shared"] is False
        assert opts["shared_experts"] is (name != "no_shared")
    assert A.experts_options("no_shared", add_shared=True)["add_shared"] is False
    assert "--experts.shared_experts=false" in A.adapt_args(A.experts_options("no_shared", True))


# ---- orchestration with a fake stage runner --------------------------------------------------


def fake_outputs(vdir: Path, stage: str, variant: str) -> None:
    """What each stage leaves behind, with numbers that depend on the variant."""
    k, r = list(A.VARIANTS).index(variant), Run(vdir)
    if stage == "adapt":
        atomic_write_json(r.hf("adapt") / "adapt_report.json", {"params_after": 1_000_000 + k})
    elif stage == "stage1":
        final = {"train/loss_asr": 1.0 + k, "train/loss_tts": 2.0, "train/loss_text_lm": 3.0}
        atomic_write_json(
            r.stage("stage1") / "metrics.json", {"steps": 3, "wall_s": 120.0, "final": final}
        )
    else:
        metrics = {"asr.test.wer": 0.1 * (k + 1), "text.ppl_model": 5.0, "tts.ctc.wer_model": 0.5}
        atomic_write_json(r.report, {"metrics": metrics, "meta": {"total_seconds": 30.0}})


@pytest.fixture
def source(base_dirs, tmp_path: Path) -> Path:
    """A finished-looking source run: empty data, units and judge, and a real tiny base."""
    src = Run(tmp_path / "demo")
    src.dataset("text").mkdir(parents=True)
    atomic_write_json(src.units_manifest, {})
    atomic_write_json(src.judge_file, {})
    src.hf("base").parent.mkdir(parents=True)
    src.hf("base").symlink_to(base_dirs["qwen3_moe"])
    return src.root


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, list[str]]]:
    log: list[tuple[str, list[str]]] = []

    def fake_most(stage: str, args: list[str], log_file: Path) -> None:
        log.append((stage, args))
        vdir = Path(args[args.index("--run") + 1])
        fake_outputs(vdir, stage, vdir.name)

    monkeypatch.setattr(A, "_most", fake_most)
    return log


def test_runs_each_variant_once_and_resumes(source, calls, tmp_path):
    run = tmp_path / "abl"
    variants = ("modality", "no_shared")
    report = A.ablation(run=run, source=source, variants=variants, recipes=RECIPES, max_steps=3)
    assert [c[0] for c in calls] == ["adapt", "stage1", "eval"] * 2
    for name in variants:
        for link in A.INPUTS:
            assert Run(run / name).stage(link).resolve() == Run(source).stage(link).resolve()
    stage1 = calls[1][1]
    assert "--trainer.max_steps=3" in stage1 and "--trainer.max_time_min=null" in stage1
    assert str(RECIPES / "stage1.yaml") in stage1
    assert f"--models.model={Run(run / 'modality').hf('stage1')}" in calls[2][1]
    assert report["meta"]["add_shared"] is True  # the tiny Qwen3-MoE base has none
    assert set(report["variants"]) == set(variants)
    assert (run / "report.md").is_file()

    calls.clear()  # finished variants are skipped
    A.ablation(run=run, source=source, variants=variants, recipes=RECIPES, max_steps=3)
    assert calls == []
    with pytest.raises(ValueError, match="other settings"):  # a changed setting is refused
        A.ablation(run=run, source=source, variants=variants, recipes=RECIPES, max_steps=4)
    assert calls == []
    A.ablation(run=run, source=source, variants=("modality",), recipes=RECIPES, force=True)
    assert len(calls) == 3 and all(c[1][-1] == "--force=true" for c in calls)


def test_refusals(source, calls, tmp_path, capsys):
    with pytest.raises(ValueError, match="would equal modality"):
        A.ablation(run=tmp_path / "a", source=source, variants=("no_shared",), add_shared=False)
    with pytest.raises(ValueError, match="source run"):
        A.ablation(run=source, source=source)
    assert main(["ablation", "--run", str(tmp_path / "b"), "--source", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "make demo" in err
    assert main(["ablation", "--source", str(source), "--variants=[modality,bogus]"]) == 2
    assert calls == [] and not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---- the report ------------------------------------------------------------------------------


def row(**metrics) -> dict:
    full = {name: None for name, *_ in table.METRICS} | metrics
    return {
        "experts": {
            "init": "split",
            "router": "modality",
            "shared_experts": True,
            "add_shared": True,
        },
        "params": 2_500_000,
        "steps": 250,
        "metrics": full,
        "train_loss": {"asr": 0.5, "tts": 3.25, "text_lm": 2.0},
        "val_loss": 2.5,
        "stage1_min": 15.0,
        "eval_min": 3.0,
        "ceilings": {"tts_wer_resynth": 0.2, "text_ppl_base": 4.0},
    }


def test_report_table_and_verdicts(tmp_path):
    rows = {
        "modality": row(asr_seen=0.10, asr_heldout=0.20, tts=0.30, wuggy=0.8, text_ppl=5.0),
        "vanilla": row(asr_seen=0.25, asr_heldout=0.35, tts=0.45, wuggy=0.6, text_ppl=5.02),
        "no_shared": row(asr_seen=0.05, asr_heldout=0.15, tts=0.30, wuggy=0.9, text_ppl=6.0),
    }
    rows["no_shared"]["experts"] |= {"shared_experts": False, "add_shared": False}
    rows["vanilla"]["experts"]["router"] = "topk"
    rows["vanilla"]["train_loss"]["asr"] = 0.75
    meta = {"source": "runs/demo", "recipes": "recipes/tiny", "add_shared": True, "judge": "ctc"}
    meta["sizes"] = {"asr": 100, "tts": 40, "text": 100, "wuggy": 60, "blimp": 60}
    written = table.write_report(tmp_path, rows, meta)
    assert json.loads((tmp_path / "report.json").read_text()) == written

    routing = written["comparisons"]["modality-aware routing"]
    assert len(routing["better"]) == 4 and routing["worse"] == []
    assert routing["tie"] == ["text ppl 5.000 vs 5.020"]  # 0.4 % apart: a tie
    shared = written["comparisons"]["shared experts"]
    assert (len(shared["better"]), len(shared["worse"]), len(shared["tie"])) == (1, 3, 1)
    assert set(written["comparisons"]) == {"modality-aware routing", "shared experts"}

    md = (tmp_path / "report.md").read_text()
    lines = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| `")}
    assert set(lines) == {"| `modality`", "| `vanilla`", "| `no_shared`"}
    cells = [c.strip() for c in lines["| `vanilla`"].strip("|").split("|")]
    assert cells[:5] == ["`vanilla`", "split", "topk", "1 added", "2.50"]
    assert cells[5:11] == ["0.250", "0.350", "0.450", "0.600", "-", "5.020"]
    assert cells[11:] == ["0.750", "3.250", "2.000", "2.500", "15.0", "3.0"]
    no_shared = [c.strip() for c in lines["| `no_shared`"].strip("|").split("|")]
    assert no_shared[3] == "none" and no_shared[5] == "**0.050**" and no_shared[8] == "**0.900**"
    assert "**modality-aware routing** (`modality` vs `vanilla`): helps" in md
    assert "MoST's claim holds here" in md
    assert "**shared experts** (`modality` vs `no_shared`): hurts" in md
    assert "MoST's claim is refuted here" in md
    assert "one added shared expert" in md and "Step counts differ" not in md
    # a one-metric majority is not a finding
    assert table.verdict({"better": ["a", "b"], "worse": ["c", "d", "e"], "tie": []}) == (
        "no clear difference"
    )


def test_collect_reads_a_finished_variant(tmp_path):
    vdir = tmp_path / "top_p"
    atomic_write_json(vdir / table.SETTINGS, settings("top_p", vdir))
    for stage in ("adapt", "stage1", "eval"):
        fake_outputs(vdir, stage, "top_p")
    r = table.collect(vdir, "ctc")
    assert r["experts"]["router"] == "top_p" and r["params"] == 1_000_004
    assert r["metrics"]["asr_seen"] == pytest.approx(0.5) and r["metrics"]["wuggy"] is None
    assert r["metrics"]["tts"] == 0.5 and r["train_loss"]["asr"] == 5.0
    assert (r["steps"], r["stage1_min"], r["eval_min"]) == (3, 2.0, 0.5)


# ---- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_variants_end_to_end(eval_run, tmp_path):
    """Real subprocess stages on the tiny run: 2 stage1 steps per variant, tiny eval."""
    run = tmp_path / "abl"
    kw = dict(
        run=run, source=eval_run, variants=("modality", "top_p"), recipes=RECIPES, max_steps=2,
        sizes=TINY_SIZES,
        stage1_args=("--data.batch_size=4", "--data.max_len=128", "--trainer.val_every=0"),
        eval_args=("--sampling.max_new_tokens=8", "--sampling.batch_size=4"),
    )  # fmt: skip
    result = A.ablation(**kw)
    for name in ("modality", "top_p"):
        vdir = run / name
        own = json.loads(Run(vdir).report.read_text())["metrics"]
        r = result["variants"][name]
        assert r["steps"] == 2
        assert r["metrics"]["asr_seen"] == own["asr.test.wer"]
        assert r["metrics"]["wuggy"] == own["audio_lm.wuggy.accuracy"]
        assert r["train_loss"]["asr"] is not None
        cfg = json.loads((Run(vdir).hf("stage1") / "config.json").read_text())
        assert cfg["experts"]["router"] == name and cfg["experts"]["add_shared"] is True
        assert (vdir / "logs" / "stage1.log").stat().st_size > 0
    md = (run / "report.md").read_text()
    assert "| `modality` |" in md and "| `top_p` |" in md
    before = (run / "top_p" / "logs" / "eval.log").stat().st_mtime_ns
    assert A.ablation(**kw)["variants"] == result["variants"]  # finished: nothing re-runs
    assert (run / "top_p" / "logs" / "eval.log").stat().st_mtime_ns == before
