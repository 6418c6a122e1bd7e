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

_HOOKED = "transformers"


def _register() -> None:
    # Their imports register MostConfig / MostForCausalLM and MultiScaleConfig / MostMultiScale.
    import most.modeling
    import most.multiscale  # noqa: F401


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs :func:`_register` right after ``transformers`` finishes importing."""

    def find_spec(self, name, path=None, target=None):
        if name != _HOOKED:
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
        _register()


if _HOOKED in sys.modules:
    _register()
elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterImport())
