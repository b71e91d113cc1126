"""Fusion of graph and text, by role, importing one way: config → data → evaluation → model →
training → serving → pipeline → cli."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kgrec")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
