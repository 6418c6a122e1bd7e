"""espeak-ng synthesis: text is always spoken, never read as an option."""

from __future__ import annotations

import numpy as np

from most.corpora.speech import SAMPLE_RATE, Voice, synthesize


def test_text_starting_with_a_dash_is_spoken() -> None:
    voice = Voice.parse("en-us+m3:160:50")
    dash = synthesize("-x --stdout hello there", voice, "k")
    plain = synthesize("x stdout hello there", voice, "k")
    assert dash.dtype == np.float32 and dash.size > 0.5 * SAMPLE_RATE
    assert abs(dash.size - plain.size) < 0.25 * plain.size  # the same words, said
