"""``most.eval.summary``: the demo wall-time row of the quality bar, from ``timings.tsv``."""

import pytest

from most.eval.summary import summarize


def test_summary_wall_time_row(tmp_path):
    from most.eval.summary import read_timings

    tsv = tmp_path / "timings.tsv"
    tsv.write_text("data\t120\nbase\t400\nbase\t420\nstage1\t1500\n")
    times = read_timings(tsv)
    assert times == {"data": 120.0, "base": 420.0, "stage1": 1500.0}  # the last run of a stage
    row = summarize({}, times)[0]
    assert row.name.startswith("demo wall time") and row.value == pytest.approx(34.0)
    assert row.passed is True
    assert summarize({}, {"stage1": 50 * 60})[0].passed is False
    tsv.write_text("data 120\n")
    with pytest.raises(ValueError, match=r"timings\.tsv:1"):
        read_timings(tsv)


def test_summary_peer_rows():
    """A peer recogniser's WER on the same split adds a row: the model's WER at most half of it."""
    metrics = {"asr.test.wer": 0.40, "asr.test.peer.pocketsphinx.wer": 0.948}
    rows = {r.name: r for r in summarize(metrics)}
    row = rows["ASR WER / pocketsphinx WER (test)"]
    assert row.value == pytest.approx(0.40 / 0.948) and row.passed is True
    metrics["asr.test.wer"] = 0.60
    assert {r.name: r for r in summarize(metrics)}[
        "ASR WER / pocketsphinx WER (test)"
    ].passed is False
    assert not any("pocketsphinx" in r.name for r in summarize({"asr.test.wer": 0.1}))
