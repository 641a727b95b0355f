"""Header stamps read from serialized (CDR) messages without deserializing them, and the store-now,
deserialize-later message the raw subscriptions hand over.

References: rclpy.serialization.serialize_message / deserialize_message (the middleware's own CDR, little
endian here), rosbags' CDR serializer for big-endian bytes (an independent implementation of the same spec,
whose output Fast CDR also reads back), and a real rclpy graph for raw=True subscriptions."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

from depth_ft_ros.errors import InputError

pytest.importorskip("rclpy", exc_type=ImportError)

STAMP = (1_700_000_123, 456_789_012)
STAMP_NS = STAMP[0] * 1_000_000_000 + STAMP[1]


def _header(frame_id: str = "camera_optical_frame", stamp: tuple[int, int] = STAMP) -> Any:
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp
    return header


def real_messages() -> dict[str, Any]:
    """One of each message the node subscribes to, filled as drivers fill them."""
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

    from depth_ft_ros.msgs.msg_buffer import as_byte_array

    image = Image(header=_header(), height=480, width=640, encoding="rgb8", step=1920)
    image.data = as_byte_array(np.full((480, 640, 3), 7, np.uint8))
    compressed = CompressedImage(header=_header(), format="jpeg")
    compressed.data = as_byte_array(np.arange(1000, dtype=np.uint8) % 251)
    info = CameraInfo(header=_header(), height=480, width=640, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    info.d = [0.1, -0.2, 0.0, 0.0, 0.0]
    cloud = PointCloud2(header=_header("lidar"), height=1, width=3, point_step=12, row_step=36, is_dense=True)
    cloud.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                    for i, n in enumerate("xyz")]
    cloud.data = as_byte_array(np.arange(9, dtype=np.float32))
    return {"image": image, "image/compressed": compressed, "camera_info": info, "sparse_points": cloud}


@pytest.mark.parametrize("topic", ["image", "image/compressed", "camera_info", "sparse_points"])
def test_stamp_and_frame_of_little_endian_messages_as_rclpy_serializes_them(topic: str) -> None:
    from rclpy.serialization import serialize_message

    from depth_ft_ros.msgs.serialized import read_header, read_stamp_ns

    msg = real_messages()[topic]
    data = serialize_message(msg)
    assert read_stamp_ns(data, topic) == STAMP_NS
    header = read_header(data, topic)
    assert (header.stamp_ns, header.frame_id, header.encoding) == (STAMP_NS, msg.header.frame_id, "CDR_LE")


@pytest.mark.parametrize("stamp", [(0, 0), (-5, 999_999_999), (2**31 - 1, 1)])
def test_stamp_edge_values(stamp: tuple[int, int]) -> None:
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CameraInfo

    from depth_ft_ros.msgs.serialized import read_stamp_ns

    data = serialize_message(CameraInfo(header=_header(stamp=stamp)))
    assert read_stamp_ns(data, "camera_info") == stamp[0] * 1_000_000_000 + stamp[1]


def test_big_endian_message_from_an_independent_serializer() -> None:
    """rosbags writes big-endian CDR; Fast CDR (rclpy) reads it back to the same header, and so must we."""
    from rclpy.serialization import deserialize_message
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image

    from depth_ft_ros.msgs.serialized import read_header

    store = get_typestore(Stores.ROS2_HUMBLE)
    header = store.types["std_msgs/msg/Header"](stamp=store.types["builtin_interfaces/msg/Time"](
        sec=STAMP[0], nanosec=STAMP[1]), frame_id="cam_left")
    msg = store.types["sensor_msgs/msg/Image"](header=header, height=2, width=3, encoding="rgb8", is_bigendian=0,
                                               step=9, data=np.arange(18, dtype=np.uint8))
    data = bytes(store.serialize_cdr(msg, "sensor_msgs/msg/Image", little_endian=False))
    assert data[:2] == b"\x00\x00"  # CDR_BE
    reference = deserialize_message(data, Image).header
    got = read_header(data, "image")
    assert got.encoding == "CDR_BE"
    assert got.stamp_ns == reference.stamp.sec * 1_000_000_000 + reference.stamp.nanosec == STAMP_NS
    assert got.frame_id == reference.frame_id == "cam_left"


def test_plain_cdr2_header_sits_where_fast_cdr_reads_it() -> None:
    """An Image has no 8-byte members, so its PLAIN_CDR2 (XCDR2, final type) bytes equal its XCDR1 bytes but for
    the representation identifier (0x0007 = PLAIN_CDR2 | little endian); Fast CDR reads that back."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from depth_ft_ros.msgs.serialized import read_header

    data = serialize_message(real_messages()["image"])
    cdr2 = data[:1] + b"\x07" + data[2:]
    reference = deserialize_message(cdr2, Image).header
    got = read_header(cdr2, "image")
    assert (got.stamp_ns, got.frame_id, got.encoding) == (
        reference.stamp.sec * 1_000_000_000 + reference.stamp.nanosec, reference.frame_id, "CDR2_LE")


