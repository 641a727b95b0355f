"""CameraInfo's D against its distortion model: refused with a message naming D and the model exactly where
OpenCV (the library the camera model calls) would fail, accepted where sensor_msgs' calibrators write it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable (needs the ROS 2 wheels or a ROS install)")
cv2 = pytest.importorskip("cv2")

from sensor_msgs.msg import CameraInfo  # noqa: E402

from depth_ft_ros.errors import InputError  # noqa: E402
from depth_ft_ros.msgs import convert  # noqa: E402

pytestmark = pytest.mark.ros
K = np.array([[200.0, 0.0, 79.5], [0.0, 200.0, 59.5], [0.0, 0.0, 1.0]])
PIXELS = np.array([[[10.0, 20.0]], [[150.0, 100.0]]])


def opencv_accepts(model: str, d: np.ndarray) -> bool:
    """Whether OpenCV's own undistortion takes this D for the model (the reference, not our table)."""
    try:
        if model == "equidistant":
            cv2.fisheye.undistortPoints(PIXELS, K, d.reshape(-1, 1))
        else:
            cv2.undistortPoints(PIXELS, K, d)
    except cv2.error:
        return False
    return True


def info(model: str, n_coefficients: int) -> CameraInfo:
    msg = CameraInfo(width=160, height=120, distortion_model=model)
    msg.k = K.ravel().tolist()
    msg.p = np.hstack([K, np.zeros((3, 1))]).ravel().tolist()
    msg.d = [0.01 * (i + 1) for i in range(n_coefficients)]
    return msg


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
def test_d_length_is_checked_against_the_model(model: str) -> None:
    for n in range(1, 16):
        d = np.array(info(model, n).d)
        try:
            camera = convert.camera_info_to_camera(info(model, n))
        except InputError as exc:
            assert "d (D)" in str(exc) and repr(model) in str(exc) and f"has {n} coefficients" in str(exc)
            continue
        # Accepted: OpenCV takes it, and the camera undistorts pixels with it (the path that used to fail).
        assert opencv_accepts(model, d), (model, n)
        x, y = camera.rays(rectified=False)
        assert np.isfinite(x).any() and np.isfinite(y).any()


@pytest.mark.parametrize(("model", "n"), [("plumb_bob", 5), ("rational_polynomial", 8), ("equidistant", 4),
                                          ("plumb_bob", 0), ("equidistant", 0)])
def test_calibrator_lengths_and_empty_d_are_accepted(model: str, n: int) -> None:
    # camera_calibration writes plumb_bob 5 and rational_polynomial 8; an empty D means no distortion.
    assert convert.camera_info_to_camera(info(model, n)).distortion_model == model


@pytest.mark.parametrize(("model", "n"), [("plumb_bob", 3), ("plumb_bob", 20), ("equidistant", 2)])
def test_lengths_opencv_refuses_are_input_errors(model: str, n: int) -> None:
    assert not opencv_accepts(model, np.array(info(model, n).d))
    with pytest.raises(InputError, match=rf"d \(D\) has {n} coefficients but distortion_model '{model}'"):
        convert.camera_info_to_camera(info(model, n))
