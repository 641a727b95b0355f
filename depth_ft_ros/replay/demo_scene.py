"""The demo bag's content, without ROS: a camera panning and zooming over the real Middlebury frame, its ground
truth, and a 16-line LiDAR on the same rig.

Camera motion: each frame is a crop of the Middlebury image resized to a fixed output size. A crop is a shift
of the image window (cx, cy move by the crop origin) and the resize a change of focal length (K scales), so
every frame is an exact pinhole image of the same scene from the same optical centre, with its own CameraInfo
and a ground-truth depth image on the same pixel grid.

Rig (REP 103 / 105 names): camera_link (body axes) -> camera_optical_frame (optical axes, REP 103) and
camera_link -> lidar (0.2 m above the camera, slightly rolled and yawed). The LiDAR is rigid with the camera,
so it sees the same scene in every frame; its scan covers the full Middlebury field of view and the node keeps
the points that fall into each crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from depth_ft_ros.errors import InputError
from depth_ft_ros.evaluation import lidar_sim
from depth_ft_ros.evaluation.middlebury import MiddleburyFrame
from depth_ft_ros.geometry.camera import PinholeCamera
from depth_ft_ros.replay.messages import StaticTransform

CAMERA_LINK = "camera_link"
CAMERA_FRAME = "camera_optical_frame"
LIDAR_FRAME = "lidar"
LIDAR_LINES = 16
LIDAR_POINTS_PER_LINE = 200  # ~0.2 deg over the camera's 40 deg, a VLP-16 at 10 Hz
LIDAR_NOISE_REL = 0.01  # 1 % of the range
LIDAR_OUTLIER_FRACTION = 0.01
MAX_ZOOM = 1.5


@dataclass(frozen=True)
class CropWindow:
    x0: int
    y0: int
    width: int
    height: int


@dataclass(frozen=True)
class DemoFrame:
    rgb: np.ndarray  # HxWx3 uint8
    depth_m: np.ndarray  # HxW float32, NaN invalid (ground truth on the image's pixel grid)
    camera: PinholeCamera  # intrinsics of rgb / depth_m
    crop: CropWindow


def rig_transforms() -> list[StaticTransform]:
    """The rig's /tf_static edges (parent -> child, mapping child points into the parent)."""
    link_optical = np.eye(4)
    link_optical[:3, :3] = lidar_sim.R_OPTICAL_FROM_BODY.T  # optical axes expressed in body axes
    link_lidar = np.eye(4)
    link_lidar[:3, :3] = Rotation.from_euler("xyz", [1.0, 0.0, 2.0], degrees=True).as_matrix()
    link_lidar[:3, 3] = (0.0, 0.0, 0.2)
    return [StaticTransform(CAMERA_LINK, CAMERA_FRAME, link_optical),
            StaticTransform(CAMERA_LINK, LIDAR_FRAME, link_lidar)]


def camera_path(n_frames: int, src_width: int, src_height: int, out_width: int,
                out_height: int) -> list[CropWindow]:
    """Crops panning left to right while zooming in to MAX_ZOOM and back out, with a little vertical sway."""
    if n_frames < 1:
        raise InputError(f"--frames must be at least 1 (got {n_frames})")
    aspect = out_width / out_height
    full_h = min(0.96 * src_height, src_width / aspect)
    windows = []
    for k in range(n_frames):
        t = k / max(n_frames - 1, 1)
        zoom = 1.0 + (MAX_ZOOM - 1.0) * math.sin(math.pi * t)
        height = round(full_h / zoom)
        width = min(round(height * aspect), src_width)
        x0 = round((src_width - width) * (0.5 - 0.5 * math.cos(math.pi * t)))
        y0 = round((src_height - height) * (0.5 + 0.4 * math.sin(2 * math.pi * t)))
        windows.append(CropWindow(x0, y0, width, height))
    return windows


def render_frame(source: MiddleburyFrame, crop: CropWindow, out_width: int, out_height: int) -> DemoFrame:
    """The crop resized to out_width x out_height: RGB by area averaging, GT depth by nearest sampling at the
    output pixel centres (never mixing depths across edges), and the camera for that image."""
    c = crop
    rgb = cv2.resize(source.rgb[c.y0:c.y0 + c.height, c.x0:c.x0 + c.width], (out_width, out_height),
                     interpolation=cv2.INTER_AREA if c.width >= out_width else cv2.INTER_LINEAR)
    # Pixel-centre convention (as PinholeCamera.scaled): output pixel u sits at crop pixel (u + 0.5) * s - 0.5.
    cols = np.floor((np.arange(out_width) + 0.5) * c.width / out_width).astype(np.int64) + c.x0
    rows = np.floor((np.arange(out_height) + 0.5) * c.height / out_height).astype(np.int64) + c.y0
    depth = np.ascontiguousarray(source.depth_m[rows[:, None], cols[None, :]], dtype=np.float32)
    full = source.camera
    cropped = PinholeCamera(width=full.width, height=full.height, k=full.k, d=full.d, p=full.p,
                            roi=(c.x0, c.y0, c.height, c.width, False))
    return DemoFrame(rgb=np.ascontiguousarray(rgb), depth_m=depth, camera=cropped.scaled(out_width, out_height),
                     crop=crop)


def lidar_points(source: MiddleburyFrame, t_camera_lidar: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One LiDAR sweep in the lidar frame: see-through points from the 0.2 m offset, 1 % range noise and
    1 % outliers. (N, 3) float64."""
    points = lidar_sim.lidar_scan_in_lidar_frame(source.depth_m, source.camera, t_camera_lidar, LIDAR_LINES,
                                                 points_per_line=LIDAR_POINTS_PER_LINE, rng=rng)
    points = lidar_sim.add_relative_noise(points, LIDAR_NOISE_REL, rng)
    points, _outliers = lidar_sim.add_outliers(points, LIDAR_OUTLIER_FRACTION, rng)
    return points
