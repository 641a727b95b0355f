"""sensor_msgs/CameraInfo <-> depth_ft_ros.core.camera.PinholeCamera.

Decisions where sensor_msgs is silent:
- An all-zero P with a calibrated K (hand-written camera_info files) becomes P = [K | 0], the monocular
  convention, instead of an unusable camera.
- An empty distortion_model is read as "plumb_bob", the ROS default.
- R (rectification rotation) is not kept by PinholeCamera; camera_to_camera_info writes identity (monocular).
"""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from depth_ft_ros.core.camera import PinholeCamera
from depth_ft_ros.core.errors import InputError


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """A validated PinholeCamera with CameraInfo's size, K, D, P, distortion model, binning and ROI.

    Raises InputError for an uncalibrated camera (k[0] == 0) and anything PinholeCamera.validate refuses.
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
    roi = msg.roi
    camera = PinholeCamera(
        width=int(msg.width),
        height=int(msg.height),
        k=k,
        d=np.asarray(msg.d, dtype=np.float64),
        p=p,
        distortion_model=msg.distortion_model or "plumb_bob",
        binning_x=int(msg.binning_x),
        binning_y=int(msg.binning_y),
        roi=(int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width), bool(roi.do_rectify)),
    )
    try:
        return camera.validate()
    except InputError as exc:
        raise InputError(f"sensor_msgs/CameraInfo: {exc}") from exc


def camera_to_camera_info(camera: PinholeCamera, header: Header | None = None) -> CameraInfo:
    """A CameraInfo carrying the camera's own fields (full-sensor K/P with binning and ROI, R = identity)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(camera.width), int(camera.height)
    msg.distortion_model = camera.distortion_model
    msg.d = array.array("d", np.asarray(camera.d, dtype=np.float64).ravel().tolist())
    msg.k = np.asarray(camera.k, dtype=np.float64).reshape(9).copy()
    msg.r = np.eye(3).reshape(9)
    msg.p = np.asarray(camera.p, dtype=np.float64).reshape(12).copy()
    msg.binning_x, msg.binning_y = int(camera.binning_x), int(camera.binning_y)
    x, y, h, w, rectify = camera.roi
    msg.roi = RegionOfInterest(x_offset=int(x), y_offset=int(y), height=int(h), width=int(w), do_rectify=bool(rectify))
    return msg
