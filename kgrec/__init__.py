"""What every kgrec package shares and nothing else: the version, the error family
(`kgrec.errors`), the environment settings (`kgrec.settings`) and the progress-bar style
(`kgrec.progress`). Imports no other kgrec package."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kgrec")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
