"""Spoken question answering: speech->text, speech->speech and the same questions as text.

``qa_heldout`` facts appear in the text corpus but never as a QA training pair, so answering them
from speech measures cross-modal transfer (knowledge learnt from text, asked in speech); ``qa_train``
facts were trained on. The transfer ratio of the demo's quality bar is S->T (heldout) accuracy over
text-QA (heldout) accuracy of the same model.

Answers are matched by normalised containment (:func:`most.eval.metrics.contains_answer`). S->S is
scored on what the model *says*: its answer units are vocoded and transcribed by a judge; the text
the model writes before speaking (``text_then_units``) is scored separately as ``text_accuracy``.

Where S->S loses is measured on the same questions with the true answer sentence (the data's
``answer_sentence`` and its recording), each step transcribed by the same judge:

- ``original_accuracy``: the recording itself (how well the judge hears answers at all);
- ``resynth_accuracy``: its true units through the vocoder (what any model saying the right
  sentence can reach with these units, vocoder and judge);
- ``tts_accuracy``: the model speaking the true answer sentence (its voice when it knows what to
  say).

S->S can exceed none of them by much: it is roughly ``text_accuracy`` x ``tts_accuracy``.

A judge with a language model could write an answer it did not hear. That is measured too: each
true answer sentence with another question's answer in its place ("The capital of Velm is Drabu."
where the truth is Tarsk; the other answer comes from a question asked the same way), spoken by
espeak-ng in the answer's voice and transcribed by the judge. ``judge_fill_in`` is the share of
those transcripts that contain the *true* answer (should be ~0), ``counterfactual_heard`` the share
that contain the answer actually spoken.

Real spoken-QA sets (:func:`most.eval.loaders.load_qa_set`) are scored the same way, S->T and S->S
(:func:`evaluate_qa_sets`): the recorded question is encoded to units, the model writes or says its
answer, and a spoken answer counts when the judge's transcript contains one of the set's answers.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from most.corpora.schema import decode_audio
from most.corpora.speech import Voice, require_espeak, synthesize
from most.eval.judges import Judge, audible
from most.eval.loaders import load_qa_set
from most.generate import Sampling, SpeechLM
from most.progress import progress
from most.run import Run
from most.text import accuracy, answer_forms, normalize

SPLITS = {"heldout": "qa_heldout", "train": "qa_train"}


def evaluate_sqa(
    lm: SpeechLM,
    sqa_units: datasets.DatasetDict,
    n: int,
    sampling: Sampling,
    judge: Judge | None,
    sqa_audio: datasets.DatasetDict | None = None,
) -> dict:
    """``{"s2t"|"s2s"|"text": {"heldout"|"train": {"accuracy", "n", ...}}}``.

    With a judge, a vocoder and answer sentences in the data, ``s2s`` also gets the breakdown of
    the module doc (``original_accuracy`` needs ``sqa_audio``, the data's ``sqa`` with audio)."""
    out: dict = {"s2t": {}, "s2s": {}, "text": {}}
    hears = judge is not None and lm.units is not None and lm.units.has_decoder
    with progress() as bar:
        for name, split in SPLITS.items():
            if split not in sqa_units:
                continue
            ds = sqa_units[split]
            rows = ds.select(range(min(n, len(ds)))).select_columns(["units", "text", "answer"])
            answers = [
                answer_forms(a, q) for a, q in zip(rows["answer"], rows["text"], strict=True)
            ]
            spoken_truth = hears and _has_truth(ds)
            task = bar.add_task(f"sqa {name}", total=(4 if spoken_truth else 3) * len(rows))

            def tick(k: int, t=task) -> None:
                bar.advance(t, k)

            s2t = lm.s2t_units(rows["units"], sampling, on_batch=tick)
            out["s2t"][name] = _score(s2t, answers, rows["text"])
            spoken = lm.s2s_units(rows["units"], sampling, on_batch=tick)
            said = [t for t, _ in spoken]
            s2s = {"text_accuracy": accuracy(said, answers)}
            if hears:
                heard = judge.transcribe([audible(lm.vocode(u)) for _, u in spoken])
                s2s |= _score(heard, answers, rows["text"]) | {"judge": judge.name}
            else:
                s2s |= _score(said, answers, rows["text"]) | {"judge": None}
            if spoken_truth:
                truth = ds.select(range(len(rows)))
                s2s |= _spoken_truth(lm, judge, truth, answers, sampling, sqa_audio, split, tick)
            out["s2s"][name] = s2s
            prompts = [lm.prompts.instruct_prompt(q) for q in rows["text"]]
            text = [lm.text_of(a) for a in lm.generate(prompts, lm.prompts.stop_ids(), sampling)]
            tick(len(rows))
            out["text"][name] = _score(text, answers, rows["text"])
    return out


def evaluate_qa_sets(
    lm: SpeechLM, sets: dict[str, Path], n: int, sampling: Sampling, judge: Judge | None = None
) -> dict:
    """``{name: {"accuracy", "n", "examples", "rejects", "rejected", "s2s": {...}}}``: S->T
    (``accuracy``) and S->S on up to ``n`` usable records of each real spoken-QA set.

    ``s2s`` is scored as for the embedded sets: on what ``judge`` hears of the vocoded answer
    (``accuracy``; the written text when there is no judge or vocoder, then ``judge`` is None) and
    on the text written before speaking (``text_accuracy``). ``rejects`` counts the records skipped
    (``rejected``: the first five reasons, naming file and line)."""
    hears = judge is not None and lm.units is not None and lm.units.has_decoder
    out = {}
    for name, path in sets.items():
        records, rejects = load_qa_set(path, n)
        answers = [r["answers"] for r in records]
        questions = [r["question"] for r in records]
        units = lm.encode([r["audio"] for r in records]) if records else []
        s2t = lm.s2t_units(units, sampling) if records else []
        spoken = lm.s2s_units(units, sampling) if records else []
        said = [t for t, _ in spoken]
        s2s = {"text_accuracy": accuracy(said, answers)}
        if hears and records:
            heard = judge.transcribe([audible(lm.vocode(u)) for _, u in spoken])
            s2s |= _score(heard, answers, questions) | {"judge": judge.name}
        else:
            s2s |= _score(said, answers, questions) | {"judge": judge.name if hears else None}
        out[name] = _score(s2t, answers, questions) | {
            "rejects": len(rejects),
            "rejected": [r["message"] for r in rejects[:5]],
            "s2s": s2s,
        }
    return out


def _has_truth(ds: datasets.Dataset) -> bool:
    return {"answer_sentence", "answer_units"} <= set(ds.column_names)


def _spoken_truth(
    lm: SpeechLM,
    judge: Judge,
    rows: datasets.Dataset,
    answers: list[list[str]],
    sampling: Sampling,
    sqa_audio: datasets.DatasetDict | None,
    split: str,
    tick,
) -> dict:
    """The judge's accuracy on the true answer: recorded, resynthesised, spoken by the model."""
    rows = rows.select_columns(["id", "text", "answer", "answer_sentence", "answer_units"])
    resynth = judge.transcribe([audible(lm.vocode(u)) for u in rows["answer_units"]])
    said = lm.tts_units(rows["answer_sentence"], sampling, on_batch=tick)
    out = {
        "resynth_accuracy": accuracy(resynth, answers),
        "tts_accuracy": accuracy(judge.transcribe([audible(lm.vocode(u)) for u in said]), answers),
    }
    if sqa_audio is not None and split in sqa_audio:
        audio = sqa_audio[split].select_columns(["id", "answer_audio", "answer_voice"])
        where = {id_: i for i, id_ in enumerate(audio["id"])}
        if all(id_ in where for id_ in rows["id"]):
            picked = audio.select([where[id_] for id_ in rows["id"]]).with_format("numpy")
            wavs = [decode_audio(a) for a in picked["answer_audio"]]
            out["original_accuracy"] = accuracy(judge.transcribe(wavs), answers)
            voices = [str(v) for v in picked["answer_voice"]]
            out |= judge_fill_in(judge, rows, voices, answers)
    return out


def _asked_alike(question: str) -> str:
    """The question with its names taken out: "What is the capital of ?" for any country."""
    return question[:1] + re.sub(r"\b[A-Z][\w']*", "", question[1:])


def counterfactuals(
    questions: list[str], answers: list[str], sentences: list[str]
) -> list[tuple[int, int, str]]:
    """``(i, j, sentence)``: answer sentence ``i`` saying answer ``j`` instead, ``j`` the next
    question asked alike with an answer sharing no word with ``i``'s; questions without one are
    left out."""
    out = []
    for i, (q, a, sentence) in enumerate(zip(questions, answers, sentences, strict=True)):
        if not re.search(re.escape(a), sentence, re.IGNORECASE):
            continue
        words = set(a.lower().split())
        for j in [*range(i + 1, len(questions)), *range(i)]:
            if _asked_alike(questions[j]) == _asked_alike(q) and not words & set(
                answers[j].lower().split()
            ):
                fake = re.sub(re.escape(a), answers[j], sentence, count=1, flags=re.IGNORECASE)
                out.append((i, j, fake))
                break
    return out


def judge_fill_in(
    judge: Judge, rows: datasets.Dataset, voices: list[str], answers: list[list[str]]
) -> dict:
    """``{"judge_fill_in", "counterfactual_heard", "counterfactual_n"}`` (module doc)."""

    require_espeak()
    questions = [str(q) for q in rows["text"]]
    plain = [str(a) for a in rows["answer"]]
    items = counterfactuals(questions, plain, [str(t) for t in rows["answer_sentence"]])
    if not items:
        return {}
    wavs = [synthesize(fake, Voice.parse(voices[i]), f"cf{i}") for i, _, fake in items]
    heard = judge.transcribe(wavs)
    said = [answer_forms(plain[j], questions[i]) for i, j, _ in items]
    return {
        "judge_fill_in": accuracy(heard, [answers[i] for i, _, _ in items]),
        "counterfactual_heard": accuracy(heard, said),
        "counterfactual_n": len(items),
    }


def _score(predictions: list[str], answers: list[list[str]], questions: list[str]) -> dict:
    """``answers``: the accepted forms per question (:func:`most.eval.metrics.answer_forms`)."""
    examples = [
        {"question": q, "answer": a[0], "predicted": p}
        for q, a, p in list(zip(questions, answers, predictions, strict=True))[:3]
    ]
    return {"accuracy": accuracy(predictions, answers), "n": len(answers), "examples": examples}


def heldout_leaks(run: Path) -> dict:
    """How much of ``qa_heldout`` is visible to training, from the data the stages read.

    Counts held-out facts whose id is also in ``qa_train``, held-out questions (normalised) that
    occur as ``qa_train`` questions, and held-out questions that occur inside a training
    instruction prompt. All three must be 0 for the transfer test to mean anything. Data without
    ``qa_heldout`` (a real corpus with chat data) has nothing held out: ``{}``.
    """
    sqa = Run(run).load_data("sqa")
    if "qa_heldout" not in sqa:
        return {}
    held, train = sqa["qa_heldout"], sqa["qa_train"]
    train_q = {normalize(q) for q in train["text"]}
    held_q = {normalize(q) for q in held["text"]}
    prompts = ""
    if Run(run).has_data("instructions"):
        instr = Run(run).load_data("instructions")["train"]
        prompts = "\n".join(normalize(p) for p in instr["prompt"])
    return {
        "fact_overlap": len(set(held["fact_id"]) & set(train["fact_id"])),
        "question_in_qa_train": len(held_q & train_q),
        "question_in_instructions": sum(q in prompts for q in held_q),
        "heldout_facts": len(set(held["fact_id"])),
    }
