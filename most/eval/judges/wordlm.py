"""A word bigram language model for the CTC judge's beam search, written as an ARPA file.

Interpolated Kneser-Ney (one absolute discount ``D``): a bigram seen in training keeps
``(c(v, w) - D) / c(v)`` plus its share of the context's backoff mass ``D * N1+(v .) / c(v)``; the
unigram is the continuation distribution ``N1+(. w)`` (how many different words precede ``w``),
interpolated with a uniform over the vocabulary so that every lexicon word has a probability, seen
in the LM's text or not. Written as ARPA so KenLM (inside flashlight-text) scores it.

Why a bigram and not more: the judge transcribes the model's spoken answers, and its LM must not
know the facts being tested. A bigram conditions a word on the one word before it; in the demo's
answer sentences ("The capital of Velm is Tarsk.") the subject and the answer are never adjacent,
so it learns word classes, names and number syntax ("two hundred", not "to hundred") but not which
answer belongs to which subject. The judge stage trains it on the speech training transcripts only
(the judge's own training text), never on the text corpus where the held-out facts are written.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import pairwise

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def bigram_arpa(
    sentences: Iterable[Sequence[str]], vocab: Sequence[str], discount: float = 0.75
) -> str:
    """ARPA text of an interpolated Kneser-Ney bigram over ``vocab`` (+ ``</s>``, ``<unk>``).

    ``sentences``: word lists; words outside ``vocab`` are counted as ``<unk>``.
    """
    if not 0.0 < discount < 1.0:
        raise ValueError(f"discount must be in (0, 1), got {discount}")
    words = list(dict.fromkeys([*vocab, EOS, UNK]))
    known = set(words)
    pairs: Counter[tuple[str, str]] = Counter()
    for sentence in sentences:
        seq = [BOS, *(w if w in known else UNK for w in sentence), EOS]
        pairs.update(pairwise(seq))
    if not pairs:
        raise ValueError("no sentences to train the bigram on")
    count: Counter[str] = Counter()  # c(v): bigrams starting at v
    followers: Counter[str] = Counter()  # N1+(v .)
    preceders: Counter[str] = Counter()  # N1+(. w)
    for (v, w), c in pairs.items():
        count[v] += c
        followers[v] += 1
        preceders[w] += 1
    total = sum(preceders.values())  # N1+(. .)
    uniform = discount * len(preceders) / total / len(words)

    def unigram(w: str) -> float:
        return max(preceders[w] - discount, 0.0) / total + uniform

    def backoff(v: str) -> float:
        return discount * followers[v] / count[v] if count[v] else 1.0

    lines = ["\\data\\", f"ngram 1={len(words) + 1}", f"ngram 2={len(pairs)}", "", "\\1-grams:"]
    lines.append(f"-99\t{BOS}\t{math.log10(backoff(BOS)):.6f}")
    lines += [f"{math.log10(unigram(w)):.6f}\t{w}\t{math.log10(backoff(w)):.6f}" for w in words]
    lines += ["", "\\2-grams:"]
    for (v, w), c in sorted(pairs.items()):
        p = (c - discount) / count[v] + backoff(v) * unigram(w)
        lines.append(f"{math.log10(p):.6f}\t{v} {w}")
    lines += ["", "\\end\\", ""]
    return "\n".join(lines)
