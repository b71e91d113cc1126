"""Fusion of graph and text: config → data → evaluation → model → training → serving → pipeline → cli."""
