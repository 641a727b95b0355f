"""MetricAligner's own policies: hold or not, a change of space, reconfiguration, jumps, method off.

The scene is an exact affine model (metric = 4 * relative + 1 in depth space, or its inverse for disparity),
so a fitted map must equal the ground truth, and a held one the ground truth of the frame it was fitted on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from depth_ft_ros.alignment.aligner import AlignerSettings, MetricAligner
from depth_ft_ros.enums import AlignmentMethod, AlignmentState
from depth_ft_ros.errors import InputError

S_NS = 1_000_000_000
H, W = 60, 80


def _scene(space: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(relative, ground-truth depth, uv, z): a slanted plane from 1 m to 5 m, 200 exact points."""
    rng = np.random.default_rng(0)
    depth_m = np.broadcast_to(np.linspace(1.0, 5.0, W, dtype=np.float32), (H, W)).copy()
    relative = (depth_m - 1.0) / 4.0 if space == "depth" else (1.0 / depth_m - 0.1) / 2.0
    uv = np.stack([rng.integers(0, W, 200), rng.integers(0, H, 200)], axis=1)
    return relative, depth_m, uv, depth_m[uv[:, 1], uv[:, 0]].astype(np.float64)


@pytest.mark.parametrize("space", ["depth", "disparity"])
def test_a_fit_recovers_the_ground_truth_and_is_held_without_points(space: str) -> None:
    relative, gt, uv, z = _scene(space)
    aligner = MetricAligner(AlignerSettings(hold_seconds=1.0))
    fitted = aligner.align(relative, space, uv, z, 0)
    assert fitted.report.state == AlignmentState.FITTED and fitted.depth_m is not None
    np.testing.assert_allclose(fitted.depth_m, gt, rtol=1e-5)
    held = aligner.align(relative, space, None, None, S_NS // 2)
    assert held.report.state == "held" and "too few points" in held.report.reason
    np.testing.assert_array_equal(held.depth_m, fitted.depth_m)
    expired = aligner.align(relative, space, None, None, 2 * S_NS)
    assert expired.report.state == AlignmentState.RELATIVE_ONLY and expired.depth_m is None


def test_without_hold_a_frame_without_points_has_no_metric_map() -> None:
    relative, _, uv, z = _scene("depth")
    aligner = MetricAligner(AlignerSettings(hold=False))
    assert aligner.align(relative, "depth", uv, z, 0).depth_m is not None
    out = aligner.align(relative, "depth", uv[:3], z[:3], S_NS // 10)
    assert out.depth_m is None and out.report.state == "relative-only" and "3 usable" in out.report.reason


def test_a_fit_held_in_one_space_is_not_used_in_the_other() -> None:
    relative, _, uv, z = _scene("depth")
    aligner = MetricAligner()
    assert aligner.align(relative, "depth", uv, z, 0).report.state == "fitted"
    out = aligner.align(relative, "disparity", None, None, S_NS // 10)
    assert out.depth_m is None and out.report.state == AlignmentState.RELATIVE_ONLY


def test_reconfiguration_keeps_the_stream_unless_the_filter_changes() -> None:
    relative, _, uv, z = _scene("depth")
    aligner = MetricAligner(AlignerSettings(hold_seconds=1.0))
    aligner.align(relative, "depth", uv, z, 0)
    same_filter = aligner.reconfigured(dataclasses.replace(aligner.settings, min_points=20))
    assert same_filter.align(relative, "depth", None, None, S_NS // 10).report.state == "held"
    new_filter = aligner.reconfigured(dataclasses.replace(aligner.settings, smoothing_seconds=0.5))
    assert new_filter.align(relative, "depth", None, None, 2 * S_NS // 10).report.state == "relative-only"


def test_an_unconfirmed_jump_is_held_and_says_so() -> None:
    relative, gt, uv, z = _scene("depth")
    aligner = MetricAligner()
    first = aligner.align(relative, "depth", uv, z, 0)
    assert first.depth_m is not None
    np.testing.assert_allclose(first.depth_m, gt, rtol=1e-5)
    jump = aligner.align(relative, "depth", uv, 2.0 * z, S_NS // 10)  # the points say twice as far
    assert jump.report.state == AlignmentState.HELD and "jump" in jump.report.reason
    assert jump.report.fit is not None and jump.report.fit.scale == pytest.approx(8.0)  # the frame's own fit
    np.testing.assert_array_equal(jump.depth_m, first.depth_m)


def test_method_off_and_bad_input() -> None:
    relative, _, uv, z = _scene("depth")
    off = MetricAligner(AlignerSettings(method=AlignmentMethod.OFF)).align(relative, "depth", uv, z, 0)
    assert off.depth_m is None and off.report.state == "off" and off.report.method == "off"
    with pytest.raises(InputError, match="alignment space must be one of depth, disparity"):
        MetricAligner().align(relative, "log", uv, z, 0)
    with pytest.raises(InputError, match="outside"):
        MetricAligner().align(relative, "depth", uv + W, z, 0)
