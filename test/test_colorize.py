"""Pictures for people: compared with the colour map applied by its definition."""

from __future__ import annotations

import cv2
import numpy as np

from depth_ft_ros.frame.colorize import colorize_depth, colorize_normals


def test_depth_colours_follow_the_turbo_map_of_the_2_98_percentile_range() -> None:
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (120, 160)).astype(np.float32)
    depth[:5] = np.nan
    lo, hi = np.nanpercentile(depth, [2, 98])
    near_is_one = 1.0 - np.clip((np.nan_to_num(depth, nan=lo) - lo) / (hi - lo), 0, 1)
    expected = cv2.applyColorMap((near_is_one * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    got = colorize_depth(depth)
    assert got.shape == (120, 160, 3) and got.dtype == np.uint8
    assert np.all(got[:5] == 0)  # invalid pixels black
    # The range comes from a 1/16 sample: neighbouring colour-map entries differ by a few levels.
    assert np.percentile(np.abs(got[5:].astype(int) - expected[5:]), 99) <= 8
    assert np.all(colorize_depth(np.full((4, 4), np.nan)) == 0)


def test_normal_colours_are_half_n_plus_one_in_bgr() -> None:
    normals = np.array([[[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]]], dtype=np.float32)
    bgr = colorize_normals(normals)
    # x right -> red 255, y up (-1) -> green 0, z forward -> blue 255; others at 127.5 -> 128.
    assert bgr[0, 0].tolist() == [128, 128, 255]
    assert bgr[0, 1].tolist() == [128, 0, 128]
    assert bgr[0, 2].tolist() == [255, 128, 128]
