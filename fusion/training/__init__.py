"""The training loop, its tasks and device handling."""
