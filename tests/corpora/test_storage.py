"""Audio is stored encoded (16-bit mono FLAC at 16 kHz) and decoded when read."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from most.audio import AudioError, read_audio
from most.corpora.ingest import (
    FileAudio,
    SourceItem,
    SpokenAudio,
    load_item,
    load_split,
    write_split,
)
from most.corpora.schema import SPEECH_FEATURES, audio_value, decode_audio
from most.corpora.speech import Voice, synthesize

SR = 16_000
STEP = 1 / 32768  # one 16-bit quantisation step


def _speechlike(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.4 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + noise).astype(
        np.float32
    )


def _item(path: Path, start: float = 0.0, end: float | None = None) -> SourceItem:
    columns = {"text": "a word", "voice": "v", "task": "asr_tts"}
    return SourceItem(
        id=path.stem, columns=columns, audio={"audio": FileAudio(str(path), start, end)}
    )


def _stored(bytes_: bytes) -> tuple[str, str, int, int]:
    info = sf.info(io.BytesIO(bytes_))
    return info.format, info.subtype, info.channels, info.samplerate


def test_round_trip_is_within_16_bit_quantisation() -> None:
    wav = _speechlike(1.3, SR)
    value = audio_value(wav)
    assert set(value) == {"bytes", "sampling_rate"} and value["sampling_rate"] == SR
    assert _stored(value["bytes"]) == ("FLAC", "PCM_16", 1, SR)
    back = decode_audio(value)
    assert back.dtype == np.float32 and back.shape == wav.shape
    assert np.abs(back - wav).max() <= STEP / 2 + 1e-7
    # out-of-range samples are clipped, and 16-bit samples come back exactly
    assert decode_audio(audio_value(np.array([1.5, -2.0, 0.25], np.float32))).tolist() == [
        1 - STEP,
        -1.0,
        0.25,
    ]
    assert len(value["bytes"]) < wav.nbytes / 2  # smaller than the float32 samples it replaces


def test_undecodable_bytes_are_an_audio_error() -> None:
    with pytest.raises(AudioError) as e:
        decode_audio({"bytes": b"fLaC but not really", "sampling_rate": SR})
    assert e.value.reason == "unreadable"
    # decoded samples (an external dataset's struct) are read too, resampled to 16 kHz
    wav = decode_audio({"array": _speechlike(1.0, 8000).tolist(), "sampling_rate": 8000})
    assert wav.dtype == np.float32 and wav.shape == (SR,)


def test_a_16k_mono_flac_is_stored_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "utt.flac"
    sf.write(path, _speechlike(1.0, SR), SR, subtype="PCM_16")
    row, reject = load_item(_item(path), max_seconds=None)
    assert reject is None
    assert row["audio"]["bytes"] == path.read_bytes()
    assert row["duration"] == pytest.approx(1.0)
    assert np.array_equal(decode_audio(row["audio"]), read_audio(path))


@pytest.mark.parametrize(
    ("name", "sr", "channels", "subtype"),
    [
        ("rate.flac", 22_050, 1, "PCM_16"),
        ("stereo.flac", SR, 2, "PCM_16"),
        ("deep.flac", SR, 1, "PCM_24"),
        ("plain.wav", SR, 1, "PCM_16"),
    ],
)
def test_other_audio_is_encoded_from_its_waveform(
    tmp_path: Path, name: str, sr: int, channels: int, subtype: str
) -> None:
    wav = _speechlike(1.0, sr)
    path = tmp_path / name
    sf.write(
        path, np.stack([wav, 0.5 * wav], axis=1) if channels == 2 else wav, sr, subtype=subtype
    )
    row, reject = load_item(_item(path), max_seconds=None)
    assert reject is None
    assert row["audio"]["bytes"] != path.read_bytes()
    assert _stored(row["audio"]["bytes"]) == ("FLAC", "PCM_16", 1, SR)
    expected = read_audio(path)
    decoded = decode_audio(row["audio"])
    assert decoded.shape == expected.shape == (SR,)
    assert np.abs(decoded - expected).max() <= STEP / 2 + 1e-7


def test_a_segment_is_cut_and_encoded(tmp_path: Path) -> None:
    wav = _speechlike(2.0, SR)
    path = tmp_path / "long.flac"
    sf.write(path, wav, SR, subtype="PCM_16")
    row, reject = load_item(_item(path, 0.5, 1.25), max_seconds=None)
    assert reject is None and row["duration"] == pytest.approx(0.75)
    assert row["audio"]["bytes"] != path.read_bytes()
    decoded = decode_audio(row["audio"])
    # a 16-bit source is cut without loss: exactly the file's samples 8000..20000
    assert np.array_equal(decoded, read_audio(path)[8000:20000])


def test_synthesised_speech_is_encoded() -> None:
    voice = Voice.parse("en-us+f3:160:50")
    item = SourceItem(
        id="s0",
        columns={"text": "the river is vel", "voice": "en-us+f3:160:50", "task": "asr_tts"},
        audio={"audio": SpokenAudio("the river is vel", voice)},
    )
    row, reject = load_item(item, max_seconds=None)
    assert reject is None and _stored(row["audio"]["bytes"]) == ("FLAC", "PCM_16", 1, SR)
    spoken = synthesize("the river is vel", voice, "s0/audio")
    decoded = decode_audio(row["audio"])
    assert decoded.shape == spoken.shape
    assert np.abs(decoded - np.clip(spoken, -1, 1 - STEP)).max() <= STEP / 2 + 1e-7


def test_shards_hold_bytes_and_an_older_format_is_rewritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    items = []
    for i in range(3):
        path = src / f"u{i}.flac"
        sf.write(path, _speechlike(0.5 + i / 4, SR, seed=i), SR, subtype="PCM_16")
        items.append(_item(path))
    out = tmp_path / "train"
    out.mkdir()
    # a finished shard from a build that stored decoded samples
    old = pa.table({"id": ["x"], "audio": [{"array": [0.0], "sampling_rate": SR}]})
    pq.write_table(old, out / "shard-00000.parquet")
    (out / "shard-00000.rejects.jsonl").write_text("")
    stats = write_split(items, out, SPEECH_FEATURES)
    assert stats.items == 3 and stats.seconds == pytest.approx(0.5 + 0.75 + 1.0)
    ds = load_split(out, SPEECH_FEATURES, tmp_path / "cache")
    assert ds.features["audio"]["bytes"].dtype == "binary"
    for row, item in zip(ds, items, strict=True):
        assert row["audio"]["bytes"] == Path(item.audio["audio"].path).read_bytes()
