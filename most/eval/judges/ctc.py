"""``most judge``: train the embedded default's CTC recogniser on the run's own speech.

TTS output is scored by transcribing it; the transcriber must be independent of the model under
test, so it reads log-mel frames (never units) and is trained from scratch on ``RUN/data/speech/
train`` (:mod:`most.ctc.train`: about 4 min on 2 CPU cores, capped by epochs or minutes). The
``ctc_phones`` / ``ctc_kmeans`` unit tokenizers' encoder has the same architecture but is a separate
model (phoneme or letter targets): trained
before the judge, on a seeded random sample of the split (the judge reads its first rows), and
never loaded here.

Decoding (``--decode.*``), best first:

- ``lm=true`` (default): lexicon-constrained beam search (:mod:`most.eval.judges.beam`) over the judge's
  lexicon (the words of the run's text corpus and speech transcripts, a closed world for the
  embedded default) with a word bigram (:mod:`most.eval.judges.wordlm`) trained on the speech training
  transcripts only: the judge's own training text, which never states a ``qa_heldout`` fact, so the
  LM cannot supply the answers S->S is scored on. Its weight and word score are picked on
  ``speech/dev`` (a small grid, seconds).
- ``lexicon=true``: greedy CTC, then every word missing from the lexicon is replaced by the nearest
  lexicon word by edit distance, the more frequent word on ties ("tharsk" -> "tarsk").
- both false: greedy CTC.

All treat original, resynthesised and model-generated audio alike.

Writes ``RUN/judge/`` atomically: ``model.safetensors``, ``lm.arpa`` (with ``lm=true``),
``judge.json`` (model config, characters, mel settings, lexicon, beam settings, training log and
WER/CER on ``speech/test`` and ``speech/test_voices`` for each decoding). No pickle. A judge trained
before the LM existed gets one without retraining: ``most judge`` on its run adds ``lm.arpa``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from most.ctc.model import (
    CHARS,
    MEL,
    CTCModelConfig,
    CTCRecognizer,
    features,
    greedy_decode,
    ids_to_text,
    pad,
    text_to_ids,
)
from most.ctc.train import CTCSchedule, read_rows, train_recognizer
from most.eval.judges.beam import BeamSettings, LexiconBeam
from most.eval.judges.wordlm import bigram_arpa
from most.eval.metrics import cer, wer
from most.io import atomic_dir, atomic_write_json, atomic_write_text, read_json
from most.progress import progress
from most.threads import single_thread

JUDGE_FILE = "judge.json"
LM_FILE = "lm.arpa"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class CTCTrainConfig(CTCSchedule):
    """How the judge is trained (``--train.*``): the recogniser's schedule plus the judge's data."""

    max_utterances: int = 4000
    """Training utterances taken from ``speech/train`` (the first N)."""
    eval_utterances: int = 300
    """Utterances of ``test`` and of ``test_voices`` transcribed for the reported WER."""
    resynth_share: float = 0.0
    """Share of training utterances replaced by their unit-tokenizer resynthesis (encode ->
    vocoder), so the judge can read vocoded speech: without it, the ceiling ``wer_resynth`` and
    the model's TTS are judged by a recogniser that never heard a vocoder. Needs ``RUN/units``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_utterances <= 0:
            raise ValueError("train.max_utterances must be > 0")
        if not 0.0 <= self.resynth_share <= 1.0:
            raise ValueError("train.resynth_share must be in [0, 1]")


_DEFAULT_MODEL = CTCModelConfig()
_DEFAULT_TRAIN = CTCTrainConfig()


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
    def from_texts(cls, texts: Sequence[str]) -> Lexicon:
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


class CTCJudge:
    """A trained :class:`CTCRecognizer` and its decoder (beam search with a word LM, else greedy
    with optional lexicon snapping); satisfies ``most.eval.judges.Judge``."""

    name = "ctc"

    def __init__(
        self,
        model: CTCRecognizer,
        lexicon: Lexicon | None = None,
        batch_size: int = 16,
        beam: LexiconBeam | None = None,
    ) -> None:
        self.model = model.eval()
        self.lexicon = lexicon
        self.batch_size = batch_size
        self.beam = beam

    @classmethod
    def load(cls, directory: str | Path) -> CTCJudge:
        directory = Path(directory)
        if not (directory / JUDGE_FILE).is_file():
            raise FileNotFoundError(f"{directory}: no CTC judge ({JUDGE_FILE}); run `most judge`")
        meta = read_json(directory / JUDGE_FILE)
        if meta.get("chars") != CHARS or meta.get("mel") != MEL.to_dict():
            raise ValueError(f"{directory}: judge was trained with other characters/mel settings")
        model = CTCRecognizer(CTCModelConfig(**meta["model"]))
        model.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        lexicon = Lexicon(meta["lexicon"]) if meta.get("lexicon") else None
        beam = None
        if meta.get("beam") and lexicon is not None:
            if not (directory / LM_FILE).is_file():
                raise FileNotFoundError(
                    f"{directory}: judge.json names a beam but {LM_FILE} is missing"
                )
            beam = LexiconBeam(lexicon.words, directory / LM_FILE, BeamSettings(**meta["beam"]))
        return cls(model, lexicon, beam=beam)

    @torch.no_grad()
    def logprobs(self, wavs: Sequence[np.ndarray]) -> list[torch.Tensor]:
        """Per utterance ``(T_i, len(CHARS) + 1)`` CTC log-probabilities, in input order."""
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        out: dict[int, torch.Tensor] = {}
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            with single_thread():
                feats = features([wavs[i] for i in idx])
            x, lengths = pad(feats)
            logp, out_len = self.model(x, lengths)
            out.update({i: row[:n] for i, row, n in zip(idx, logp, out_len.tolist(), strict=True)})
        return [out[i] for i in range(len(wavs))]

    def decodings(self, rows: Sequence[torch.Tensor]) -> dict[str, list[str]]:
        """Every decoding this judge has of ``rows``: ``greedy``, ``snapped``, ``beam``."""
        greedy = [greedy_decode(r[None], torch.tensor([len(r)]))[0] for r in rows]
        out = {"greedy": greedy}
        if self.lexicon is not None:
            out["snapped"] = [self.lexicon.snap_text(t) for t in greedy]
        if self.beam is not None:
            out["beam"] = [self.beam.decode(r) for r in rows]
        return out

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        rows = self.logprobs(wavs)
        if self.beam is not None:
            return [self.beam.decode(r) for r in rows]
        return self.decodings(rows)[_best(self)]


