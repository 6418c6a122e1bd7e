"""WER and CER: corpus-level error rates (total edits / total reference words or characters) with
jiwer, after :func:`most.text.normalize` on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

from most.text import normalize


def _pairs(refs: Sequence[str], hyps: Sequence[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(refs, hyps, strict=True)]
    kept = [(r, h) for r, h in pairs if r]  # an empty reference has no defined error rate
    if not kept:
        raise ValueError("every reference is empty after normalisation")
    return [r for r, _ in kept], [h for _, h in kept]


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate after normalisation (references empty after normalising are skipped)."""
    r, h = _pairs(refs, hyps)
    return float(jiwer.wer(r, h))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate after normalisation."""
    r, h = _pairs(refs, hyps)
    return float(jiwer.cer(r, h))


def word_errors(refs: Sequence[str], hyps: Sequence[str]) -> list[list[int]]:
    """``[[edits, reference words], ...]`` per item after normalisation (items with an empty
    reference skipped): what :func:`wer` sums, kept per item for its standard error."""
    r, h = _pairs(refs, hyps)
    out = []
    for ref, chunks in zip(r, jiwer.process_words(r, h).alignments, strict=True):
        edits = sum(
            max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
            for c in chunks
            if c.type != "equal"
        )
        out.append([edits, len(ref.split())])
    return out
