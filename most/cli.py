"""The ``most`` command: one sub-command per pipeline stage, plus inference tools.

Every stage is a plain typed function ``stage(run: Path, <section>: <Dataclass>, ...)``; jsonargparse
turns its signature into the command line, so the recipe YAML and ``--section.key=value`` overrides
are checked against real arguments::

    most data   --config recipes/tiny/data.yaml   --run runs/demo --world.seed=3
    most units  --config recipes/tiny/units.yaml  --run runs/demo

Only the module of the chosen command is imported, so ``most data`` does not pay for transformers.
Errors the user can fix print as one line naming the key or file (exit 2); ``MOST_DEBUG=1`` shows
tracebacks. A command that returns ``False`` (``most summary``: a check missed its target) exits 1.
"""

from __future__ import annotations

import importlib
import inspect
import json
import linecache
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

#: command -> "module:function". The function's signature *is* the command's interface.
COMMANDS: dict[str, str] = {
    "data": "most.stages.data:data",
    "units": "most.stages.units:units",
    "judge": "most.stages.judge:judge",
    "base": "most.stages.base:base",
    "adapt": "most.stages.adapt:adapt",
    "stage1": "most.stages.stage1:stage1",
    "stage2": "most.stages.stage2:stage2",
    "stage3": "most.stages.stage3:stage3",
    "eval": "most.stages.eval:evaluate",
    "release": "most.stages.release:release",
    "curriculum": "most.stages.curriculum:curriculum",
    "ablation": "most.tools.ablation:ablation",
    "adapter_ablation": "most.tools.adapter_ablation:adapter_ablation",
    "curriculum_ablation": "most.tools.curriculum_ablation:curriculum_ablation",
    "curve": "most.tools.curve:curve",
    "facts": "most.tools.facts:facts",
    "summary": "most.tools.summary:summary",
    "asr": "most.tools.infer:asr",
    "tts": "most.tools.infer:tts",
    "chat": "most.tools.infer:chat",
    "music": "most.tools.music:music",
}


#: The package's folder: errors raised by code below it are the user's to fix (see main).
PACKAGE = Path(__file__).resolve().parent


class StageError(RuntimeError):
    """A failure the user can fix (bad input, missing stage output); printed as one line."""


def resolve(command: str) -> Callable:
    target = COMMANDS[command]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise StageError(f"`most {command}` is not available in this version") from None
        raise
    return getattr(module, func_name)


def usage() -> str:
    names = ", ".join(COMMANDS)
    return f"usage: most <command> [--config RECIPE.yaml] [--run DIR] [--section.key=value ...]\ncommands: {names}"


#: Shell conveniences jsonargparse has no syntax for: several files as plain words
#: (`most asr a.wav b.flac`) and short options (`most tts "hi" -o hi.wav`).
VARIADIC: dict[str, str] = {"asr": "files"}  # command -> its list-typed positional
SHORT: dict[str, str] = {"-o": "--output", "-m": "--model"}


def expand_argv(
    command: str,
    args: Sequence[str],
    bool_flags: frozenset[str] = frozenset(),
    positional: tuple[str, ...] = (),
) -> list[str]:
    """Rewrite shell-style arguments into the form the parser reads.

    ``--dry-run`` -> ``--dry_run`` (keys are Python names); a bare boolean flag such as ``--force``
    means ``--force=true``; a positional parameter may also be given by name (``--text hi``;
    ``positional`` lists them in signature order, the order the parser reads them in);
    ``most asr a.wav b.flac`` passes the files as one JSON list.
    """
    out: list[str] = []
    words: list[str] = []  # plain words gathered for a VARIADIC command
    named: dict[str, str] = {}  # positionals given by name, placed where the first one was
    at = None
    variadic = VARIADIC.get(command)
    i = 0
    while i < len(args):
        a = SHORT.get(args[i], args[i])
        following = args[i + 1] if i + 1 < len(args) else None
        i += 1
        if not a.startswith("--"):
            (words if variadic else out).append(a)
            continue
        key, eq, value = a[2:].partition("=")
        key = key.replace("-", "_")
        if key in positional:  # `--text hi` / `--files=[...]` -> the positional itself
            if not eq:
                value, i = following or "", i + 1
            named[key] = value
            at = len(out) if at is None else at
            continue
        if not eq and key in bool_flags and following not in ("true", "false"):
            eq, value = "=", "true"
        out.append(f"--{key}{eq}{value}")
        if not eq and following is not None:  # the option's value: never a variadic word
            out.append(following)
            i += 1
    # after any --config before them, so they override the recipe's values; in signature order,
    # whatever the order given (`--source A --run B` of `f(run, source)`)
    if named:
        out[at:at] = [named[k] for k in positional if k in named]
    if words:
        out.insert(0, json.dumps(words))  # the positional, as one JSON list
    return out


