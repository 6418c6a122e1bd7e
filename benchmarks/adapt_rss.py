"""Peak resident memory of ``most adapt`` on a ~1 B-parameter bf16 MoE checkpoint (JSON on stdout).

Builds a random Qwen3-MoE checkpoint in bf16 (never an fp32 copy: the model is created in bf16),
with a word-level tokenizer over its vocabulary, then runs ``most adapt`` on it in a fresh process
(the layout is given, so no units stage is needed) and reads the process's peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss`` in a wrapper process of its own). The figure is the ratio
of that peak to the checkpoint's size on disk; goal <= 1.3. The baseline, measured in the same run,
is the previous default, ``--source.dtype=float32`` (every weight upcast on load), the file size
itself, and ``imports_only_gib``, a process that only imports what adapt imports (the part of the
peak that does not grow with the model). ``--reuse`` keeps a checkpoint built by an earlier run.

    python benchmarks/adapt_rss.py [--work /tmp/adapt_rss] [--n-units 1000] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from most.run import Run

#: ~1.0 B parameters, 91 % of them in the routed experts; one layer's experts are 4 % of the model
#: (Qwen3-30B-A3B: 2 %), so the one layer converted at a time weighs as it does at scale.
SHAPE = dict(
    vocab_size=8192,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=8,
    num_key_value_heads=4,
    head_dim=128,
    intermediate_size=2048,
    moe_intermediate_size=768,
    num_experts=16,
    num_experts_per_tok=2,
    norm_topk_prob=True,
    tie_word_embeddings=False,
)

#: Runs ``argv`` as a child and prints its peak RSS in KiB (Linux ``ru_maxrss``) and wall seconds.
WRAP = (
    "import resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "print('PEAK', rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
    " time.perf_counter() - t, file=sys.stderr)\n"
)


def build_checkpoint(folder: Path) -> None:
    """A random bf16 Qwen3-MoE of :data:`SHAPE` and its tokenizer, saved as an HF folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3MoeConfig

    words = ["<s>", "<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(SHAPE["vocab_size"] - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    cfg = Qwen3MoeConfig(**SHAPE, bos_token_id=0, pad_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)


def checkpoint_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def peak_rss(python: str, argv: list[str]) -> dict:
    """Peak RSS (GiB) and wall seconds of ``argv`` run in a fresh process."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(
        [python, "-c", WRAP, *argv], capture_output=True, text=True, env=env, check=False
    )
    line = next((x for x in out.stderr.splitlines() if x.startswith("PEAK ")), None)
    if line is None or line.split()[1] != "0":
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    _, _, kib, wall = line.split()
    return {"peak_rss_gib": round(int(kib) / 2**20, 3), "wall_s": round(float(wall), 1)}


def adapt_argv(python: str, src: Path, run: Path, n_units: int, *extra: str) -> list[str]:
    return [
        python,
        "-m",
        "most.cli",
        "adapt",
        "--run",
        str(run),
        f"--source.model={src}",
        f"--layout.n_units={n_units}",
        "--layout.unit_tokenizer_hash=bench",
        "--force=true",
        *extra,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/adapt_rss"))
    ap.add_argument("--n-units", type=int, default=1000)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--reuse", action="store_true", help="keep an already built checkpoint")
    ap.add_argument("--skip-baseline", action="store_true", help="only the default path")
    args = ap.parse_args()
    src = args.work / "source"
    t0 = time.perf_counter()
    if not (args.reuse and checkpoint_bytes(src)):
        build = [args.python, "-c", f"from benchmarks.adapt_rss import build_checkpoint as b; "
                 f"from pathlib import Path; b(Path({str(src)!r}))"]  # fmt: skip
        subprocess.run(build, check=True, cwd=Path(__file__).resolve().parents[1])
    size = checkpoint_bytes(src)
    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "checkpoint": {
            "model_type": "qwen3_moe",
            "shape": SHAPE,
            "dtype": "bfloat16",
            "file_gib": round(size / 2**30, 3),
            "build_s": round(time.perf_counter() - t0, 1),
        },
        "n_units": args.n_units,
    }
    floor = [args.python, "-c", "import most.cli, most.stages.adapt, most.modeling"]
    report["imports_only_gib"] = peak_rss(args.python, floor)["peak_rss_gib"]
    runs = {"default": ()}
    if not args.skip_baseline:
        runs["baseline_float32"] = ("--source.dtype=float32",)
    for name, extra in runs.items():
        r = peak_rss(
            args.python, adapt_argv(args.python, src, args.work / name, args.n_units, *extra)
        )
        out = Run(args.work / name).hf("adapt")
        r["out_gib"] = round(checkpoint_bytes(out) / 2**30, 3)
        r["ratio_to_file"] = round(r["peak_rss_gib"] * 2**30 / size, 3)
        report[name] = r
    report["goal_ratio"] = 1.3
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
