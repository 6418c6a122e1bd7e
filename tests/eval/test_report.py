"""``most.eval.report``: nested results flatten to dotted metric keys."""

from most.eval.report import flat_metrics


def test_flat_metrics_shape():
    results = {"asr": {"test": {"wer": 0.1, "cer": 0.05}}, "text": {"ppl_model": 3.0}}
    assert flat_metrics(results) == {
        "asr.test.wer": 0.1,
        "asr.test.cer": 0.05,
        "text.ppl_model": 3.0,
    }
