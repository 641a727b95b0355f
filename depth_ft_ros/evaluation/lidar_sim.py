"""Sparse metric inputs simulated on a ground-truth depth image: random pixels, LiDAR scan lines, noise,
outliers and see-through points from a LiDAR mounted away from the camera. Deterministic given the rng.

Frames: points are returned in the camera optical frame (x right, y down, z forward) unless stated. A LiDAR
frame follows REP 103 body axes (x forward, y left, z up); T_camera_lidar maps LiDAR points into the camera
frame (p_cam = T_camera_lidar @ p_lidar), the tf2 convention for lookup_transform(camera, lidar).
The simulation treats the image as rectified (P; no distortion).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera

# Rotation taking LiDAR body axes (x fwd, y left, z up) to camera optical axes (x right, y down, z fwd).
R_OPTICAL_FROM_BODY = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _check_depth(depth_m: np.ndarray, camera: PinholeCamera | None = None) -> np.ndarray:
    depth = np.asarray(depth_m, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be a 2-D image, got shape {depth.shape}")
    if camera is not None and depth.shape != (camera.image_height, camera.image_width):
        raise InputError(f"depth {depth.shape} does not match camera {camera.image_height}x{camera.image_width}")
    return depth


def _valid(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def random_pixels(depth_m: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n distinct random pixels with valid depth: uv (n, 2) int32 as (column, row), z (n,) float32 metres."""
    depth = _check_depth(depth_m)
    flat = np.flatnonzero(_valid(depth))
    if n > flat.size:
        raise InputError(f"asked for {n} points but the depth image has only {flat.size} valid pixels")
    idx = rng.choice(flat, size=n, replace=False)
    v, u = np.divmod(idx, depth.shape[1])
    return np.stack([u, v], axis=1).astype(np.int32), depth.ravel()[idx].astype(np.float32)


def lidar_scan(
    depth_m: np.ndarray,
    camera: PinholeCamera,
    n_lines: int,
    points_per_line: int = 200,
    rng: np.random.Generator | None = None,
    margin_rad: float = 0.0,
) -> np.ndarray:
    """A multi-line LiDAR co-located with the camera, restricted to the camera's field of view.

    Lines sit at fixed elevation angles spread evenly over the vertical field of view (bin centres, minus
    margin_rad at both ends); each line has points_per_line rays at even azimuths across the horizontal field
    of view (with a random phase per line when rng is given, as a spinning LiDAR is not synchronised).
    Each ray takes the depth of the pixel it hits; rays hitting invalid depth return nothing.
    Returns (N, 3) float64 points in the camera optical frame.
    """
    depth = _check_depth(depth_m, camera)
    if n_lines < 1 or points_per_line < 1:
        raise InputError(f"n_lines and points_per_line must be >= 1 (got {n_lines}, {points_per_line})")
    h, w = depth.shape
    fx, fy, cx, cy = camera.fx, camera.fy, camera.cx, camera.cy
    el_top = math.atan((cy + 0.5) / fy) - margin_rad  # elevation is up-positive, image y is down
    el_bot = -math.atan((h - 0.5 - cy) / fy) + margin_rad
    az_left = math.atan((-0.5 - cx) / fx)
    az_right = math.atan((w - 0.5 - cx) / fx)
    elevation = el_top - (np.arange(n_lines) + 0.5) * (el_top - el_bot) / n_lines
    step = (az_right - az_left) / points_per_line
    phase = rng.uniform(0.0, 1.0, size=(n_lines, 1)) if rng is not None else np.full((n_lines, 1), 0.5)
    azimuth = az_left + (np.arange(points_per_line)[None, :] + phase) * step
    el, az = np.broadcast_arrays(elevation[:, None], azimuth)
    direction = np.stack([np.cos(el) * np.sin(az), -np.sin(el), np.cos(el) * np.cos(az)], axis=-1).reshape(-1, 3)
    u = fx * direction[:, 0] / direction[:, 2] + cx
    v = fy * direction[:, 1] / direction[:, 2] + cy
    ui, vi = np.floor(u + 0.5).astype(np.int64), np.floor(v + 0.5).astype(np.int64)
    inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    z = np.full(u.shape, np.nan, dtype=np.float64)
    z[inside] = depth[vi[inside], ui[inside]]
    keep = _valid(z)
    return direction[keep] * (z[keep] / direction[keep, 2])[:, None]


