"""Bags and readers shared by the fleet tests: demo bags (cli/demo_bag.py), broken bags of every kind the fleet
must name, and the output bags read back with rosbags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.typesys import Stores, get_typestore
from test_replay import read_bag, stamp_ns  # noqa: F401 - re-exported for the fleet tests

from depth_ft_ros.cli import main
from depth_ft_ros.replay import messages
from depth_ft_ros.replay.rosbag_io import BagReader, BagWriter

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
FAST = ["--param", "processing_resolution=96"]
# As test_replay: the tiny random checkpoints' maps are noise, so the metric map comes from the LiDAR and the
# cloud keeps every pixel (otherwise the cloud filters drop most of them).
LIDAR_ONLY = ["--param", "alignment=local", "--param", "local_heldout_ratio=100.0", "--param", "alignment_fit=scale",
              "--param", "cloud_edge_filter=false", "--param", "cloud_min_confidence=0.0"]
COMPARED = ("depth/image", "depth/confidence", "points")


def tiny_models(root: Path) -> list[str]:
    from depth_ft_ros.evaluation.tiny import make_tiny_model

    return ["--depth-model", str(make_tiny_model(root / "depth", "e2e-ft-depth")),
            "--normals-model", str(make_tiny_model(root / "normals", "e2e-ft-normals"))]


def demo_bag(path: Path, frames: int, storage: str = "mcap", seed: int = 0) -> Path:
    assert main(["make-demo-bag", str(path), "--frames", str(frames), "--size", "96x72", "--storage", storage,
                 "--seed", str(seed)]) == 0
    return path


def as_array(msg: object) -> np.ndarray:
    """An Image's float pixels, or a PointCloud2's x, y, z (NaN kept), independent of the package's converters."""
    if hasattr(msg, "encoding"):
        channels = 3 if msg.encoding == "32FC3" else 1
        return np.frombuffer(msg.data.tobytes(), "<f4").reshape(msg.height, msg.width, channels)
    offsets = {f.name: f.offset for f in msg.fields}  # type: ignore[attr-defined]
    dtype = np.dtype({"names": list("xyz"), "formats": ["<f4"] * 3, "offsets": [offsets[c] for c in "xyz"],
                      "itemsize": msg.point_step})  # type: ignore[attr-defined]
    raw = np.frombuffer(msg.data.tobytes(), dtype=dtype)  # type: ignore[attr-defined]
    return np.stack([raw["x"], raw["y"], raw["z"]], axis=-1)


def assert_same_outputs(fleet: dict[str, list[object]], fleet_prefix: str, replay: dict[str, list[object]],
                        replay_prefix: str, frames: int) -> None:
    """Depth, confidence and cloud equal frame for frame (same stamps, NaN where NaN, values within 1e-6)."""
    for topic in COMPARED:
        ours, theirs = fleet[f"{fleet_prefix}/{topic}"], replay[f"{replay_prefix}/{topic}"]
        assert [stamp_ns(m) for m in ours] == [stamp_ns(m) for m in theirs], topic
        assert len(ours) == frames, topic
        for a, b in zip(ours, theirs, strict=True):
            x, y = as_array(a), as_array(b)
            assert x.shape == y.shape, topic
            assert np.array_equal(np.isnan(x), np.isnan(y)), topic
            assert np.isfinite(x).any(), topic
            np.testing.assert_allclose(x[np.isfinite(x)], y[np.isfinite(y)], rtol=0, atol=1e-6, err_msg=topic)
            assert a.header.frame_id == b.header.frame_id  # type: ignore[attr-defined]


def truncated_bag(demo: Path, out: Path) -> Path:
    """The demo MCAP cut in the middle of its data (a copy interrupted, a disk full)."""
    out.mkdir()
    (out / "metadata.yaml").write_text((demo / "metadata.yaml").read_text())
    data = next(demo.glob("*.mcap")).read_bytes()
    (out / next(demo.glob("*.mcap")).name).write_bytes(data[: len(data) // 2])
    return out


def bag_without(demo: Path, out: Path, dropped: str) -> Path:
    writer = BagWriter(out)
    with BagReader(demo) as bag:
        for topic, msgtype, log_ns, data in bag.messages([t.name for t in bag.topics() if t.name != dropped]):
            writer.write(topic, msgtype, log_ns, data, bag.offered_qos(topic))
    writer.close()
    return out


def empty_bag(out: Path) -> Path:
    writer = BagWriter(out)
    writer.close()
    return out


def unknown_type_bag(demo: Path, out: Path) -> Path:
    """The camera images recorded under a message type no ROS distribution defines (a vendor's driver)."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import get_types_from_msg

    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg("std_msgs/Header header\nuint8[] data\n", "acme_msgs/msg/Frame"))
    with BagReader(demo) as bag, Writer(out, version=8) as writer:
        connections = {}
        for topic, msgtype, log_ns, data in bag.messages([t.name for t in bag.topics()]):
            if topic == "/camera/image_raw":
                msg = messages.deserialize(data, msgtype)
                frame = store.types["acme_msgs/msg/Frame"](header=msg.header, data=msg.data)
                msgtype, data = "acme_msgs/msg/Frame", store.serialize_cdr(frame, "acme_msgs/msg/Frame")
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], log_ns, bytes(data))
    return out
