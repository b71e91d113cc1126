"""The error family: every failure kgrec raises on purpose is a `KgrecError`, so the CLI can
print those as one line and let anything else (a bug) show its traceback.

Each subclass also keeps the builtin base its callers caught before (ValueError, OSError, …).
"""

from __future__ import annotations


class KgrecError(Exception):
    """Root of the errors kgrec raises for bad input, missing data or an unusable resource."""


class InvalidArgumentError(KgrecError, ValueError):
    """An argument or option value cannot be used (unknown task, relation, device, format…)."""


class ConfigError(InvalidArgumentError):
    """A configuration file or environment variable is wrong; the message names key and file."""


class MissingDataError(KgrecError, ValueError):
    """The data at hand cannot serve the request (an empty store, a relation without edges)."""


class NotFoundError(KgrecError, LookupError):
    """An id the request names (a product, a user) is not in the store or the model."""
