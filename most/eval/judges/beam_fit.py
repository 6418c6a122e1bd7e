"""Fitting the CTC judge's beam search: its word LM and the settings that read ``dev`` best.

The bigram (:mod:`most.eval.judges.wordlm`) is trained on the texts given (the judge stage gives the
speech training transcripts, never the text corpus where held-out facts are written); each
candidate :class:`~most.eval.judges.beam.BeamSettings` decodes the ``dev`` utterances once and the
lowest WER wins (the first of equals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from most.eval.judges.beam import BeamSettings, LexiconBeam
from most.eval.judges.ctc import LM_FILE, CTCJudge
from most.eval.judges.lexicon import words_of
from most.eval.judges.wordlm import bigram_arpa
from most.eval.metrics import wer
from most.io import atomic_write_text
from most.progress import progress


def fit_beam(
    out_dir: Path,
    scorer: CTCJudge,
    lm_texts: Sequence[str],
    dev: tuple[list[np.ndarray], list[str]] | None,
    grid: Sequence[BeamSettings],
    discount: float = 0.75,
) -> dict:
    """Write ``out_dir/lm.arpa`` (a bigram on ``lm_texts`` over ``scorer``'s lexicon), pick the
    settings of ``grid`` with the lowest WER on ``dev`` (the first without ``dev``) and give
    ``scorer`` that beam.

    ``dev``: audio ``(n_i,)`` float32 and reference texts. Returns ``{"settings", "dev_trials",
    "lm_sentences"}``.
    """
    words = scorer.lexicon.words
    sentences = [words_of(t) for t in lm_texts]
    atomic_write_text(out_dir / LM_FILE, bigram_arpa(sentences, words, discount))
    trials = []
    if dev is not None and len(grid) > 1:
        rows = scorer.logprobs(dev[0])
        best_wer = float("inf")
        with progress() as bar:
            task = bar.add_task("judge: beam settings on dev", total=len(grid))
            for settings in grid:
                beam = LexiconBeam(words, out_dir / LM_FILE, settings)
                trials.append(
                    asdict(settings) | {"wer": wer(dev[1], [beam.decode(r) for r in rows])}
                )
                if trials[-1]["wer"] < best_wer:  # first of equals
                    best_wer, scorer.beam = trials[-1]["wer"], beam
                bar.advance(task)
    else:
        scorer.beam = LexiconBeam(words, out_dir / LM_FILE, grid[0])
    return {
        "settings": asdict(scorer.beam.settings),
        "dev_trials": trials,
        "lm_sentences": len(sentences),
    }
