"""Named values that travel between modules (alignment state and method, prediction space).

str Enums: they compare equal to their text ("fitted" == AlignmentState.FITTED), so configuration values,
diagnostics and callers holding plain strings keep working, and they format as their text on every Python
(3.11 changed format() of mixed-in enums, hence the explicit __str__/__format__).
"""

from __future__ import annotations

from enum import Enum

from depth_ft_ros.errors import InputError


class TextEnum(str, Enum):
    """A str Enum that prints and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Space(TextEnum):
    """Space of an affine-invariant prediction: metric = s*p + t (depth) or 1/metric = s*p + t (disparity)."""

    DEPTH = "depth"
    DISPARITY = "disparity"

    @classmethod
    def parse(cls, value: str, what: str = "alignment space") -> Space:
        """The member for `value`; InputError naming `what` and the allowed values otherwise."""
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise InputError(f"{what} must be one of {allowed}, got {value!r}") from None


class AlignmentMethod(TextEnum):
    GLOBAL = "global"  # one scale/shift for the whole frame
    LOCAL = "local"  # global, then a spatially varying correction
    OFF = "off"  # no metric depth

    @classmethod
    def parse(cls, value: str) -> AlignmentMethod:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls if m is not cls.OFF)
            raise InputError(f"alignment method must be {allowed} or 'off', got {value!r}") from None


class AlignmentState(TextEnum):
    FITTED = "fitted"  # this frame's fit (possibly smoothed) gave the metric map
    HELD = "held"  # an earlier fit gave it (no usable fit now, or an unconfirmed jump)
    RELATIVE_ONLY = "relative-only"  # no metric map: no usable fit and nothing (allowed) to hold
    OFF = "off"  # alignment switched off
    NO_DEPTH_MODEL = "no-depth-model"  # nothing to align
