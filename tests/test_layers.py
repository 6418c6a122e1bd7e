"""The package's import graph: imports only run downward through the layers, with no circles.

Layers, lowest first (a module may import a lower layer or its own sub-package; core modules may
import each other)::

    0 core      most (package), io, audio, mel, layout, run, progress, threads, cpu, text, text_tokenizer,
                weights, noise, dropout
    1 blocks    corpora, data, moe, ctc
    2 units     units
    3 model     modeling
    4 use       adapt, train, generate, multiscale (a model built on the adapted one)
    5 eval      eval
    6 export    export (model card, checksums, reload check of a release)
    7 stages    stages
    8 tools     tools, testing, cli

Imports inside functions count like top-level ones (the AST is walked whole); ``TYPE_CHECKING``
blocks count too, so a type hint cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import most

ROOT = Path(most.__file__).parent
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        [
            "io",
            "audio",
            "mel",
            "layout",
            "run",
            "progress",
            "threads",
            "cpu",
            "text",
            "text_tokenizer",
            "weights",
            "noise",
            "dropout",
        ],
        0,
    ),
    **dict.fromkeys(["corpora", "data", "moe", "ctc"], 1),
    "units": 2,
    "modeling": 3,
    **dict.fromkeys(["adapt", "train", "generate", "multiscale"], 4),
    "eval": 5,
    "export": 6,
    "stages": 7,
    **dict.fromkeys(["tools", "testing", "cli"], 8),
}

#: Deliberate edges that break the layering, each with its reason.
ALLOWED = {
    ("most", "most.modeling"): "`import most` registers the model class once transformers loads",
    ("most", "most.multiscale"): "`import most` registers the multi-scale model class too",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, package: str) -> set[str]:
    """Every ``most.*`` module ``source`` (a module of ``package``) imports, anywhere in the file;
    relative imports are resolved against ``package``."""
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from most.units import base` may name a sub-module: count the one that exists
            for a in node.names:
                sub = f"{base}.{a.name}"
                is_module = (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    ROOT.parent / Path(*sub.split("."))
                ).is_dir()
                found.add(sub if is_module else base)
    return {m for m in found if m == "most" or m.startswith("most.")}


def top(module: str) -> str:
    """``most.units.base`` -> ``units``; ``most`` -> ``most``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "most"


def layer(module: str) -> int:
    name = top(module)
    return 0 if name == "most" else LAYERS[name]


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
GRAPH = {
    m: imports(p.read_text(), m if p.name == "__init__.py" else m.rpartition(".")[0])
    for m, p in MODULES.items()
}


def test_every_module_has_a_layer() -> None:
    missing = sorted({top(m) for m in MODULES} - set(LAYERS) - {"most"})
    assert not missing, f"add these to LAYERS (and DESIGN's list): {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_downward(module: str) -> None:
    upward = [
        dep
        for dep in sorted(GRAPH[module])
        if dep != "most"
        and (module, dep) not in ALLOWED
        and top(dep) != top(module)
        and not layer(dep) == layer(module) == 0  # core modules may use each other
        and layer(dep) >= layer(module)
    ]
    assert not upward, f"{module} (layer {layer(module)}) imports upward or sideways: " + ", ".join(
        f"{d} (layer {layer(d)})" for d in upward
    )


def test_no_circles() -> None:
    """No module reaches itself through imports (Tarjan's strongly connected components)."""
    edges = {m: {d for d in deps if d in MODULES and d != m} for m, deps in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_checker_sees_upward_imports() -> None:
    """An import inside a function, a relative import and ``from pkg import module`` are all seen."""
    source = (
        "def f():\n    from most.stages.eval import evaluate\n"
        "from ..eval import metrics\nfrom most.units import base\n"
    )
    found = imports(source, "most.train")
    assert {"most.stages.eval", "most.eval.metrics", "most.units.base"} <= found


def test_module_size() -> None:
    """One purpose per module: none passes ~400 lines."""
    big = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 420}
    assert not big, f"modules over 420 lines: {big}"
