"""Lexicon-constrained CTC beam search with a word LM: the CTC judge's decoder.

flashlight-text's ``LexiconDecoder`` (the C++ decoder behind torchaudio's ``ctc_decoder``) searches
the character posteriors for word sequences spelled in the lexicon, scoring each word with a KenLM
model (:mod:`most.eval.judges.wordlm`'s ARPA bigram): ``acoustic + lm_weight * lm + word_score * words``.
Compared with greedy decoding plus snapping each word to its nearest lexicon entry, it chooses
between spellings with the whole utterance's evidence, so homophones a character model cannot
separate ("to hundred" / "two hundred") follow word order.

The space character is the word boundary (each lexicon spelling ends with it); one frame that is
surely a space is appended to every utterance so that its last word is closed like the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from most.ctc.model import BLANK, CHARS

SPACE = CHARS.index(" ") + 1
"""The word boundary's token id (ids are ``CHARS`` positions + 1; 0 is the blank)."""


@dataclass(frozen=True)
class BeamSettings:
    """The search's knobs, tuned by the judge stage on ``speech/dev`` and saved in ``judge.json``."""

    beam: int = 50
    lm_weight: float = 1.0
    word_score: float = 0.0

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """KenLM prints a loading banner and a progress bar on file descriptor 2; hide them."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LexiconBeam:
    """Decode ``(T, len(CHARS) + 1)`` CTC log-probabilities into lexicon words.

    ``words``: the lexicon (every spelling within ``CHARS``); ``arpa``: a word LM over them.
    """

    def __init__(self, words: Sequence[str], arpa: str | Path, settings: BeamSettings) -> None:
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            SmearingMode,
            Trie,
        )
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary

        bad = [w for w in words if not w or set(w) - set(CHARS[1:])]
        if bad:
            raise ValueError(f"lexicon words outside the judge's characters: {bad[:5]}")
        self.settings = settings
        self.words = Dictionary()
        for w in [*words, "<unk>"]:
            self.words.add_entry(w)
        with _quiet_stderr():
            self.lm = KenLM(str(arpa), self.words)  # kept alive: the decoder holds a reference
        trie = Trie(len(CHARS) + 1, SPACE)
        start = self.lm.start(False)
        for w in words:
            index = self.words.get_index(w)
            _, score = self.lm.score(start, index)
            trie.insert([CHARS.index(c) + 1 for c in w] + [SPACE], index, score)
        trie.smear(SmearingMode.MAX)
        options = LexiconDecoderOptions(
            beam_size=settings.beam,
            beam_size_token=len(CHARS) + 1,
            beam_threshold=50.0,
            lm_weight=settings.lm_weight,
            word_score=settings.word_score,
            unk_score=float("-inf"),  # a closed world: every word is in the lexicon
            sil_score=0.0,
            log_add=False,
            criterion_type=CriterionType.CTC,
        )
        unk = self.words.get_index("<unk>")
        self.decoder = LexiconDecoder(options, trie, self.lm, SPACE, BLANK, unk, [], False)

    def decode(self, logp: Tensor) -> str:
        """``logp (T, V)``: one utterance's log-probabilities, padding removed."""
        closing = torch.full((1, logp.shape[-1]), -1e4)
        closing[0, SPACE] = 0.0
        emissions = torch.cat([logp.detach().float().cpu(), closing]).contiguous()
        best = self.decoder.decode(emissions.data_ptr(), *emissions.shape)[0]
        return " ".join(self.words.get_entry(i) for i in best.words if i >= 0)
