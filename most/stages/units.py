"""``most units``: fit (or load) a unit tokenizer and encode every audio column of ``RUN/data``.

Reads every DatasetDict in ``RUN/data/`` that has audio columns (``speech/``, ``sqa/``, ...) and
writes, keyed by the tokenizer's hash so several tokenizers can coexist::

    RUN/units/tokenizer/              the saved tokenizer (unit_tokenizer.json + safetensors)
    RUN/units/<hash>/<dataset>/       DatasetDicts, same splits; audio columns replaced by
                                      list[int32] unit columns (audio -> units, x_audio -> x_units)
    RUN/units/manifest.json           hash, per-split counts, seconds, units/s, rejects by reason
    RUN/units/rejects.jsonl           one line per rejected item

Scaling out: ``--num_proc N`` encodes parts in N processes; on a cluster, fit once with
``--fit_only=true``, run ``--shard i/n`` for i in 0..n-1 as a job array, then run once more
without ``--shard`` to merge (nothing is re-encoded). A killed run resumes at the next part.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from most.audio import AudioError
from most.corpora.schema import is_audio_column
from most.ctc.model import CTCModelConfig
from most.io import atomic_dir, atomic_write_json, atomic_write_text, read_json, save_dataset
from most.units.base import TOKENIZER_FILE, UnitTokenizer, load_tokenizer, to_waveform
from most.units.shards import PARTS, Job, encode_part, init_worker, merge_split, run_in_worker

#: Beside a fitted tokenizer: what it was fitted with (:meth:`TokenizerConfig.fit_settings`).
FIT_FILE = "fit.json"
#: Fitting settings added after the first ``fit.json`` files: a file without one was fitted so.
FIT_DEFAULTS = {"encoder_short": False}
#: Kinds whose tokenizer includes a CTC encoder trained by the stage (the ``encoder_*`` settings).
CTC_KINDS = ("ctc_kmeans", "ctc_phones")


@dataclass
class TokenizerConfig:
    """Which unit tokenizer to fit or load (``--tokenizer.*``)."""

    kind: Literal["mel_kmeans", "ctc_kmeans", "ctc_phones", "hubert_kmeans"] = "mel_kmeans"
    """``ctc_phones``: embedded default, the phonemes a CTC encoder trained on the run's speech
    (espeak-ng phoneme transcripts of its texts) hears; has a decoder. ``ctc_kmeans``: a CTC
    encoder trained on the letters of the transcripts, its states clustered; has a decoder.
    ``mel_kmeans``: log-mel k-means, no training, has a decoder. ``hubert_kmeans``: HuBERT
    features from a local model, no decoder."""
    path: Path | None = None
    """Load this saved tokenizer folder instead of fitting one."""
    k: int = 512
    """Number of k-means clusters = unit vocabulary size (not ``ctc_phones``: its vocabulary is
    the phoneme inventory of the transcripts)."""
    frame_rate: float = 50.0
    """mel_kmeans frames per second before de-duplication (50 or 100)."""
    dedup: bool = True
    """Collapse consecutive repeated units (MoST does)."""
    n_mels: int = 80
    seed: int = 0
    """Seeds the choice of fitting utterances and k-means."""
    fit_seconds: float = 1800.0
    """Seconds of ``speech/train`` audio the k-means is fitted on."""
    gl_iters: int = 24
    """Griffin-Lim iterations of the mel decoder (speed/quality; does not change ids)."""
    model_path: Path | None = None
    """hubert_kmeans: local HF folder of a HubertModel (e.g. mHuBERT)."""
    layer: int = 11
    """Hidden-state layer whose features are clustered: hubert_kmeans (MoST: 11) and ctc_kmeans
    (1-3; 2 in the tiny recipe)."""
    encoder_utterances: int = 4000
    """ctc_kmeans and ctc_phones (as every ``encoder_*``): transcribed ``speech/train``
    utterances (a seeded sample) the encoder learns from; the k-means and the decoder templates
    use the first ``fit_seconds`` of them."""
    encoder_epochs: float = 6.5
    """Epoch budget of the encoder's CTC training (~3 min on 2 cores for 4000 utterances)."""
    encoder_minutes: float | None = None
    """Optional wall-clock cap on that training (ends it early; the units then depend
    on the machine's speed). None trains the full budget."""
    encoder_warp: float = 0.0
    """Vocal-tract-length perturbation of the encoder's training audio (mel axis
    stretched by up to this factor either way, :func:`most.ctc.train.warp_mel`); 0 = off."""
    encoder_short: bool = False
    """Also train the encoder on every ``speech/train_short`` utterance (one- and
    two-word; the data needs ``speech.n_short`` > 0), shuffled in with the ``train`` sample.
    Trained on sentences alone, the encoder mishears a word said alone (what the audio-LM minimal
    pairs speak), so those words get units the speech LM never read in sentences."""
    encoder_window: int | None = None
    """Encoder steps (25 per second) each step attends to on either side
    (:attr:`most.ctc.model.CTCModelConfig.attn_window`); None = the whole utterance. Stored in
    the tokenizer (its hash includes it)."""

    def __post_init__(self) -> None:
        if not 2 <= self.k <= 65_536:
            raise ValueError(f"tokenizer.k must be in [2, 65536], got {self.k}")
        if self.fit_seconds <= 0:
            raise ValueError("tokenizer.fit_seconds must be > 0")
        if self.kind == "hubert_kmeans" and self.path is None and self.model_path is None:
            raise ValueError("tokenizer.kind=hubert_kmeans needs tokenizer.model_path")
        if self.kind == "ctc_kmeans":
            n_layers = CTCModelConfig().layers
            if not 1 <= self.layer <= n_layers:
                raise ValueError(f"tokenizer.layer must be in [1, {n_layers}] for ctc_kmeans")
        if self.kind in CTC_KINDS:
            if self.encoder_utterances <= 0 or self.encoder_epochs <= 0:
                raise ValueError("tokenizer.encoder_utterances and encoder_epochs must be > 0")
            if self.encoder_minutes is not None and self.encoder_minutes <= 0:
                raise ValueError("tokenizer.encoder_minutes must be > 0 or null (no cap)")
            if self.encoder_window is not None and self.encoder_window < 1:
                raise ValueError("tokenizer.encoder_window must be >= 1 or null (whole utterance)")

    def fit_settings(self) -> dict:
        """The settings that shape a fitted tokenizer but are not stored in it (which audio, how
        long the encoder trains): kept beside it in ``fit.json`` so a re-run can tell."""
        keys = ["seed", "fit_seconds"]
        if self.kind in CTC_KINDS:
            keys += [
                "encoder_utterances",
                "encoder_epochs",
                "encoder_minutes",
                "encoder_warp",
                "encoder_short",
            ]
        elif self.kind == "mel_kmeans":
            keys += ["n_mels"]
        else:
            keys += ["model_path"]
        return {k: str(v) if isinstance(v, Path) else v for k in keys for v in [getattr(self, k)]}

    def matches(self, tok: UnitTokenizer) -> bool:
        """Whether a saved tokenizer was made with these settings."""
        same = tok.kind == self.kind and tok.dedup == self.dedup
        if self.kind == "ctc_phones":  # the vocabulary is the transcripts' phoneme inventory
            return same and tok.encoder.cfg.attn_window == self.encoder_window
        same = same and tok.vocab_size == self.k
        if self.kind == "mel_kmeans":
            return same and tok.frame_rate == self.frame_rate
        if self.kind == "ctc_kmeans":
            # same kind: tok is a CTCKMeansTokenizer
            return (
                same
                and tok.layer == self.layer
                and tok.encoder.cfg.attn_window == self.encoder_window
            )
        return same and getattr(tok, "layer", None) == self.layer


