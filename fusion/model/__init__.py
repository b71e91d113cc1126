"""Scorers: the fused model, the baselines, and their checkpoints. Models never train
themselves (`fusion.training` does)."""
