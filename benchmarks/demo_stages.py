"""Per-stage wall time of the last demo and the CPU it ran on (JSON on stdout).

Reads ``RUN/timings.tsv`` (``make demo`` appends ``<stage>\t<seconds>\t<start>`` per stage; the
last line of a stage counts), this machine's CPU model and flags, and ``ONEDNN_MAX_CPU_ISA``
where set (a run that capped oneDNN's ISA, e.g. below AMX, says so). ``total`` is the wall time:
stages that ran side by side count once. A demo that has not run prints ``{"stages": {}}`` with
the CPU, so ``make bench`` never fails on it.

    python benchmarks/demo_stages.py [--run runs/demo]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from most.eval.summary import read_timings, wall_seconds

FLAGS = ("amx_tile", "amx_bf16", "avx512_bf16", "avx512f", "avx2")


def cpu() -> dict:
    """Model name, core count and the matmul-relevant flags from ``/proc/cpuinfo``."""
    model, flags = platform.processor() or platform.machine(), set()
    info = Path("/proc/cpuinfo")
    if info.exists():
        for line in info.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    return {
        "model": model,
        "cores": os.cpu_count(),
        **{f: f in flags for f in FLAGS},
        # oneDNN's ISA cap (e.g. AVX512_CORE_BF16: no AMX tiles) when the demo's environment set it
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path(os.environ.get("RUN", "runs/demo")))
    args = p.parse_args()
    tsv = args.run / "timings.tsv"
    stages = read_timings(tsv) if tsv.exists() else {}
    wall = wall_seconds(tsv) if tsv.exists() else 0.0
    out = {
        "run": str(args.run),
        "cpu": cpu(),
        "stages": stages,
        "stages_sum_s": round(sum(stages.values()), 1),
        "total_s": round(wall, 1),
        "total_min": round(wall / 60, 2),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
