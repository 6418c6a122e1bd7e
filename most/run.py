"""The run contract: where every stage of a run folder reads and writes, and the loaders between them.

One run folder holds one pipeline; each stage owns one sub-folder::

    RUN/data/<name>/               DatasetDicts (speech, text, sqa, instructions, ...) + manifest.json
    RUN/units/tokenizer/           the unit tokenizer (unit_tokenizer.json + weights)
    RUN/units/<hash>/<name>/       unit-encoded DatasetDicts, keyed by the tokenizer's hash
    RUN/judge/                     the CTC judge (judge.json + weights)
    RUN/base/hf  RUN/adapt/hf  RUN/stage1/hf  RUN/stage2/hf    HF model folders
    RUN/eval/report.json           the evaluation report
    RUN/release/                   the released model folder

No other module spells a stage folder: they ask :class:`Run` for it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

#: The stages in pipeline order (each a make target, a recipe file and a folder of the run).
STAGES = ("data", "units", "judge", "base", "adapt", "stage1", "stage2", "eval", "release")
#: The file inside a unit tokenizer folder that names its kind, vocabulary and hash.
UNIT_TOKENIZER_FILE = "unit_tokenizer.json"
#: Which stage writes each HF model folder a later stage may start from.
MODEL_STAGES = ("base", "adapt", "stage1", "stage2")


@dataclass(frozen=True)
class Run:
    """One run folder. ``Run(path).units`` is ``path/units``, and so on for every stage."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def stage(self, name: str) -> Path:
        """The folder of stage ``name`` (one of :data:`STAGES`)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        return self.root / name

    # -- folders -----------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def units(self) -> Path:
        return self.root / "units"

    @property
    def judge(self) -> Path:
        return self.root / "judge"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def release(self) -> Path:
        return self.root / "release"

    def hf(self, stage: str) -> Path:
        """The HF model folder written by ``stage`` (base, adapt, stage1, stage2)."""
        if stage not in MODEL_STAGES:
            raise ValueError(f"stage {stage!r} writes no HF model; model stages: {MODEL_STAGES}")
        return self.root / stage / "hf"

    # -- files -------------------------------------------------------------------------------
    def dataset(self, name: str) -> Path:
        """``RUN/data/<name>`` (speech, text, sqa, instructions, ...)."""
        return self.data / name

    @property
    def data_manifest(self) -> Path:
        return self.data / "manifest.json"

    @property
    def unit_tokenizer(self) -> Path:
        """The folder of the unit tokenizer the ``units`` stage fitted or loaded."""
        return self.units / "tokenizer"

    @property
    def units_manifest(self) -> Path:
        return self.units / "manifest.json"

    def unit_dataset(self, unit_hash: str, name: str) -> Path:
        return self.units / unit_hash / name

    @property
    def judge_file(self) -> Path:
        return self.judge / "judge.json"

    @property
    def report(self) -> Path:
        return self.eval / "report.json"

    @property
    def timings(self) -> Path:
        """Per-stage wall times the demo appends to (``stage<TAB>seconds``)."""
        return self.root / "timings.tsv"

    # -- loaders -----------------------------------------------------------------------------
    def load_data(self, name: str) -> datasets.DatasetDict:
        """``RUN/data/<name>`` as a DatasetDict; a missing one names the command that makes it."""
        import datasets

        directory = self.dataset(name)
        if not directory.is_dir():
            raise FileNotFoundError(
                f"{directory}: missing; run `most data --run {self.root}` first"
            )
        return datasets.load_from_disk(str(directory))

    def has_data(self, name: str) -> bool:
        return self.dataset(name).is_dir()

    def unit_info(self) -> dict[str, Any]:
        """``{"kind", "vocab_size", "hash", "frame_rate", ...}`` of the run's unit tokenizer."""
        path = self.unit_tokenizer / UNIT_TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no unit tokenizer; run `most units --run {self.root}` first"
            )
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def load_units(self, name: str, expected_hash: str | None = None) -> datasets.DatasetDict:
        """``RUN/units/<hash>/<name>`` of the run's current unit tokenizer.

        ``expected_hash`` (e.g. ``TokenLayout.unit_tokenizer_hash``) must match the tokenizer that
        encoded the data, else ``ValueError``: a model never trains or evaluates on foreign ids.
        """
        import datasets

        h = self.unit_info()["hash"]
        try:
            manifest = json.loads(self.units_manifest.read_text())
        except FileNotFoundError:
            manifest = {}
        if manifest.get("hash") != h or not manifest.get("complete"):
            raise ValueError(
                f"{self.units}: units are not complete for tokenizer {h}; run `most units`"
            )
        if expected_hash is not None and expected_hash != h:
            raise ValueError(
                f"{self.units}: units were made by tokenizer {h}, expected {expected_hash}; "
                "re-run `most units` with the matching tokenizer or `most adapt`"
            )
        path = self.unit_dataset(h, name)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no units for dataset {name!r}")
        return datasets.load_from_disk(str(path))
