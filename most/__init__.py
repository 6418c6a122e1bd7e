"""most: a speech-text MoE pipeline."""

from most import modeling as modeling  # registers the adapted model with transformers' Auto classes
