"""Scores of UniAudio's speech tasks: voice-prompted TTS, voice conversion, speech enhancement and
speech continuation.

Test items come from the data's test splits (``most data --tasks.*``, :mod:`most.corpora.uniaudio`):

- ``vtts``: ``test_voices`` (voices never trained on) sentences, each with a ~3-s voice prompt from
  another ``test_voices`` utterance of its voice.
- ``vc``: a ``test`` utterance (seen voice) converted to the voice of the ``test_voices`` utterance
  of the same sentence, prompted with another utterance of that voice.
- ``se``: ``test_noisy`` utterances -> the clean ``test`` utterance of the same text.

Scores (means over the items):

- ``wer``: the judge's transcript of the model's speech (vtts, vc) against the sentence.
- ``speaker_sim``: cosine of speaker embeddings (:mod:`most.eval.speaker`, an encoder trained on
  the run's ``train`` voices) of the model's speech and the real target utterance;
  ``speaker_sim_real`` the same for the real prompt utterance (the ceiling), ``speaker_sim_source``
  (vc) of the model's speech and the source utterance (conversion should lower it).
- ``speech_continue.speaker_sim``: the model's continuation of the first half of a ``test``
  utterance against the whole real utterance (the voice carries on).
- ``si_sdr`` and ``stoi`` of the enhanced speech, ``*_input`` of the noisy input, ``*_resynth`` of
  the clean units through the vocoder (the ceiling of any unit model), all against the clean audio;
  ``wer`` / ``wer_input`` / ``wer_resynth``: the judge's transcripts of the enhanced speech, the
  noisy speech and the clean units' resynthesis.

The encoder's own quality is reported beside them (``speaker_encoder.accuracy``: nearest voice of
held-out ``test`` utterances; ``speaker_encoder.eer_unseen``: same- vs different-voice pairs of
``test_voices``). Speaker similarity is meaningful only with units that keep the voice (``rvq``,
``codec``); ``ctc_phones`` units carry none, so any voice prompt is lost on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np

from most.audio import decode_audio
from most.eval.enhance import enhancement_scores, si_sdr, stoi
from most.eval.judges import Judge, audible
from most.eval.metrics import wer
from most.eval.speaker import (
    SpeakerConfig,
    SpeakerEncoder,
    equal_error_rate,
    fit_speaker_encoder,
    nearest_voice_accuracy,
    pair_scores,
    speaker_similarity,
)
from most.generate import Sampling, SpeechLM
from most.io import read_json
from most.layout import END_OF_AUDIO, UNIAUDIO_SPECIALS, TokenLayout
from most.progress import progress
from most.train.uniaudio import PROMPT_SECONDS, VoicePrompts

EVAL_TASKS = ("vtts", "vc", "se", "speech_continue")
#: Training utterances a voice for the speaker encoder (enough to name a voice; fits in seconds).
PER_VOICE = 40


def audio_by_id(split: datasets.Dataset) -> dict[str, dict]:
    rows = split.select_columns(["id", "audio"])
    return dict(zip(rows["id"], rows["audio"], strict=True))


def _wavs(cells: Sequence[dict]) -> list[np.ndarray]:
    return [decode_audio(c) for c in cells]


def speaker_encoder(speech: datasets.DatasetDict, cfg: SpeakerConfig = SpeakerConfig()):
    """The encoder fitted on up to :data:`PER_VOICE` ``train`` utterances a voice, and its scores."""
    train = speech["train"].select_columns(["audio", "voice"])
    picked, seen = [], {}
    for i, v in enumerate(train["voice"]):
        if seen.get(v, 0) < PER_VOICE:
            picked.append(i)
            seen[v] = seen.get(v, 0) + 1
    rows = train.select(picked)
    enrol, voices = _wavs(rows["audio"]), list(rows["voice"])
    model = fit_speaker_encoder(enrol, voices, cfg)
    quality = {}
    test = speech["test"].select(range(min(60, len(speech["test"]))))
    quality["accuracy"] = nearest_voice_accuracy(
        model, enrol, voices, _wavs(test["audio"]), list(test["voice"])
    )
    unseen = speech["test_voices"].select(range(min(40, len(speech["test_voices"]))))
    same, different = pair_scores(model, _wavs(unseen["audio"]), list(unseen["voice"]))
    if len(same) and len(different):
        quality["eer_unseen"] = equal_error_rate(same, different)
    return model, quality


def _speak(lm: SpeechLM, prompts: list[list[int]], sampling: Sampling, task: str) -> list:
    """The model's speech after ``prompts`` (audio, 16 kHz), with a progress bar."""
    stops = [lm.layout.special_id(END_OF_AUDIO), lm.prompts.eos_id]
    with progress() as bar:
        row = bar.add_task(f"tasks: {task}", total=len(prompts))
        advance = lambda k: bar.advance(row, k)  # noqa: E731
        out = lm.generate(prompts, stops, sampling, guided=True, on_batch=advance)
    return [audible(lm.vocode(lm.units_of(ids))) for ids in out]


