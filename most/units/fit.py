"""The run's unit tokenizer: reuse ``RUN/units/tokenizer`` if it was made as asked, else fit or load.

A fitted tokenizer's fitting settings (which audio, how long its encoder trained: what the saved
tokenizer does not hold) go to :data:`FIT_FILE` beside it, so a later run with other values is
refused instead of silently reusing units made otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path

from most.io import atomic_dir, atomic_write_json, read_json
from most.run import Run
from most.units.base import TOKENIZER_FILE, UnitTokenizer
from most.units.kinds import TokenizerConfig, load_tokenizer

#: Beside a fitted tokenizer: what it was fitted with (:meth:`TokenizerConfig.fit_settings`).
FIT_FILE = "fit.json"
#: Fitting settings not in every ``fit.json`` (added after the first files, or since removed):
#: a file or a config without one was fitted with this value.
FIT_DEFAULTS = {
    "encoder_short": False,
    "encoder_warp": 0.0,
    "encoder_batch_frames": 4000,
    "encoder_lr": 3e-3,
    "encoder_precision": "32-true",
}
REFIT = "pass --force=true to refit (old units stay under their hash)"


def prepare_tokenizer(cfg: TokenizerConfig, run: Run, force: bool = False) -> UnitTokenizer:
    """Load ``RUN/units/tokenizer`` if it matches ``cfg``; else load ``cfg.path`` or fit one on
    ``RUN/data/speech`` and save it there."""
    tok_dir = run.unit_tokenizer
    if (tok_dir / TOKENIZER_FILE).is_file() and not force:
        tok = load_tokenizer(tok_dir)
        if cfg.path is None:
            check_fitted_with(cfg, tok, tok_dir)
        return tok
    if cfg.path is not None:
        tok = load_tokenizer(cfg.path)
    else:
        t0 = time.perf_counter()
        tok, audio = cfg.fit(run.load_data("speech"))
        print(
            f"most units: fitted {tok.kind} K={tok.vocab_size} from {audio.seconds:.0f}s of audio "
            f"in {time.perf_counter() - t0:.1f}s -> {tok.hash}"
        )
    with atomic_dir(tok_dir) as tmp:
        tok.save(tmp)
        if cfg.path is None:
            atomic_write_json(tmp / FIT_FILE, cfg.fit_settings())
    return tok


def check_fitted_with(cfg: TokenizerConfig, tok: UnitTokenizer, tok_dir: Path) -> None:
    """Raise ``ValueError`` when the tokenizer saved in ``tok_dir`` was made with other settings
    than ``cfg``: those it stores (kind, k, layer, ...) and, where there is a ``fit.json``
    (tokenizers from before that file have none), those kept there."""
    changed = cfg.differences(tok)
    if changed:
        raise ValueError(f"{tok_dir} was made with other settings ({_changes(changed)}); {REFIT}")
    if (tok_dir / FIT_FILE).is_file():
        saved = {**FIT_DEFAULTS, **read_json(tok_dir / FIT_FILE)}
        wanted = {**FIT_DEFAULTS, **cfg.fit_settings()}
        changed = {
            k: (saved.get(k), wanted.get(k))
            for k in dict.fromkeys([*cfg.fit_settings(), *wanted, *saved])
            if saved.get(k) != wanted.get(k)
        }
        if changed:
            raise ValueError(
                f"{tok_dir} was fitted with other settings ({_changes(changed)}); {REFIT}"
            )


def _changes(changed: dict) -> str:
    return ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
