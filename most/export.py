"""What a release folder holds besides the weights: the model card, vocoder settings, provenance,
checksums, and the reload check that must reproduce the report's ASR outputs in a fresh process."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from most.eval.summary import summarize
from most.generate import SpeechLM
from most.io import atomic_write_text, read_json
from most.run import UNIT_TOKENIZER_FILE, Run
from most.units import UnitTokenizer
from most.units.base import WEIGHTS_FILE

SUMS_FILE = "SHA256SUMS"
#: The release's copy of the eval report (report.json/.md, heat map, reload_check.json).
REPORT_DIR = "eval"


@dataclass(frozen=True)
class ModelCard:
    """Model-card fields (``--card.*``)."""

    name: str = "most-tiny-demo"
    license: str = "apache-2.0"
    intended_use: str = (
        "Research and teaching: a reproducible demonstration of modality-aware MoE speech-text "
        "modelling. The embedded default knows only a generated fictional world and synthetic "
        "espeak-ng voices; it is not a general-purpose ASR, TTS or assistant."
    )


def merge_lora(model, adapter: Path):
    """``model`` with the peft LoRA adapter in ``adapter`` merged into its weights (no peft left)."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: no LoRA adapter (adapter_config.json missing)")
    return PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()


def vocoder_settings(tokenizer: UnitTokenizer, units_dir: Path) -> dict:
    """``vocoder.json``: how the shipped unit tokenizer (saved in ``units_dir``) turns units into
    audio: its kind, rates and hash, then the decoder's settings (vocoder, mel settings,
    Griffin-Lim iterations) and the tensors it reads from ``weights``."""
    meta = read_json(units_dir / UNIT_TOKENIZER_FILE)
    head = {k: meta[k] for k in ("kind", "sample_rate", "frame_rate", "dedup", "hash")}
    if not tokenizer.has_decoder:
        return {"vocoder": None, **head}
    weights = f"{units_dir.name}/{WEIGHTS_FILE}"
    return {**head, **tokenizer.decoder_settings(), "weights": weights}


def copy_eval(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "report.md", "router_heatmap.png"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def provenance(run: Path) -> dict:
    out = {}
    for name, path in (
        ("data", Run(run).data_manifest),
        ("units", Run(run).units_manifest),
    ):
        if path.is_file():
            m = read_json(path)
            out[name] = {
                k: m[k]
                for k in ("kind", "seed", "content_hash", "hash", "entities", "facts")
                if k in m
            }
    return out


def model_card(card: ModelCard, report: dict, provenance: dict, lm: SpeechLM) -> str:
    """README.md: YAML front matter, then intended use, eval table, provenance, how to load."""
    metrics = report.get("metrics", {})
    yaml_meta = [
        "---",
        f"license: {card.license}",
        "library_name: transformers",
        "pipeline_tag: automatic-speech-recognition",
        "tags: [speech, text-to-speech, mixture-of-experts, most]",
        "model-index:",
        f"- name: {card.name}",
        "  results:",
        "  - task: {type: automatic-speech-recognition}",
        "    dataset: {name: RUN/data (see Data provenance), type: most-run}",
        "    metrics:",
    ]
    scalars = sorted(
        k for k, v in metrics.items() if isinstance(v, int | float) and not k.startswith("router.")
    )
    for key in scalars:
        kind = key.rsplit(".", 1)[-1]
        yaml_meta.append(f"    - {{name: {key}, type: {kind}, value: {metrics[key]:.6g}}}")
    lines = [*yaml_meta, "---", "", f"# {card.name}", "", "## Intended use", "", card.intended_use]
    lines += ["", "## Evaluation", "", "| check | value | target | pass |", "|---|---|---|---|"]
    for row in summarize(report):
        value = "-" if row.value is None else f"{row.value:.3f}"
        lines.append(f"| {row.name} | {value} | {row.target} | {row.passed} |")
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| `{k}` | {v:.4g} |" for k, v in metrics.items() if isinstance(v, int | float)]
    lines += ["", "Full report: `eval/report.md`; router heat map: `eval/router_heatmap.png`."]
    lines += ["", "## Data provenance", "", "```json", json.dumps(provenance, indent=2), "```"]
    lines += [
        "",
        f"Token layout hash `{lm.layout.hash}`, unit tokenizer hash `{lm.layout.unit_tokenizer_hash}`.",
        "",
        "## Licence",
        "",
        f"Weights and code: {card.license}. The embedded default's training data is generated "
        "(fictional text world, espeak-ng speech) and carries no third-party rights.",
        "",
        "## How to load",
        "",
        "```python",
        "import most  # registers the adapted model class with transformers",
        "from most.generate import SpeechLM",
        'lm = SpeechLM.load("PATH/TO/THIS/FOLDER")',
        "print(lm.asr([wav_16k_float32]))",
        "```",
        "",
        f"Checksums of every file: `{SUMS_FILE}`.",
    ]
    return "\n".join(lines) + "\n"


def reload_examples(run: Path, report: dict, unit_hash: str) -> list[dict]:
    """The report's ASR examples with their units: ``[{"id", "units", "hyp"}]``."""

    examples = [
        ex
        for split in report.get("details", {}).get("asr", {}).values()
        for ex in split["examples"]
    ][:3]
    if not examples:
        return []
    speech = Run(run).load_units("speech", unit_hash)
    units = {}
    for split in speech.values():
        rows = split.select_columns(["id", "units"])
        units.update(
            {
                i: u
                for i, u in zip(rows["id"], rows["units"], strict=True)
                if i in {e["id"] for e in examples}
            }
        )
    return [{"id": e["id"], "units": units[e["id"]], "hyp": e["hyp"]} for e in examples]


_RELOAD = """
import json, sys
import most  # noqa: F401
from most.generate import SpeechLM, Sampling
job = json.load(sys.stdin)
lm = SpeechLM.load(job["dir"], device=job["device"])
hyps = lm.asr_units([e["units"] for e in job["examples"]], Sampling(**job["sampling"]))
print(json.dumps(hyps))
"""


def verify_release(
    directory: Path, examples: list[dict], sampling: dict, device: str | None = None
) -> dict:
    """Reload ``directory`` in a fresh process and transcribe ``examples`` with the report's
    ``sampling`` settings (:class:`most.generate.Sampling` fields) on the device the report was
    made on (``cuda`` only where one is visible, else the CPU); raise if any output differs."""
    import torch

    if not examples:
        raise ValueError(
            "the report has no ASR examples to reproduce (eval sizes.asr = 0?); a release is only "
            "written with a reload check (or pass --source.verify=false)"
        )
    device = "cuda" if device == "cuda" and torch.cuda.is_available() else "cpu"
    job = {"dir": str(directory), "examples": examples, "sampling": sampling, "device": device}
    proc = subprocess.run(
        [sys.executable, "-c", _RELOAD],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"release reload failed:\n{proc.stderr[-2000:]}")
    hyps = json.loads(proc.stdout.strip().splitlines()[-1])
    mismatches = [
        {"id": e["id"], "report": e["hyp"], "reloaded": h}
        for e, h in zip(examples, hyps, strict=True)
        if e["hyp"] != h
    ]
    if mismatches:
        raise RuntimeError(
            f"released model does not reproduce the report's ASR outputs: {mismatches}"
        )
    return {"examples": len(examples), "identical": True}


def write_checksums(directory: Path) -> Path:
    """``SHA256SUMS`` in ``sha256sum`` format over every file below ``directory``."""
    lines = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != SUMS_FILE):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(directory).as_posix()}")
    return atomic_write_text(directory / SUMS_FILE, "\n".join(lines) + "\n")