def prompt_ids(lm: SpeechLM, seconds: float = PROMPT_SECONDS) -> tuple[int, int]:
    """``(ids of a voice prompt, ids a frame)`` for ``lm``'s unit tokenizer."""
    step = int(getattr(lm.units, "n_codebooks", 1))
    return max(1, round(seconds * float(lm.units.frame_rate))) * step, step


def evaluate_vtts(
    lm, judge: Judge, spk: SpeakerEncoder, speech, units, n: int, sampling: Sampling
) -> dict:
    pool = units["test_voices"].select_columns(["id", "units", "text", "voice"])
    voices = VoicePrompts(pool, *prompt_ids(lm))
    rows = pool.select(range(min(n, len(pool))))
    prompts_, refs, ceiling = [], [], []
    audio, ids = audio_by_id(speech["test_voices"]), pool["id"]
    for r in rows:
        prompt = voices(r["voice"], r["units"])
        prompts_.append(lm.prompts.vtts_prompt(prompt, r["text"]))
        refs.append(audio[r["id"]])
        ceiling.append(audio[ids[voices.pick(r["voice"], r["units"])]])
    spoken = _speak(lm, prompts_, sampling, "vtts")
    refs_w, ceil_w = _wavs(refs), _wavs(ceiling)
    texts = list(rows["text"])
    return {
        "wer": wer(texts, judge.transcribe(spoken)),
        "speaker_sim": float(speaker_similarity(spk, spoken, refs_w).mean()),
        "speaker_sim_real": float(speaker_similarity(spk, ceil_w, refs_w).mean()),
        "_n": len(texts),
    }


def evaluate_vc(
    lm, judge: Judge, spk: SpeakerEncoder, speech, units, n: int, sampling: Sampling
) -> dict:
    target_pool = units["test_voices"].select_columns(["id", "units", "text", "voice"])
    voices = VoicePrompts(target_pool, *prompt_ids(lm))
    target_of = {t: i for i, t in enumerate(target_pool["text"])}
    source = units["test"].select_columns(["id", "units", "text", "voice"])
    rows = [r for r in source if r["text"] in target_of][:n]
    a_src, a_tgt = audio_by_id(speech["test"]), audio_by_id(speech["test_voices"])
    prompts_, tgt_ids = [], []
    for r in rows:
        t = target_pool[target_of[r["text"]]]
        prompts_.append(lm.prompts.vc_prompt(r["units"], voices(t["voice"], t["units"])))
        tgt_ids.append(t["id"])
    spoken = _speak(lm, prompts_, sampling, "vc")
    targets = _wavs([a_tgt[i] for i in tgt_ids])
    sources = _wavs([a_src[r["id"]] for r in rows])
    return {
        "wer": wer([r["text"] for r in rows], judge.transcribe(spoken)),
        "speaker_sim": float(speaker_similarity(spk, spoken, targets).mean()),
        "speaker_sim_source": float(speaker_similarity(spk, spoken, sources).mean()),
        "_n": len(rows),
    }


