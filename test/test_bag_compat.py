"""Bags we write open with the tools robots use: rosbag2 metadata version 8 (the newest Humble's `ros2 bag`
parses; Jazzy reads it too), each topic's offered QoS in the form rosbag2 stores it, and MCAP files that the
reference `mcap` + `mcap-ros2-support` readers decode.

Independent references: rmw's QoS policy values (rmw/types.h: RELIABLE 1, BEST_EFFORT 2, TRANSIENT_LOCAL 1,
VOLATILE 2, KEEP_LAST 1), the keys Humble's rosbag2 QoS YAML decoder reads (rosbag2_transport qos.cpp), and the
messages as written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from depth_ft_ros.replay import messages
from depth_ft_ros.replay.rosbag_io import BagReader, BagWriter, keep_last_qos

RMW_RELIABLE, RMW_BEST_EFFORT = 1, 2
RMW_TRANSIENT_LOCAL, RMW_VOLATILE = 1, 2
RMW_KEEP_LAST = 1
HUMBLE_QOS_KEYS = {"history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
                   "liveliness_lease_duration", "avoid_ros_namespace_conventions"}


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bags") / "small"
    writer = BagWriter(path)
    rgb = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    for k in range(3):
        stamp_ns = 1_000_000_000 + k * 100_000_000
        writer.write("/camera/image_raw", messages.IMAGE, stamp_ns,
                     messages.serialize(messages.image(rgb + k, "rgb8", stamp_ns, "camera_optical_frame")))
        writer.write("/lidar/points", messages.POINTCLOUD2, stamp_ns,
                     messages.serialize(messages.pointcloud_xyz(np.full((2, 3), float(k)), stamp_ns, "lidar")),
                     [keep_last_qos(5, reliable=False)])
    writer.write("/tf_static", messages.TF_MESSAGE, 1_000_000_000,
                 messages.serialize(messages.tf_message([], 1_000_000_000)), [keep_last_qos(1, transient_local=True)])
    writer.close()
    return path


def _metadata(bag: Path) -> dict:
    return yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def test_metadata_version_8_with_qos_as_humble_reads_it(small_bag: Path) -> None:
    info = _metadata(small_bag)
    assert info["version"] == 8
    profiles = {}
    for entry in info["topics_with_message_count"]:
        topic = entry["topic_metadata"]
        text = topic["offered_qos_profiles"]
        assert isinstance(text, str)  # version <= 8: a YAML document inside a string (9 makes it a list)
        (profile,) = yaml.safe_load(text)
        assert set(profile) == HUMBLE_QOS_KEYS
        assert set(profile["deadline"]) == {"sec", "nsec"}
        profiles[topic["name"]] = profile
    assert {t: (p["reliability"], p["durability"], p["history"], p["depth"]) for t, p in profiles.items()} == {
        "/camera/image_raw": (RMW_RELIABLE, RMW_VOLATILE, RMW_KEEP_LAST, 10),
        "/lidar/points": (RMW_BEST_EFFORT, RMW_VOLATILE, RMW_KEEP_LAST, 5),
        "/tf_static": (RMW_RELIABLE, RMW_TRANSIENT_LOCAL, RMW_KEEP_LAST, 1),
    }


def test_offered_qos_reads_back(small_bag: Path) -> None:
    with BagReader(small_bag) as bag:
        (lidar,) = bag.offered_qos("/lidar/points")
        assert (lidar.reliability.value, lidar.depth) == (RMW_BEST_EFFORT, 5)
        assert bag.offered_qos("/no/such/topic") == []


def test_reference_mcap_reader_decodes_every_message(small_bag: Path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    (mcap_file,) = small_bag.glob("*.mcap")
    seen: dict[str, list[object]] = {}
    with mcap_file.open("rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        for _schema, channel, _message, decoded in reader.iter_decoded_messages():
            seen.setdefault(channel.topic, []).append(decoded)
    assert {t: len(v) for t, v in seen.items()} == {"/camera/image_raw": 3, "/lidar/points": 3, "/tf_static": 1}
    image = seen["/camera/image_raw"][2]
    assert (image.height, image.width, image.encoding, image.step) == (4, 6, "rgb8", 18)
    expected = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) + 2
    np.testing.assert_array_equal(np.frombuffer(bytes(image.data), np.uint8).reshape(4, 6, 3), expected)
    assert image.header.frame_id == "camera_optical_frame"
    assert (image.header.stamp.sec, image.header.stamp.nanosec) == (1, 200_000_000)
    cloud = seen["/lidar/points"][1]
    xyz = np.frombuffer(bytes(cloud.data), "<f4").reshape(2, 3)
    np.testing.assert_array_equal(xyz, np.ones((2, 3), np.float32))


@pytest.mark.ros
def test_rclpy_profiles_convert_to_rmw_values() -> None:
    from rclpy.duration import Duration
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    from depth_ft_ros.replay.session import bag_qos

    sensor = bag_qos(qos_profile_sensor_data)
    assert (sensor.reliability.value, sensor.durability.value, sensor.history.value, sensor.depth) == (
        RMW_BEST_EFFORT, RMW_VOLATILE, RMW_KEEP_LAST, 5)
    latched = bag_qos(QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL, deadline=Duration(seconds=1.5)))
    assert (latched.reliability.value, latched.durability.value, latched.depth) == (
        RMW_RELIABLE, RMW_TRANSIENT_LOCAL, 1)
    assert (latched.deadline.sec, latched.deadline.nsec) == (1, 500_000_000)
