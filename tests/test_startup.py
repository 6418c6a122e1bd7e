"""Commands that need no model do not import one: `most --help`, `most data`, `most units`."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("transformers", "lightning", "peft", "trl")


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "code",
    [
        "import most.cli",
        "import most.stages.data",
        "import most.stages.units",
        "from most.cli import resolve, build_parser; build_parser('data', resolve('data'))",
    ],
)
def test_no_model_libraries_at_start(code: str) -> None:
    assert loaded_after(code) == set()


def test_import_most_registers_the_model_once_transformers_loads() -> None:
    code = (
        "import most\nimport sys\nassert 'transformers' not in sys.modules\n"
        "from transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('most')).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "MostConfig"


@pytest.mark.parametrize(
    "first",
    ["from most.modeling import MostConfig", "import most.multiscale", "import transformers"],
)
def test_both_models_register_whatever_is_imported_first(first: str) -> None:
    code = (
        f"{first}\nimport most\nfrom transformers import AutoConfig\n"
        "print(type(AutoConfig.for_model('most')).__name__,"
        " type(AutoConfig.for_model('most_multiscale')).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1]
    assert out.stdout.split() == ["MostConfig", "MultiScaleConfig"]
