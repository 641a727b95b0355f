"""make-demo-bag: the bag read back with rosbags is what it claims, checked against the original Middlebury data.

References are independent of the writer: the full-resolution Middlebury frame and its calibration, and the rig
transforms composed here by hand from the recorded /tf_static messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from depth_ft_ros.cli import main
from depth_ft_ros.evaluation.middlebury import load_motorcycle

FRAMES = 4
SIZE = (96, 72)


def read_bag(path: Path) -> tuple[dict[str, list[tuple[int, object]]], dict[str, str], dict[str, str]]:
    """topic -> [(log time ns, message)], topic -> msgtype, custom metadata."""
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for conn, log_ns, data in reader.messages():
            out.setdefault(conn.topic, []).append((log_ns, reader.deserialize(data, conn.msgtype)))
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    return out, types, metadata.get("custom_data") or {}


def stamp_ns(msg: object) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec  # type: ignore[attr-defined]


def pose(tf: object) -> np.ndarray:
    """4x4 child -> parent transform of a geometry_msgs/TransformStamped."""
    t, q = tf.transform.translation, tf.transform.rotation  # type: ignore[attr-defined]
    out = np.eye(4)
    out[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    out[:3, 3] = (t.x, t.y, t.z)
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict, dict]:
    path = tmp_path_factory.mktemp("demo_bag") / "bag"
    assert main(["make-demo-bag", str(path), "--frames", str(FRAMES), "--size", f"{SIZE[0]}x{SIZE[1]}"]) == 0
    return (path, *read_bag(path))


def test_topics_counts_and_stamps(demo: tuple) -> None:
    _path, msgs, types, _custom = demo
    assert types == {"/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
                     "/camera/depth_gt": "sensor_msgs/msg/Image", "/lidar/points": "sensor_msgs/msg/PointCloud2",
                     "/tf_static": "tf2_msgs/msg/TFMessage"}
    for topic in ("/camera/image_raw", "/camera/camera_info", "/camera/depth_gt", "/lidar/points"):
        assert len(msgs[topic]) == FRAMES, topic
    image_stamps = [stamp_ns(m) for _, m in msgs["/camera/image_raw"]]
    assert np.allclose(np.diff(image_stamps), 100_000_000)  # 10 Hz
    assert [stamp_ns(m) for _, m in msgs["/camera/camera_info"]] == image_stamps
    assert [stamp_ns(m) for _, m in msgs["/camera/depth_gt"]] == image_stamps
    for (log_ns, msg) in msgs["/camera/image_raw"]:
        assert log_ns == stamp_ns(msg)
        assert (msg.width, msg.height, msg.encoding, msg.step) == (*SIZE, "rgb8", SIZE[0] * 3)
        assert msg.header.frame_id == "camera_optical_frame"
    lidar_stamps = [stamp_ns(m) for _, m in msgs["/lidar/points"]]
    assert all(0 < lidar - image < 60_000_000 for lidar, image in zip(lidar_stamps, image_stamps, strict=True))


def test_crops_match_the_original_frame(demo: tuple) -> None:
    """Each frame's GT, back-projected with its CameraInfo and projected into the full Middlebury camera, lands
    on the same depth there: the crop origin shifted cx/cy and the resize scaled K correctly."""
    _path, msgs, _types, _custom = demo
    full = load_motorcycle()
    k_full = full.camera.k
    crops = set()
    for (_, info), (_, gt) in zip(msgs["/camera/camera_info"], msgs["/camera/depth_gt"], strict=True):
        assert (info.width, info.height) == SIZE and gt.encoding == "32FC1"
        depth = np.frombuffer(gt.data.tobytes(), "<f4").reshape(gt.height, gt.width)
        k = info.k.reshape(3, 3)
        assert np.allclose(info.p.reshape(3, 4)[:, :3], k)
        crops.add((round(k[0, 0], 3), round(k[0, 2], 3)))
        v, u = np.nonzero(np.isfinite(depth))
        z = depth[v, u].astype(np.float64)
        x, y = (u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z
        uf = np.round(k_full[0, 0] * x / z + k_full[0, 2]).astype(int)
        vf = np.round(k_full[1, 1] * y / z + k_full[1, 2]).astype(int)
        assert uf.min() >= 0 and vf.min() >= 0 and uf.max() < full.camera.width and vf.max() < full.camera.height
        ref = full.depth_m[vf, uf]
        ok = np.isfinite(ref)
        close = np.abs(ref[ok] - z[ok]) / ref[ok] < 0.01
        assert close.mean() > 0.95  # (depth edges may land one source pixel off)
    assert len(crops) == FRAMES  # the camera really pans and zooms


def test_lidar_through_tf_static_matches_ground_truth(demo: tuple) -> None:
    _path, msgs, _types, custom = demo
    (_, tf_msg), = msgs["/tf_static"]
    edges = {(t.header.frame_id, t.child_frame_id): pose(t) for t in tf_msg.transforms}
    t_camera_lidar = np.linalg.inv(edges[("camera_link", "camera_optical_frame")]) @ edges[("camera_link", "lidar")]
    # The metadata and the printed parameters carry the same extrinsics.
    ext = json.loads(custom["depth_ft_ros.static_extrinsics"])
    assert np.allclose(ext["static_translation"], t_camera_lidar[:3, 3], atol=1e-6)
    assert np.allclose(Rotation.from_quat(ext["static_rotation"]).as_matrix(), t_camera_lidar[:3, :3], atol=1e-6)

    full = load_motorcycle()
    k = full.camera.k
    clouds = []
    for _, cloud in msgs["/lidar/points"]:
        assert cloud.header.frame_id == "lidar" and cloud.height == 1
        assert [f.name for f in cloud.fields][:3] == ["x", "y", "z"]
        xyz = np.frombuffer(cloud.data.tobytes(), dtype=np.dtype({"names": ["x", "y", "z"],
                            "formats": ["<f4"] * 3, "offsets": [f.offset for f in cloud.fields[:3]],
                            "itemsize": cloud.point_step}))
        pts = np.stack([xyz["x"], xyz["y"], xyz["z"]], axis=1).astype(np.float64)
        assert 1000 < len(pts) < 4000  # 16 lines x 200 points over the camera's view, minus misses
        clouds.append(pts)
        cam = pts @ t_camera_lidar[:3, :3].T + t_camera_lidar[:3, 3]
        u = np.round(k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]).astype(int)
        v = np.round(k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]).astype(int)
        inside = (u >= 0) & (u < full.camera.width) & (v >= 0) & (v < full.camera.height)
        assert inside.mean() > 0.99
        gt = full.depth_m[v[inside], u[inside]]
        rel = np.abs(cam[inside, 2] - gt) / gt
        # 1 % range noise, ~1 % outliers and the see-through points of a LiDAR mounted 0.2 m higher.
        assert np.nanmedian(rel) < 0.012
        assert np.nanmean(rel < 0.04) > 0.85
        assert np.nanmean(rel > 0.10) > 0.002  # outliers / see-through points are really there
    assert not np.array_equal(clouds[0][:50], clouds[1][:50])  # a new sweep each frame


def test_sqlite3_storage_and_same_seed_same_bag(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["make-demo-bag", str(a), "--frames", "2", "--size", "64x48", "--storage", "sqlite3"]) == 0
    assert main(["make-demo-bag", str(b), "--frames", "2", "--size", "64x48", "--seed", "0"]) == 0
    assert list(a.glob("*.db3")) and list(b.glob("*.mcap"))
    msgs_a, _, _ = read_bag(a)
    msgs_b, _, _ = read_bag(b)
    for topic in ("/lidar/points", "/camera/image_raw"):
        assert [m.data.tobytes() for _, m in msgs_a[topic]] == [m.data.tobytes() for _, m in msgs_b[topic]]


def test_bad_arguments_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bag"
    out.mkdir()
    assert main(["make-demo-bag", str(out), "--frames", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["make-demo-bag", str(tmp_path / "zero"), "--frames", "0"]) == 2
    assert "--frames" in capsys.readouterr().err