def make_T_camera_lidar(offset_m: tuple[float, float, float] = (0.0, -0.2, 0.0)) -> np.ndarray:
    """4x4 T_camera_lidar for a LiDAR with body axes placed at offset_m in the camera optical frame
    (default 0.2 m above the camera)."""
    t = np.eye(4)
    t[:3, :3] = R_OPTICAL_FROM_BODY
    t[:3, 3] = offset_m
    return t


def points_in_lidar_frame(points_cam: np.ndarray, T_camera_lidar: np.ndarray) -> np.ndarray:
    """Camera-frame points -> LiDAR frame (applies inv(T_camera_lidar)); (N, 3) float64."""
    t = np.asarray(T_camera_lidar, dtype=np.float64)
    if t.shape != (4, 4):
        raise InputError(f"T_camera_lidar must be 4x4, got {t.shape}")
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    r, p = t[:3, :3], t[:3, 3]
    return (pts - p) @ r  # == (R^T (p_cam - t)) for each row


def lidar_scan_in_lidar_frame(
    depth_m: np.ndarray, camera: PinholeCamera, T_camera_lidar: np.ndarray, n_lines: int, **kwargs: object
) -> np.ndarray:
    """lidar_scan seen by a LiDAR at T_camera_lidar, in the LiDAR frame (for writing a PointCloud2).

    The scan is rendered from the LiDAR position (see render_from_offset), so it contains the see-through
    points a real offset LiDAR produces; the rays are those of a LiDAR looking along the camera axis.
    """
    t = np.asarray(T_camera_lidar, dtype=np.float64)
    pts_cam, _ = see_through_points(depth_m, camera, n_lines, offset_m=tuple(t[:3, 3]), **kwargs)  # type: ignore[arg-type]
    return points_in_lidar_frame(pts_cam, t)


