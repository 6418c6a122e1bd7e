"""Every units recipe parses against the stage signature (keys are real arguments)."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonargparse import ActionConfigFile, ArgumentParser

from most.stages.units import TokenizerConfig, units

RECIPES = sorted(Path(__file__).resolve().parents[2].glob("recipes/*/units.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_recipe_parses(recipe):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_function_arguments(units)
    cfg = parser.instantiate_classes(parser.parse_args(["--config", str(recipe)]))
    assert isinstance(cfg.tokenizer, TokenizerConfig)
    assert cfg.tokenizer.k >= 2


def test_there_are_recipes():
    assert {p.parent.name for p in RECIPES} >= {"tiny", "librispeech"}
