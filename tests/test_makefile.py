"""The Makefile's demo loop: which arguments reach which stage (the stage command stubbed by echo)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["data", "units", "judge", "base", "adapt", "stage1", "stage2", "eval", "release"]


def test_demo_passes_args_to_every_stage_and_args_stage_to_its_stage(tmp_path):
    recipe = tmp_path / "recipes" / "tiny"
    recipe.mkdir(parents=True)
    for stage in STAGES:
        (recipe / f"{stage}.yaml").write_text("{}\n")
    run = tmp_path / "runs" / "demo"
    out = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", "demo", "MOST=echo",
         f"RUN={run}", "ARGS=--seed=3", "ARGS_stage1=--trainer.max_steps=4800 --a.b=c"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    calls = [
        words for words in map(str.split, out.splitlines()) if words[:1] in ([s] for s in STAGES)
    ]
    assert [c[0] for c in calls] == STAGES
    for call in calls:
        extra = ["--trainer.max_steps=4800", "--a.b=c"] if call[0] == "stage1" else []
        assert call[1:] == [
            "--config",
            f"recipes/tiny/{call[0]}.yaml",
            "--run",
            str(run),
            "--seed=3",
            *extra,
        ]
    assert [
        line.split("\t")[0] for line in (run / "timings.tsv").read_text().splitlines()
    ] == STAGES


def test_demo_args_stage_keeps_shell_quoting(tmp_path):
    """A value with spaces (a YAML mapping) or a quote reaches its stage as one argument."""
    recipe = tmp_path / "recipes" / "tiny"
    recipe.mkdir(parents=True)
    for stage in ("stage1", "stage2"):
        (recipe / f"{stage}.yaml").write_text("{}\n")
    stub = tmp_path / "argv.py"  # prints its argument list as JSON: word splitting shows
    stub.write_text("import json, sys\nprint('ARGV', json.dumps(sys.argv[1:]))\n")
    ratios = "{asr: 0.3, tts: 0.45}"
    out = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", "demo",
         f"MOST={sys.executable} {stub}", f"RUN={tmp_path / 'run'}",
         f"ARGS_stage1=--data.ratios='{ratios}' --note=\"it's\""],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    calls = [json.loads(line[5:]) for line in out.splitlines() if line.startswith("ARGV ")]
    assert [c[0] for c in calls] == ["stage1", "stage2"]
    assert calls[0][-2:] == [f"--data.ratios={ratios}", "--note=it's"]
    assert calls[1][-2:] == ["--run", str(tmp_path / "run")]
