"""sensor_msgs/CameraInfo <-> depth_ft_ros.geometry.camera.PinholeCamera.

Decisions where sensor_msgs is silent:
- An all-zero P with a calibrated K (hand-written camera_info files) becomes P = [K | 0], the monocular
  convention, instead of an unusable camera.
- An empty distortion_model is read as "plumb_bob", the ROS default.
- R (rectification rotation): all zeros, as drivers that never rectify send it, reads as identity.
- D's length must suit its distortion model (D_LENGTHS); an empty D means no distortion with any model, as in
  image_geometry (its distortion state comes from the coefficients present).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from depth_ft_ros.errors import InputError
from depth_ft_ros.geometry.camera import PinholeCamera

# Coefficients per model. sensor_msgs/distortion_models.hpp names the models; camera_calibration writes
# plumb_bob with 5 (k1, k2, p1, p2, k3) and rational_polynomial with 8 (+ k4, k5, k6); OpenCV's plumb_bob
# functions also take 4 (k3 = 0); cv2.fisheye (equidistant) takes exactly 4 (k1..k4). OpenCV's 12/14-term
# models (thin prism, tilt) are refused: PinholeCamera's distortion formula stops at 8 terms.
D_LENGTHS: dict[str, tuple[int, ...]] = {"plumb_bob": (5, 4), "rational_polynomial": (8,), "equidistant": (4,)}


def check_distortion(distortion_model: str, d: np.ndarray) -> None:
    """Raise InputError naming D and the model when D's length does not suit the model."""
    allowed = D_LENGTHS.get(distortion_model)
    if allowed is None or d.size == 0 or d.size in allowed:
        return  # an unknown model is PinholeCamera.validate's to judge (refused unless D is all zero)
    raise InputError(f"sensor_msgs/CameraInfo: d (D) has {d.size} coefficients but distortion_model "
                     f"{distortion_model!r} takes {' or '.join(map(str, allowed))} (or none)")


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """A validated PinholeCamera with CameraInfo's size, K, D, P, distortion model, binning and ROI.

    Raises InputError for an uncalibrated camera (k[0] == 0), a D whose length does not suit its
    distortion_model, and anything PinholeCamera.validate refuses.
    """
    k = np.asarray(msg.k, dtype=np.float64)
    p = np.asarray(msg.p, dtype=np.float64)
    if k.size != 9 or p.size != 12:
        raise InputError(f"sensor_msgs/CameraInfo: k has {k.size} values and p {p.size}, expected 9 and 12")
    if k[0] == 0.0:
        raise InputError(
            "sensor_msgs/CameraInfo: camera_info has k[0] == 0: camera is uncalibrated "
            "(calibrate it, or publish a camera_info with intrinsics)"
        )
    k = k.reshape(3, 3)
    p = p.reshape(3, 4)
    if not np.any(p):
        p = np.hstack([k, np.zeros((3, 1))])
    d = np.asarray(msg.d, dtype=np.float64)
    distortion_model = msg.distortion_model or "plumb_bob"
    check_distortion(distortion_model, d)
    r = np.asarray(msg.r, dtype=np.float64)
    if r.size != 9:
        raise InputError(f"sensor_msgs/CameraInfo: r has {r.size} values, expected 9")
    roi = msg.roi
    camera = PinholeCamera(
        width=int(msg.width),
        height=int(msg.height),
        k=k,
        d=d,
        p=p,
        distortion_model=distortion_model,
        binning_x=int(msg.binning_x),
        binning_y=int(msg.binning_y),
        roi=(int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width), bool(roi.do_rectify)),
        r=r,
    )
    try:
        return camera.validate()
    except InputError as exc:
        raise InputError(f"sensor_msgs/CameraInfo: {exc}") from exc


def camera_to_camera_info(camera: PinholeCamera, header: Header | None = None) -> CameraInfo:
    """A CameraInfo carrying the camera's own fields (full-sensor K/P with binning and ROI, R)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = camera.distortion_model
    msg.d = array.array("d", np.asarray(camera.d, dtype=np.float64).ravel().tolist())
    msg.k = np.asarray(camera.k, dtype=np.float64).reshape(9).copy()
    msg.r = np.asarray(camera.r, dtype=np.float64).reshape(9).copy()
    msg.p = np.asarray(camera.p, dtype=np.float64).reshape(12).copy()
    msg.binning_x, msg.binning_y = int(camera.binning_x), int(camera.binning_y)
    x, y, h, w, rectify = camera.roi
    msg.roi = RegionOfInterest(x_offset=int(x), y_offset=int(y), height=int(h), width=int(w), do_rectify=bool(rectify))
    return msg


class CameraInfoCache:
    """camera_info_to_camera, converted again only when the message's fields change: the same PinholeCamera
    object frame after frame keeps its cached per-pixel rays. A refused message raises its InputError again."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._result: PinholeCamera | InputError | None = None

    def camera(self, msg: CameraInfo) -> PinholeCamera:
        roi = msg.roi
        key = (msg.width, msg.height, tuple(msg.k), tuple(msg.p), tuple(msg.d), tuple(msg.r), msg.distortion_model,
               msg.binning_x, msg.binning_y, roi.x_offset, roi.y_offset, roi.width, roi.height, roi.do_rectify)
        if key != self._key:
            try:
                self._result = camera_info_to_camera(msg)
            except InputError as exc:
                self._result = exc
            self._key = key
        if isinstance(self._result, InputError):
            raise InputError(str(self._result))
        assert self._result is not None
        return self._result
