"""Real-set readers on files laid out as the published sets are (built here, tiny)."""

import csv
import json

import numpy as np
import pytest

from most.audio import write_wav
from most.eval.loaders import load_minimal_pairs, load_qa_set


def tone(freq: float, seconds: float = 0.3) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_zerospeech_minimal_pairs(tmp_path):
    rows = []
    for i in range(3):
        for correct, freq in ((1, 300), (0, 500)):
            name = f"{i:03d}_{correct}"
            write_wav(tmp_path / "dev" / f"{name}.wav", tone(freq + i))
            rows.append(
                {"id": str(i), "filename": name, "word": "w", "voice": "v", "correct": correct}
            )
    with (tmp_path / "gold.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pairs = load_minimal_pairs(tmp_path, 2)
    assert len(pairs) == 2
    good, bad = pairs[0]
    # the good item is the correct=1 file (300 Hz), whatever the row order
    assert np.argmax(np.abs(np.fft.rfft(good))) < np.argmax(np.abs(np.fft.rfft(bad)))
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