def evaluate_se(lm, judge: Judge, speech, units, n: int, sampling: Sampling) -> dict:
    clean_units = units["test"].select_columns(["id", "units", "text"])
    clean_of = {t: i for i, t in enumerate(clean_units["text"])}
    noisy = units["test_noisy"].select_columns(["id", "units", "text"])
    rows = [r for r in noisy if r["text"] in clean_of][:n]
    a_clean, a_noisy = audio_by_id(speech["test"]), audio_by_id(speech["test_noisy"])
    clean_rows = [clean_units[clean_of[r["text"]]] for r in rows]
    enhanced = _speak(lm, [lm.prompts.se_prompt(r["units"]) for r in rows], sampling, "se")
    clean = _wavs([a_clean[c["id"]] for c in clean_rows])
    noisy = _wavs([a_noisy[r["id"]] for r in rows])
    scores = enhancement_scores(enhanced, noisy, clean)
    resynth = [audible(lm.vocode(c["units"])) for c in clean_rows]
    texts = [r["text"] for r in rows]
    return {
        **scores,
        "si_sdr_resynth": float(
            np.mean([si_sdr(r, w) for r, w in zip(resynth, clean, strict=True)])
        ),
        "stoi_resynth": float(np.mean([stoi(r, w) for r, w in zip(resynth, clean, strict=True)])),
        "wer": wer(texts, judge.transcribe(enhanced)),
        "wer_input": wer(texts, judge.transcribe(noisy)),
        "wer_resynth": wer(texts, judge.transcribe(resynth)),
        "_n": len(rows),
    }


def evaluate_speech_continue(
    lm, spk: SpeakerEncoder, speech, units, n: int, sampling: Sampling
) -> dict:
    """The first half (whole frames) of ``test`` utterances continued: does the voice carry on?"""
    _, step = prompt_ids(lm)
    pool = units["test"].select_columns(["id", "units"])
    rows = [r for r in pool if len(r["units"]) >= 2 * step][:n]
    heads = [r["units"][: (len(r["units"]) // step // 2) * step] for r in rows]
    prompts_ = [lm.prompts.speech_continue_prompt(h) for h in heads]
    spoken = _speak(lm, prompts_, sampling, "speech_continue")
    audio = audio_by_id(speech["test"])
    real = _wavs([audio[r["id"]] for r in rows])
    return {"speaker_sim": float(speaker_similarity(spk, spoken, real).mean()), "_n": len(rows)}


def evaluate_tasks(
    lm: SpeechLM,
    judge: Judge,
    speech: datasets.DatasetDict,
    units: datasets.DatasetDict,
    tasks: Sequence[str],
    n: int,
    sampling: Sampling,
    speaker: SpeakerConfig = SpeakerConfig(),
) -> dict:
    """``{task: scores}`` for each of ``tasks`` (of :data:`EVAL_TASKS`), plus ``speaker_encoder``."""
    need = {"vtts": ("test_voices",), "vc": ("test", "test_voices"), "se": ("test", "test_noisy")}
    need["speech_continue"] = ("test",)
    for task in tasks:
        missing = [s for s in need[task] if s not in speech or s not in units]
        if missing:
            raise ValueError(
                f"tasks eval: {task} needs the speech splits {missing}; "
                "build the data with --tasks.n_noisy > 0 and encode it with `most units`"
            )
    out: dict = {}
    spk = None
    if {"vtts", "vc", "speech_continue"} & set(tasks):
        spk, out["speaker_encoder"] = speaker_encoder(speech, speaker)
    if "vtts" in tasks:
        out["vtts"] = evaluate_vtts(lm, judge, spk, speech, units, n, sampling)
    if "vc" in tasks:
        out["vc"] = evaluate_vc(lm, judge, spk, speech, units, n, sampling)
    if "se" in tasks:
        out["se"] = evaluate_se(lm, judge, speech, units, n, sampling)
    if "speech_continue" in tasks:
        out["speech_continue"] = evaluate_speech_continue(lm, spk, speech, units, n, sampling)
    return out


def trained_tasks(model_dir: Path, earlier: Sequence[Path] = ()) -> list[str]:
    """The tasks of :data:`EVAL_TASKS` the model was trained on: a ratio > 0 in the
    ``metrics.json`` beside ``model_dir`` (a stage's ``hf`` folder) or beside an ``earlier``
    stage's folder it continued from, and its layout has their markers."""
    layout = TokenLayout.load(model_dir)
    if not set(UNIAUDIO_SPECIALS) <= set(layout.specials):
        return []
    ratios: dict[str, float] = {}
    for folder in (model_dir, *earlier):
        metrics = Path(folder).parent / "metrics.json"
        if metrics.is_file():
            for task, r in read_json(metrics).get("ratios", {}).items():
                ratios[task] = max(ratios.get(task, 0.0), float(r))
    return [t for t in EVAL_TASKS if ratios.get(t, 0.0) > 0]
