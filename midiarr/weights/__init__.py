"""Checkpoints shipped with midiarr, one folder per model (weights, config, card, training log)."""
