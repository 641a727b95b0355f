"""Frame-to-frame smoothing of the global scale/shift for streams.

Scale is smoothed exponentially in log space (it is a ratio), shift linearly, with a time constant in seconds:
alpha = 1 - exp(-dt / time_constant_s), so the result does not depend on the frame rate.

Jumps: a new fit is compared with the filtered one through the depths both imply at the 10th and 90th
percentile of the prediction at the points (FitResult.pred_range), which catches scale and shift jumps alike.
A frame whose implied depth differs by more than jump_ratio is not blended in: the last value is held
("held"); when jump_confirm_frames consecutive frames agree with each other on the new value, the filter
resets to it ("reset") -- a real change (new scene, a different model output range) rather than a bad fit.
jump_confirm_frames=1 resets immediately. Stamps going backwards (bag loop, sim time reset) reset the filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from depth_ft_ros.alignment.scale_shift import FitResult
from depth_ft_ros.enums import Space, TextEnum
from depth_ft_ros.errors import ConfigError


class FilterAction(TextEnum):
    INIT = "init"  # first good fit (or first after an expiry)
    SMOOTHED = "smoothed"  # new fit blended in
    HELD = "held"  # no usable fit (or an unconfirmed jump): last value reused
    RESET = "reset"  # confirmed jump or stamps going backwards: restarted from the new fit
    EXPIRED = "expired"  # no usable fit for longer than hold_seconds: state dropped, no output
    NONE = "none"  # no usable fit and nothing to hold


@dataclass
class FilterOutput:
    action: FilterAction
    scale: float  # NaN when ok is False
    shift: float
    space: Space | None
    ok: bool  # scale/shift usable for this frame
    age_s: float  # seconds since the last fit that was used (0 for this frame's own fit)
    reason: str | None = None


class ScaleShiftFilter:
    def __init__(
        self,
        time_constant_s: float = 0.5,
        hold_seconds: float = 1.0,
        jump_ratio: float = 1.3,
        jump_confirm_frames: int = 3,
    ) -> None:
        if time_constant_s < 0 or hold_seconds < 0:
            raise ConfigError("time_constant_s and hold_seconds must be >= 0")
        if jump_ratio <= 1.0:
            raise ConfigError(f"jump_ratio must be > 1, got {jump_ratio}")
        if jump_confirm_frames < 1:
            raise ConfigError(f"jump_confirm_frames must be >= 1, got {jump_confirm_frames}")
        self.time_constant_s = time_constant_s
        self.hold_seconds = hold_seconds
        self.jump_ratio = jump_ratio
        self.jump_confirm_frames = jump_confirm_frames
        self.reset()

    def reset(self) -> None:
        self._log_scale: float | None = None
        self._scale = math.nan  # exp(_log_scale), kept exact when a fit is taken as it is
        self._shift = 0.0
        self._space: Space | None = None
        self._last_stamp_ns: int | None = None  # last frame seen
        self._last_good_ns: int | None = None  # last frame whose fit was used
        self._pending: list[FitResult] = []  # consecutive jump candidates

    def _implied_depths(self, scale: float, shift: float, fit: FitResult) -> tuple[float, float]:
        out = []
        for p in fit.pred_range:
            v = scale * p + shift
            out.append(v if fit.space == Space.DEPTH else (1.0 / v if v > 0 else math.inf))
        return out[0], out[1]

    def _is_jump(self, a: tuple[float, float], b: FitResult) -> bool:
        """Whether fit b implies depths more than jump_ratio away from scale/shift a."""
        if not all(math.isfinite(p) for p in b.pred_range):
            return abs(math.log(b.scale / a[0])) > math.log(self.jump_ratio)
        da, db = self._implied_depths(a[0], a[1], b), self._implied_depths(b.scale, b.shift, b)
        for x, y in zip(da, db, strict=True):
            if not (x > 0 and y > 0 and math.isfinite(x) and math.isfinite(y)):
                return True
            if abs(math.log(y / x)) > math.log(self.jump_ratio):
                return True
        return False

    def _output(self, action: FilterAction, age_s: float, reason: str | None = None) -> FilterOutput:
        if self._log_scale is None:
            return FilterOutput(action, math.nan, math.nan, None, False, age_s, reason)
        return FilterOutput(action, self._scale, self._shift, self._space, True, age_s, reason)

    def _take(self, fit: FitResult) -> None:
        """The fit's own scale and shift, exactly (no exp(log(scale)) round trip)."""
        self._log_scale, self._scale, self._shift = math.log(fit.scale), fit.scale, fit.shift

    def _start(self, fit: FitResult, stamp_ns: int, action: FilterAction, reason: str | None) -> FilterOutput:
        self._take(fit)
        self._space = fit.space
        self._last_good_ns = stamp_ns
        self._pending = []
        return self._output(action, 0.0, reason)

    def update(self, fit: FitResult | None, stamp_ns: int) -> FilterOutput:
        """Feed one frame (its fit or None, its header stamp in ns) and get the scale/shift to use."""
        stamp_ns = int(stamp_ns)
        usable = fit is not None and fit.ok and fit.scale > 0 and math.isfinite(fit.scale + fit.shift)
        backwards = self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns
        self._last_stamp_ns = stamp_ns
        if backwards:
            self.reset()
            self._last_stamp_ns = stamp_ns
            if not usable:
                return self._output(FilterAction.NONE, math.nan, "stamp went backwards; no usable fit")
            return self._start(fit, stamp_ns, FilterAction.RESET, "stamp went backwards")  # type: ignore[arg-type]

        if not usable:
            reason = fit.reason if fit is not None else "no fit"
            if self._log_scale is None or self._last_good_ns is None:
                return self._output(FilterAction.NONE, math.nan, reason)
            age_s = (stamp_ns - self._last_good_ns) * 1e-9
            if age_s > self.hold_seconds:
                self.reset()
                self._last_stamp_ns = stamp_ns
                return self._output(FilterAction.EXPIRED, age_s, f"{reason}; last fit {age_s:.2f} s old")
            return self._output(FilterAction.HELD, age_s, reason)

        assert fit is not None
        if self._log_scale is None or self._last_good_ns is None:
            return self._start(fit, stamp_ns, FilterAction.INIT, None)
        if fit.space != self._space:
            return self._start(fit, stamp_ns, FilterAction.RESET, f"space changed to {fit.space}")

        current = (math.exp(self._log_scale), self._shift)
        if self._is_jump(current, fit):
            # Keep only candidates that agree with the newest one.
            self._pending = [f for f in self._pending if not self._is_jump((fit.scale, fit.shift), f)]
            self._pending.append(fit)
            if len(self._pending) >= self.jump_confirm_frames:
                return self._start(fit, stamp_ns, FilterAction.RESET,
                                   f"jump confirmed by {len(self._pending)} frames")
            age_s = (stamp_ns - self._last_good_ns) * 1e-9
            if age_s > self.hold_seconds:
                return self._start(fit, stamp_ns, FilterAction.RESET, "jump, and the held fit expired")
            return self._output(FilterAction.HELD, age_s,
                                f"jump beyond x{self.jump_ratio} not confirmed ({len(self._pending)}/"
                                f"{self.jump_confirm_frames})")

        self._pending = []
        dt_s = max((stamp_ns - self._last_good_ns) * 1e-9, 0.0)
        alpha = 1.0 if self.time_constant_s == 0 else 1.0 - math.exp(-dt_s / self.time_constant_s)
        if alpha >= 1.0:  # no smoothing: this frame's fit as it is (a one-frame aligner gives the same map)
            self._take(fit)
        else:
            self._log_scale += alpha * (math.log(fit.scale) - self._log_scale)
            self._scale = math.exp(self._log_scale)
            self._shift += alpha * (fit.shift - self._shift)
        self._last_good_ns = stamp_ns
        return self._output(FilterAction.SMOOTHED, 0.0)
