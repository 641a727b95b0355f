"""One frame through the chain without ROS (FramePipeline), with a tiny checkpoint: what happens when a frame
has too few metric points, and the shared encoder."""

from __future__ import annotations

import numpy as np
import pytest
from node_fixtures import scene
from predictor_fixtures import cached_predictor

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.processor import FrameInput, FramePipeline, camera_for_image
from depth_ft_ros.model.networks import Models

S_NS = 1_000_000_000


def pipeline(**overrides: object) -> FramePipeline:
    params: dict[str, object] = {"depth_model": "tiny", "alignment": "global", "alignment_fit": "scale",
                                 "min_depth": 0.1, "max_depth": 20.0, "hold_seconds": 1.0, **overrides}
    config = NodeConfig(**params).validate()  # type: ignore[arg-type]
    return FramePipeline(config, Models(cached_predictor("e2e-ft-depth", processing_resolution=0), None))


def frame(stamp_ns: int, with_points: bool) -> FrameInput:
    s = scene()
    points = s.lidar_points @ s.T_camera_lidar[:3, :3].T + s.T_camera_lidar[:3, 3] if with_points else None
    return FrameInput(rgb=s.rgb, camera=s.camera, stamp_ns=stamp_ns, points_cam_m=points)


def test_hold_keeps_the_last_fit_for_hold_seconds_then_publishes_relative_only() -> None:
    p = pipeline(on_few_points="hold")
    fitted = p.process(frame(0, with_points=True))
    assert fitted.alignment.state == "fitted" and fitted.depth_m is not None
    held = p.process(frame(S_NS // 2, with_points=False))
    assert held.alignment.state == "held" and "too few points" in held.alignment.reason
    assert held.alignment.scale == fitted.alignment.scale
    # Same image, same scale: the held metric map is the fitted one.
    np.testing.assert_array_equal(held.depth_m, fitted.depth_m)
    expired = p.process(frame(2 * S_NS, with_points=False))  # 2 s after the last fit > hold_seconds
    assert expired.alignment.state == "relative-only" and expired.depth_m is None
    assert expired.relative is not None


def test_relative_only_publishes_no_metric_depth_without_points() -> None:
    p = pipeline(on_few_points="relative")
    assert p.process(frame(0, with_points=True)).depth_m is not None
    result = p.process(frame(S_NS // 10, with_points=False))
    assert result.alignment.state == "relative-only" and result.depth_m is None and result.cloud is None


def test_the_fit_uses_the_projected_lidar_points() -> None:
    result = pipeline().process(frame(0, with_points=True))
    report = result.alignment
    assert report.points_used > 1000 and report.inliers > report.points_used // 2
    assert report.dropped_points["see_through"] > 0  # the LiDAR sits 0.1 m above the camera


def test_camera_for_image_scales_same_aspect_and_refuses_another() -> None:
    camera = scene().camera
    half = camera_for_image(camera, camera.width // 2, camera.height // 2)
    assert half.fx == pytest.approx(camera.fx / 2, rel=1e-9)
    assert camera_for_image(camera, camera.width, camera.height) is camera
    with pytest.raises(InputError, match="another aspect ratio"):
        camera_for_image(camera, camera.width, camera.width)


def test_depth_and_normals_checkpoints_with_one_vae_encode_once() -> None:
    config = NodeConfig(depth_model="tiny", normals_model="tiny").validate()
    p = FramePipeline(config, Models(cached_predictor("e2e-ft-depth", processing_resolution=0),
                                     cached_predictor("e2e-ft-normals", processing_resolution=0)))
    assert p.shared_encoder
    result = p.process(frame(0, with_points=True))
    assert result.timings_ms["depth.encode"] > 0 and result.timings_ms["normals.encode"] == 0
    # The same normals as from the normals predictor on its own.
    alone = cached_predictor("e2e-ft-normals", processing_resolution=0).predict(scene().rgb).normals
    np.testing.assert_allclose(result.normals, alone, atol=1e-5)
