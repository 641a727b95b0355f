"""ScaleShiftFilter: exponential smoothing by time, hold/expiry, jump confirmation, stamps going backwards."""

from __future__ import annotations

import math

import numpy as np
import pytest

from depth_ft_ros.alignment.aligner import FitResult
from depth_ft_ros.alignment.temporal import FilterAction, ScaleShiftFilter
from depth_ft_ros.errors import ConfigError

S = 1_000_000_000  # ns per second


def fit(scale: float, shift: float = 0.0, space: str = "depth", ok: bool = True) -> FitResult:
    nan = float("nan")
    return FitResult(ok, scale if ok else nan, shift if ok else nan, space, np.ones(1, bool), 10, 10, 0.01, 0.01,
                     None if ok else "too few points", (0.2, 0.8))


def test_init_then_exponential_smoothing_in_log_scale() -> None:
    f = ScaleShiftFilter(time_constant_s=0.5)
    out = f.update(fit(2.0, 1.0), 0)
    assert out.action == FilterAction.INIT and out.ok and out.scale == pytest.approx(2.0)
    out = f.update(fit(2.4, 1.2), S // 10)
    alpha = 1 - math.exp(-0.1 / 0.5)
    assert out.action == FilterAction.SMOOTHED
    assert out.scale == pytest.approx(math.exp(math.log(2.0) + alpha * (math.log(2.4) - math.log(2.0))))
    assert out.shift == pytest.approx(1.0 + alpha * 0.2)


def test_smoothing_does_not_depend_on_frame_rate() -> None:
    slow, fast = ScaleShiftFilter(0.5), ScaleShiftFilter(0.5)
    slow.update(fit(1.0), 0)
    fast.update(fit(1.0), 0)
    for i in range(1, 11):
        a = slow.update(fit(1.2), i * S // 10)
    for i in range(1, 31):
        b = fast.update(fit(1.2), i * S // 30)
    assert a.scale == pytest.approx(b.scale, rel=1e-9)  # both 1 s after the step
    assert a.scale == pytest.approx(1.2 ** (1 - math.exp(-1.0 / 0.5)), rel=1e-9)


def test_hold_then_expire_then_init() -> None:
    f = ScaleShiftFilter(hold_seconds=1.0)
    f.update(fit(2.0), 0)
    held = f.update(None, S // 2)
    assert held.action == FilterAction.HELD and held.ok and held.scale == pytest.approx(2.0)
    assert held.age_s == pytest.approx(0.5)
    held = f.update(fit(0, ok=False), S * 9 // 10)
    assert held.action == FilterAction.HELD and held.reason == "too few points"
    expired = f.update(None, 2 * S)
    assert expired.action == FilterAction.EXPIRED and not expired.ok and math.isnan(expired.scale)
    assert f.update(None, 3 * S).action == FilterAction.NONE
    assert f.update(fit(3.0), 4 * S).action == FilterAction.INIT


def test_single_jump_is_held_and_confirmed_jump_resets() -> None:
    f = ScaleShiftFilter(jump_ratio=1.3, jump_confirm_frames=3)
    f.update(fit(2.0), 0)
    out = f.update(fit(4.0), S // 10)  # one bad frame
    assert out.action == FilterAction.HELD and out.scale == pytest.approx(2.0)
    out = f.update(fit(2.02), 2 * S // 10)  # back to normal: smoothed, candidates dropped
    assert out.action == FilterAction.SMOOTHED
    f.update(fit(4.0), 3 * S // 10)
    f.update(fit(4.04), 4 * S // 10)
    out = f.update(fit(3.98), 5 * S // 10)
    assert out.action == FilterAction.RESET and out.scale == pytest.approx(3.98)


def test_shift_only_jump_is_detected() -> None:
    f = ScaleShiftFilter(jump_ratio=1.3, jump_confirm_frames=2)
    f.update(fit(2.0, 1.0), 0)
    assert f.update(fit(2.0, 3.0), S // 10).action == FilterAction.HELD  # same scale, depths x2 at p=0.2


def test_immediate_reset_with_one_confirmation() -> None:
    f = ScaleShiftFilter(jump_confirm_frames=1)
    f.update(fit(2.0), 0)
    assert f.update(fit(5.0), S // 10).action == FilterAction.RESET


def test_backwards_stamps_and_space_change_reset() -> None:
    f = ScaleShiftFilter()
    f.update(fit(2.0), 10 * S)
    out = f.update(fit(2.1), 5 * S)
    assert out.action == FilterAction.RESET and "backwards" in (out.reason or "") and out.scale == pytest.approx(2.1)
    out = f.update(fit(2.1, space="disparity"), 6 * S)
    assert out.action == FilterAction.RESET and out.space == "disparity"
    g = ScaleShiftFilter()
    g.update(fit(2.0), 10 * S)
    out = g.update(None, 5 * S)
    assert out.action == FilterAction.NONE and not out.ok and "backwards" in (out.reason or "")


def test_bad_configuration() -> None:
    with pytest.raises(ConfigError):
        ScaleShiftFilter(jump_ratio=1.0)
    with pytest.raises(ConfigError):
        ScaleShiftFilter(jump_confirm_frames=0)
    with pytest.raises(ConfigError):
        ScaleShiftFilter(time_constant_s=-1)


def test_refused_fit_holds_the_last_one() -> None:
    f = ScaleShiftFilter(hold_seconds=0.25)
    assert f.hold_seconds == 0.25
    out = f.update(fit(2.0, 0.5), 0)
    assert out.ok and out.action == "init"  # FilterAction is a str enum
    refused = FitResult.refused("depth", 3, "three points are not enough")
    assert not refused.ok
    out = f.update(refused, S // 10)  # the refused fit itself, as the aligner passes it
    assert out.action == FilterAction.HELD and out.ok
    assert (out.scale, out.shift) == (2.0, 0.5) and out.reason == "three points are not enough"
    out = f.update(refused, S // 2)  # 0.5 s after the last good fit > hold_seconds
    assert out.action == FilterAction.EXPIRED and not out.ok and "three points are not enough" in (out.reason or "")
    fresh = ScaleShiftFilter()
    out = fresh.update(refused, 0)
    assert out.action == FilterAction.NONE and not out.ok and out.reason == "three points are not enough"


def test_without_smoothing_each_fit_is_used_exactly() -> None:
    # time_constant_s=0 means "each frame's own fit": the very numbers of the fit, not exp(log(scale)).
    f = ScaleShiftFilter(time_constant_s=0.0)
    # Scales chosen where exp(log(s)) != s in binary floating point; consecutive fits within jump_ratio.
    fits = ((7.708613804073155, 0.3), (7.694116799842036, 0.11), (8.406921508022736, 0.3), (8.520107248291158, 0.3))
    for i, (scale, shift) in enumerate(fits):
        out = f.update(fit(scale, shift), i * S // 10)
        assert out.action == (FilterAction.INIT if i == 0 else FilterAction.SMOOTHED)
        assert (out.scale, out.shift) == (scale, shift)
