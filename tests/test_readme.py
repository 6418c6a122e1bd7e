"""Every command the README (and docs/) tells a user to run parses against that command's signature.

Parse only, never run: a ``most <command> ...`` line (or a ``make <stage> ... ARGS=...`` line, read
as the ``most`` call the Makefile makes) goes through the same parser and config validation as
``most`` itself (:mod:`most.cli`), so a recipe with a wrong key (``--source.path`` for
``--source.model``) or a bad value fails here instead of on a user's machine. Only ``bash``/``sh``
code blocks are read: a ``console`` block shows output, such as an error on purpose.
"""

from __future__ import annotations

import re
import shlex
from argparse import ArgumentError
from pathlib import Path

import pytest

from most.cli import COMMANDS, StageError, parse_command

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Make targets that run one stage as `most <target> --config RECIPE/<target>.yaml --run RUN`.
STAGES = (
    "data", "units", "judge", "base", "adapt", "stage1", "stage2", "stage3", "eval", "release",
)  # fmt: skip
#: What `make demo` runs (stage 3 is a target of its own, not in the demo).
DEMO = tuple(s for s in STAGES if s != "stage3")
#: What `most` reports as a user's error (see most.cli.main).
USER_ERRORS = (ArgumentError, StageError, ValueError, FileNotFoundError)
ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")  # `MASTER_ADDR=node0 most stage1 ...`


def shell_lines(markdown: str) -> list[str]:
    """Command lines of the ``bash``/``sh`` code blocks, backslash continuations joined, with the
    shell variables a line of plain assignments sets (``RUN=runs/q3 ...``) expanded in the lines of
    the document after it."""
    blocks = re.findall(r"^```(?:bash|sh)\n(.*?)^```", markdown, flags=re.M | re.S)
    lines: list[str] = []
    variables: dict[str, str] = {}
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and all(ENV.match(w) for w in words):
                variables.update(w.split("=", 1) for w in words)
                continue
            for name, value in variables.items():
                line = re.sub(rf"\${name}\b", value, line)
            if line.strip():
                lines.append(line.strip())
    return lines


def calls(line: str) -> list[tuple[str, list[str]]]:
    """``(command, args)`` of each ``most`` call ``line`` makes; ``[]`` for other lines."""
    words = shlex.split(line, comments=True)
    while words and ENV.match(words[0]):
        words = words[1:]
    if len(words) > 1 and words[0] == "most":
        return [(words[1], words[2:])]
    if not words or words[0] != "make":
        return []
    assigned = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    targets = [w for w in words[1:] if "=" not in w]
    stages = DEMO if "demo" in targets else [t for t in targets if t in STAGES]
    recipe, run = assigned.get("RECIPE", "recipes/tiny"), assigned.get("RUN", "runs/demo")
    out = []
    for stage in stages:
        config = Path(recipe) / f"{stage}.yaml"
        if "demo" in targets and not (REPO / config).is_file():
            continue  # the demo skips a stage its family has no recipe for
        extra = shlex.split(assigned.get("ARGS", "")) + shlex.split(
            assigned.get(f"ARGS_{stage}", "")
        )
        out.append((stage, ["--config", str(config), "--run", run, *extra]))
    return out


CALLS = [
    (f"{doc.name}: {line}", c)
    for doc in DOCS
    for line in shell_lines(doc.read_text())
    for c in calls(line)
]


def test_the_readme_has_commands_to_check():
    assert len(CALLS) >= 15
    assert {command for _, (command, _) in CALLS} >= {"data", "adapt", "stage1", "asr"}


@pytest.mark.parametrize(
    ("line", "call"), CALLS, ids=[f"{c[0]}:{i}" for i, (_, c) in enumerate(CALLS)]
)
def test_readme_command_parses(line, call, monkeypatch):
    command, args = call
    assert command in COMMANDS, f"`most {command}` is no command: {line}"
    monkeypatch.chdir(REPO)  # recipes are named relative to the checkout
    try:
        parse_command(command, args)
    except USER_ERRORS as e:
        pytest.fail(f"does not parse as `most {command}`:\n  {line}\n  {e}")


@pytest.mark.parametrize(
    "line",
    [
        "most adapt --source.path=/models/Qwen3-30B-A3B --run runs/q3",
        "make stage1 ARGS='--optim.label_smoothing=0.1'",
        "MASTER_ADDR=node0 most stage1 --trainer.num_nodes=two",
    ],
)
def test_a_wrong_key_or_value_fails(line, monkeypatch):
    monkeypatch.chdir(REPO)
    (command, args), *_ = calls(line)
    with pytest.raises(USER_ERRORS):
        parse_command(command, args)