def units(
    run: Path = Path("runs/demo"),
    tokenizer: TokenizerConfig | None = None,
    num_proc: int = 1,
    shard: str | None = None,
    force: bool = False,
    fit_only: bool = False,
    part_rows: int = 256,
) -> Path:
    """Encode ``RUN/data`` into unit shards; returns ``RUN/units``.

    Args:
        run: run folder holding ``data/`` (from ``most data``).
        tokenizer: tokenizer to fit on ``RUN/data/speech`` train, or to load (``path``).
        num_proc: encoding processes on this machine.
        shard: ``i/n``: encode only every n-th part starting at i (cluster job arrays), no merge.
        force: refit the tokenizer and re-encode everything.
        fit_only: fit/load and save the tokenizer, encode nothing (run before a sharded job).
        part_rows: rows per resumable part; all shards of one job must use the same value.
    """
    cfg = tokenizer or TokenizerConfig()
    datasets.disable_progress_bars()  # our own bar reports rows and × real time
    data_dir, units_dir = Path(run) / "data", Path(run) / "units"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir}: no data; run `most data --run {run}` first")
    shard_ix, n_shards = _parse_shard(shard)
    tok = prepare_tokenizer(cfg, data_dir, units_dir / "tokenizer", force=force and shard is None)
    if fit_only:
        print(f"most units: tokenizer {tok.hash} ready in {units_dir / 'tokenizer'}")
        return units_dir

    out_root = units_dir / tok.hash
    manifest_path = units_dir / "manifest.json"
    sets = audio_datasets(data_dir)
    if not force and shard is None and _is_done(manifest_path, tok.hash, out_root, sets):
        print(f"most units: {out_root} is up to date (use --force=true to redo)")
        return units_dir
    if force and shard is None:
        shutil.rmtree(out_root, ignore_errors=True)

    jobs = plan_jobs(sets, out_root, part_rows)
    mine = [j for i, j in enumerate(jobs) if i % n_shards == shard_ix]
    todo = [j for j in mine if not j.out.is_dir()]
    run_jobs(todo, tok, units_dir / "tokenizer", num_proc)
    if shard is not None:
        print(f"most units: shard {shard} done; run without --shard to merge")
        return units_dir
    missing = [j for j in jobs if not j.out.is_dir()]
    if missing:  # another process removed parts, or a shard failed: never merge a partial set
        raise RuntimeError(f"{len(missing)} parts missing after encoding; re-run to resume")
    merge(sets, jobs, tok, out_root, units_dir)
    return units_dir