def build_parser(command: str, func: Callable):
    """The command's parser: ``--config`` YAML plus one option per (nested) argument of ``func``."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog=f"most {command}", exit_on_error=False, description=func.__doc__, allow_abbrev=False
    )
    parser.add_argument("--config", action=ActionConfigFile, help="recipe YAML")
    # Parameters without a default (e.g. `most asr FILE...`) are positional.
    parser.add_function_arguments(func, as_group=False, as_positional=True)
    return parser


def parse_command(command: str, args: Sequence[str]) -> dict:
    """``most <command> args`` parsed and validated (config dataclasses built), not run: the
    keyword arguments of the command's function. Bad keys/values raise ``ArgumentError``."""
    func = resolve(command)
    parser = build_parser(command, func)
    params = inspect.signature(func).parameters.values()
    bools = frozenset(p.name for p in params if p.annotation in (bool, "bool"))
    required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
    cfg = parser.parse_args(expand_argv(command, args, bools, required))
    kwargs = parser.instantiate(cfg).as_dict()
    kwargs.pop("config", None)
    return kwargs


def run_command(command: str, args: Sequence[str]) -> object:
    """Parse ``args`` for ``command`` and call it."""
    return resolve(command)(**parse_command(command, args))


def raised_by_us(e: BaseException) -> bool:
    """Whether ``e`` comes from a ``raise`` statement in this package (a check that names the
    problem), not from a library or a builtin deep inside it."""
    tb, last = e.__traceback__, None
    while tb is not None:
        last, tb = tb, tb.tb_next
    if last is None:
        return False
    path = Path(last.tb_frame.f_code.co_filename).resolve()
    line = linecache.getline(str(path), last.tb_lineno).strip()
    return path.is_relative_to(PACKAGE) and line.startswith("raise ")


def one_line(e: BaseException) -> str:
    """The error as one line; an OSError names its file and the system's reason."""
    if isinstance(e, OSError) and e.strerror:
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        return f"{where}: {e.strerror}" if where else e.strerror
    return " ".join(str(e).split())


def is_force(arg: str) -> bool:
    """``--force``, ``--force=true`` and the like: dropped from the command that resumes."""
    return arg.split("=", 1)[0] in ("--force",) and not arg.endswith("=false")


def main(argv: Sequence[str] | None = None) -> int:
    from argparse import ArgumentError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"most: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    try:
        result = run_command(command, rest)
    except (ArgumentError, StageError, ChildProcessError, OSError, ValueError) as e:
        # Recipe keys, config validation, stage input checks, stale outputs, a failed sub-process
        # stage, and the machine (disk full, read-only, permissions, missing files): one line.
        # A ValueError that a library or a builtin raised is a bug: its traceback is kept.
        if os.environ.get("MOST_DEBUG") or (isinstance(e, ValueError) and not raised_by_us(e)):
            raise
        print(f"most {command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = shlex.join(["most", command, *(a for a in rest if not is_force(a))])
        print(f"most {command}: interrupted; to resume, run: {again}", file=sys.stderr)
        return 130
    return 1 if result is False else 0


if __name__ == "__main__":
    sys.exit(main())
