"""``most units``: fit (or load) a unit tokenizer and encode every audio column of ``RUN/data``.

Reads every DatasetDict in ``RUN/data/`` that has audio columns (``speech/``, ``sqa/``, ...) and
writes, keyed by the tokenizer's hash so several tokenizers can coexist::

    RUN/units/tokenizer/              the saved tokenizer (unit_tokenizer.json + safetensors)
                                      and fit.json (how it was fitted)
    RUN/units/<hash>/<dataset>/       DatasetDicts, same splits; audio columns replaced by
                                      list[int32] unit columns (audio -> units, x_audio -> x_units)
    RUN/units/manifest.json           hash, per-split counts, seconds, units/s, rejects by reason
    RUN/units/rejects.jsonl           one line per rejected item

Scaling out: ``--num_proc N`` encodes parts in N processes; on a cluster, fit once with
``--fit_only=true``, run ``--shard i/n`` for i in 0..n-1 as a job array, then run once more
without ``--shard`` to merge (nothing is re-encoded). A killed run resumes at the next part.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets

from most.run import Run, fingerprint
from most.units.encode import audio_datasets, is_done, merge, parts_root, plan_jobs, run_jobs
from most.units.fit import prepare_tokenizer
from most.units.kinds import TokenizerConfig
from most.units.music import MUSIC_DATA, MusicUnitsConfig, music_units

__all__ = ["TokenizerConfig", "units"]


def units(
    run: Path,
    tokenizer: TokenizerConfig | None = None,
    num_proc: int = 1,
    shard: str | None = None,
    force: bool = False,
    fit_only: bool = False,
    part_rows: int = 256,
    music: MusicUnitsConfig = MusicUnitsConfig(),
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
        music: the music tokenizer (:mod:`most.units.music`), fitted and used when the run has
            ``RUN/data/music``; its units go to ``RUN/units/music``.
    """
    cfg = tokenizer or TokenizerConfig()
    datasets.disable_progress_bars()  # our own bar reports rows and × real time
    r = Run(run)
    if not r.data.is_dir():
        raise FileNotFoundError(f"{r.data}: no data; run `most data --run {run}` first")
    shard_ix, n_shards = parse_shard(shard)
    settings: dict = {"tokenizer": cfg.fingerprint_settings()}
    has_music = r.has_data(MUSIC_DATA)
    if has_music:  # only then: a run without music keeps its fingerprint
        settings["music"] = music
    current = fingerprint(settings, {"data": r.output_id("data")})
    if not force:  # units made from other data or settings: refused, naming what changed
        r.check("units", current, False)
    tok = prepare_tokenizer(cfg, r, force=force and shard is None)
    if has_music and shard is None:
        music_units(r, music, force)
    if fit_only:
        print(f"most units: tokenizer {tok.hash} ready in {r.unit_tokenizer}")
        return r.units

    sets = audio_datasets(r)
    if not force and shard is None and is_done(r, tok.hash, sets):
        print(f"most units: {r.units / tok.hash} is up to date (use --force=true to redo)")
        return r.units
    if force and shard is None:
        shutil.rmtree(r.units / tok.hash, ignore_errors=True)

    jobs = plan_jobs(sets, parts_root(r, tok.hash), part_rows)
    mine = [j for i, j in enumerate(jobs) if i % n_shards == shard_ix]
    run_jobs([j for j in mine if not j.out.is_dir()], tok, r.unit_tokenizer, num_proc)
    if shard is not None:
        print(f"most units: shard {shard} done; run without --shard to merge")
        return r.units
    missing = [j for j in jobs if not j.out.is_dir()]
    if missing:  # another process removed parts, or a shard failed: never merge a partial set
        raise RuntimeError(f"{len(missing)} parts missing after encoding; re-run to resume")
    merge(sets, jobs, tok, r)
    r.record("units", current)
    return r.units


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)``; ``None`` -> ``(0, 1)``."""
    if shard is None:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, got {shard!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {shard}: need 0 <= i < n")
    return i, n
