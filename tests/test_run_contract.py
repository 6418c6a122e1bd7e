"""The run contract: only most/run.py spells a stage folder of a run, and its paths are the layout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import most
from most.run import STAGES, UNIT_TOKENIZER_FILE, Run

ROOT = Path(most.__file__).parent
#: A stage name used as a path component: `x / "units"`, `"units/..."`, `f"{run}/units"`.
STAGE = "|".join(STAGES)
PATHLIKE = re.compile(rf"""/\s*["']({STAGE})["']|["']({STAGE})/|\}}/({STAGE})\b""")


def spelled_stage_paths(text: str) -> list[str]:
    return [m.group(0) for m in PATHLIKE.finditer(text)]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in [*ROOT.rglob("*.py"), *(ROOT.parent / "benchmarks").glob("*.py")]
           if p.name != "run.py" or p.parent != ROOT),
    ids=lambda p: str(p.relative_to(ROOT.parent)),
)  # fmt: skip
def test_no_module_but_run_spells_a_stage_folder(path: Path) -> None:
    found = spelled_stage_paths(path.read_text())
    assert not found, f"{path}: stage folders spelled by hand {found}; ask most.run.Run instead"


def test_pattern_catches_the_ways_a_path_is_spelled() -> None:
    assert spelled_stage_paths('run / "units" / "tokenizer"') == ['/ "units"']
    assert spelled_stage_paths("Path('stage1/hf')") == ["'stage1/"]
    assert spelled_stage_paths('f"{run}/judge/judge.json"') == ["}/judge"]
    assert not spelled_stage_paths('row["units"]; select_columns(["id", "units"])')


def test_layout(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert [run.stage(s) for s in STAGES] == [tmp_path / s for s in STAGES]
    assert run.hf("stage1") == tmp_path / "stage1" / "hf"
    assert run.unit_tokenizer / UNIT_TOKENIZER_FILE == (
        tmp_path / "units" / "tokenizer" / "unit_tokenizer.json"
    )
    assert run.report == tmp_path / "eval" / "report.json"
    with pytest.raises(ValueError, match="writes no HF model"):
        run.hf("eval")
    with pytest.raises(ValueError, match="unknown stage"):
        run.stage("stage9")


def test_loaders_name_the_missing_stage(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"data/speech: missing; run `most data"):
        run.load_data("speech")
    with pytest.raises(FileNotFoundError, match="no unit tokenizer; run `most units"):
        run.unit_info()
    run.unit_tokenizer.mkdir(parents=True)
    (run.unit_tokenizer / UNIT_TOKENIZER_FILE).write_text('{"hash": "ab", "vocab_size": 4}')
    assert run.unit_info()["vocab_size"] == 4
    with pytest.raises(ValueError, match="units are not complete for tokenizer ab"):
        run.load_units("speech")
    run.units_manifest.write_text('{"hash": "ab", "complete": true}')
    with pytest.raises(ValueError, match="made by tokenizer ab, expected cd"):
        run.load_units("speech", "cd")
    with pytest.raises(FileNotFoundError, match="no units for dataset 'speech'"):
        run.load_units("speech", "ab")
    (run.unit_tokenizer / UNIT_TOKENIZER_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        run.unit_info()
