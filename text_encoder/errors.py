"""The text encoder's errors. It is a library of its own (it imports no other kgrec package), so
its failures have a root of their own, which the kgrec CLI catches beside `kg.errors.KgrecError`."""

from __future__ import annotations


class TextEncoderError(Exception):
    """Root of the errors the text encoder raises for bad input or an unusable model/cache."""


class InvalidDeviceError(TextEncoderError, ValueError):
    """A device name that is not one of auto, cpu, cuda, cuda:N, mps, or is not available."""
