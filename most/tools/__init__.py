"""Helper commands beside the stages: ablation, learning curves, fact lookup, the demo summary, inference."""
