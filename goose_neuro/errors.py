"""Typed errors a user can cause.

Every error that bad input can trigger derives from :class:`GooseError`. The
command-line tools catch it, print its message on one line and exit with code 2.
Anything else escaping a CLI is a bug in goose-neuro, not in the user's input.
"""

from __future__ import annotations


class GooseError(Exception):
    """Base class for user-facing errors (bad path, bad file, bad option)."""


class ConfigError(GooseError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class CheckpointError(GooseError):
    """A checkpoint directory is missing, truncated, of the wrong version or unsafe."""


class DataError(GooseError):
    """Input text or token data is missing, empty or not text."""


class TeacherError(GooseError):
    """The teacher model cannot be loaded or does not match the student."""


class ExportError(GooseError):
    """A model cannot be lowered or exported to the requested target."""


class ProfileError(GooseError):
    """A hardware profile file is malformed (the message names the field)."""


class CheckFailed(GooseError):
    """A verification (ONNX parity, Lava parity) ran and did not pass."""
