"""Instruction and spoken-QA loaders: ingest speed of chat data spoken by espeak-ng, and a spoken-QA
set scored S->T and S->S (JSON on stdout).

- ``ingest``: ``--conversations`` chat conversations (questions about the embedded world's facts
  answered by their statements; a quarter of them two pairs long, some with a system turn) plus a
  few broken lines, written as ``.jsonl`` and ingested by ``most data --instructions.path`` beside a
  one-utterance Kaldi corpus. ``items_per_s`` = spoken ``sqa/qa_train`` rows (question and answer
  each synthesised) per second of the whole ``most data`` call.
- ``qa_set``: ``--questions`` world questions spoken by espeak-ng in the Llama Questions layout plus
  broken records (missing audio, no answer, not JSON), scored by :func:`most.eval.sqa.evaluate_qa_sets`
  with the tiny untrained spoken run of the tests (:func:`most.testing.write_spoken_run`) and its
  CTC judge: it measures time and plumbing, not answer quality (that model knows no fact).

    python benchmarks/instructions.py [--work /tmp/bench_instructions] [--conversations 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from most.corpora.instructions import InstructionsConfig
from most.corpora.tasks import qa_items
from most.corpora.world import WorldConfig, build_world
from most.generate import Sampling, SpeechLM
from most.run import Run
from most.stages.data import CorpusConfig, data
from most.testing import speak, write_spoken_run


def chat_file(path: Path, n: int, seed: int = 0) -> int:
    """``n`` conversations (and 4 broken lines) about world facts; returns the number of pairs."""
    qa = qa_items(build_world(WorldConfig(seed=seed)).facts, seed)
    rng = random.Random(seed)
    lines, pairs = [], 0
    for i in range(n):
        turns = [{"role": "system", "content": "Answer in one sentence."}] if i % 3 == 0 else []
        for item in rng.sample(qa, 2 if i % 4 == 0 else 1):
            turns += [
                {"role": "user", "content": item.question},
                {"role": "assistant", "content": item.answer_sentence},
            ]
            pairs += 1
        lines.append(json.dumps({"id": f"conv-{i:04d}", "messages": turns}))
    lines += [
        "{broken",
        json.dumps({"messages": []}),
        json.dumps({"messages": [{"role": "user", "content": "hello?"}]}),
        json.dumps({"messages": [{"role": "user", "content": ["a", "list"]}]}),
    ]
    path.write_text("\n".join(lines) + "\n")
    return pairs


def ingest(work: Path, n: int) -> dict:
    corpus = work / "corpus"
    (corpus / "train").mkdir(parents=True)
    sr = 16_000
    sf.write(corpus / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr), sr)
    for name, line in (("wav.scp", "u1 a.wav"), ("text", "u1 A TONE"), ("utt2spk", "u1 s")):
        (corpus / "train" / name).write_text(line + "\n")
    pairs = chat_file(work / "chat.jsonl", n)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = data(
            run=work / "run",
            corpus=CorpusConfig("kaldi", corpus, {"train": "train"}),
            instructions=InstructionsConfig(work / "chat.jsonl"),
            num_jobs=2,
        )
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text())
    sqa = manifest["datasets"]["sqa"]["qa_train"]
    return {
        "conversations": n,
        "pairs": pairs,
        "instructions_train": manifest["datasets"]["instructions"]["train"]["items"],
        "instructions_test": manifest["datasets"]["instructions"]["test"]["items"],
        "spoken_items": sqa["items"],
        "spoken_hours": sqa["hours"],
        "rejects": manifest["rejects"],
        "seconds": round(seconds, 1),
        "items_per_s": round(sqa["items"] / seconds, 2),
    }


def qa_set(work: Path, n: int) -> dict:
    folder = work / "qa_set"
    folder.mkdir(parents=True)
    qa = qa_items(build_world(WorldConfig(seed=1)).facts, 1)[:n]
    records = []
    for i, item in enumerate(qa):
        speak(item.question, "en-us+f3", folder / f"q{i}.wav")
        records.append({"question": item.question, "answer": item.answer, "audio": f"q{i}.wav"})
    records += [
        {"question": "lost", "answer": "x", "audio": "missing.wav"},
        {"question": "no answer", "audio": "q0.wav"},
    ]
    lines = [json.dumps(r) for r in records] + ["{not json"]
    (folder / "llama_q.jsonl").write_text("\n".join(lines) + "\n")

    from most.eval.judges import load_judge
    from most.eval.sqa import evaluate_qa_sets

    with contextlib.redirect_stdout(io.StringIO()):
        run = write_spoken_run(work / "spoken_run")
    lm = SpeechLM.load(Run(run).hf("stage2"), units=Run(run).units, device="cpu")
    judge = load_judge("ctc", run)
    start = time.perf_counter()
    sampling = Sampling(max_new_tokens=48, batch_size=16)
    out = evaluate_qa_sets(lm, {"llama_q": folder}, 1000, sampling, judge)["llama_q"]
    return {
        "n": out["n"],
        "rejects": out["rejects"],
        "s2t_accuracy": out["accuracy"],
        "s2s_accuracy": out["s2s"]["accuracy"],
        "s2s_text_accuracy": out["s2s"]["text_accuracy"],
        "judge": out["s2s"]["judge"],
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_instructions"))
    ap.add_argument("--conversations", type=int, default=200)
    ap.add_argument("--questions", type=int, default=24)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    result = {
        "ingest": ingest(args.work / "ingest", args.conversations),
        "qa_set": qa_set(args.work / "qa", args.questions),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