@pytest.mark.parametrize(("kind", "name"), [(0x03, "PL_CDR_LE"), (0x09, "D_CDR2_LE"), (0x0B, "PL_CDR2_LE")])
def test_encodings_with_headers_before_the_stamp_are_refused_by_name(kind: int, name: str) -> None:
    from rclpy.serialization import serialize_message

    from depth_ft_ros.msgs.serialized import read_stamp_ns

    data = bytearray(serialize_message(real_messages()["camera_info"]))
    data[1] = kind
    with pytest.raises(InputError, match=f"camera_info: CDR encoding {name}"):
        read_stamp_ns(bytes(data), "camera_info")
    data[0] = 0x01
    with pytest.raises(InputError, match="camera_info: unknown CDR representation identifier 0x01"):
        read_stamp_ns(bytes(data), "camera_info")


@pytest.mark.parametrize("length", [0, 3, 4, 11])
def test_truncated_bytes_name_the_topic(length: int) -> None:
    from rclpy.serialization import serialize_message

    from depth_ft_ros.msgs.serialized import read_header, read_stamp_ns

    data = serialize_message(real_messages()["image"])[:length]
    with pytest.raises(InputError, match=r"^cam/image: serialized message of \d+ bytes"):
        read_stamp_ns(data, "cam/image")
    with pytest.raises(InputError, match=r"^cam/image: serialized message of \d+ bytes"):
        read_header(data, "cam/image")


def test_frame_id_cut_short_and_bad_nanoseconds_are_refused() -> None:
    from rclpy.serialization import serialize_message

    from depth_ft_ros.msgs.serialized import read_header, read_stamp_ns

    data = serialize_message(real_messages()["camera_info"])
    with pytest.raises(InputError, match=r"camera_info: header\.frame_id length 21 does not fit the 20-byte"):
        read_header(data[:20], "camera_info")  # "camera_optical_frame" + NUL = 21 bytes
    bad = bytearray(data)
    bad[8:12] = (1_000_000_000).to_bytes(4, "little")
    with pytest.raises(InputError, match=r"camera_info: header\.stamp\.nanosec = 1000000000"):
        read_stamp_ns(bytes(bad), "camera_info")


def test_serialized_message_deserializes_once_and_names_the_topic_when_it_cannot() -> None:
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from depth_ft_ros.msgs.serialized import SerializedMessage

    original = real_messages()["image"]
    data = serialize_message(original)
    stored = SerializedMessage(data, Image, "/front/image", arrival_s=12.5)
    assert (stored.stamp_ns, stored.arrival_s, len(stored)) == (STAMP_NS, 12.5, len(data))
    msg = stored.message()
    assert msg == original
    assert stored.message() is msg  # deserialized once
    cut = SerializedMessage(data[:-100], Image, "/front/image", arrival_s=0.0)
    assert cut.stamp_ns == STAMP_NS  # the header is intact: the stamp still reads
    expected = rf"^/front/image: cannot deserialize {len(data) - 100} bytes as Image \("
    with pytest.raises(InputError, match=expected) as info:
        cut.message()
    assert ", at /" not in str(info.value)  # no C source locations
    with pytest.raises(InputError, match=r"^/front/image: serialized message of 2 bytes"):
        SerializedMessage(data[:2], Image, "/front/image", arrival_s=0.0).message()


def test_raw_input_subscription_receives_bytes_with_the_stamp(ros_graph: Any) -> None:
    """Through a real graph: a raw AdaptiveSubscription hands over SerializedMessages whose stamp reads right
    and which deserialize to what was published; the default subscription still gets messages."""
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from depth_ft_ros.msgs.serialized import SerializedMessage
    from depth_ft_ros.node.input_qos import InputSubscriptions

    driver = ros_graph.node("raw_camera_driver")
    pub = driver.create_publisher(Image, "image", QoSProfile(depth=10))
    node = ros_graph.node("raw_subscriber")
    raw: list[Any] = []
    plain: list[Any] = []
    subs = InputSubscriptions(node, [(Image, "image", raw.append, "auto", 10, True),
                                     (Image, "image", plain.append, "auto", 10)], lambda topic, text: None)
    assert [s.raw for s in subs.subscriptions] == [True, False]
    assert ros_graph.wait_for(lambda: pub.get_subscription_count() >= 2, 10.0)
    sent = real_messages()["image"]
    before_s = time.monotonic()
    pub.publish(sent)
    assert ros_graph.wait_for(lambda: raw and plain, 10.0)
    stored = raw[0]
    assert isinstance(stored, SerializedMessage) and isinstance(stored.data, bytes)
    assert stored.topic == "/image"  # resolved name
    assert stored.stamp_ns == STAMP_NS
    assert before_s <= stored.arrival_s <= time.monotonic()
    assert stored.message() == plain[0] == sent
    subs.destroy()
