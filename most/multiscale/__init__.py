"""UniAudio's multi-scale decoder (a global MoE LLM over frames, a local transformer over a frame's
codebooks) and the flat baseline's codebook constraint."""

from most.multiscale.frames import collate_frames, cut_to_frames, from_frames, to_frames
from most.multiscale.model import MostMultiScale, MultiScaleConfig
from most.units.constraint import CodebookConstraint

__all__ = [
    "CodebookConstraint",
    "MostMultiScale",
    "MultiScaleConfig",
    "collate_frames",
    "cut_to_frames",
    "from_frames",
    "to_frames",
]
