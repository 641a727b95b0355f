"""A bag with two cameras and one LiDAR through the node's `cameras` mode: make-demo-bag --cameras -> replay
(lossless) -> the output bag read with rosbags. Each camera's outputs carry its own stamps and optical frame, and
each is scored against its own ground truth, computed here by hand from the input bag."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_replay import FAST, LIDAR_ONLY, NS, float_image, read_bag, stamp_ns

from depth_ft_ros.cli import main

pytestmark = pytest.mark.ros
CAMERAS = ("front", "left")
FRAMES = 4


def test_two_cameras_each_get_their_outputs_and_their_own_scores(tmp_path: Path) -> None:
    from depth_ft_ros.evaluation.tiny import make_tiny_model

    in_bag, out_bag, summary_json = tmp_path / "in", tmp_path / "out", tmp_path / "summary.json"
    assert main(["make-demo-bag", str(in_bag), "--frames", str(FRAMES), "--size", "96x72", "--cameras",
                 *CAMERAS]) == 0
    depth_model = make_tiny_model(tmp_path / "depth", "e2e-ft-depth")
    assert main(["replay", str(in_bag), "--out", str(out_bag), "--lossless", "--depth-model", str(depth_model),
                 "--summary-json", str(summary_json), "--param", f"cameras=[{','.join(CAMERAS)}]",
                 *FAST, *LIDAR_ONLY]) == 0
    in_msgs, out = read_bag(in_bag), read_bag(out_bag)
    summary = json.loads(summary_json.read_text())
    assert summary["frames_out"] == len(CAMERAS) * FRAMES
    for camera in CAMERAS:
        depth = out[f"{NS}/{camera}/depth/image"]
        images = in_msgs[f"/{camera}/image_raw"]
        assert [stamp_ns(m) for m in depth] == [stamp_ns(m) for m in images]
        assert {m.header.frame_id for m in depth} == {f"{camera}_optical_frame"}  # type: ignore[attr-defined]
        gt = {stamp_ns(m): float_image(m) for m in in_msgs[f"/{camera}/depth_gt"]}
        frames = [f for f in summary["frames"] if f["camera"] == camera]
        assert len(frames) == FRAMES
        for frame, msg in zip(frames, depth, strict=True):
            d, g = float_image(msg), gt[stamp_ns(msg)]
            valid = np.isfinite(d) & np.isfinite(g) & (g > 0)
            absrel = float(np.mean(np.abs(d[valid] - g[valid]) / g[valid]))
            assert frame["stamp_ns"] == stamp_ns(msg)
            assert frame["metrics"]["absrel"] == pytest.approx(absrel, rel=1e-5)
            assert absrel < 0.25  # a LiDAR-made metric map (random network), on this camera's own view
    # The two cameras look at different parts of the scene in most frames: their maps differ.
    a, b = (float_image(out[f"{NS}/{c}/depth/image"][0]) for c in CAMERAS)
    assert not np.allclose(a, b, equal_nan=True)
