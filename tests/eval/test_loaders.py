"""Real-set readers on files laid out as the published sets are (built here, tiny)."""

import csv
import json

import numpy as np
import pytest

from most.audio import write_wav
from most.eval.loaders import load_minimal_pairs, load_qa_set
from most.testing import speak


def tone(freq: float, seconds: float = 0.3) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


#: sWUGGY-style (word, pseudo-word) pairs, spoken by espeak-ng in two voices
WUGGY = [("brick", "blick"), ("garden", "gurden"), ("window", "wundow")]


def test_zerospeech_minimal_pairs(tmp_path):
    """The sWUGGY gold.csv layout (id, filename, voice, word, correct) with spoken words: every
    pair is (real word, pseudo-word) of one id and voice, whatever the row order; a group missing
    one side is skipped; a listed file that is missing is named."""
    rows, audio = [], {}
    (tmp_path / "dev").mkdir()
    for i, pair in enumerate(WUGGY):
        for voice in ("en-us+m3", "en-gb+f3"):
            for correct, word in ((0, pair[1]), (1, pair[0])):  # pseudo-word listed first
                name = f"{i:03d}_{voice.replace('+', '-')}_{word}"
                audio[name] = speak(word, voice, tmp_path / "dev" / f"{name}.wav")
                rows.append(dict(id=str(i), filename=name, voice=voice, word=word, correct=correct))
    rows.append(dict(id="9", filename="lonely", voice="en-us+m3", word="lone", correct=1))
    write_wav(tmp_path / "dev" / "lonely.wav", audio[rows[0]["filename"]])
    with (tmp_path / "gold.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    pairs = load_minimal_pairs(tmp_path, 10)
    assert len(pairs) == len(WUGGY) * 2  # the one-sided group is skipped
    by_file = dict(audio)
    for (good, bad), i in zip(pairs, [0, 0, 1, 1, 2, 2], strict=True):
        real, pseudo = WUGGY[i]
        assert any(np.array_equal(good, w) for n, w in by_file.items() if n.endswith(f"_{real}"))
        assert any(np.array_equal(bad, w) for n, w in by_file.items() if n.endswith(f"_{pseudo}"))
    assert len(load_minimal_pairs(tmp_path, 2)) == 2

    (tmp_path / "dev" / f"{rows[0]['filename']}.wav").unlink()
    with pytest.raises(FileNotFoundError, match="audio for pair"):
        load_minimal_pairs(tmp_path, 10)
    (tmp_path / "gold.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"gold\.csv"):
        load_minimal_pairs(tmp_path, 2)


@pytest.mark.parametrize(
    ("record", "answers"),
    [
        ({"question": "q", "answer": "Paris", "audio": "a.wav"}, ["Paris"]),  # Llama Questions
        (
            {"question": "q", "answers": ["Paris", "paris france"], "audio_path": "a.wav"},
            ["Paris", "paris france"],
        ),  # WebQuestions
        (
            {
                "Question": "q",
                "Answer": {"Value": "Paris", "Aliases": ["City of Light"]},
                "audio_filepath": "a.wav",
            },
            ["Paris", "City of Light"],
        ),  # TriviaQA
    ],
)
def test_spoken_qa_formats(tmp_path, record, answers):
    write_wav(tmp_path / "a.wav", tone(200))
    (tmp_path / "set.jsonl").write_text(json.dumps(record) + "\n")
    (item,), rejects = load_qa_set(tmp_path, 5)
    assert item["answers"] == answers and item["question"] == "q" and rejects == []
    assert item["audio"].dtype == np.float32 and item["audio"].size == 4800


def test_spoken_qa_bad_records(tmp_path):
    write_wav(tmp_path / "a.wav", tone(200))
    records = [{"question": "q", "audio": "a.wav"}, {"audio": "a.wav", "answer": "x"}]
    (tmp_path / "set.json").write_text(json.dumps(records))
    got, rejects = load_qa_set(tmp_path / "set.json", 5)
    assert [r["answers"] for r in got] == [["x"]]
    assert rejects == [
        {"file": f"{tmp_path / 'set.json'}[0]", "reason": "no_answer",
         "message": f"{tmp_path / 'set.json'}[0]: no answer"}
    ]  # fmt: skip
    (tmp_path / "set.json").write_text("[{")
    with pytest.raises(ValueError, match=r"set\.json: not valid JSON"):
        load_qa_set(tmp_path / "set.json", 5)
