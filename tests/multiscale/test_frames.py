"""Flat ids <-> the multi-scale model's frame positions."""

from __future__ import annotations

import pytest
import torch

from most.layout import TokenLayout
from most.multiscale import collate_frames, cut_to_frames, from_frames, to_frames

C, K = 4, 5
LAYOUT = TokenLayout(text_vocab_size=64, n_units=C * K, unit_tokenizer_hash="t")
BOA = LAYOUT.special_id("<|begin_of_audio|>")
EOA = LAYOUT.special_id("<|end_of_audio|>")


def test_round_trip_and_labels() -> None:
    codes = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1], [2, 3, 4, 0]])
    flat = torch.cat([torch.tensor([7, 8, BOA]), from_frames(codes, LAYOUT), torch.tensor([EOA])])
    labels = torch.full_like(flat, -100)
    labels[3:] = flat[3:]
    ids, got, pos_labels = to_frames(flat, LAYOUT, C, labels)
    assert ids.tolist() == [7, 8, BOA, *(LAYOUT.unit_offset + codes[:, 0]).tolist(), EOA]
    assert torch.equal(got[3:6], codes)
    assert (got[[0, 1, 2, 6]] == -1).all()
    assert pos_labels.tolist() == [-100, -100, -100, *ids[3:].tolist()]
    assert torch.equal(from_frames(got[3:6], LAYOUT), flat[3:-1])


def test_partial_frame_is_refused() -> None:
    flat = torch.cat([torch.tensor([BOA]), LAYOUT.unit_offset + torch.tensor([0, 5, 10])])
    with pytest.raises(ValueError, match="whole number of 4-code frames"):
        to_frames(flat, LAYOUT, C)
    wrong = torch.cat([torch.tensor([BOA]), LAYOUT.unit_offset + torch.tensor([5, 0, 10, 15])])
    with pytest.raises(ValueError, match="not in codebook 0"):
        to_frames(wrong, LAYOUT, C)


def test_collate_pads_right() -> None:
    a = to_frames(
        torch.tensor([7, BOA, *(LAYOUT.unit_offset + torch.tensor([0, 5, 10, 15]))]), LAYOUT, C
    )
    b = to_frames(torch.tensor([7, 8, 9, BOA]), LAYOUT, C)
    batch = collate_frames([(a[0], a[1], a[0]), (b[0], b[1], b[0])], pad_id=1)
    assert batch["input_ids"].shape == (2, 4) and batch["codes"].shape == (2, 4, C)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["input_ids"][0, 3] == 1 and batch["labels"][0, 3] == -100
    assert (batch["codes"][0, 3] == -1).all() and batch["codes"][0, 2].tolist() == [0, 0, 0, 0]


def test_cut_to_frames_drops_a_cut_frame_only() -> None:
    codes = torch.tensor([[0, 1, 2, 3], [4, 4, 0, 1]])
    flat = torch.cat([torch.tensor([7, BOA]), from_frames(codes, LAYOUT), torch.tensor([EOA])])
    labels = flat.clone()
    for max_len, kept in ((11, 11), (10, 10), (9, 6), (7, 6), (6, 6), (5, 2), (1, 1)):
        ids, lab = cut_to_frames(flat, labels, LAYOUT, C, max_len)
        assert len(ids) == len(lab) == kept, max_len
        assert torch.equal(ids, flat[:kept])
        to_frames(ids, LAYOUT, C, lab)  # whole frames: no error
