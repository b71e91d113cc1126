"""Fusion of graph and text, by role, importing one way: config → data → evaluation → model →
training → serving → pipeline → cli."""