def _parse_shard(shard: str | None) -> tuple[int, int]:
    if shard is None:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return i, n


def prepare_tokenizer(
    cfg: TokenizerConfig, data_dir: Path, tok_dir: Path, force: bool = False
) -> UnitTokenizer:
    """Load ``RUN/units/tokenizer`` if it matches ``cfg``; else load ``cfg.path`` or fit one.

    A fitted tokenizer's fitting settings go to ``fit.json`` beside it; a later run with other
    values is refused (tokenizers from before that file existed are checked on their own fields)."""
    if (tok_dir / TOKENIZER_FILE).is_file() and not force:
        tok = load_tokenizer(tok_dir)
        if cfg.path is None:
            _check_fitted_with(cfg, tok, tok_dir)
        return tok
    if cfg.path is not None:
        tok = load_tokenizer(cfg.path)
    else:
        t0 = time.perf_counter()
        if cfg.kind in CTC_KINDS:
            from most.ctc.train import CTCSchedule

            wavs, texts, voices = transcribed_audio(
                data_dir / "speech", cfg.encoder_utterances, cfg.seed, cfg.encoder_short
            )
            schedule = CTCSchedule(
                epochs=cfg.encoder_epochs,
                max_minutes=cfg.encoder_minutes,
                seed=cfg.seed,
                warp=cfg.encoder_warp,
            )
            common = dict(
                fit_seconds=cfg.fit_seconds,
                encoder=CTCModelConfig(attn_window=cfg.encoder_window),
                schedule=schedule,
                dedup=cfg.dedup,
                gl_iters=cfg.gl_iters,
            )
            if cfg.kind == "ctc_kmeans":
                from most.units.ctc_kmeans import CTCKMeansTokenizer

                tok = CTCKMeansTokenizer.fit(
                    wavs, texts, k=cfg.k, layer=cfg.layer, seed=cfg.seed, **common
                )
            else:
                from most.units.ctc_phones import CTCPhonesTokenizer

                tok = CTCPhonesTokenizer.fit(wavs, texts, voices, **common)
        elif cfg.kind == "mel_kmeans":
            from most.units.mel_kmeans import MelKMeansTokenizer

            wavs = fit_audio(data_dir / "speech", cfg.fit_seconds, cfg.seed)

            tok = MelKMeansTokenizer.fit(
                wavs,
                k=cfg.k,
                frame_rate=cfg.frame_rate,
                dedup=cfg.dedup,
                n_mels=cfg.n_mels,
                seed=cfg.seed,
                gl_iters=cfg.gl_iters,
            )
        else:
            from most.units.hubert_kmeans import HubertKMeansTokenizer

            wavs = fit_audio(data_dir / "speech", cfg.fit_seconds, cfg.seed)
            assert cfg.model_path is not None  # checked in __post_init__
            tok = HubertKMeansTokenizer.fit(
                wavs,
                model_path=cfg.model_path,
                layer=cfg.layer,
                k=cfg.k,
                dedup=cfg.dedup,
                seed=cfg.seed,
            )
        secs = sum(len(w) for w in wavs) / 16_000
        print(
            f"most units: fitted {tok.kind} K={tok.vocab_size} from {secs:.0f}s of audio "
            f"in {time.perf_counter() - t0:.1f}s -> {tok.hash}"
        )
    with atomic_dir(tok_dir) as tmp:
        tok.save(tmp)
        if cfg.path is None:
            atomic_write_json(tmp / FIT_FILE, cfg.fit_settings())
    return tok


