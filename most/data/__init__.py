"""Prompt formats, collation and packing shared by training, generation and evaluation."""
