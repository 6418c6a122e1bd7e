"""The run contract: where every stage of a run folder reads and writes, and the loaders between them.

One run folder holds one pipeline; each stage owns one sub-folder::

    RUN/data/<name>/               DatasetDicts (speech, text, sqa, instructions, ...) + manifest.json
    RUN/units/tokenizer/           the unit tokenizer (unit_tokenizer.json + weights)
    RUN/units/<hash>/<name>/       unit-encoded DatasetDicts, keyed by the tokenizer's hash
    RUN/units/music/               the music tokenizer and music units (runs with music only)
    RUN/judge/                     the CTC judge (judge.json + weights)
    RUN/base/hf  RUN/adapt/hf  RUN/stage1/hf  RUN/stage2/hf  RUN/stage3/hf    HF model folders
    RUN/stage3/compare.json        stage 3's model against stage 2's, evaluated alike
    RUN/eval/report.json           the evaluation report
    RUN/release/                   the released model folder

No other module spells a stage folder: they ask :class:`Run` for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from most.io import atomic_write_json

if TYPE_CHECKING:
    import datasets

#: The stages in pipeline order (each a make target, a recipe file and a folder of the run).
STAGES = (
    "data", "units", "judge", "base", "adapt", "stage1", "stage2", "stage3", "eval", "release",
)  # fmt: skip
#: The file inside a unit tokenizer folder that names its kind, vocabulary and hash.
UNIT_TOKENIZER_FILE = "unit_tokenizer.json"
#: Which stage writes each HF model folder a later stage may start from.
MODEL_STAGES = ("base", "adapt", "stage1", "stage2", "stage3")


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
        """The HF model folder written by ``stage`` (base, adapt, stage1, stage2, stage3)."""
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

    @property
    def music_units(self) -> Path:
        """``RUN/units/music``: the music tokenizer (``tokenizer/``) and its units (``<hash>/``),
        made by ``most units`` when the run has ``RUN/data/music``."""
        return self.units / "music"

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

    # -- provenance --------------------------------------------------------------------------
    def record_path(self, stage: str) -> Path:
        return self.stage(stage) / FINGERPRINT_FILE

    def recorded(self, stage: str) -> dict[str, Any] | None:
        """The fingerprint stage ``stage`` recorded for its outputs (None: none yet)."""
        path = self.record_path(stage)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None

    def output_id(self, stage: str) -> str:
        """The fingerprint of stage ``stage``'s outputs, for the stages that read them (a folder
        written before fingerprints existed: a hash of its files' names, sizes and times)."""
        record = self.recorded(stage)
        if record is not None:
            return str(record["id"])
        if not self.stage(stage).is_dir():
            raise FileNotFoundError(
                f"{self.stage(stage)}: missing; run `most {stage} --run {self.root}` first"
            )
        return folder_id(self.stage(stage))

    def check(
        self,
        stage: str,
        current: dict[str, Any],
        force: bool,
        ignore: tuple[str, ...] = (),
    ) -> bool:
        """Whether stage ``stage``'s recorded outputs match ``current`` (a :func:`fingerprint`):
        True = up to date. Outputs made from other settings or inputs raise :class:`StaleOutput`
        naming what changed, unless ``force`` (then False: redo). ``ignore`` lists settings that
        may differ (step budgets on resume, logging)."""
        old = self.recorded(stage)
        if old is None:
            return False
        diff = changes(old, current, ignore)
        if not diff:
            return True
        if force:
            return False
        raise StaleOutput(
            f"{self.stage(stage)} was made from other settings or inputs ({'; '.join(diff)}); "
            f"pass --force to redo {stage} (its outputs are replaced)"
        )

    def record(self, stage: str, current: dict[str, Any], **extra: Any) -> Path:
        """Write ``current`` (plus ``extra`` fields) as stage ``stage``'s fingerprint."""
        return atomic_write_json(self.record_path(stage), {**current, **extra})

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

    def unit_codebooks(self) -> int:
        """Codes a frame of the run's units has (1 for single-codebook kinds)."""
        return int(self.unit_info().get("n_codebooks", 1))

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


# -- provenance ---------------------------------------------------------------------------------
#: Beside every stage's outputs: the settings and input fingerprints they were made from.
FINGERPRINT_FILE = "fingerprint.json"


class StaleOutput(ValueError):
    """A stage's existing outputs were made from other settings or inputs (one line: what changed)."""


def flatten(settings: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts / dataclasses -> ``{"section.key": value}`` with JSON-safe leaves."""
    if is_dataclass(settings) and not isinstance(settings, type):
        settings = asdict(settings)
    if isinstance(settings, dict):
        out: dict[str, Any] = {}
        for k, v in settings.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if not isinstance(settings, str | int | float | bool | type(None)):
        settings = json.loads(json.dumps(settings, default=str))  # tuples, paths, ... as JSON
    return {prefix.rstrip(".") if prefix else "": settings}


def fingerprint(settings: dict[str, Any], inputs: dict[str, str]) -> dict[str, Any]:
    """``{"id", "settings", "inputs"}``: ``id`` hashes the flattened settings and the inputs' ids."""
    flat = flatten(settings)
    blob = json.dumps({"settings": flat, "inputs": inputs}, sort_keys=True, default=str)
    return {
        "id": hashlib.sha256(blob.encode()).hexdigest()[:16],
        "settings": flat,
        "inputs": inputs,
    }


def changes(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """What differs between two fingerprints, as ``"key old -> new"`` phrases (``ignore``: setting
    keys, or key prefixes ending in ``.``, that may differ)."""

    def skip(key: str) -> bool:
        return any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignore)

    out = []
    for kind in ("inputs", "settings"):
        a, b = old.get(kind, {}), new.get(kind, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key) and not (kind == "settings" and skip(key)):
                label = f"input {key}" if kind == "inputs" else key
                out.append(f"{label} {a.get(key, '(none)')} -> {b.get(key, '(none)')}")
    return out


def folder_id(path: Path) -> str:
    """A model or data folder's fingerprint: its stage's record when a stage of ours wrote it
    (``RUN/<stage>/hf``), else a hash of its files' names, sizes and modification times."""
    record = path.parent / FINGERPRINT_FILE if path.name == "hf" else path / FINGERPRINT_FILE
    if record.is_file():
        return str(json.loads(record.read_text())["id"])
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
