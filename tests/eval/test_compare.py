"""``most.eval.compare``: two reports side by side, changes judged against their standard error
(binomial for accuracies, the ratio estimator over per-item word errors for a WER)."""

from __future__ import annotations

import math

import pytest

from most.eval.compare import accuracy_se, compare, markdown, standard_error, wer_se


def report(tts_items, s2s, ppl) -> dict:
    edits = sum(e for e, _ in tts_items)
    words = sum(w for _, w in tts_items)
    return {
        "metrics": {"tts.ctc.wer_model": edits / words, "sqa.s2s.accuracy": s2s,
                    "text.ppl_model": ppl, "asr.test.wer": 0.1},
        "details": {"tts": {"_word_errors": {"ctc": tts_items}},
                    "sqa": {"s2s": {"heldout": {"n": 100}}}},
    }  # fmt: skip


def test_wer_standard_error_by_hand() -> None:
    items = [[1, 4], [0, 4], [3, 4]]  # WER 4/12 = 1/3; residuals 1 - 4/3, -4/3, 3 - 4/3
    ss = (1 - 4 / 3) ** 2 + (4 / 3) ** 2 + (3 - 4 / 3) ** 2
    assert wer_se(items) == pytest.approx(math.sqrt(3 / 2 * ss) / 12)
    assert wer_se([[1, 4]]) is None  # one item: no spread to measure


def test_changes_are_judged_against_their_noise() -> None:
    before = report([[2, 10]] * 50, 0.60, 2.00)
    after = report([[1, 10]] * 25 + [[0, 10]] * 25, 0.62, 2.05)
    q = 62 / 104  # Agresti-Coull: (60 hits + 2) / (100 + 4)
    assert standard_error(before, "sqa.s2s.accuracy") == pytest.approx(math.sqrt(q * (1 - q) / 104))
    assert accuracy_se(0.0, 3) > 0.1  # none right of 3 is not a certain 0
    assert standard_error(before, "tts.ctc.wer_model") == pytest.approx(0.0)  # every item alike
    result = compare(before, after, ["ctc"])
    assert result["before"] == before["metrics"] and result["after"] == after["metrics"]
    checks = result["checks"]
    assert checks["tts.ctc.wer_model"]["verdict"] == "better"  # 0.2 -> 0.05, noise ~0.007
    assert checks["tts.ctc.wer_model"]["role"] == "aim"
    assert checks["sqa.s2s.accuracy"]["verdict"] == "same"  # +0.02 against 2 x 0.068
    assert checks["text.ppl_model"]["verdict"] == "worse"  # no noise estimate: +2.5 % > 1 %
    assert checks["text.ppl_model"]["noise"] is None and checks["text.ppl_model"]["role"] == "guard"
    assert checks["asr.test.wer"]["verdict"] == "same" and "asr.test_voices.wer" not in checks
    assert "| `tts.ctc.wer_model` | aim | 0.2 | 0.05 | -0.15 |" in markdown(result)