def _check_fitted_with(cfg: TokenizerConfig, tok: UnitTokenizer, tok_dir: Path) -> None:
    """Raise ``ValueError`` when the saved tokenizer was made with other settings than ``cfg``."""
    refit = "pass --force=true to refit (old units stay under their hash)"
    if not cfg.matches(tok):
        made = f"{tok.kind}, K={tok.vocab_size}, dedup={tok.dedup}"
        if tok.kind == "ctc_kmeans":
            made += f", layer={tok.layer}"
        if tok.kind in CTC_KINDS:
            made += f", encoder_window={tok.encoder.cfg.attn_window}"
        raise ValueError(f"{tok_dir} was made with other settings ({made}); {refit}")
    if (tok_dir / FIT_FILE).is_file():
        saved = {**FIT_DEFAULTS, **read_json(tok_dir / FIT_FILE)}
        changed = {k: (saved.get(k), v) for k, v in cfg.fit_settings().items() if saved.get(k) != v}
        if changed:
            was = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items())
            raise ValueError(f"{tok_dir} was fitted with other settings ({was}); {refit}")


def _speech_splits(speech_dir: Path) -> datasets.DatasetDict:
    if not speech_dir.is_dir():
        raise FileNotFoundError(f"{speech_dir}: the tokenizer is fitted on speech/train; not found")
    return datasets.load_from_disk(str(speech_dir))


def _train_split(speech_dir: Path) -> datasets.Dataset:
    return _speech_splits(speech_dir)["train"]


def _read_train(
    train: datasets.Dataset, rows: list[int]
) -> tuple[list[np.ndarray], list[str | None], list[str | None]]:
    """16 kHz audio, text and voice (``None`` without that column) of ``rows``; unreadable audio
    is skipped here (the encoding pass reports it)."""
    columns = [c for c in ("audio", "text", "voice") if c in train.column_names]
    wavs, texts, voices = [], [], []
    for row in train.select(rows).select_columns(columns).with_format("numpy"):
        try:
            wav = to_waveform(row["audio"]["array"], int(row["audio"]["sampling_rate"]))
        except AudioError:
            continue
        wavs.append(wav.numpy())
        texts.append(str(row["text"]) if "text" in row else None)
        voices.append(str(row["voice"]) if "voice" in row else None)
    return wavs, texts, voices


