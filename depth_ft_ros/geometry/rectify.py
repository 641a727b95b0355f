"""Raw (distorted) camera geometry -> the rectified geometry of P, for outputs read with P alone.

depth_image_proc and RViz's camera displays treat a depth image as rectified and back-project it with P, ignoring
D: a depth map left in the raw geometry of a distorted lens comes out bent in their clouds. The rectified output
has the raw image's size, intrinsics P[:3, :3], zero D and identity R, as image_proc's rectify node publishes.

The pixel maps come from OpenCV (cv2.initUndistortRectifyMap; cv2.fisheye's for the equidistant model), computed
once per camera. Resampling is nearest-neighbour: a rectified pixel takes one raw pixel's value, so depth edges
are never blended into flying pixels between foreground and background. Depth is re-expressed along the
rectified optical axis and normals are rotated by R (both no-ops for a monocular camera, R = I).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera


def needs_rectification(camera: PinholeCamera) -> bool:
    """Whether the raw image differs from the rectified one: lens distortion, a rectification rotation, or a
    P whose intrinsics differ from K."""
    return camera.is_distorted or not np.allclose(camera.r, np.eye(3)) or not np.allclose(camera.k, camera.p[:, :3])


def rectified_camera(camera: PinholeCamera) -> PinholeCamera:
    """The camera of the rectified image: same size, K = P[:3, :3], zero D, identity R (binning/ROI baked in)."""
    base = camera.reduced()
    return dataclasses.replace(base, k=base.p[:, :3], d=np.zeros(5), distortion_model="plumb_bob", r=np.eye(3))


@dataclass(frozen=True, eq=False)
class Rectifier:
    """Maps one raw camera's images into its rectified geometry. Build with `for_camera`."""

    raw: PinholeCamera
    camera: PinholeCamera  # the rectified camera of the outputs
    map_x: np.ndarray  # (H, W) float32: raw column sampled by each rectified pixel
    map_y: np.ndarray
    z_factor: np.ndarray | None  # (H, W) float32: z_rect / z_raw along each rectified ray; None when R = I

    @classmethod
    def for_camera(cls, camera: PinholeCamera) -> Rectifier:
        base = camera.reduced()
        size = (base.width, base.height)
        new_k = base.p[:, :3]
        if base.distortion_model == "equidistant":
            map_x, map_y = cv2.fisheye.initUndistortRectifyMap(base.k, base.d[:4], base.r, new_k, size,
                                                               cv2.CV_32FC1)
        else:
            map_x, map_y = cv2.initUndistortRectifyMap(base.k, base.d, base.r, new_k, size, cv2.CV_32FC1)
        z_factor = None
        if not np.allclose(base.r, np.eye(3)):
            # A rectified ray (x', y', 1) is R^T (x', y', 1) in the raw frame: a point at raw depth z lies at
            # rectified depth z / (R^T r)_z on it.
            x = (np.arange(base.width) - new_k[0, 2]) / new_k[0, 0]
            y = (np.arange(base.height) - new_k[1, 2]) / new_k[1, 1]
            raw_z = base.r[0, 2] * x[None, :] + base.r[1, 2] * y[:, None] + base.r[2, 2]
            with np.errstate(divide="ignore"):
                z_factor = np.where(raw_z > 0, 1.0 / raw_z, np.nan).astype(np.float32)
        for array in (map_x, map_y, z_factor):
            if array is not None:
                array.setflags(write=False)
        return cls(base, rectified_camera(base), map_x, map_y, z_factor)

    def _remap(self, image: np.ndarray) -> np.ndarray:
        if image.shape[:2] != self.map_x.shape:
            raise InputError(f"image is {image.shape[1]}x{image.shape[0]} but the camera is "
                             f"{self.map_x.shape[1]}x{self.map_x.shape[0]}: scale the camera first")
        fill = 0 if image.dtype == np.uint8 else np.nan
        return cv2.remap(image, self.map_x, self.map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(fill, fill, fill, fill))

    def depth(self, depth_m: np.ndarray) -> np.ndarray:
        """Metric depth (H, W, metres along the raw optical axis) -> along the rectified axis; NaN outside the
        raw image."""
        out = self._remap(np.asarray(depth_m, dtype=np.float32))
        if self.z_factor is not None:
            out *= self.z_factor
        return out

    def relative(self, relative: np.ndarray) -> np.ndarray:
        """An affine-invariant map (no metric z to re-express): resampled only."""
        return self._remap(np.asarray(relative, dtype=np.float32))

    def normals(self, normals: np.ndarray) -> np.ndarray:
        """Unit normals (H, W, 3) in the raw optical frame -> the rectified frame (rotated by R)."""
        out = self._remap(np.ascontiguousarray(normals, dtype=np.float32))
        if not np.allclose(self.raw.r, np.eye(3)):
            out = out @ self.raw.r.T.astype(np.float32)
        return out

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A bool mask (H, W) resampled the same way; False outside the raw image."""
        return self._remap(np.ascontiguousarray(mask, dtype=np.uint8)).astype(bool)

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """Colour (H, W, 3 uint8) resampled the same way, so a cloud's colours stay on their points."""
        return self._remap(np.ascontiguousarray(rgb))
