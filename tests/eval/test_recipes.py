"""Every eval/judge/release recipe parses against its command's signature."""

from pathlib import Path

import pytest
from jsonargparse import ActionConfigFile, ArgumentParser

from most.eval.judges.ctc import judge
from most.stages.eval import evaluate
from most.stages.release import release

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"eval": evaluate, "judge": judge, "release": release}
RECIPES = sorted(p for name in COMMANDS for p in ROOT.glob(f"recipes/*/{name}.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_recipe_parses(recipe):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(COMMANDS[recipe.stem], as_group=False)
    cfg = parser.instantiate(parser.parse_args(["--config", str(recipe)]))
    assert cfg.run == Path("runs/demo")


def test_every_command_has_a_tiny_recipe():
    assert {p.stem for p in RECIPES if p.parent.name == "tiny"} == set(COMMANDS)
