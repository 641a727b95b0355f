"""End to end: make-demo-bag -> replay through the real node -> the output bag read with rosbags.

Independent references: the input bag itself (stamps, CameraInfo, LiDAR points moved into the camera with
/tf_static composed here by hand, ground-truth depth) and REP 118's back-projection for the point cloud.

The tiny checkpoints have random weights: their relative depth does not follow the scene, so these replays use
the alignment that makes the metric map from the LiDAR alone (a scale-only fit + local refinement), as
`make demo` does; the metric tolerances are those of the LiDAR, not of a model. One test swaps the depth network
for the ground truth (a perfect affine-invariant model) to hold the alignment path to a tight tolerance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from scipy.spatial.transform import Rotation

from depth_ft_ros.cli import main

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
FRAMES = 6
NS = "/depth_ft"
PER_FRAME = ("depth/image", "depth/camera_info", "normals/image", "normals/camera_info", "points")
FAST = ["--param", "processing_resolution=96"]  # the tiny network at the image's own size
# As `make demo` runs the random tiny checkpoints (depth_ft_ros/cli/demo.py): their maps are noise, so the cloud
# filters would drop most pixels as depth edges / low confidence.
LIDAR_ONLY = ["--param", "alignment=local", "--param", "local_heldout_ratio=100.0", "--param", "alignment_fit=scale",
              "--param", "cloud_edge_filter=false",
              "--param", "cloud_min_confidence=0.0"]


def read_bag(path: Path) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    with AnyReader([path], default_typestore=TYPESTORE) as reader:
        for conn, _log_ns, data in reader.messages():
            out.setdefault(conn.topic, []).append(reader.deserialize(data, conn.msgtype))
    return out


def mcap_topic_counts(bag_dir: Path) -> dict[str, int]:
    """Messages per topic of a bag's .mcap files, decoded by the official mcap / mcap-ros2-support readers."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    counts: dict[str, int] = {}
    for mcap_file in bag_dir.glob("*.mcap"):
        with mcap_file.open("rb") as handle:
            reader = make_reader(handle, decoder_factories=[DecoderFactory()])
            for _schema, channel, _message, _decoded in reader.iter_decoded_messages():
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
    return counts


def stamp_ns(msg: object) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec  # type: ignore[attr-defined]


def float_image(msg: object) -> np.ndarray:
    assert msg.encoding in ("32FC1", "32FC3") and not msg.is_bigendian  # type: ignore[attr-defined]
    channels = 3 if msg.encoding == "32FC3" else 1  # type: ignore[attr-defined]
    arr = np.frombuffer(msg.data.tobytes(), "<f4").reshape(msg.height, msg.width, channels)  # type: ignore[attr-defined]
    return arr[..., 0] if channels == 1 else arr


def lidar_in_camera(in_msgs: dict[str, list[object]], cloud: object) -> np.ndarray:
    """The cloud's xyz moved into the camera optical frame with the bag's /tf_static, composed by hand."""
    poses = {}
    for tf in in_msgs["/tf_static"][0].transforms:  # type: ignore[attr-defined]
        t, q = tf.transform.translation, tf.transform.rotation
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
        pose[:3, 3] = (t.x, t.y, t.z)
        poses[tf.child_frame_id] = pose  # both edges hang from camera_link
    t_cam_lidar = np.linalg.inv(poses["camera_optical_frame"]) @ poses["lidar"]
    offsets = {f.name: f.offset for f in cloud.fields}  # type: ignore[attr-defined]
    dtype = np.dtype({"names": list("xyz"), "formats": ["<f4"] * 3, "offsets": [offsets[c] for c in "xyz"],
                      "itemsize": cloud.point_step})  # type: ignore[attr-defined]
    raw = np.frombuffer(cloud.data.tobytes(), dtype=dtype)  # type: ignore[attr-defined]
    xyz = np.stack([raw["x"], raw["y"], raw["z"]], axis=1).astype(np.float64)
    return xyz @ t_cam_lidar[:3, :3].T + t_cam_lidar[:3, 3]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    from depth_ft_ros.evaluation.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    return ["--depth-model", str(make_tiny_model(root / "depth", "e2e-ft-depth")),
            "--normals-model", str(make_tiny_model(root / "normals", "e2e-ft-normals"))]


def make_bag(path: Path, frames: int, storage: str = "mcap") -> Path:
    assert main(["make-demo-bag", str(path), "--frames", str(frames), "--size", "96x72", "--storage", storage]) == 0
    return path


