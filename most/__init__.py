"""most: turn a pretrained Mixture-of-Experts LLM into a speech-text model.

``import most`` makes released and adapted folders loadable with plain transformers::

    import most
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained("runs/demo/release")

The model class is registered with transformers' Auto classes as soon as transformers is imported
(now, if it already is), so commands that never touch a model (``most data``, ``most --help``) do
not pay for importing it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys


def _register_model() -> None:
    import most.modeling  # noqa: F401  (registers MostConfig / MostForCausalLM)


def _register_multiscale() -> None:
    import most.multiscale  # noqa: F401  (registers MultiScaleConfig / MostMultiScale)


class _AfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs ``action`` right after the module ``name`` finishes importing."""

    def __init__(self, name: str, action) -> None:
        self.name, self.action = name, action

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # find the real spec once, then step aside for good
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        self.action()


def _after_import(name: str, action) -> None:
    """``action()`` now if ``name`` is imported, else once its import finishes."""
    if name in sys.modules:
        action()
    elif not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, action))


# The multi-scale model imports most.modeling, so it registers only once most.modeling has fully
# imported: ``from most.modeling import ...`` as a script's first line imports transformers
# half-way through most.modeling.
_after_import("most.modeling", _register_multiscale)
_after_import("transformers", _register_model)
