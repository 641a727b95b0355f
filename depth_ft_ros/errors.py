"""Error types shared by the core, the node and the CLI.

Each carries a message meant for a person: what was wrong, and what to do about it.
"""

from __future__ import annotations


class DepthFtError(Exception):
    """Base class: every error this package raises on purpose."""


class ConfigError(DepthFtError, ValueError):
    """Invalid configuration (a parameter, an option): raised at start, names the parameter and allowed values."""


class ModelLoadError(DepthFtError):
    """A checkpoint cannot be found, read or recognised."""


class InputError(DepthFtError, ValueError):
    """One input (a frame, a message, a point set) is unusable; the caller skips it and carries on."""
