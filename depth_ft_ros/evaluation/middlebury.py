"""The Middlebury 2014 "Motorcycle" frame shipped with scikit-image: real RGB + metric ground-truth depth.

Calibration for the down-sampled images (alignment.md): f = 994.978 px, cx = 311.193, cy = 254.877,
doffs = 31.086 px, baseline = 193.001 mm; depth[m] = f * 0.193001 / (disparity + doffs), inf disparity = invalid.
Licence: Middlebury asks for a citation (Scharstein et al., GCPR 2014).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from depth_ft_ros.geometry.camera import PinholeCamera

FOCAL_PX = 994.978
CX_PX = 311.193
CY_PX = 254.877
DOFFS_PX = 31.086
BASELINE_M = 0.193001


@dataclass(frozen=True, eq=False)
class MiddleburyFrame:
    rgb: np.ndarray  # uint8 (500, 741, 3), RGB order, read-only
    depth_m: np.ndarray  # float32 (500, 741), metres along z, NaN invalid, read-only
    camera: PinholeCamera


def disparity_to_depth_m(disparity_px: np.ndarray) -> np.ndarray:
    """Middlebury disparity -> depth in metres (float32, NaN where the disparity is not finite)."""
    disp = np.asarray(disparity_px, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = FOCAL_PX * BASELINE_M / (disp + DOFFS_PX)
    depth[~np.isfinite(disp) | ~(depth > 0)] = np.nan
    return depth.astype(np.float32)


@functools.lru_cache(maxsize=1)
def load_motorcycle() -> MiddleburyFrame:
    """Left image, GT depth and camera of the Motorcycle pair; cached in-process, arrays are read-only."""
    from skimage import data  # imported lazily: skimage.data is slow to import

    left, _right, disparity = data.stereo_motorcycle()
    rgb = np.ascontiguousarray(left, dtype=np.uint8)
    depth = disparity_to_depth_m(disparity)
    rgb.setflags(write=False)
    depth.setflags(write=False)
    height, width = depth.shape
    camera = PinholeCamera.from_intrinsics(FOCAL_PX, FOCAL_PX, CX_PX, CY_PX, width, height)
    return MiddleburyFrame(rgb=rgb, depth_m=depth, camera=camera)
