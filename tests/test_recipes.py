"""Every recipe parses against the function it configures: ``recipes/<family>/<command>.yaml`` is read
by the parser of ``most <command>`` (resolved through :data:`most.cli.COMMANDS`), so a key that is
not a real argument, or a value its dataclass's validation refuses, fails here."""

from __future__ import annotations

import inspect
from argparse import ArgumentError
from pathlib import Path

import pytest
import yaml

from most.cli import COMMANDS, parse_command, resolve

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(REPO.glob("recipes/*/*.yaml"))
STAGES = (
    "data", "units", "judge", "base", "adapt", "stage1", "stage2", "stage3", "eval", "release",
)  # fmt: skip


def parse(recipe: Path):
    """The recipe's arguments as ``most <stem> --config RECIPE`` gets them, dataclasses built."""
    command = recipe.stem
    assert command in COMMANDS, f"{recipe}: no `most {command}` command"
    required = [p.name for p in inspect.signature(resolve(command)).parameters.values()
                if p.default is p.empty]  # fmt: skip
    given = [w for name in sorted(required) for w in (f"--{name}", f"runs/{name}")]  # e.g. --run
    return parse_command(command, ["--config", str(recipe), *given])


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses(recipe: Path) -> None:
    parse(recipe)


def test_the_recipes_exist() -> None:
    """The tiny demo has a recipe for every stage (and the ablation); the real families theirs."""
    names = {f"{p.parent.name}/{p.stem}" for p in RECIPES}
    assert {f"tiny/{stage}" for stage in (*STAGES, "ablation")} <= names
    assert {
        "librispeech/data",
        "librispeech/units",
        "commonvoice/data",
        "deepseek-v2-lite/adapt",
        "deepseek-v2-lite/stage1",
        "deepseek-v2-lite/stage2",
        "qwen3-30b-a3b/adapt",
        "qwen3-30b-a3b/stage1",
        "qwen3-30b-a3b/stage2",
    } <= names


@pytest.mark.parametrize("section", ["trainer", None])
def test_an_unknown_key_fails(section: str | None, tmp_path: Path) -> None:
    """The check above is strict: one unknown key, nested or at the top, and the recipe fails."""
    recipe = yaml.safe_load((REPO / "recipes" / "tiny" / "stage1.yaml").read_text())
    (recipe[section] if section else recipe)["max_stepz"] = 3
    bad = tmp_path / "stage1.yaml"
    bad.write_text(yaml.safe_dump(recipe))
    with pytest.raises(ArgumentError, match="max_stepz"):
        parse(bad)