def _best(j: CTCJudge) -> str:
    """The decoding ``transcribe`` returns."""
    return "beam" if j.beam is not None else "snapped" if j.lexicon is not None else "greedy"


def _load_speech(run: Path) -> datasets.DatasetDict:
    path = Path(run) / "data" / "speech"
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no speech data; run `most data --run {run}` first")
    return datasets.load_from_disk(str(path))


def read_split(ds: datasets.Dataset, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``n`` rows' audio ``(n_i,)`` float32 and text."""
    return read_rows(ds, range(min(n, len(ds))))


_RESYNTH_TOKENIZER = None  # the unit tokenizer, inherited by forked resynthesis workers


def _resynth_init() -> None:
    torch.set_num_threads(1)


def _resynth_one(wav: np.ndarray) -> np.ndarray:
    tok = _RESYNTH_TOKENIZER
    return tok.decode(tok.encode(wav, 16_000)).numpy()


def resynthesize_share(
    wavs: list[np.ndarray], run: Path, share: float, seed: int, num_proc: int = 0
) -> list[np.ndarray]:
    """A seeded ``share`` of ``wavs`` replaced by ``decode(encode(wav))`` of the run's unit tokenizer.

    ``num_proc`` worker processes (0 = one per CPU core) each run one utterance at a time on one
    thread; the vocoder is sequential per utterance, so processes are what use the cores.
    """
    global _RESYNTH_TOKENIZER
    from most.units import load_tokenizer

    _RESYNTH_TOKENIZER = load_tokenizer(run)
    picked = random.Random(seed + 1).sample(range(len(wavs)), round(share * len(wavs)))
    out = list(wavs)
    num_proc = num_proc or os.cpu_count() or 1
    with progress() as bar, single_thread():
        task = bar.add_task("judge: vocoder resynthesis", total=len(picked))
        if num_proc > 1 and len(picked) > 1:
            with mp.get_context("fork").Pool(num_proc, _resynth_init) as pool:
                todo = [wavs[i] for i in picked]
                for i, wav in zip(picked, pool.imap(_resynth_one, todo, chunksize=4), strict=True):
                    out[i] = wav
                    bar.advance(task)
        else:
            for i in picked:
                out[i] = _resynth_one(wavs[i])
                bar.advance(task)
    return out


@dataclass(frozen=True)
class CTCDecodeConfig:
    """How the judge turns CTC outputs into words (``--decode.*``; see the module doc)."""

    lexicon: bool = True
    """Keep the lexicon (words of ``RUN/data/text`` train and the speech training transcripts):
    snapping for greedy decoding, the spellings for beam search."""
    lm: bool = True
    """Beam search with a word bigram trained on the speech training transcripts."""
    beam: int = 50
    """Hypotheses kept per step."""
    lm_weights: tuple[float, ...] = (0.5, 1.0, 2.0)
    """LM weights tried on ``speech/dev``; the one with the lowest WER is kept."""
    word_scores: tuple[float, ...] = (-1.0, 0.0, 1.0)
    """Word insertion scores tried with each weight."""
    discount: float = 0.75
    """Kneser-Ney absolute discount of the bigram."""

    def __post_init__(self) -> None:
        if self.lm and not self.lexicon:
            raise ValueError("decode.lm needs decode.lexicon (the beam spells lexicon words)")
        if self.lm and not (self.lm_weights and self.word_scores):
            raise ValueError("decode.lm_weights and decode.word_scores need at least one value")
        BeamSettings(beam=self.beam)  # validates the beam width


_DEFAULT_DECODE = CTCDecodeConfig()


def build_lexicon(run: Path, speech_texts: Sequence[str]) -> Lexicon:
    """Words of the text corpus (if the run has one) and of the speech training transcripts."""
    texts = list(speech_texts)
    text_dir = Path(run) / "data" / "text"
    if text_dir.is_dir():
        texts += datasets.load_from_disk(str(text_dir))["train"]["text"]
    return Lexicon.from_texts(texts)


def fit_beam(
    out_dir: Path,
    scorer: CTCJudge,
    lm_texts: Sequence[str],
    dev: tuple[list[np.ndarray], list[str]] | None,
    decode: CTCDecodeConfig,
) -> dict:
    """Write ``out_dir/lm.arpa`` (bigram on ``lm_texts``), pick the beam settings with the lowest
    WER on ``dev`` (defaults without it) and give ``scorer`` that beam. -> the settings and trials."""
    words = scorer.lexicon.words
    sentences = [words_of(t) for t in lm_texts]
    atomic_write_text(out_dir / LM_FILE, bigram_arpa(sentences, words, decode.discount))
    grid = [BeamSettings(decode.beam, w, s) for w in decode.lm_weights for s in decode.word_scores]
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


def score_splits(scorer: CTCJudge, speech: datasets.DatasetDict, n: int) -> dict:
    """WER/CER on the first ``n`` rows of ``test`` and ``test_voices``, for every decoding."""
    metrics = {}
    for split in ("test", "test_voices"):
        if split not in speech:
            continue
        wavs, refs = read_split(speech[split], n)
        hyps = scorer.decodings(scorer.logprobs(wavs))
        best = hyps[_best(scorer)]
        metrics[split] = {"wer": wer(refs, best), "cer": cer(refs, best), "n": len(refs)}
        metrics[split] |= {f"wer_{name}": wer(refs, h) for name, h in hyps.items()}
    return metrics


def _dev(speech: datasets.DatasetDict, n: int) -> tuple[list[np.ndarray], list[str]] | None:
    return read_split(speech["dev"], n) if "dev" in speech else None


def judge(
    run: Path = Path("runs/demo"),
    model: CTCModelConfig = _DEFAULT_MODEL,
    train: CTCTrainConfig = _DEFAULT_TRAIN,
    decode: CTCDecodeConfig = _DEFAULT_DECODE,
    force: bool = False,
) -> dict:
    """Train the embedded-default CTC judge on ``RUN/data/speech/train``; write ``RUN/judge/``.

    Reports its WER/CER on original ``test`` (seen voices) and ``test_voices`` audio for each
    decoding. A finished judge without the requested LM gets one (no retraining).
    """
    out_dir = Path(run) / "judge"
    if (out_dir / JUDGE_FILE).is_file() and not force:
        meta = read_json(out_dir / JUDGE_FILE)
        if decode.lm and not meta.get("beam") and meta.get("lexicon"):
            return _add_beam(Path(run), meta, train, decode)
        print(f"{out_dir} exists: judge already trained (pass --force=true to retrain)")
        return meta
    speech = _load_speech(run)
    wavs, texts = read_split(speech["train"], train.max_utterances)
    if train.resynth_share > 0:
        wavs = resynthesize_share(wavs, Path(run), train.resynth_share, train.seed)
    recognizer, log = train_recognizer(wavs, texts, model, train, label="judge")
    del wavs
    lexicon = build_lexicon(Path(run), texts) if decode.lexicon else None
    scorer = CTCJudge(recognizer, lexicon)
    meta = {
        "kind": "ctc",
        "model": model.to_dict(),
        "chars": CHARS,
        "mel": MEL.to_dict(),
        "lexicon": lexicon.words if lexicon else None,
        "train": log,
    }
    with atomic_dir(out_dir) as tmp:
        if decode.lm:
            fitted = fit_beam(tmp, scorer, texts, _dev(speech, train.eval_utterances), decode)
            meta |= {"beam": fitted.pop("settings"), "beam_fit": fitted}
        meta["metrics"] = score_splits(scorer, speech, train.eval_utterances)
        save_file(
            {k: v.contiguous() for k, v in recognizer.state_dict().items()}, str(tmp / WEIGHTS_FILE)
        )
        atomic_write_json(tmp / JUDGE_FILE, meta)
    print(f"judge: {meta['metrics']}")
    return meta


def _add_beam(run: Path, meta: dict, train: CTCTrainConfig, decode: CTCDecodeConfig) -> dict:
    """Give a judge trained without an LM its beam search: LM, settings and metrics, no training."""
    out_dir = run / "judge"
    print(f"{out_dir}: adding the word LM and beam search to the trained judge")
    speech = _load_speech(run)
    texts = [str(t) for t in speech["train"].select_columns(["text"])["text"]]
    scorer = CTCJudge.load(out_dir)
    fitted = fit_beam(
        out_dir, scorer, texts[: train.max_utterances], _dev(speech, train.eval_utterances), decode
    )
    meta = meta | {"beam": fitted.pop("settings"), "beam_fit": fitted}
    meta["metrics"] = score_splits(scorer, speech, train.eval_utterances)
    atomic_write_json(out_dir / JUDGE_FILE, meta)
    print(f"judge: {meta['metrics']}")
    return meta
