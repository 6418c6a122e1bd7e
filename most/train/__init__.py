"""Training stages on Lightning: base, stage1, stage2."""