def fit_audio(speech_dir: Path, seconds: float, seed: int) -> list[np.ndarray]:
    """A seeded random sample of ``speech/train`` utterances totalling about ``seconds``."""
    train = _train_split(speech_dir)
    order = np.random.default_rng(seed).permutation(len(train))
    durations = np.asarray(train["duration"], dtype=np.float64)
    take = order[: int(np.searchsorted(np.cumsum(durations[order]), seconds)) + 1]
    return _read_train(train, sorted(take.tolist()))[0]


def transcribed_audio(
    speech_dir: Path, n: int, seed: int, short: bool = False
) -> tuple[list[np.ndarray], list[str], list[str | None]]:
    """A seeded random sample of ``n`` ``speech/train`` utterances (16 kHz), their texts and
    voices (``None`` without a voice column); with ``short``, every ``train_short`` utterance
    too, all shuffled by ``seed``.

    The judge reads the *first* rows of the split, so the tokenizer's encoder and the judge learn
    from different (overlapping) samples.
    """
    splits = _speech_splits(speech_dir)
    train = splits["train"]
    if "text" not in train.column_names:
        raise ValueError(f"{speech_dir}: ctc_* units need transcripts (a 'text' column) in train")
    if short and "train_short" not in splits:
        raise ValueError(
            f"{speech_dir}: tokenizer.encoder_short needs a train_short split "
            "(build the data with speech.n_short > 0)"
        )
    rng = np.random.default_rng(seed)
    wavs, texts, voices = _read_train(train, sorted(rng.permutation(len(train))[:n].tolist()))
    if short:
        extra = splits["train_short"]
        more = _read_train(extra, list(range(len(extra))))
        wavs, texts, voices = wavs + more[0], texts + more[1], voices + more[2]
        order = rng.permutation(len(wavs))
        wavs, texts = [wavs[i] for i in order], [texts[i] for i in order]
        voices = [voices[i] for i in order]
    return wavs, [str(t) for t in texts], voices


def audio_datasets(data_dir: Path) -> dict[str, Path]:
    """Every DatasetDict under ``data_dir`` that has at least one audio column, by name."""
    found = {}
    for d in sorted(p for p in data_dir.iterdir() if (p / "dataset_dict.json").is_file()):
        dd = datasets.load_from_disk(str(d))
        if any(is_audio_column(c) for split in dd.values() for c in split.column_names):
            found[d.name] = d
    return found


def plan_jobs(sets: dict[str, Path], out_root: Path, part_rows: int) -> list[Job]:
    """All parts of all splits, in a fixed order (shards pick by index, so order must not vary)."""
    jobs = []
    for name, path in sets.items():
        for split, ds in datasets.load_from_disk(str(path)).items():
            for p, start in enumerate(range(0, len(ds), part_rows)):
                stop = min(start + part_rows, len(ds))
                out = out_root / PARTS / name / split / f"rows{part_rows}-{p:05d}"
                jobs.append(Job(path, name, split, start, stop, out))
    return jobs


def run_jobs(todo: list[Job], tok: UnitTokenizer, tok_dir: Path, num_proc: int) -> None:
    """Encode parts with a progress bar showing rows, × real time and rejects."""
    if not todo:
        return
    # Progress counts rows (known up front); × real time counts every audio column encoded.
    total = sum(j.stop - j.start for j in todo)
    columns = (
        TextColumn("units"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} rows"),
        TextColumn("{task.fields[xrt]:.0f}× real time"),
        TextColumn("{task.fields[rejects]} rejected"),
        TimeElapsedColumn(),
    )
    t0, rejected, seconds = time.perf_counter(), 0, 0.0
    with Progress(*columns) as bar:
        task = bar.add_task("units", total=total, xrt=0.0, rejects=0)
        if num_proc > 1:
            pool = mp.get_context("spawn").Pool(num_proc, init_worker, (tok_dir,))
            results = pool.imap_unordered(run_in_worker, todo)
        else:
            pool, results = None, (encode_part(j, tok) for j in todo)
        try:
            for stats in results:
                rejected += stats["rejects"]
                seconds += stats["seconds"]
                xrt = seconds / max(time.perf_counter() - t0, 1e-9)
                bar.update(
                    task, advance=stats["rows"] + stats["rejects"], xrt=xrt, rejects=rejected
                )
        finally:
            if pool is not None:
                pool.terminate()


