"""The token layout with any number of modalities: ids, modality table, hash, persistence, refusals;
and layouts saved by the two-modality code load unchanged, with the same hash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from most.layout import (
    DEFAULT_SPECIALS,
    LAYOUT_FILE,
    LayoutError,
    TokenLayout,
    UnitModality,
)

REFERENCE = Path(__file__).parent / "moe" / "v1_reference.json"
MUSIC_SPECIALS = ("<|begin_of_music|>", "<|end_of_music|>")


def music(**changes) -> UnitModality:
    return UnitModality(
        **{"name": "music", "n_units": 5, "unit_tokenizer_hash": "mh", "specials": MUSIC_SPECIALS}
        | changes
    )


def three(**changes) -> TokenLayout:
    """text, speech (20 units) and music (5 units): G = 3."""
    kw = dict(
        text_vocab_size=64,
        n_units=20,
        unit_tokenizer_hash="test-units",
        specials=(*DEFAULT_SPECIALS, *MUSIC_SPECIALS),
        modalities=("text", "speech", "music"),
        extra_modalities=(music(),),
    )
    return TokenLayout(**(kw | changes))


def test_a_layout_saved_by_the_two_modality_code_loads_with_its_hash(tmp_path):
    ref = json.loads(REFERENCE.read_text())["layout_file"]
    (tmp_path / ref["name"]).write_text(ref["text"])
    layout = TokenLayout.load(tmp_path)
    assert layout.hash == ref["hash"]
    assert layout == TokenLayout(text_vocab_size=64, n_units=20, unit_tokenizer_hash="test-units")
    assert layout.save(tmp_path / "again").read_text() == ref["text"]  # byte for byte
    table = layout.modality_table()
    assert table.shape == (93,) and layout.vocab_size == 93
    assert (table[:64] == 0).all() and (table[73:] == 1).all()  # text ids, speech units
    assert table[64:73].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0]  # audio delimiters are speech


def test_three_modalities_ids_and_table():
    layout = three()
    assert layout.unit_range("speech") == (75, 95)
    assert layout.unit_range("music") == (95, 100) and layout.vocab_size == 100
    assert layout.new_tokens()[-6:] == ["<|u19|>", *(f"<|music{k}|>" for k in range(5))]
    table = layout.modality_table(104)  # padded embedding rows are text
    music_id = layout.modality_id("music")
    assert music_id == 2
    assert (table[95:100] == music_id).all() and (table[100:] == 0).all()
    assert table[layout.special_id("<|begin_of_music|>")] == music_id
    assert table[layout.special_id("<|end_of_audio|>")] == 1
    assert (table[75:95] == 1).all() and (table[:64] == 0).all()
    assert torch.bincount(table[:100]).tolist() == [64 + 7, 20 + 2, 5 + 2]

    units = torch.tensor([0, 4])
    ids = layout.units_to_ids(units, "music")
    assert ids.tolist() == [95, 99]
    assert torch.equal(layout.ids_to_units(torch.tensor([3, 80, 96]), "music"), torch.tensor([1]))
    assert layout.ids_to_units(torch.tensor([3, 80, 96])).tolist() == [5]  # speech by default
    assert layout.is_unit(ids).tolist() == [False, False]
    assert layout.unit_token(3, "music") == "<|music3|>"
    layout.check_units("mh", modality="music")
    with pytest.raises(LayoutError, match=r"data: unit tokenizer hash test-units .* \(mh\)"):
        layout.check_units("test-units", modality="music")


def test_modality_order_sets_the_group_ids():
    layout = three(modalities=("music", "text", "speech"))
    table = layout.modality_table()
    assert table[0] == 1 and table[80] == 2 and table[97] == 0


def test_three_modality_round_trip_and_hash(tmp_path):
    layout = three()
    path = layout.save(tmp_path)
    assert path.name == LAYOUT_FILE
    again = TokenLayout.load(tmp_path)
    assert again == layout and again.hash == layout.hash
    assert TokenLayout.from_dict(json.loads(path.read_text())) == layout
    two = TokenLayout(64, 20, "test-units", specials=(*DEFAULT_SPECIALS, *MUSIC_SPECIALS))
    assert "extra_modalities" not in two.to_dict()
    hashes = {
        two.hash,
        layout.hash,
        three(extra_modalities=(music(n_units=6),)).hash,
        three(extra_modalities=(music(unit_tokenizer_hash="other"),)).hash,
        three(extra_modalities=(music(unit_format="<|m{}|>"),)).hash,
        three(extra_modalities=(music(specials=MUSIC_SPECIALS[:1]),)).hash,
        three(modalities=("text", "music", "speech")).hash,
    }
    assert len(hashes) == 7  # every field that changes an id or a modality changes the hash
    text = path.read_text()
    path.write_text(text.replace('"n_units": 5', '"n_units": 6'))
    with pytest.raises(LayoutError, match="stored hash"):
        TokenLayout.load(tmp_path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(modalities=("text", "speech")), r"modalities \['text', 'speech'\] must list each of \['text', 'speech', 'music'\]"),
        (dict(modalities=("text", "speech", "music", "music")), "exactly once"),
        (dict(extra_modalities=(music(), music())), "repeat a modality name"),
        (dict(extra_modalities=(music(specials=("<|nope|>",)),)), "special '<|nope|>' not in specials"),
        (dict(extra_modalities=(music(specials=("<|end_of_audio|>",)),)), "belongs to both 'speech' and 'music'"),
        (dict(extra_modalities=(music(unit_format="<|u{}|>"),)), "collide across modalities"),
    ],
)  # fmt: skip
def test_bad_three_modality_layouts_refused_in_one_line(changes, match):
    with pytest.raises(LayoutError, match=match) as err:
        three(**changes)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(name="speech"), "text and speech are built in"),
        (dict(n_units=0), "n_units"),
        (dict(unit_format="<|m|>"), "needs exactly one"),
    ],
)
def test_bad_unit_modalities_refused(changes, match):
    with pytest.raises(LayoutError, match=match):
        music(**changes)


def test_a_modality_without_units_has_no_unit_range():
    with pytest.raises(LayoutError, match="'text' has no unit tokens"):
        three().unit_range("text")