@contextlib.contextmanager
def ground_truth_network(in_bag: Path) -> Iterator[None]:
    """Depth checkpoints return the bag's ground truth for its frames (found by the image bytes) as relative
    depth: (gt - lo) / (hi - lo) with one lo, hi for the whole bag (a model stable from frame to frame, so the
    node's temporal smoothing of scale/shift is exact too); pixels without ground truth read as far (1)."""
    from depth_ft_ros.model.predictor import DepthFtPredictor

    msgs = read_bag(in_bag)
    gts = [float_image(m).astype(np.float32) for m in msgs["/camera/depth_gt"]]
    lo, hi = min(np.nanmin(g) for g in gts), max(np.nanmax(g) for g in gts)
    relative = {hashlib.sha1(image.data.tobytes()).digest(): np.nan_to_num((gt - lo) / (hi - lo), nan=1.0)
                for image, gt in zip(msgs["/camera/image_raw"], gts, strict=True)}
    original = DepthFtPredictor.predict_group  # what Models runs each group of frames through

    def predict_group(self: DepthFtPredictor, frames: list[np.ndarray], *args: object,
                      **kwargs: object) -> object:
        predictions = original(self, frames, *args, **kwargs)
        for rgb, prediction in zip(frames, predictions, strict=True):
            key = hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).digest()
            if self.task == "depth" and key in relative:
                assert prediction.depth is not None and prediction.depth.shape == relative[key].shape
                prediction.depth = relative[key].copy()
        return predictions

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DepthFtPredictor, "predict_group", predict_group)
        yield


def with_odometry_tf(demo_bag: Path, out: Path) -> Path:
    """The demo bag plus a moving odom -> base_link on /tf at each image stamp, as a robot records it."""
    from depth_ft_ros.replay import messages
    from depth_ft_ros.replay.rosbag_io import BagReader, BagWriter

    writer = BagWriter(out)
    with BagReader(demo_bag) as bag:
        topics = [t.name for t in bag.topics()]
        for topic, msgtype, log_ns, data in bag.messages(topics):
            writer.write(topic, msgtype, log_ns, data, bag.offered_qos(topic))
            if topic == "/camera/image_raw":
                pose = np.eye(4)
                pose[0, 3] = 0.1 * writer.counts.get("/tf", 0)  # the robot drives along x
                stamp = messages.stamp_ns_from_cdr(data)
                edge = messages.StaticTransform("odom", "base_link", pose)
                writer.write("/tf", messages.TF_MESSAGE, log_ns, messages.serialize(messages.tf_message([edge], stamp)))
    writer.close()
    return out


@pytest.fixture(scope="module")
def mcap_replay(tmp_path_factory: pytest.TempPathFactory, models: list[str]) -> dict[str, object]:
    root = tmp_path_factory.mktemp("replay")
    in_bag = with_odometry_tf(make_bag(root / "demo", FRAMES), root / "in")
    rc = main(["replay", str(in_bag), "--out", str(root / "out"), "--lossless", *models, *FAST, *LIDAR_ONLY,
               "--preview", str(root / "preview"), "--summary-json", str(root / "summary.json")])
    return {"rc": rc, "in": read_bag(in_bag), "out": read_bag(root / "out"), "root": root,
            "summary": json.loads((root / "summary.json").read_text())}


@pytest.mark.ros
def test_one_output_per_frame_with_the_input_stamps(mcap_replay: dict) -> None:
    assert mcap_replay["rc"] == 0
    in_msgs, out = mcap_replay["in"], mcap_replay["out"]
    image_stamps = [stamp_ns(m) for m in in_msgs["/camera/image_raw"]]
    assert len(image_stamps) == FRAMES
    for topic in PER_FRAME:
        assert [stamp_ns(m) for m in out[f"{NS}/{topic}"]] == image_stamps, topic
    infos_in = {stamp_ns(m): m for m in in_msgs["/camera/camera_info"]}
    for depth, info in zip(out[f"{NS}/depth/image"], out[f"{NS}/depth/camera_info"], strict=True):
        assert (depth.width, depth.height, depth.encoding) == (96, 72, "32FC1")
        assert depth.header.frame_id == info.header.frame_id == "camera_optical_frame"
        assert np.allclose(info.k, infos_in[stamp_ns(info)].k)  # the depth keeps the camera's intrinsics
    summary = mcap_replay["summary"]
    assert (summary["frames_in"], summary["frames_out"], summary["frames_dropped"]) == (FRAMES, FRAMES, 0)


