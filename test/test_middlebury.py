"""The bundled Middlebury frame: depth from the published calibration, cached, read-only."""

from __future__ import annotations

import numpy as np

from depth_ft_ros.evaluation import middlebury


def test_motorcycle_depth_follows_the_calibration() -> None:
    from skimage import data

    frame = middlebury.load_motorcycle()
    assert frame.rgb.shape == (500, 741, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth_m.shape == (500, 741) and frame.depth_m.dtype == np.float32
    _, _, disparity = data.stereo_motorcycle()
    valid = np.isfinite(disparity)
    np.testing.assert_array_equal(np.isfinite(frame.depth_m), valid)
    expected = 994.978 * 0.193001 / (disparity[valid].astype(np.float64) + 31.086)
    np.testing.assert_allclose(frame.depth_m[valid], expected, rtol=1e-6)
    assert np.nanmin(frame.depth_m) > 2.0 and np.nanmax(frame.depth_m) < 5.1
    assert 0.92 < valid.mean() < 0.935
    cam = frame.camera.validate()
    assert (cam.fx, cam.cx, cam.cy, cam.image_width, cam.image_height) == (994.978, 311.193, 254.877, 741, 500)


def test_cached_and_read_only() -> None:
    a, b = middlebury.load_motorcycle(), middlebury.load_motorcycle()
    assert a is b
    assert not a.depth_m.flags.writeable and not a.rgb.flags.writeable
