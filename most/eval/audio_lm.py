"""Audio language modelling by minimal pairs (sWUGGY-, sBLIMP-style): does the model prefer the
real word / the grammatical sentence when both are given only as speech units?

Each pair is spoken, encoded with the run's unit tokenizer, and scored with the summed
log-probability the model gives to the unit sequence and its closing ``<|end_of_audio|>`` after
``<|user|> <|asr|> <|begin_of_audio|>`` (the context in which the model reads untranscribed
speech). The pair counts as correct when the good item scores higher; ties count as wrong.

Generated pairs for the embedded default (:func:`wuggy_pairs`, :func:`blimp_pairs`) use the text
world's vocabulary and sentences; :mod:`most.eval.loaders` reads the real sWUGGY/sBLIMP layouts.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from functools import lru_cache, partial
from pathlib import Path

import torch
from pocketsphinx import get_model_path

from most.corpora import world
from most.corpora.speech import Voice, phonemes, require_espeak, synthesize
from most.data.prompts import Prompts
from most.eval.loaders import load_minimal_pairs
from most.generate import device_of
from most.progress import progress
from most.run import Run

VOWELS = "aeiou"


@torch.no_grad()
def sequence_logprobs(
    model, layout, unit_seqs: Sequence[Sequence[int]], batch_size: int = 16
) -> list[float]:
    """Summed log p(units, <|end_of_audio|> | <|user|> <|asr|> <|begin_of_audio|>) per sequence:
    the answer of the ``speech_lm`` training example (:meth:`Prompts.speech_lm`)."""
    prompts = Prompts(layout, tokenizer=None)  # speech-only prompts read no text
    head = prompts.speech_lm_prompt()
    seqs = [prompts.speech_lm(list(u)).input_ids for u in unit_seqs]
    scores: list[float] = []
    model.eval()
    device = device_of(model)
    for s in range(0, len(seqs), batch_size):
        batch = seqs[s : s + batch_size]
        width = max(len(x) for x in batch)
        ids = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, x in enumerate(batch):
            ids[i, : len(x)] = torch.tensor(x)
            mask[i, : len(x)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        tok = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]  # (B, T-1): log p(ids[t+1])
        keep = mask[:, 1:].clone()
        keep[:, : len(head) - 1] = 0  # score only what follows <|begin_of_audio|>
        scores += (tok * keep).sum(-1).tolist()
    return scores


def pair_accuracy(
    model, layout, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], name: str = "pairs"
) -> dict:
    """``pairs``: (good units, bad units) -> accuracy, n, mean score margin and the accuracy of
    a length-only scorer (``length_baseline``): read accuracy against that, not against 0.5.
    ``accuracy_per_unit`` compares mean log-probabilities per scored token instead of sums (a
    diagnostic without the sum's preference for the shorter item; ``accuracy`` is the score)."""
    if not pairs:
        raise ValueError(f"{name}: no minimal pairs to score")
    with progress() as bar:
        task = bar.add_task(f"audio-LM {name}", total=1)
        good = sequence_logprobs(model, layout, [g for g, _ in pairs])
        bad = sequence_logprobs(model, layout, [b for _, b in pairs])
        bar.advance(task)
    wins = [g > b for g, b in zip(good, bad, strict=True)]
    margin = sum(g - b for g, b in zip(good, bad, strict=True)) / len(pairs)
    # The same log-probabilities per scored token (units + <|end_of_audio|>): no length preference.
    per_unit = [
        g / (len(gu) + 1) > b / (len(bu) + 1)
        for g, b, (gu, bu) in zip(good, bad, pairs, strict=True)
    ]
    # A summed log-probability favours the shorter sequence; this is the accuracy a scorer that
    # only prefers fewer units would get, the real chance level of the pair set.
    shorter = sum(len(g) < len(b) for g, b in pairs) / len(pairs)
    return {
        "accuracy": sum(wins) / len(pairs),
        "accuracy_per_unit": sum(per_unit) / len(pairs),
        "n": len(pairs),
        "mean_margin": margin,
        "length_baseline": shorter,
    }


def _split_onset(word: str) -> tuple[str, str]:
    m = re.match(rf"^([^{VOWELS}]*)(.*)$", word)
    assert m is not None
    return m.group(1), m.group(2)


def wuggy_pairs(
    words: Sequence[str],
    n: int,
    seed: int = 0,
    known: Iterable[str] = (),
    per_word: int = 1,
    pronounce: Callable[[Sequence[str]], list[tuple[str, ...]]] | None = None,
    lexicon: Collection[str] = frozenset(),
) -> list[tuple[str, str]]:
    """(real word, pseudo-word) pairs: the pseudo-word keeps the word's rhyme and takes another
    word's onset ("stone" -> "brone"), as Wuggy swaps sub-syllabic segments.

    A pseudo-word is never one of ``words``, ``known`` (pass the corpus vocabulary) or ``lexicon``
    (an English word list: Wuggy's pseudo-words are not words of the language). With ``pronounce``
    (words -> phonemes, :func:`most.corpora.speech.phonemes`) it also has exactly as many phonemes as
    its word, as Wuggy matches the length of every segment (a summed log-probability favours the
    shorter item, so unmatched lengths test length, not lexicality), and sounds like none of
    ``words`` or ``known`` ("cat" -> "kat" is the same word spoken). Up to ``per_word`` pseudo-words
    per word, ``n`` pairs in all; words under 3 letters are skipped.
    """
    if per_word < 1:
        raise ValueError(f"per_word must be >= 1, got {per_word}")
    rng = random.Random(seed)
    vocab = sorted({w.lower() for w in words if w.isalpha() and len(w) >= 3})
    known = set(vocab) | {k.lower() for k in known}
    taken = known | {w.lower() for w in lexicon}
    onsets = sorted({_split_onset(w)[0] for w in vocab} - {""})
    options: dict[str, list[str]] = {}
    for w in rng.sample(vocab, len(vocab)):
        onset, rhyme = _split_onset(w)
        if rhyme:
            found = [o + rhyme for o in onsets if o != onset and o + rhyme not in taken]
            options[w] = rng.sample(found, len(found))
    if pronounce is not None:
        spoken = sorted(
            {k for k in known if k.isalpha()} | {p for o in options.values() for p in o}
        )
        sound = dict(zip(spoken, pronounce(spoken), strict=True))
        heard = {sound[k] for k in known if k in sound}
        options = {
            w: [p for p in o if len(sound[p]) == len(sound[w]) and sound[p] not in heard]
            for w, o in options.items()
        }
    pairs = [(w, p) for w, o in options.items() for p in o[:per_word]]
    return pairs[:n]


@lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """The CMU pronouncing dictionary's words (~126 k; shipped with pocketsphinx, a dependency):
    generated pseudo-words avoid them, as Wuggy's are not words of the language."""
    path = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pocketsphinx's English dictionary is missing")
    with open(path, encoding="utf-8") as f:
        return frozenset(
            line.split(maxsplit=1)[0].split("(")[0].lower() for line in f if line.strip()
        )


AGREEMENT = ((" is ", " are "), (" lives ", " live "), (" was ", " were "), (" has ", " have "))


def blimp_pairs(sentences: Sequence[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(grammatical, ungrammatical) pairs: a subject-verb agreement error where the sentence has a
    singular verb (``is`` -> ``are``), otherwise two adjacent words in the middle swapped."""
    rng = random.Random(seed)
    pairs = []
    for s in rng.sample(list(sentences), len(sentences)):
        s = " ".join(s.split())
        words = s.split()
        if len(words) < 4:
            continue
        bad = next((s.replace(a, b, 1) for a, b in AGREEMENT if a in s), None)
        if bad is None:
            i = rng.randrange(1, len(words) - 2)
            words[i], words[i + 1] = words[i + 1], words[i]
            bad = " ".join(words)
        if bad != s:
            pairs.append((s, bad))
        if len(pairs) == n:
            break
    return pairs


def speak_pairs(pairs: Sequence[tuple[str, str]], voice: str, tag: str) -> list[tuple]:
    """Text pairs -> audio pairs spoken by espeak-ng (``voice`` = ``variant:rate:pitch``)."""
    require_espeak()
    v = Voice.parse(voice)
    return [
        (synthesize(good, v, f"{tag}{i}g"), synthesize(bad, v, f"{tag}{i}b"))
        for i, (good, bad) in enumerate(pairs)
    ]


def minimal_pair_units(lm, run, cfg, n_wuggy: int, n_blimp: int) -> dict[str, list[tuple]]:
    """``{"wuggy": [(good units, bad units), ...], "blimp": [...]}`` from real sets (``cfg.*_dir``)
    or generated pairs, spoken and encoded with ``lm``'s unit tokenizer; a set with ``n == 0`` is
    left out.

    ``cfg`` is :class:`most.stages.eval.AudioLM`. Generated word pairs take real words from the text
    world's vocabulary lists; pseudo-words avoid every word of the held-out text. Sentence pairs
    come from ``speech/test`` transcripts (the world's templates).
    """
    out = {}
    for name, n, real_dir in (("wuggy", n_wuggy, cfg.wuggy_dir), ("blimp", n_blimp, cfg.blimp_dir)):
        if n == 0:
            continue
        if real_dir is not None:
            audio = load_minimal_pairs(real_dir, n)
        elif name == "wuggy":
            words = list(world.CLASS_WORDS)
            text = Run(run).load_data("text")["heldout"]["text"]
            known = {w.strip(".,?!").lower() for t in text for w in t.split()}
            variant = Voice.parse(cfg.voice).variant
            pairs = wuggy_pairs(
                words,
                n,
                cfg.seed,
                known,
                per_word=cfg.wuggy_per_word,
                pronounce=partial(phonemes, variant=variant),
                lexicon=english_words(),
            )
            audio = speak_pairs(pairs, cfg.voice, "wuggy")
        else:
            sentences = Run(run).load_data("speech")["test"]["text"]
            audio = speak_pairs(blimp_pairs(sentences, n, cfg.seed), cfg.voice, "blimp")
        units = lm.encode([w for pair in audio for w in pair])
        out[name] = list(zip(units[0::2], units[1::2], strict=True))
    return out


def evaluate_minimal_pairs(lm, run, cfg, n_wuggy: int, n_blimp: int) -> dict:
    """``{"wuggy": {...}, "blimp": {...}}``: :func:`pair_accuracy` on :func:`minimal_pair_units`."""
    sets = minimal_pair_units(lm, run, cfg, n_wuggy, n_blimp)
    return {name: pair_accuracy(lm.model, lm.layout, pairs, name) for name, pairs in sets.items()}
