"""Start-up cost of the commands that need no model: CPU seconds and peak RSS (JSON on stdout).

Each command runs as a fresh process ``--repeats`` times; the figure is the best (least loaded) run.
The baseline, measured in the same run, is ``import transformers`` plus the adapted model class:
what every command paid while ``import most`` imported the model. ``imports`` says whether the
command's process loaded transformers, torch or lightning.

    python benchmarks/startup.py [--repeats 3] [--python .venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

#: name -> Python code run in a fresh interpreter (the CLI's own entry point, as `most` runs it).
COMMANDS = {
    "most --help": "from most.cli import main; main(['--help'])",
    "most data --help": "from most.cli import main; main(['data', '--help'])",
    "most units --help": "from most.cli import main; main(['units', '--help'])",
    "import most.stages.data": "import most.stages.data",
}
BASELINE = "import most, transformers, most.modeling"
PROBE = (
    "\nimport resource, sys\n"
    "u = resource.getrusage(resource.RUSAGE_SELF)\n"
    "print('PROBE', u.ru_utime + u.ru_stime, u.ru_maxrss, "
    "*(int(m in sys.modules) for m in ('transformers', 'torch', 'lightning')), file=sys.stderr)\n"
)


def measure(python: str, code: str, repeats: int) -> dict:
    """Best CPU seconds and peak RSS (MiB) of ``code`` over ``repeats`` fresh processes."""
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [python, "-c", f"try:\n    {code}\nexcept SystemExit:\n    pass\n{PROBE}"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        if out.returncode != 0:  # e.g. a module an older checkout does not have
            return {"error": out.stderr.strip().splitlines()[-1]}
        line = next(x for x in out.stderr.splitlines() if x.startswith("PROBE "))
        cpu, rss, *loaded = line.split()[1:]
        runs.append((float(cpu), int(rss) / 1024, loaded))
    cpu, rss, loaded = min(runs)
    names = ("transformers", "torch", "lightning")
    return {
        "cpu_s": round(cpu, 3),
        "peak_rss_mib": round(rss, 1),
        "imports": [n for n, flag in zip(names, loaded, strict=True) if flag == "1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    base = measure(args.python, BASELINE, args.repeats)
    results = {}
    for name, code in COMMANDS.items():
        r = measure(args.python, code, args.repeats)
        if "cpu_s" in r:
            r["cpu_vs_baseline"] = round(r["cpu_s"] / base["cpu_s"], 3)
        results[name] = r
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "repeats": args.repeats,
                "baseline (import transformers + model class)": base,
                "commands": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
