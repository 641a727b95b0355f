"""One frame through the chain without ROS (FrameProcessor), with a tiny checkpoint: what happens when a frame
has too few metric points, and the shared encoder."""

from __future__ import annotations

import numpy as np
import pytest
from node_fixtures import scene
from predictor_fixtures import cached_predictor

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError
from depth_ft_ros.frame.processor import CameraFrame, FrameFailure, FrameProcessor
from depth_ft_ros.geometry.camera import camera_for_image
from depth_ft_ros.model.networks import Models

S_NS = 1_000_000_000


def pipeline(**overrides: object) -> FrameProcessor:
    params: dict[str, object] = {"depth_model": "tiny", "alignment": "global", "alignment_fit": "scale",
                                 "min_depth": 0.1, "max_depth": 20.0, "hold_seconds": 1.0, **overrides}
    config = NodeConfig(**params).validate()  # type: ignore[arg-type]
    return FrameProcessor(Models(cached_predictor("e2e-ft-depth", processing_resolution=0), None), config)


def frame(stamp_ns: int, with_points: bool) -> CameraFrame:
    s = scene()
    points = s.lidar_points @ s.T_camera_lidar[:3, :3].T + s.T_camera_lidar[:3, 3] if with_points else None
    return CameraFrame(rgb=s.rgb, camera=s.camera, stamp_ns=stamp_ns, points_m=points)


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
    p = FrameProcessor(Models(cached_predictor("e2e-ft-depth", processing_resolution=0),
                              cached_predictor("e2e-ft-normals", processing_resolution=0)), config)
    assert p.networks.shared_encoder
    result = p.process(frame(0, with_points=True))
    assert result.timings_ms["depth.encode"] > 0 and result.timings_ms["normals.encode"] == 0
    # The same normals as from the normals predictor on its own.
    alone = cached_predictor("e2e-ft-normals", processing_resolution=0).predict(scene().rgb).normals
    np.testing.assert_allclose(result.normals, alone, atol=1e-5)


def test_an_image_too_thin_for_the_network_is_bad_input_naming_the_image_size() -> None:
    """8000x64 at processing_resolution 768 becomes 768x6, less than one latent pixel of height: refused as bad
    input (not an internal error), the message naming the image's width x height."""
    config = NodeConfig(depth_model="tiny").validate()
    p = FrameProcessor(Models(cached_predictor("e2e-ft-depth", processing_resolution=768), None), config)
    from depth_ft_ros.geometry.camera import PinholeCamera

    rgb = np.zeros((64, 8000, 3), np.uint8)
    camera = PinholeCamera.from_intrinsics(500.0, 500.0, 4000.0, 32.0, 8000, 64)
    with pytest.raises(FrameFailure) as failure:
        p.process(CameraFrame(rgb=rgb, camera=camera, stamp_ns=1))
    assert failure.value.kind == "bad_input" and failure.value.stage == "check"
    assert "8000x64" in failure.value.message and "768x6" in failure.value.message
    assert failure.value.warn_kind == "bad_image"


def test_a_sweep_entirely_behind_the_camera_names_the_reason_and_the_extrinsics() -> None:
    """Wrong extrinsics (the LiDAR turned 180 degrees): every point lands behind the camera. The report says so
    with the count per reason and a hint, instead of only "too few points"."""
    s = scene()
    flip = np.diag([1.0, 1.0, -1.0])  # mirror z: a camera looking backwards at the sweep
    points_cam = s.lidar_points @ s.T_camera_lidar[:3, :3].T + s.T_camera_lidar[:3, 3]
    behind = points_cam @ flip.T
    assert (behind[:, 2] <= 0).all()
    result = pipeline(on_few_points="relative").process(
        CameraFrame(rgb=s.rgb, camera=s.camera, stamp_ns=0, points_m=behind))
    reason = result.alignment.reason
    assert result.alignment.state == "relative-only"
    assert f"all {len(behind)} points dropped" in reason and f"{len(behind)} behind camera" in reason
    assert "extrinsics" in reason
