"""``sizes.tasks`` enters the eval fingerprint only for a model trained on UniAudio's tasks, so the
reports of every other run stay up to date."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from most.adapt import LayoutSection, SourceSection
from most.io import atomic_write_json
from most.layout import DEFAULT_SPECIALS, UNIAUDIO_SPECIALS
from most.run import Run
from most.stages.adapt import adapt
from most.stages.eval import EvalSettings, Judges, Models, eval_fingerprint
from most.testing.runs import N_UNITS, UNIT_HASH


def _keys(run: Path, model: Path) -> str:
    return json.dumps(
        eval_fingerprint(run, EvalSettings(models=Models(model=model), judges=Judges(names=[])))[
            "settings"
        ]
    )


def test_sizes_tasks_only_for_models_trained_on_the_tasks(speech_run: Path) -> None:
    R = Run(speech_run)
    assert "sizes.tasks" not in _keys(speech_run, R.hf("adapt"))
    layout = LayoutSection(
        n_units=N_UNITS,
        unit_tokenizer_hash=UNIT_HASH,
        specials=[*DEFAULT_SPECIALS, *UNIAUDIO_SPECIALS],
    )
    with contextlib.redirect_stdout(io.StringIO()):
        hf = adapt(
            run=speech_run, source=SourceSection(model=R.hf("base")), layout=layout, force=True
        )
    assert "sizes.tasks" not in _keys(speech_run, hf)  # markers, but not trained on the tasks yet
    atomic_write_json(hf.parent / "metrics.json", {"ratios": {"asr": 0.5, "se": 0.1}})
    assert "sizes.tasks" in _keys(speech_run, hf)
