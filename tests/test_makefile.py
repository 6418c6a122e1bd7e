"""``make demo``: which arguments reach which stage (the stage command stubbed), timings, quoting."""

import json
import subprocess
import sys
from pathlib import Path

from most.threads import available_cores

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["data", "units", "judge", "base", "adapt", "stage1", "stage2", "eval", "release"]


def demo_calls(tmp_path: Path, stages: list[str], *make_args: str) -> list[list[str]]:
    """``make demo`` (setup skipped) over empty recipes for ``stages``, the stage command replaced
    by a stub that prints its argument list as JSON; returns each call's arguments."""
    recipe = tmp_path / "recipes" / "tiny"
    recipe.mkdir(parents=True)
    for stage in stages:
        (recipe / f"{stage}.yaml").write_text("{}\n")
    stub = tmp_path / "argv.py"  # JSON, so word splitting shows
    stub.write_text("import json, sys\nprint('ARGV', json.dumps(sys.argv[1:]))\n")
    out = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", "demo",
         f"BIN={Path(sys.executable).parent}", f"MOST={sys.executable} {stub}", *make_args],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [json.loads(line[5:]) for line in out.splitlines() if line.startswith("ARGV ")]


def test_demo_passes_args_to_every_stage_and_args_stage_to_its_stage(tmp_path):
    run = tmp_path / "runs" / "demo"
    calls = demo_calls(
        tmp_path, STAGES, f"RUN={run}", "ARGS=--seed=3",
        "ARGS_stage1=--trainer.max_steps=4800 --a.b=c",
    )  # fmt: skip
    # The judge runs beside base and adapt; the end of its log is shown once they are done (on
    # one core they run in turn).
    beside = ["data", "units", "base", "adapt", "judge", "stage1", "stage2", "eval", "release"]
    beside = beside if len(available_cores()) > 1 else STAGES
    assert [c[0] for c in calls] == [*beside, "summary"]
    assert calls[-1] == ["summary", "--run", str(run)]
    for call in calls[:-1]:
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
    ] == beside
    if len(available_cores()) > 1:
        assert "--seed=3" in (run / "logs" / "judge.log").read_text()


def test_demo_args_stage_keeps_shell_quoting(tmp_path):
    """A value with spaces (a YAML mapping) or a quote reaches its stage as one argument."""
    ratios = "{asr: 0.3, tts: 0.45}"
    calls = demo_calls(
        tmp_path, ["stage1", "stage2"], f"RUN={tmp_path / 'run'}",
        f"ARGS_stage1=--data.ratios='{ratios}' --note=\"it's\"",
    )  # fmt: skip
    assert [c[0] for c in calls] == ["stage1", "stage2", "summary"]
    assert calls[0][-2:] == [f"--data.ratios={ratios}", "--note=it's"]
    assert calls[1][-2:] == ["--run", str(tmp_path / "run")]


def test_demo_never_runs_shell_code_from_args(tmp_path):
    """Shell syntax in ARGS_<stage> is passed on as words, never executed."""
    marker = tmp_path / "pwned"
    calls = demo_calls(
        tmp_path, ["stage1"], f"RUN={tmp_path / 'run'}",
        f"ARGS_stage1=--a=1 `touch {marker}` ; touch {marker}",
    )  # fmt: skip
    assert not marker.exists()
    assert calls[0][-6:] == ["--a=1", "`touch", f"{marker}`", ";", "touch", str(marker)]


def test_demo_stops_at_a_failing_stage(tmp_path):
    """A stage that fails stops the demo with its exit status; later stages do not run."""
    recipe = tmp_path / "recipes" / "tiny"
    recipe.mkdir(parents=True)
    for stage in ("data", "units"):
        (recipe / f"{stage}.yaml").write_text("{}\n")
    stub = tmp_path / "fail.py"
    stub.write_text(
        "import sys\nprint('RAN', sys.argv[1])\nsys.exit(3 if sys.argv[1] == 'data' else 0)\n"
    )
    out = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-o", "setup", "demo",
         f"BIN={Path(sys.executable).parent}", f"MOST={sys.executable} {stub}", f"RUN={tmp_path / 'r'}"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode != 0
    assert "RAN data" in out.stdout and "RAN units" not in out.stdout