@pytest.mark.ros
def test_output_bag_opens_on_humble_and_with_the_mcap_reader(mcap_replay: dict) -> None:
    """Metadata version 8 (Humble's `ros2 bag` parses up to 8); inputs keep the QoS their publishers offered in
    the recorded bag (the demo LiDAR is best effort, keep last 5: rmw values 2 and 5); every message decodes with
    the reference mcap + mcap-ros2-support readers, as many as rosbags reads."""

    out_bag = mcap_replay["root"] / "out"
    info = yaml.safe_load((out_bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8
    qos = {t["topic_metadata"]["name"]: yaml.safe_load(t["topic_metadata"]["offered_qos_profiles"])
           for t in info["topics_with_message_count"]}
    assert [(p["reliability"], p["depth"]) for p in qos["/lidar/points"]] == [(2, 5)]
    assert all(len(qos[f"{NS}/{topic}"]) == 1 for topic in PER_FRAME)  # the node's one publisher of each
    counts = mcap_topic_counts(out_bag)
    assert counts == {topic: len(msgs) for topic, msgs in mcap_replay["out"].items()}
    # /tf is part of what the replay plays (recorded always; published to the node where tf2 is importable).
    assert [stamp_ns(m.transforms[0]) for m in mcap_replay["out"]["/tf"]] == [
        stamp_ns(m) for m in mcap_replay["in"]["/camera/image_raw"]]


def lidar_pixel_errors(in_msgs: dict, out: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame: relative error of the published metric depth, and of the ground truth, at the LiDAR pixels."""
    errors = []
    for cloud, depth_msg, info, gt_msg in zip(in_msgs["/lidar/points"], out[f"{NS}/depth/image"],
                                              out[f"{NS}/depth/camera_info"], in_msgs["/camera/depth_gt"], strict=True):
        depth, gt = float_image(depth_msg), float_image(gt_msg)
        k = np.asarray(info.k).reshape(3, 3)
        cam = lidar_in_camera(in_msgs, cloud)
        u = np.round(k[0, 0] * cam[:, 0] / cam[:, 2] + k[0, 2]).astype(int)
        v = np.round(k[1, 1] * cam[:, 1] / cam[:, 2] + k[1, 2]).astype(int)
        inside = (cam[:, 2] > 0) & (u >= 0) & (u < depth.shape[1]) & (v >= 0) & (v < depth.shape[0])
        z, pred, ref = cam[inside, 2], depth[v[inside], u[inside]], gt[v[inside], u[inside]]
        ok = np.isfinite(pred) & np.isfinite(ref)
        assert ok.sum() > 50
        errors.append((np.abs(pred[ok] - z[ok]) / z[ok], np.abs(ref[ok] - z[ok]) / z[ok]))
    return errors


@pytest.mark.ros
def test_metric_depth_agrees_with_the_lidar(mcap_replay: dict) -> None:
    """At the pixels the LiDAR hits, the published metric depth follows the LiDAR: with a random network the
    local alignment interpolates the LiDAR's depths, smoothed over the point spacing (a perfect network does
    better: see test_alignment_precision_with_a_perfect_network)."""
    for rel, _ in lidar_pixel_errors(mcap_replay["in"], mcap_replay["out"]):
        assert np.median(rel) < 0.10


@pytest.mark.ros
def test_alignment_precision_with_a_perfect_network(tmp_path: Path, models: list[str]) -> None:
    """Depth network swapped for the ground truth: the published depth at the LiDAR pixels is the LiDAR's within
    2 % in the median (1 % range noise, a few outliers and see-through points), and within 5 % as often as the
    ground truth itself is (at 96x72 a pixel spans several surfaces at edges). With the global fit alone the map
    is exactly affine in the prediction; the default (local, where held-out points confirm it) is as good."""
    in_bag = make_bag(tmp_path / "in", 3)
    summaries = {}
    for alignment in ("global", "default"):
        out = tmp_path / f"out_{alignment}"
        params = ["--param", "alignment=global"] if alignment == "global" else []
        with ground_truth_network(in_bag):
            assert main(["replay", str(in_bag), "--out", str(out), "--lossless", *models, *FAST, *params,
                         "--summary-json", str(tmp_path / f"{alignment}.json")]) == 0
        for rel, rel_gt in lidar_pixel_errors(read_bag(in_bag), read_bag(out)):
            assert np.median(rel) < 0.02
            assert np.mean(rel < 0.05) > np.mean(rel_gt < 0.05) - 0.03
        summaries[alignment] = summary = json.loads((tmp_path / f"{alignment}.json").read_text())
        assert summary["overall"]["absrel"] < 0.02 and summary["overall"]["delta1"] > 0.98
        # The cloud filters are on (defaults) and act; with a perfect network there is little to gain (measured:
        # kept 46 % of the pixels, AbsRel 0.0025 kept vs 0.0026 dropped): the confidence knows where the LiDAR
        # is, not how good the model is (README: cloud_min_confidence 0 for an accurate model). The cloud is no
        # worse for it.
        overall = summary["overall"]
        assert 0.0 < overall["cloud_kept_fraction"] < 1.0
        assert overall["absrel_cloud_kept"] <= 1.05 * overall["absrel"]
    assert all(frame["fit_residual_rel"] < 1e-3 for frame in summaries["global"]["frames"])  # exactly affine
    assert summaries["default"]["overall"]["absrel"] <= 1.1 * summaries["global"]["overall"]["absrel"]


@pytest.mark.ros
def test_cloud_is_the_depth_backprojected(mcap_replay: dict) -> None:
    out = mcap_replay["out"]
    cloud, depth_msg, info = out[f"{NS}/points"][0], out[f"{NS}/depth/image"][0], out[f"{NS}/depth/camera_info"][0]
    depth, k = float_image(depth_msg), np.asarray(info.k).reshape(3, 3)
    assert (cloud.height, cloud.width) == depth.shape and not cloud.is_dense
    offsets = {f.name: f.offset for f in cloud.fields}
    dtype = np.dtype({"names": list("xyz"), "formats": ["<f4"] * 3, "offsets": [offsets[c] for c in "xyz"],
                      "itemsize": cloud.point_step})
    pts = np.frombuffer(cloud.data.tobytes(), dtype=dtype).reshape(depth.shape)
    valid = np.isfinite(depth)
    assert valid.mean() > 0.5
    assert np.array_equal(np.isfinite(pts["z"]), valid)
    vv, uu = np.nonzero(valid)
    assert np.allclose(pts["z"][valid], depth[valid])
    assert np.allclose(pts["x"][valid], (uu - k[0, 2]) * depth[valid] / k[0, 0], atol=1e-4)
    assert np.allclose(pts["y"][valid], (vv - k[1, 2]) * depth[valid] / k[1, 1], atol=1e-4)


@pytest.mark.ros
def test_metrics_and_previews(mcap_replay: dict) -> None:
    in_msgs, out, summary = mcap_replay["in"], mcap_replay["out"], mcap_replay["summary"]
    gt = {stamp_ns(m): float_image(m) for m in in_msgs["/camera/depth_gt"]}
    for frame, depth_msg in zip(summary["frames"], out[f"{NS}/depth/image"], strict=True):
        # The report's metrics, computed here from the recorded output and the bag's ground truth: over pixels with
        # both a ground truth and a published depth (finite, > 0), AbsRel = mean |p - g| / g, RMSE in metres.
        pred_m = float_image(depth_msg).astype(np.float64)
        gt_m = gt[stamp_ns(depth_msg)].astype(np.float64)
        with np.errstate(invalid="ignore"):
            both = np.isfinite(gt_m) & (gt_m > 0) & np.isfinite(pred_m) & (pred_m > 0)
        assert both.mean() > 0.5
        absrel = np.mean(np.abs(pred_m[both] - gt_m[both]) / gt_m[both])
        rmse_m = np.sqrt(np.mean((pred_m[both] - gt_m[both]) ** 2))
        assert frame["metrics"]["absrel"] == pytest.approx(absrel, rel=1e-6)
        assert frame["metrics"]["rmse_m"] == pytest.approx(rmse_m, rel=1e-6)
        assert np.isfinite(frame["scale"])
    # Random network, metric map from the LiDAR alone: the overall error is that of interpolating its lines.
    assert summary["overall"]["absrel"] < 0.25
    assert summary["overall"]["frames"] == FRAMES
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99", "max"}
    pngs = sorted(p.name for p in (mcap_replay["root"] / "preview").glob("*.png"))
    assert "alignment.png" in pngs and "frame_0000.png" in pngs
    panel = cv2.imread(str(mcap_replay["root"] / "preview" / "frame_0000.png"))
    # Five tiles side by side: input, metric depth, normals, error, confidence (depth/confidence is recorded).
    assert panel.shape[1] % 5 == 0 and panel.shape[1] >= 5 * 96
    assert len(out[f"{NS}/depth/confidence"]) == FRAMES
    # The cloud filters are off here (random network): the cloud keeps every valid pixel.
    assert summary["overall"]["cloud_kept_fraction"] == 1.0 and summary["overall"]["absrel_cloud_kept"] < 0.25


@pytest.mark.ros
def test_sqlite3_bag(tmp_path: Path, models: list[str]) -> None:
    in_bag = make_bag(tmp_path / "in", 3, storage="sqlite3")
    assert main(["replay", str(in_bag), "--out", str(tmp_path / "out"), "--lossless", *models, *FAST,
                 *LIDAR_ONLY]) == 0
    in_msgs, out = read_bag(in_bag), read_bag(tmp_path / "out")
    stamps = [stamp_ns(m) for m in in_msgs["/camera/image_raw"]]
    for topic in PER_FRAME:
        assert [stamp_ns(m) for m in out[f"{NS}/{topic}"]] == stamps, topic
    assert list((tmp_path / "out").glob("*.mcap"))  # the output is MCAP whatever the input


# -- failures: clear message, non-zero exit, nothing left behind ---------------------------------------------

def test_bag_without_the_needed_topics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "chatter"
    string = TYPESTORE.types["std_msgs/msg/String"]
    with Writer(bag, version=9) as writer:
        conn = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=TYPESTORE)
        writer.write(conn, 1, TYPESTORE.serialize_cdr(string(data="hi"), "std_msgs/msg/String"))
    assert main(["replay", str(bag), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no camera image topic" in err and "/chatter" in err and "std_msgs/msg/String" in err
    assert not (tmp_path / "out").exists()


def test_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x00not a bag" * 10)
    assert main(["replay", str(junk), "--out", str(tmp_path / "o1")]) == 2
    assert "junk.mcap: cannot read the bag" in capsys.readouterr().err  # a bare .mcap is read as one
    text = tmp_path / "notes.txt"
    text.write_text("not a bag")
    assert main(["replay", str(text), "--out", str(tmp_path / "o0")]) == 2
    assert "not a rosbag2 bag" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    assert main(["replay", str(broken), "--out", str(tmp_path / "o2")]) == 2
    assert "cannot read the bag" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing"), "--out", str(tmp_path / "o3")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_wrong_topic_flag_and_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = make_bag(tmp_path / "in", 1)
    capsys.readouterr()
    assert main(["replay", str(bag), "--out", str(tmp_path / "out"), "--image-topic", "/nope"]) == 2
    err = capsys.readouterr().err
    assert "--image-topic /nope" in err and "/camera/image_raw" in err
    assert main(["replay", str(bag), "--out", str(tmp_path / "out"), "--sparse-points-topic",
                 "/camera/image_raw"]) == 2
    assert "expected sensor_msgs/msg/PointCloud2" in capsys.readouterr().err
    assert main(["replay", str(bag), "--out", str(tmp_path / "out"), "--param", "procesing_resolution=96"]) == 2
    assert "unknown parameter 'procesing_resolution'" in capsys.readouterr().err  # rclpy would ignore it
    (tmp_path / "out").mkdir()
    assert main(["replay", str(bag), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.ros
def test_ctrl_c_leaves_a_readable_partial_bag(tmp_path: Path, models: list[str]) -> None:
    in_bag = make_bag(tmp_path / "in", 40)
    out_bag, log = tmp_path / "out", tmp_path / "stderr.txt"
    with log.open("w") as err:
        # --rate 0.5: 40 frames take 8 s, so the interrupt lands mid-replay.
        proc = subprocess.Popen([sys.executable, "-m", "depth_ft_ros.cli", "replay", str(in_bag), "--out",
                                 str(out_bag), "--rate", "0.5", *models, *FAST], stdout=subprocess.PIPE,
                                stderr=err, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            done = [int(n) for n in re.findall(r"(\d+)/40 frames", log.read_text())]
            if done and max(done) >= 4:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"replay ended early:\n{log.read_text()}"
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, log.read_text()
    assert "interrupted" in stdout and "finishing the output bag" in log.read_text()
    relative = read_bag(out_bag).get(f"{NS}/depth/relative", [])  # random weights: no fit guaranteed
    assert 1 <= len(relative) < 40
