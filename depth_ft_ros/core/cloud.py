"""Organized point cloud arrays from a metric depth image, like depth_image_proc point_cloud_xyz(rgb).

The result is a numpy structured array (H', W') of plain float32 fields x, y, z [, rgb] [, normal_x,
normal_y, normal_z], no padding, so its dtype maps 1:1 to PointCloud2 PointFields (offset = field offset,
FLOAT32, count 1) and its bytes are the message data (point_step = itemsize, row_step = itemsize * W').
"""

from __future__ import annotations

import sys

import cv2
import numpy as np

from depth_ft_ros.core.camera import PinholeCamera
from depth_ft_ros.core.errors import InputError

XYZ_FIELDS = ("x", "y", "z")
NORMAL_FIELDS = ("normal_x", "normal_y", "normal_z")


def cloud_dtype(rgb: bool = False, normals: bool = False) -> np.dtype:
    names = list(XYZ_FIELDS) + (["rgb"] if rgb else []) + (list(NORMAL_FIELDS) if normals else [])
    return np.dtype([(name, np.float32) for name in names])


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 (...) whose bits are 0x00RRGGBB (the PCL / RViz `rgb` field)."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.shape[-1] != 3:
        raise InputError(f"rgb must be uint8 (..., 3), got {arr.dtype} {arr.shape}")
    if sys.byteorder == "little" and arr.ndim == 3:
        # B, G, R, 0 bytes read as one little-endian uint32 are 0x00RRGGBB (cv2 is ~5x faster than shifts).
        bgra = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGRA)
        bgra[..., 3] = 0
        return bgra.view(np.float32)[..., 0]
    packed = (arr[..., 0].astype(np.uint32) << 16) | (arr[..., 1].astype(np.uint32) << 8) | arr[..., 2]
    return packed.view(np.float32)


def _resize(img: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """cv2.resize with area averaging when shrinking (like an image pyramid), bilinear otherwise."""
    if (img.shape[1], img.shape[0]) == size_wh:
        return img
    shrinking = size_wh[0] < img.shape[1] and size_wh[1] < img.shape[0]
    return cv2.resize(img, size_wh, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def cloud_arrays(
    depth_m: np.ndarray,
    camera: PinholeCamera,
    rgb: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    stride: int = 1,
    max_range_m: float | None = None,
    rectified: bool = True,
) -> np.ndarray:
    """Organized cloud (H', W') = depth[::stride, ::stride] in the camera optical frame.

    X = (u - cx) * Z / fx, Y = (v - cy) * Z / fy with the camera scaled to the depth size (depth_image_proc
    does the same); invalid depth (NaN, <= 0, inf) or range (Euclidean norm) beyond max_range_m -> NaN xyz.
    rgb: uint8 HxWx3 in RGB order (convert bgr8 first), resized to the depth size if needed; it is kept for
    invalid points as in depth_image_proc. normals: float HxWx3 unit vectors in the optical frame (resized
    bilinearly and renormalised if needed), NaN where the point is invalid. rectified: the depth is of a
    rectified image (rays from P, as depth_image_proc) or of the raw image (rays from K and D).
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D (H, W), got shape {depth.shape}")
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride!r}")
    h, w = depth.shape
    cam = camera.scaled(w, h)
    xr, yr = cam.rays(rectified)
    if stride > 1:
        depth, xr, yr = depth[::stride, ::stride], xr[::stride, ::stride], yr[::stride, ::stride]
    dtype = cloud_dtype(rgb is not None, normals is not None)
    nf = len(dtype.names or ())
    out = np.empty((*depth.shape, nf), dtype=np.float32)  # viewed as the structured array at the end

    z = out[..., 2]
    np.copyto(z, depth, casting="unsafe")
    with np.errstate(invalid="ignore"):
        invalid = ~(np.isfinite(z) & (z > 0))
    z[invalid] = np.nan
    np.multiply(xr, z, out=out[..., 0])
    np.multiply(yr, z, out=out[..., 1])
    if rectified and (cam.p[0, 3] != 0 or cam.p[1, 3] != 0):  # stereo Tx/Ty (0 for a monocular camera)
        out[..., 0] -= np.float32(cam.p[0, 3] / cam.p[0, 0])
        out[..., 1] -= np.float32(cam.p[1, 3] / cam.p[1, 1])
    if max_range_m is not None:
        with np.errstate(invalid="ignore"):
            far = np.einsum("hwc,hwc->hw", out[..., :3], out[..., :3]) > max_range_m * max_range_m
        out[far, :3] = np.nan
        invalid |= far

    col = 3
    if rgb is not None:
        rgb_arr = np.asarray(rgb)
        if rgb_arr.ndim != 3 or rgb_arr.shape[2] != 3 or rgb_arr.dtype != np.uint8:
            raise InputError(f"rgb must be uint8 HxWx3, got {rgb_arr.dtype} {rgb_arr.shape}")
        rgb_arr = _resize(rgb_arr, (w, h))[::stride, ::stride]
        out[..., col] = pack_rgb(rgb_arr)
        col += 1
    if normals is not None:
        n_arr = np.asarray(normals)
        if n_arr.ndim != 3 or n_arr.shape[2] != 3:
            raise InputError(f"normals must be HxWx3, got shape {n_arr.shape}")
        if (n_arr.shape[1], n_arr.shape[0]) != (w, h):
            n_arr = cv2.resize(n_arr.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
            with np.errstate(invalid="ignore", divide="ignore"):
                n_arr = n_arr / np.linalg.norm(n_arr, axis=2, keepdims=True)
        n_arr = n_arr[::stride, ::stride]
        # Per channel: numpy's strided 3-channel copies are ~4x slower than three 2-D ones.
        nan_or_one = np.where(invalid, np.float32(np.nan), np.float32(1.0))
        for i in range(3):
            np.multiply(n_arr[..., i], nan_or_one, out=out[..., col + i], casting="unsafe")
    return out.view(dtype)[..., 0]