def merge(
    sets: dict[str, Path], jobs: list[Job], tok: UnitTokenizer, out_root: Path, units_dir: Path
) -> None:
    """Concatenate parts into ``RUN/units/<hash>/<dataset>`` and write manifest + rejects."""
    report: dict[str, dict] = {}
    all_rejects: list[dict] = []
    for name in sets:
        splits, report[name] = {}, {}
        for split in dict.fromkeys(j.split for j in jobs if j.dataset == name):
            parts = [j.out for j in jobs if j.dataset == name and j.split == split]
            ds, rejects, stats = merge_split(parts)
            splits[split] = ds
            stats["units_per_s"] = stats["units"] / max(stats["seconds"], 1e-9)
            report[name][split] = stats
            all_rejects += rejects
        save_dataset(datasets.DatasetDict(splits), out_root / name)
    totals = Counter()
    for split_stats in (s for d in report.values() for s in d.values()):
        totals.update({k: split_stats[k] for k in ("rows", "seconds", "units", "encode_s")})
    atomic_write_text(units_dir / "rejects.jsonl", "".join(f"{_json(r)}\n" for r in all_rejects))
    manifest = {
        "hash": tok.hash,
        "tokenizer": {
            "kind": tok.kind,
            "vocab_size": tok.vocab_size,
            "frame_rate": tok.frame_rate,
            "dedup": tok.dedup,
            "sample_rate": tok.sample_rate,
        },
        "datasets": report,
        "rows": totals["rows"],
        "seconds": totals["seconds"],
        "units": totals["units"],
        "units_per_s": totals["units"] / max(totals["seconds"], 1e-9),
        "encode_xrt_per_process": totals["seconds"] / max(totals["encode_s"], 1e-9),
        "rejects": len(all_rejects),
        "rejects_by_reason": dict(Counter(r["reason"] for r in all_rejects)),
        "complete": True,
    }
    atomic_write_json(units_dir / "manifest.json", manifest)
    # Parts are only a resume/merge aid; once the manifest is complete they duplicate the data.
    shutil.rmtree(out_root / PARTS, ignore_errors=True)
    print(
        f"most units: {totals['rows']} rows, {totals['seconds'] / 3600:.2f} h, "
        f"{manifest['units_per_s']:.1f} units/s, {len(all_rejects)} rejected -> {out_root}"
    )


def _json(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _is_done(manifest_path: Path, h: str, out_root: Path, sets: dict[str, Path]) -> bool:
    if not manifest_path.is_file():
        return False
    m = read_json(manifest_path)
    if not (m.get("hash") == h and m.get("complete")):
        return False
    if not all((out_root / n).is_dir() for n in sets):
        return False
    changed = _data_changes(m.get("datasets", {}), sets)
    if changed:
        print(
            f"most units: the data changed since it was encoded ({'; '.join(changed)}): re-encoding"
        )
    return not changed


def _data_changes(encoded: dict, sets: dict[str, Path]) -> list[str]:
    """How ``RUN/data`` differs from what the manifest says was encoded: a split added or gone, or
    a split's row count (encoded + rejected) changed, e.g. ``most data`` re-run with ``n_short``."""
    changes = []
    for name, path in sets.items():
        report = encoded.get(name, {})
        data = datasets.load_from_disk(str(path))
        for split in sorted(set(data) | set(report)):
            if split not in report:
                changes.append(f"{name}/{split} not encoded")
            elif split not in data:
                changes.append(f"{name}/{split} no longer in the data")
            else:
                done = int(report[split].get("rows", 0)) + int(report[split].get("rejects", 0))
                if done != len(data[split]):
                    changes.append(f"{name}/{split} has {len(data[split])} rows, {done} encoded")
    return changes
