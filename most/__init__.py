"""most: a speech-text MoE pipeline."""
