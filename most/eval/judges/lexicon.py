"""The CTC judge's closed vocabulary: the words it may write, most frequent first.

Greedy decoding snaps every word missing from the lexicon to its nearest entry by edit distance
("tharsk" -> "tarsk"); beam search (:mod:`most.eval.judges.beam`) spells lexicon words only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from most.ctc.model import ids_to_text, text_to_ids


def words_of(text: str) -> list[str]:
    """``text`` as the judge spells it: lower case, ``CHARS`` only, split into words."""
    return ids_to_text(text_to_ids(text)).split()


class Lexicon:
    """Closed vocabulary, most frequent word first; :meth:`snap` maps a word to its nearest entry
    (among equally distant entries the first, i.e. the most frequent, wins)."""

    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.known = set(self.words)
        self._cache: dict[str, str] = {}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> Lexicon:
        """Every word of ``texts``, by count (most frequent first), ties in alphabetical order."""
        counts: dict[str, int] = {}
        for text in texts:
            for word in words_of(text):
                counts[word] = counts.get(word, 0) + 1
        return cls(sorted(counts, key=lambda w: (-counts[w], w)))

    def snap(self, word: str) -> str:
        if word in self.known or not self.words:
            return word
        if word not in self._cache:
            from rapidfuzz import process
            from rapidfuzz.distance import Levenshtein

            best = process.extractOne(word, self.words, scorer=Levenshtein.distance)
            self._cache[word] = best[0]
        return self._cache[word]

    def snap_text(self, text: str) -> str:
        return " ".join(self.snap(w) for w in text.split())
