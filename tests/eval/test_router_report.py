"""The router report for a model with three modality groups: every modality of the layout gets its
load, in-group share and a heat-map panel, whichever modalities the examples hold."""

from __future__ import annotations

import pytest

from most.data.prompts import Example
from most.eval.router_report import plot_heatmap, router_summary
from most.testing import layout_args, mixed_batch
from most.testing.tiny_moe import adapt_tiny, tiny_base


def test_router_summary_and_heatmap_for_three_modalities(tmp_path):
    groups = {"text": [0, 2, 5, 7], "speech": [1, 3], "music": [4, 6]}
    model = adapt_tiny(tiny_base("qwen3_moe"), layout_args(music=True), groups=groups)
    with_music = mixed_batch(model.layout, batch=3, n_music=4).tolist()
    no_music = mixed_batch(model.layout, batch=2).tolist()
    examples = [Example(ids, ids, "mix") for ids in [*with_music, *no_music]]
    summary = router_summary(model, examples, batch_size=2)
    assert model.routing.telemetry is None  # switched off again
    for per in summary.values():
        assert list(per) == ["text", "speech", "music"]
        assert [per[m]["tokens"] for m in per] == [5 * 6, 5 * 7, 3 * 5]
        for m, own in groups.items():
            assert per[m]["in_group"] == 1.0
            assert sum(per[m]["load"][i] for i in own) == pytest.approx(1.0, abs=1e-3)
    empty = router_summary(model, [Example(ids, ids, "mix") for ids in no_music])
    assert all(per["music"]["in_group"] is None for per in empty.values())
    path = plot_heatmap(summary, tmp_path / "heat.png")
    assert path.stat().st_size > 1000
