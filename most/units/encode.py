"""Encoding a run's audio datasets into unit shards: plan the parts, run them, merge, write the manifest.

Every DatasetDict in ``RUN/data`` with an audio column is cut into parts of ``part_rows`` rows
(:mod:`most.units.shards` encodes one part); the parts are encoded in this process or a pool of
``num_proc``, then concatenated into ``RUN/units/<hash>/<dataset>`` with::

    RUN/units/manifest.json     hash, per-split counts, seconds, units/s, rejects by reason
    RUN/units/rejects.jsonl     one line per rejected item

Unit columns are flat ``list[int32]`` for every kind. A multi-codebook kind (its tokenizer JSON
has ``n_codebooks`` and ``codebook_size``) stores ``C`` ids per frame, frame-major, codebook ``c``
offset by ``c * K`` (:mod:`most.units.codebooks`): the token layout, collate and training read
them as they read any units, and :func:`most.units.codebooks.unflatten` gives frames x codebooks.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from collections import Counter
from pathlib import Path

import datasets
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from most.corpora.schema import is_audio_column
from most.io import atomic_write_json, atomic_write_text, read_json, save_dataset
from most.run import Run
from most.units.base import UnitTokenizer
from most.units.shards import PARTS, Job, encode_part, init_worker, merge_split, run_in_worker

REJECTS_FILE = "rejects.jsonl"


def audio_datasets(run: Run) -> dict[str, Path]:
    """Every DatasetDict in ``RUN/data`` that has at least one audio column, by name."""
    found = {}
    for d in sorted(p for p in run.data.iterdir() if (p / "dataset_dict.json").is_file()):
        dd = datasets.load_from_disk(str(d))
        if any(is_audio_column(c) for split in dd.values() for c in split.column_names):
            found[d.name] = d
    return found


def parts_root(run: Run, unit_hash: str) -> Path:
    """Where finished parts wait for the merge: ``RUN/units/<hash>/.parts``."""
    return run.units / unit_hash / PARTS


def plan_jobs(sets: dict[str, Path], parts: Path, part_rows: int) -> list[Job]:
    """All parts of all splits, in a fixed order (shards pick by index, so order must not vary)."""
    jobs = []
    for name, path in sets.items():
        for split, ds in datasets.load_from_disk(str(path)).items():
            for p, start in enumerate(range(0, len(ds), part_rows)):
                stop = min(start + part_rows, len(ds))
                out = parts / name / split / f"rows{part_rows}-{p:05d}"
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


def merge(sets: dict[str, Path], jobs: list[Job], tok: UnitTokenizer, run: Run) -> None:
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
        save_dataset(datasets.DatasetDict(splits), run.unit_dataset(tok.hash, name))
    totals = Counter()
    for split_stats in (s for d in report.values() for s in d.values()):
        totals.update({k: split_stats[k] for k in ("rows", "seconds", "units", "encode_s")})
    atomic_write_text(run.units / REJECTS_FILE, "".join(f"{_json(r)}\n" for r in all_rejects))
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
    atomic_write_json(run.units_manifest, manifest)
    # Parts are only a resume/merge aid; once the manifest is complete they duplicate the data.
    shutil.rmtree(parts_root(run, tok.hash), ignore_errors=True)
    print(
        f"most units: {totals['rows']} rows, {totals['seconds'] / 3600:.2f} h, "
        f"{manifest['units_per_s']:.1f} units/s, {len(all_rejects)} rejected -> {run.units / tok.hash}"
    )


def _json(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def is_done(run: Run, h: str, sets: dict[str, Path]) -> bool:
    """Whether ``RUN/units`` holds complete units of tokenizer ``h`` for the data as it is now."""
    if not run.units_manifest.is_file():
        return False
    m = read_json(run.units_manifest)
    if not (m.get("hash") == h and m.get("complete")):
        return False
    if not all(run.unit_dataset(h, n).is_dir() for n in sets):
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
