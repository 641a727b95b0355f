"""Pinhole camera built from a sensor_msgs/CameraInfo, with projection and REP 118 backprojection.

Conventions (REP 103/118): optical frame x right, y down, z forward; depth is metres along z.

Which matrix: like image_geometry's PinholeCameraModel, `fx/fy/cx/cy` come from P, the projection of the
*rectified* image, because depth images (ours, depth_image_proc's) are treated as rectified. For a monocular
camera P[:3, :3] normally equals K. Projecting into an *unrectified* image (rectified=False) uses K and D instead,
and backprojecting an unrectified depth image undistorts the pixel grid first (cv2.undistortPoints).

Binning and ROI (as image_geometry): CameraInfo width/height/K/P describe the full-resolution sensor; the image
actually received is the ROI (full-resolution pixels, width/height 0 = whole sensor) divided by the binning
(0 or 1 = none). K and P are adjusted to that image: f' = f / b, c' = (c - roi_offset) / b, Tx' = Tx / b.
Everything below (image size, fx.., project, backproject, scaled) refers to that reduced image.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from depth_ft_ros.errors import InputError

DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


def _as_matrix(value: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != shape[0] * shape[1]:
        raise InputError(f"camera {name} needs {shape[0] * shape[1]} values (got {arr.size})")
    arr = arr.reshape(shape).copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class PinholeCamera:
    """Intrinsics as in sensor_msgs/CameraInfo (k 3x3 raw, d distortion, p 3x4 rectified projection)."""

    width: int
    height: int
    k: np.ndarray
    d: np.ndarray
    p: np.ndarray
    distortion_model: str = "plumb_bob"
    binning_x: int = 0
    binning_y: int = 0
    roi: tuple[int, int, int, int, bool] = (0, 0, 0, 0, False)
    # Rectification rotation (raw optical frame -> rectified frame); identity for a monocular camera.
    r: np.ndarray = field(default_factory=lambda: np.eye(3))
    # Per-instance cache of derived arrays (pixel rays); not part of the constructor.
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "width", int(self.width))
        set_(self, "height", int(self.height))
        set_(self, "k", _as_matrix(self.k, (3, 3), "k"))
        set_(self, "p", _as_matrix(self.p, (3, 4), "p"))
        r = np.asarray(self.r, dtype=np.float64)
        # Drivers that never rectify often leave CameraInfo.r all zeros: that means no rotation.
        set_(self, "r", _as_matrix(np.eye(3) if r.size == 9 and not np.any(r) else r, (3, 3), "r"))
        d = np.asarray(self.d if self.d is not None else [], dtype=np.float64).ravel().copy()
        d.setflags(write=False)
        set_(self, "d", d)
        set_(self, "binning_x", int(self.binning_x))
        set_(self, "binning_y", int(self.binning_y))
        roi = tuple(self.roi)
        if len(roi) != 5:
            raise InputError(f"camera roi needs (x_offset, y_offset, height, width, do_rectify), got {roi!r}")
        set_(self, "roi", (int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3]), bool(roi[4])))

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_intrinsics(
        cls, fx: float, fy: float, cx: float, cy: float, width: int, height: int
    ) -> PinholeCamera:
        """An undistorted camera: K from the four numbers, P = [K | 0], D empty."""
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        return cls(width=width, height=height, k=k, d=np.zeros(0), p=np.hstack([k, np.zeros((3, 1))]))

    def validate(self) -> PinholeCamera:
        """Raise InputError for an unusable (e.g. uncalibrated) camera; returns self for chaining."""
        if self.k[0, 0] == 0.0:
            raise InputError("camera is uncalibrated (CameraInfo k[0] == 0): calibrate it or publish intrinsics")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"camera size must be positive, got {self.width}x{self.height}")
        if self.binning_x < 0 or self.binning_y < 0:
            raise InputError(f"camera binning must be >= 0, got {self.binning_x}x{self.binning_y}")
        for name, arr in (("k", self.k), ("p", self.p), ("d", self.d), ("r", self.r)):
            if not np.all(np.isfinite(arr)):
                raise InputError(f"camera {name} has non-finite values: {arr.ravel().tolist()}")
        if not np.allclose(self.r @ self.r.T, np.eye(3), atol=1e-3) or np.linalg.det(self.r) < 0:
            raise InputError(f"camera r is not a rotation matrix: {self.r.ravel().tolist()}")
        if self.p[0, 0] <= 0 or self.p[1, 1] <= 0 or self.k[1, 1] <= 0:
            raise InputError(f"camera focal lengths must be positive (k={self.k.ravel().tolist()})")
        if self.distortion_model not in DISTORTION_MODELS and np.any(self.d != 0):
            raise InputError(
                f"distortion model {self.distortion_model!r} not supported (use one of {DISTORTION_MODELS})"
            )
        x, y, h, w, _ = self.roi
        if x < 0 or y < 0 or h < 0 or w < 0 or x + w > self.width or y + h > self.height:
            raise InputError(f"camera roi {self.roi} lies outside the {self.width}x{self.height} sensor")
        if self.image_width <= 0 or self.image_height <= 0:
            raise InputError(f"camera roi/binning leave no pixels ({self.roi}, binning {self.binning_x})")
        return self

    # ---------------------------------------------------------------- binning / ROI
    @property
    def _bin(self) -> tuple[int, int]:
        return max(self.binning_x, 1), max(self.binning_y, 1)

    @property
    def image_width(self) -> int:
        """Width of the images this camera produces (ROI width, or full width, divided by binning)."""
        roi_w = self.roi[3] if self.roi[3] else self.width
        return roi_w // self._bin[0]

    @property
    def image_height(self) -> int:
        roi_h = self.roi[2] if self.roi[2] else self.height
        return roi_h // self._bin[1]

    def _reduce(self, m: np.ndarray) -> np.ndarray:
        """Apply ROI offset and binning to a K (3x3) or P (3x4) matrix (image_geometry's reduced model)."""
        bx, by = self._bin
        out = m.copy()
        out[0, 2] -= self.roi[0]
        out[1, 2] -= self.roi[1]
        out[0] /= bx
        out[1] /= by
        out.setflags(write=False)
        return out

    @property
    def k_image(self) -> np.ndarray:
        """K adjusted for binning and ROI."""
        if "k_image" not in self._cache:
            self._cache["k_image"] = self._reduce(self.k)
        return self._cache["k_image"]

    @property
    def p_image(self) -> np.ndarray:
        """P adjusted for binning and ROI."""
        if "p_image" not in self._cache:
            self._cache["p_image"] = self._reduce(self.p)
        return self._cache["p_image"]

    @property
    def fx(self) -> float:
        return float(self.p_image[0, 0])

    @property
    def fy(self) -> float:
        return float(self.p_image[1, 1])

    @property
    def cx(self) -> float:
        return float(self.p_image[0, 2])

    @property
    def cy(self) -> float:
        return float(self.p_image[1, 2])

    @property
    def is_distorted(self) -> bool:
        return bool(np.any(self.d != 0))

    def reduced(self) -> PinholeCamera:
        """The same camera with binning and ROI baked into K/P (size = image size, no binning, no ROI)."""
        if self.binning_x <= 1 and self.binning_y <= 1 and self.roi[:4] == (0, 0, 0, 0):
            return self
        return dataclasses.replace(
            self, width=self.image_width, height=self.image_height, k=self.k_image, p=self.p_image,
            binning_x=0, binning_y=0, roi=(0, 0, 0, 0, False),
        )

    def scaled(self, width: int, height: int) -> PinholeCamera:
        """A copy for images resized to width x height (binning/ROI baked in, like depth_image_proc scaling K/P).

        Rows 0 and 1 of K and P are scaled by the size ratios; principal points use the pixel-centre convention
        of cv2.resize (c' = (c + 0.5) * ratio - 0.5). depth_image_proc uses c' = c * ratio; the two differ by
        less than half a pixel.
        """
        if width <= 0 or height <= 0:
            raise InputError(f"scaled camera size must be positive, got {width}x{height}")
        base = self.reduced()
        if width == base.width and height == base.height:
            return base
        sx, sy = width / base.width, height / base.height

        def scale(m: np.ndarray) -> np.ndarray:
            out = m.copy()
            out[0, 2] += 0.5
            out[1, 2] += 0.5
            out[0] *= sx
            out[1] *= sy
            out[0, 2] -= 0.5
            out[1, 2] -= 0.5
            return out

        return dataclasses.replace(base, width=int(width), height=int(height), k=scale(base.k), p=scale(base.p))

    # ---------------------------------------------------------------- projection
    def _distort(self, xn: np.ndarray, yn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized undistorted -> distorted coordinates (OpenCV's plumb_bob / rational / fisheye formulas)."""
        d = np.zeros(8)
        d[: min(8, self.d.size)] = self.d[:8]
        r2 = xn * xn + yn * yn
        if self.distortion_model == "equidistant":
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(r > 1e-12, theta_d / r, 1.0)
            return xn * f, yn * f
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xy = xn * yn
        xd = xn * radial + 2 * p1 * xy + p2 * (r2 + 2 * xn * xn)
        yd = yn * radial + p1 * (r2 + 2 * yn * yn) + 2 * p2 * xy
        return xd, yd

    def _undistort_pixels(self, uv: np.ndarray) -> np.ndarray:
        """Pixels of the unrectified image -> normalized undistorted coordinates (N, 2)."""
        pts = np.ascontiguousarray(uv, dtype=np.float64).reshape(-1, 1, 2)
        k = self.k_image
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(pts, k, self.d[:4].reshape(4, 1))
        else:
            # More iterations than cv2.undistortPoints' default 5, which leaves ~0.2 px at the corners of a
            # strongly distorted (k1 ~ -0.3) lens.
            criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
            if hasattr(cv2, "undistortPointsIter"):  # OpenCV 4.x (Ubuntu 22.04 / Humble ships 4.5)
                out = cv2.undistortPointsIter(pts, k, self.d, None, None, criteria)
            else:  # OpenCV 5 folded the criteria into undistortPoints
                out = cv2.undistortPoints(pts, k, self.d, None, None, None, criteria)
        return out.reshape(-1, 2)

    def _max_radius2(self) -> float:
        """Squared normalized radius of the image border: beyond it the distortion polynomial may fold back."""
        if "max_r2" not in self._cache:
            w, h = self.image_width, self.image_height
            t = np.linspace(0, 1, 33)
            border = np.concatenate([
                np.stack([t * (w - 1), np.zeros_like(t)], 1), np.stack([t * (w - 1), np.full_like(t, h - 1)], 1),
                np.stack([np.zeros_like(t), t * (h - 1)], 1), np.stack([np.full_like(t, w - 1), t * (h - 1)], 1),
            ])
            xy = self._undistort_pixels(border)
            self._cache["max_r2"] = float(np.max(np.sum(xy * xy, axis=1)))
        return self._cache["max_r2"]

    def project(self, points_xyz: np.ndarray, rectified: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Project optical-frame points to pixel coordinates.

        rectified=True: u = (P @ [X Y Z 1]) / Z like image_geometry's project3dToPixel. rectified=False: the
        raw image, with D applied (plumb_bob etc., same formulas as cv2.projectPoints) and K; points whose
        normalized radius lies well beyond the image border get NaN, since the polynomial can fold them back
        inside. Returns uv (N, 2) float64 (NaN for z <= 0 or non-finite input) and z (N,).
        """
        pts = np.asarray(points_xyz, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points must be (N, 3), got shape {pts.shape}")
        u, v = self.project_columns(pts[:, 0], pts[:, 1], pts[:, 2], rectified)
        return np.stack([u, v], axis=1), pts[:, 2].copy()

    def project_columns(self, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                        rectified: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """project() on separate x, y, z arrays (N,): returns u, v (N,) float64. Avoids (N, 3) temporaries on
        the per-frame path."""
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # NaN for z <= 0 or non-finite z; non-finite x or y give non-finite u or v, cleared below.
            inv_z = np.where((z > 0) & (z < np.inf), 1.0 / z, np.nan)
            if rectified or not self.is_distorted:
                m = self.p_image if rectified else self.k_image
                tx, ty = (m[0, 3], m[1, 3]) if rectified else (0.0, 0.0)
                u = (m[0, 0] * x + m[0, 1] * y + tx) * inv_z + m[0, 2]
                v = (m[1, 1] * y + ty) * inv_z + m[1, 2]
            else:
                xn, yn = x * inv_z, y * inv_z
                far = xn * xn + yn * yn > 1.5 * self._max_radius2()
                xd, yd = self._distort(xn, yn)
                k = self.k_image
                u = k[0, 0] * xd + k[0, 1] * yd + k[0, 2]
                v = k[1, 1] * yd + k[1, 2]
                u[far] = np.nan
                v[far] = np.nan
            bad = ~(np.isfinite(u) & np.isfinite(v))
        if bad.any():
            u[bad] = np.nan
            v[bad] = np.nan
        return u, v

    # ---------------------------------------------------------------- backprojection
    def rays(self, rectified: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel normalized coordinates (x/z, y/z), each (H, W) float32, cached per camera."""
        key = "rays_P" if rectified else ("rays_KD" if self.is_distorted else "rays_K")
        if key not in self._cache:
            w, h = self.image_width, self.image_height
            u = np.arange(w, dtype=np.float64)
            v = np.arange(h, dtype=np.float64)
            if rectified or not self.is_distorted:
                m = self.p_image if rectified else self.k_image
                # Tx is ignored here and applied in backproject (X = ((u - cx) Z - Tx) / fx).
                xr = np.broadcast_to(((u - m[0, 2]) / m[0, 0])[None, :], (h, w))
                yr = np.broadcast_to(((v - m[1, 2]) / m[1, 1])[:, None], (h, w))
                xr = xr - (m[0, 1] / m[0, 0]) * yr  # skew (normally 0)
            else:
                uu, vv = np.meshgrid(u, v)
                xy = self._undistort_pixels(np.stack([uu.ravel(), vv.ravel()], 1))
                xr, yr = xy[:, 0].reshape(h, w), xy[:, 1].reshape(h, w)
            xr32 = np.ascontiguousarray(xr, dtype=np.float32)
            yr32 = np.ascontiguousarray(yr, dtype=np.float32)
            xr32.setflags(write=False)
            yr32.setflags(write=False)
            self._cache[key] = (xr32, yr32)
        return self._cache[key]

    def ray_lengths(self, rectified: bool = True) -> np.ndarray:
        """Per-pixel sqrt(1 + x^2 + y^2) of rays(): a point at depth Z on a pixel's ray is Z * that from the
        optical centre (Tx/Ty of a stereo P aside). (H, W) float32, cached per camera."""
        key = "ray_len_P" if rectified else ("ray_len_KD" if self.is_distorted else "ray_len_K")
        if key not in self._cache:
            xr, yr = self.rays(rectified)
            length = np.sqrt(1.0 + xr.astype(np.float64) ** 2 + yr.astype(np.float64) ** 2).astype(np.float32)
            length.setflags(write=False)
            self._cache[key] = length
        return self._cache[key]

    def backproject(self, depth_m: np.ndarray, rectified: bool = True) -> np.ndarray:
        """Depth image (metres along z, REP 118) -> HxWx3 float32 points; NaN where depth is invalid.

        X = (u - cx) * Z / fx, Y = (v - cy) * Z / fy with P (as depth_image_proc); undistorted rays when
        rectified=False and D is set.
        """
        depth = np.asarray(depth_m)
        if depth.shape != (self.image_height, self.image_width):
            raise InputError(
                f"depth is {depth.shape[::-1]} (w, h) but the camera is {self.image_width}x{self.image_height}; "
                "use camera.scaled(width, height)"
            )
        z = depth.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            z[~(np.isfinite(z) & (z > 0))] = np.nan
        xr, yr = self.rays(rectified)
        out = np.empty((*z.shape, 3), dtype=np.float32)
        np.multiply(xr, z, out=out[..., 0])
        np.multiply(yr, z, out=out[..., 1])
        out[..., 2] = z
        if rectified and (self.p_image[0, 3] != 0 or self.p_image[1, 3] != 0):
            out[..., 0] -= np.float32(self.p_image[0, 3] / self.p_image[0, 0])
            out[..., 1] -= np.float32(self.p_image[1, 3] / self.p_image[1, 1])
        return out


def camera_for_image(camera: PinholeCamera, width: int, height: int) -> PinholeCamera:
    """The camera scaled to an image of another size (binned or resized stream); refuses another aspect ratio."""
    cam_w, cam_h = camera.image_width, camera.image_height  # after binning / ROI
    if (cam_w, cam_h) == (width, height):
        return camera
    if abs(cam_w * height - cam_h * width) > 0.01 * cam_w * height:
        raise InputError(f"camera_info is {cam_w}x{cam_h} but the image is {width}x{height} "
                         "(another aspect ratio): frame skipped")
    return camera.scaled(width, height)
