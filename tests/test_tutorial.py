"""The README's own-model section, run as written on a tiny local checkpoint.

Every command line of the section's ``bash`` blocks runs in a shell with the section's variables
(``MODEL``, ``RUN``, ``RECIPE``, ``MASTER``, ``NODES``, ``GPUS``) set to a tiny Qwen3-MoE folder, a
tiny run and one node of two CPU processes. Training lines get test-sized settings inserted right
after ``--run $RUN`` (steps, batch, CPU), so the line's own options still override them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from transformers import AutoModelForCausalLM

import most  # noqa: F401  (registers the adapted model with the Auto classes)
from most.modeling import MostForCausalLM

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your own MoE checkpoint"
VARIABLES = {"MODEL", "RUN", "RECIPE", "MASTER", "NODES", "GPUS"}
TINY_TRAINING = (
    "--trainer.accelerator=cpu --trainer.precision=32-true --trainer.devices=1 "
    "--trainer.num_nodes=1 --trainer.max_steps=2 --trainer.accumulate=1 --trainer.val_every=0 "
    "--trainer.ckpt_every=2 --trainer.log_every=1 --data.batch_size=2 --data.max_len=160 "
    "--data.num_workers=0"
)


def section_lines() -> tuple[list[str], list[str]]:
    """``(variable names set, command lines)`` of the README section's bash blocks."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) : text.index("\n## ", text.index(SECTION) + 1)]
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.M | re.S)
    names, commands = [], []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if re.fullmatch(r"([A-Z_]+=\S+\s*)+", line):
                names += [w.split("=", 1)[0] for w in line.split()]
            elif line:
                commands.append(line)
    return names, commands


def tiny_run(root: Path) -> Path:
    """A run with data/ and units/ (what `make data units` leaves), and no adapted model yet."""
    from most.testing import write_speech_run

    run = root / "run"
    write_speech_run(run)
    shutil.rmtree(run / "adapt")
    return run


def shell(line: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["bash", "-c", line], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"{line}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def last_json(stdout: str) -> dict:
    """The last JSON object a command printed."""
    return json.loads(stdout[stdout.rindex("\n{") + 1 :] if "\n{" in stdout else stdout)


def test_the_section_sets_the_variables_the_test_fills():
    names, commands = section_lines()
    assert set(names) == VARIABLES
    assert [c.split("most ")[1].split()[0] for c in commands] == [
        "adapt", "adapt", "stage1", "stage1", "stage1",
    ]  # fmt: skip


def test_own_checkpoint_tutorial_runs_as_written(base_dirs, tmp_path):
    _, commands = section_lines()
    run = tiny_run(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MODEL": str(base_dirs["qwen3_moe"]),
        "RUN": str(run),
        "RECIPE": str(REPO / "recipes" / "qwen3-30b-a3b"),
        "MASTER": "127.0.0.1",
        "NODES": "1",
        "GPUS": "2",
        "NODE_RANK": "0",
    }
    adapt_dry, adapt, stage1_dry, stage1_lora, cluster = (
        c.replace("--run $RUN", f"--run $RUN {TINY_TRAINING}") if "most stage1" in c else c
        for c in commands
    )

    report = last_json(shell(adapt_dry, env, tmp_path).stdout)
    assert not (run / "adapt").exists(), "the adapt dry run wrote something"
    assert report["params_after"]["total"] > 0 and report["host_ram_gib"] > 0

    shell(adapt, env, tmp_path)
    adapted = AutoModelForCausalLM.from_pretrained(run / "adapt" / "hf")
    assert isinstance(adapted, MostForCausalLM)
    total = sum(p.numel() for p in adapted.parameters())

    report = last_json(shell(stage1_dry, env, tmp_path).stdout)
    assert report["params"]["total"] == total
    assert report["memory_gib_per_gpu"].keys() >= {"weights", "optimizer", "total"}
    assert report["host_ram_per_node"]["total_gib"] > 0

    shell(stage1_lora, env, tmp_path)
    single = run / "stage1" / "hf"
    trained = AutoModelForCausalLM.from_pretrained(single)
    new_rows = adapted.layout.text_vocab_size
    emb = trained.get_input_embeddings().weight
    base_emb = adapted.get_input_embeddings().weight
    assert torch_equal(emb[:new_rows], base_emb[:new_rows]), "LoRA moved the text rows"
    assert not torch_equal(emb[new_rows:], base_emb[new_rows:]), "the speech rows did not train"

    keys = tensor_names(single)
    shutil.rmtree(run / "stage1")
    shell(cluster, env, tmp_path)
    assert tensor_names(run / "stage1" / "hf") == keys
    metrics = json.loads((run / "stage1" / "metrics.json").read_text())
    assert metrics["steps"] == 2


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def tensor_names(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape over every safetensors file of an HF folder."""
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            out |= {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}  # noqa: SIM118
    return out


pytestmark = pytest.mark.timeout(900)
