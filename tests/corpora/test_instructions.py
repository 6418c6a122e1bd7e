"""Chat data for stage 2 beside a real speech corpus: text instructions and spoken pairs (espeak-ng
or recorded user turns), from .jsonl and datasets on disk; bad conversations are named rejects."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from most.audio import decode_audio
from most.corpora.instructions import InstructionsConfig, pairs_of, read_instructions
from most.run import Run
from most.stages.data import CorpusConfig, data
from most.testing import speak

SR = 16_000


def _kaldi(root: Path) -> Path:
    """A two-utterance Kaldi corpus of tones."""
    root.mkdir(parents=True)
    sf.write(root / "a.wav", 0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR), SR)
    data_dir = root / "train"
    data_dir.mkdir()
    (data_dir / "wav.scp").write_text("u1 a.wav\nu2 a.wav\n")
    (data_dir / "text").write_text("u1 A TONE\nu2 THE SAME TONE\n")
    (data_dir / "utt2spk").write_text("u1 s\nu2 s\n")
    return root


def chat(*turns: tuple[str, object]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


def conversation(i: int) -> dict:
    return {
        "id": f"c{i}",
        "messages": chat(
            ("system", "You answer briefly."),
            ("user", f"What comes after {i}?"),
            ("assistant", f"**{i + 1}** comes after {i}."),
        ),
    }


def test_pairs_keep_each_user_turn_with_the_answer_that_follows() -> None:
    msgs = chat(("user", "a"), ("assistant", "b"), ("user", "c"), ("user", "d"), ("assistant", "e"))
    assert pairs_of(msgs) == ([("a", "b", 0), ("d", "e", 2)], None)  # user turns 0, 1, 2
    assert pairs_of(chat(("system", ""), ("user", "a"), ("assistant", "b")))[0] == [("a", "b", 0)]
    assert pairs_of(chat(("assistant", "b"), ("user", "a")))[1][0] == "no_pair"
    assert pairs_of(chat(("user", "a"), ("tool", "b")))[1] == (
        "bad_text",
        "message 1 has role 'tool' (expected one of ('system', 'user', 'assistant'))",
    )


def test_chat_jsonl_beside_a_kaldi_corpus(tmp_path: Path) -> None:
    corpus = _kaldi(tmp_path / "corpus")
    chats = tmp_path / "chats"
    chats.mkdir()
    speak("where is the old gate", "en-us+f3", chats / "q.wav")
    rows = [conversation(i) for i in range(10)]
    rows[1]["messages"] += chat(("user", "And after that?"), ("assistant", f"Then {3}."))
    rows[1]["audio"] = [None, str(chats / "q.wav")]  # one per user turn: the second recorded
    rows[2]["audio"] = "q.wav"  # the first user turn recorded, relative to the file
    rows[3]["audio"] = "missing.wav"
    rows[4]["messages"][2]["content"] = " ".join(["word"] * 70)  # too long to speak: text only
    lines = [json.dumps(r) for r in rows]
    bad = [
        "{not json",
        json.dumps({"id": "x"}),
        json.dumps({"messages": ["hello"]}),
        json.dumps({"messages": chat(("user", "hi"), ("assistant", 7))}),
        json.dumps({"messages": chat(("user", " "), ("assistant", "hi"))}),
        json.dumps({"messages": chat(("user", "hi"))}),
    ]
    (chats / "a.jsonl").write_text("\n".join(lines[:5] + bad + [""] + lines[5:]) + "\n")
    run = tmp_path / "run"
    cfg = InstructionsConfig(path=chats, audio_column="audio", test=1, max_words=60)
    data(run=run, corpus=CorpusConfig("kaldi", corpus, {"train": "train"}), instructions=cfg)

    instr = Run(run).load_data("instructions")
    assert (len(instr["train"]), len(instr["test"])) == (10, 1)  # 11 pairs, 1 conversation held
    prompts = [*instr["train"]["prompt"], *instr["test"]["prompt"]]
    assert sorted(prompts) == sorted(
        ["And after that?"] + [f"What comes after {i}?" for i in range(10)]
    )
    assert set(instr["train"]["task"]) == {"chat"}
    assert instr["test"]["prompt"] == ["What comes after 7?"]  # a whole conversation (seed 0)

    qa = Run(run).load_data("sqa")
    assert list(qa) == ["qa_train"]
    by_question = {r["text"]: r for r in qa["qa_train"]}
    # the training pairs, less the long answer (text only) and the missing recording (rejected)
    unspoken = {"What comes after 3?", "What comes after 4?"}
    assert set(by_question) == set(instr["train"]["prompt"]) - unspoken
    second = by_question["And after that?"]
    assert second["voice"] == "recorded" and by_question["What comes after 1?"]["voice"] in cfg.tts
    assert (second["fact_id"], second["answer"], second["answer_sentence"]) == (
        "c1",
        "Then 3.",
        "Then 3.",
    )
    for r in by_question.values():
        assert r["answer"] == r["answer_sentence"] and "*" not in r["answer"]
        assert r["answer_voice"] in cfg.answer_tts and r["task"] == "sqa"
        assert (
            len(decode_audio(r["audio"])) > SR // 4
            and len(decode_audio(r["answer_audio"])) > SR // 4
        )
    recorded = by_question["What comes after 2?"]
    assert (recorded["voice"], recorded["fact_id"]) == ("recorded", "c2")
    assert recorded["answer"] == "3 comes after 2."
    assert abs(recorded["duration"] - sf.info(chats / "q.wav").duration) < 0.05
    assert {r["voice"] for r in by_question.values()} - {"recorded"} <= set(cfg.tts)

    rejects = [json.loads(r) for r in (run / "data" / "rejects.jsonl").read_text().splitlines()]
    f = chats / "a.jsonl"
    assert [(r["dataset"], r["file"], r["reason"]) for r in rejects] == [
        ("sqa", f"{f}:4", "missing_file"),
        ("instructions", f"{f}:6", "bad_text"),
        ("instructions", f"{f}:7", "bad_text"),
        ("instructions", f"{f}:8", "bad_text"),
        ("instructions", f"{f}:9", "bad_text"),
        ("instructions", f"{f}:10", "empty_text"),
        ("instructions", f"{f}:11", "no_pair"),
    ]
    assert "missing.wav" in rejects[0]["message"]
    assert "message 1 (assistant): content is int, not text" in rejects[4]["message"]
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    assert manifest["rejects"] == len(rejects)


def test_a_dataset_on_disk_with_recorded_questions(tmp_path: Path) -> None:
    speak("what comes after one", "en-us+m3", tmp_path / "q.wav")
    msgs = [chat(("user", f"What comes after {i}?"), ("assistant", f"{i + 1}.")) for i in range(4)]
    msgs.append(chat(("user", "What comes after nothing?"), ("assistant", "")))
    ds = datasets.Dataset.from_dict(
        {"messages": msgs, "question_audio": [str(tmp_path / "q.wav")] * 4 + [None]}
    ).cast_column("question_audio", datasets.Audio())
    datasets.DatasetDict(train=ds).save_to_disk(str(tmp_path / "ds"))
    cfg = InstructionsConfig(path=tmp_path / "ds", audio_column="question_audio", test=0)
    items, text, rejects = read_instructions(cfg, tmp_path / "scratch")
    assert (len(text["train"]), len(text["test"])) == (4, 0)
    assert [(r["file"], r["reason"]) for r in rejects] == [
        (f"{tmp_path / 'ds'}[train][4]", "empty_text")
    ]
    assert len(items) == 4 and all(i.columns["voice"] == "recorded" for i in items)
    got, want = (sf.read(p)[0] for p in (items[0].audio["audio"].path, tmp_path / "q.wav"))
    assert np.array_equal(got, want)  # the recording itself, not a TTS reading

    with pytest.raises(ValueError, match="no column 'speech'"):
        read_instructions(InstructionsConfig(tmp_path / "ds", audio_column="speech"), tmp_path)


def test_bad_settings_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embedded world writes its own instructions"):
        data(run=tmp_path / "run", instructions=InstructionsConfig(tmp_path))
    with pytest.raises(ValueError, match="is not 'variant:rate:pitch'"):
        InstructionsConfig(tts=("en-us",))
    with pytest.raises(FileNotFoundError, match="instruction data not found"):
        read_instructions(InstructionsConfig(tmp_path / "none.jsonl"), tmp_path)
    (tmp_path / "chat.json").write_text("[]")
    with pytest.raises(ValueError, match=r"is \.jsonl"):
        read_instructions(InstructionsConfig(tmp_path / "chat.json"), tmp_path)
    (tmp_path / "empty.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="no conversation with a user turn"):
        read_instructions(InstructionsConfig(tmp_path / "empty.jsonl"), tmp_path)