def _relative_apply(values: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if isinstance(factor, np.ndarray) and arr.ndim == 2:
        return arr * factor[:, None]
    return arr * factor


def add_relative_noise(values: np.ndarray, sigma_rel: float, rng: np.random.Generator) -> np.ndarray:
    """Multiply depths (N,) or points (N, 3) (i.e. their range) by 1 + N(0, sigma_rel)."""
    n = np.asarray(values).shape[0]
    return _relative_apply(values, 1.0 + sigma_rel * rng.standard_normal(n))


def add_outliers(
    values: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a fraction of depths by uniform draws between the 10th and 90th depth percentiles.

    values: depths (N,) or points (N, 3) (moved along their ray). Returns (new values, outlier mask).
    """
    arr = np.asarray(values, dtype=np.float64)
    z = arr[:, 2] if arr.ndim == 2 else arr
    n = z.shape[0]
    n_out = round(fraction * n)
    mask = np.zeros(n, dtype=bool)
    if n_out == 0:
        return arr.copy(), mask
    lo, hi = np.percentile(z, [10, 90])
    idx = rng.choice(n, size=n_out, replace=False)
    mask[idx] = True
    factor = np.ones(n)
    factor[idx] = rng.uniform(lo, hi, size=n_out) / z[idx]
    return _relative_apply(arr, factor), mask


def _zbuffer(u: np.ndarray, v: np.ndarray, z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest z per pixel (NaN where nothing lands)."""
    h, w = shape
    ui, vi = np.floor(u + 0.5).astype(np.int64), np.floor(v + 0.5).astype(np.int64)
    inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    idx, zz = vi[inside] * w + ui[inside], z[inside]
    order = np.lexsort((zz, idx))
    idx, zz = idx[order], zz[order]
    first = np.ones(idx.size, dtype=bool)
    first[1:] = idx[1:] != idx[:-1]
    img = np.full(h * w, np.nan, dtype=np.float32)
    img[idx[first]] = zz[first]
    return img.reshape(h, w)


def render_from_offset(
    depth_m: np.ndarray, camera: PinholeCamera, offset_m: tuple[float, float, float]
) -> np.ndarray:
    """Depth seen from a viewpoint at offset_m (camera frame, same orientation and intrinsics).

    The GT surface is forward-warped with a z-buffer. One-pixel cracks are closed with the nearest neighbour
    (they belong to the surface around them); disoccluded areas, which the camera never saw, are filled with
    the farthest depth along the shift direction: behind a foreground edge lies background.
    """
    depth = _check_depth(depth_m, camera)
    pts = camera.backproject(depth).reshape(-1, 3)
    pts = pts[np.isfinite(pts[:, 2])].astype(np.float64) - np.asarray(offset_m, dtype=np.float64)
    uv, z = camera.project(pts)
    keep = np.isfinite(uv).all(axis=1)
    img = _zbuffer(uv[keep, 0], uv[keep, 1], z[keep], depth.shape)

    holes = np.isnan(img)
    nearest = cv2.erode(np.where(holes, np.inf, img).astype(np.float32), np.ones((3, 3), np.uint8))
    n_valid = cv2.filter2D((~holes).astype(np.float32), -1, np.ones((3, 3), np.float32),
                           borderType=cv2.BORDER_CONSTANT)
    crack = holes & (n_valid >= 6)
    img[crack] = nearest[crack]

    # Largest parallax in pixels between the nearest and farthest surface, per axis.
    valid = _valid(depth)
    z_near, z_far = float(np.min(depth[valid])), float(np.max(depth[valid]))
    span = abs(1.0 / z_near - 1.0 / z_far)
    rx = math.ceil(abs(offset_m[0]) * camera.fx * span) + 1
    ry = math.ceil(abs(offset_m[1]) * camera.fy * span) + 1
    kernel = np.ones((2 * ry + 1, 2 * rx + 1), np.uint8)
    farthest = cv2.dilate(np.nan_to_num(img, nan=-np.inf).astype(np.float32), kernel)
    holes = np.isnan(img) & np.isfinite(farthest)
    img[holes] = farthest[holes]
    return img


def see_through_points(
    depth_m: np.ndarray,
    camera: PinholeCamera,
    n_lines: int,
    offset_m: tuple[float, float, float] = (0.0, -0.2, 0.0),
    points_per_line: int = 200,
    rng: np.random.Generator | None = None,
    tolerance_rel: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """A LiDAR scan taken from offset_m (default 0.2 m above the camera), expressed in the camera frame.

    Returns (points (N, 3) camera frame, see_through (N,) bool): a point is see-through when it is occluded
    from the camera, i.e. farther than the camera's GT depth at its pixel by more than tolerance_rel.
    Points that land outside the image or on pixels without GT are dropped (nothing to judge them by), and so
    are points nearer than the GT by more than tolerance_rel: the camera would see those, so they are artefacts
    of filling the warped view, not something a LiDAR produces.
    """
    depth = _check_depth(depth_m, camera)
    view = render_from_offset(depth, camera, offset_m)
    pts = lidar_scan(view, camera, n_lines, points_per_line=points_per_line, rng=rng)
    pts = pts + np.asarray(offset_m, dtype=np.float64)
    uv, z = camera.project(pts)
    h, w = depth.shape
    with np.errstate(invalid="ignore"):
        ui, vi = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
        inside = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    gt = np.full(z.shape, np.nan)
    gt[inside] = depth[vi[inside].astype(np.int64), ui[inside].astype(np.int64)]
    keep = _valid(gt)
    keep[keep] = z[keep] >= gt[keep] * (1.0 - tolerance_rel)
    pts, z, gt = pts[keep], z[keep], gt[keep]
    return pts, z > gt * (1.0 + tolerance_rel)
