"""Which bag topics feed the node: taken from the flags, else guessed by message type and image encoding.

A guess is made only when it is unambiguous; otherwise the error lists the candidates and the flag to pass. With
several cameras (the node's `cameras` parameter), each camera C takes the image, camera_info and ground-truth topics
that have C as one of their name's segments (/C/image_raw, /rig/C/camera_info, ...); the sparse points are the one
shared LiDAR (or, with sparse_per_camera, each camera's own under its name).
"""

from __future__ import annotations

from dataclasses import dataclass
from posixpath import dirname

from depth_ft_ros.replay import messages as m
from depth_ft_ros.replay.rosbag_io import BagError, BagReader

DEPTH_ENCODINGS = ("32FC1", "16UC1", "64FC1")
NONE = "none"  # flag value: do without this input


@dataclass(frozen=True)
class TopicFlags:
    """The topic flags of `replay`, `finetune` and `fleet` (--image-topic, --camera-info-topic,
    --sparse-points-topic, --gt-depth-topic); None: guessed per bag."""

    image: str | None = None
    camera_info: str | None = None
    sparse_points: str | None = None
    gt_depth: str | None = None


@dataclass(frozen=True)
class TopicPlan:
    image: str
    image_compressed: bool
    camera_info: str
    sparse_points: str | None  # None: no metric points (the node publishes relative depth only)
    gt_depth: str | None  # None: no metrics
    tf_static: str | None
    tf: str | None = None  # dynamic transforms (a moving robot, or extrinsics published on /tf)

    def inputs(self) -> list[str]:
        """The topics played to the node."""
        return [t for t in (self.image, self.camera_info, self.sparse_points, self.tf_static, self.tf) if t]

    def transform_topics(self) -> set[str]:
        return {t for t in (self.tf_static, self.tf) if t}


def _fail(bag: BagReader, what: str, flag: str, candidates: list[str] | None = None) -> BagError:
    if candidates:
        text = f"{what}: several candidates ({', '.join(candidates)}); choose one with {flag}"
    else:
        text = f"{what}; pass {flag} if it is there under another type"
    return BagError(f"{bag.path}: {text}. The bag's topics:\n{bag.describe_topics()}")


def _explicit(bag: BagReader, topic: str, flag: str, allowed: tuple[str, ...]) -> str:
    types = {t.name: t.msgtype for t in bag.topics()}
    if topic not in types:
        raise BagError(f"{flag} {topic}: the bag has no such topic. Its topics:\n{bag.describe_topics()}")
    if types[topic] not in allowed:
        raise BagError(f"{flag} {topic}: is a {types[topic]}, expected {' or '.join(allowed)}")
    return topic


def _encoding(bag: BagReader, topic: str) -> str:
    msg = bag.first(topic)
    return "" if msg is None else str(msg.encoding)


def _is_depth(bag: BagReader, topic: str, msgtype: str) -> bool:
    if msgtype == m.COMPRESSED_IMAGE:
        msg = bag.first(topic)
        return msg is not None and "compressedDepth" in str(msg.format)
    return _encoding(bag, topic) in DEPTH_ENCODINGS


def _of_camera(topic: str, camera: str) -> bool:
    return not camera or camera in topic.strip("/").split("/")


def choose_topics(bag: BagReader, image: str | None = None, camera_info: str | None = None,
                  sparse_points: str | None = None, gt_depth: str | None = None, camera: str = "",
                  sparse_per_camera: bool = False) -> TopicPlan:
    """The TopicPlan for `bag` (for one camera of several: `camera`); flags given as None are guessed. Raises
    BagError naming what is missing."""
    topics = [t for t in bag.topics() if _of_camera(t.name, camera)
              or (t.msgtype != m.IMAGE and t.msgtype != m.COMPRESSED_IMAGE and t.msgtype != m.CAMERA_INFO
                  and not (t.msgtype == m.POINTCLOUD2 and sparse_per_camera))]
    images = [t.name for t in topics if t.msgtype in (m.IMAGE, m.COMPRESSED_IMAGE)]
    depth_images = [t for t in images if _is_depth(bag, t, bag.msgtype(t))]

    if image is not None:
        image = _explicit(bag, image, "--image-topic", (m.IMAGE, m.COMPRESSED_IMAGE))
    else:
        colour = [t for t in images if t not in depth_images]
        # A bag recorded with image_transport often has both `x` and `x/compressed`: play the raw one.
        colour = [t for t in colour if not (t.endswith("/compressed") and t[: -len("/compressed")] in colour)]
        if len(colour) != 1:
            what = ("no camera image topic (sensor_msgs/Image with a colour or mono encoding, or CompressedImage)"
                    if not colour else "camera image")
            raise _fail(bag, f"camera {camera}: {what}" if camera else what, "--image-topic", colour)
        image = colour[0]

    if camera_info is not None:
        camera_info = _explicit(bag, camera_info, "--camera-info-topic", (m.CAMERA_INFO,))
    else:
        infos = [t.name for t in topics if t.msgtype == m.CAMERA_INFO]
        base = image[: -len("/compressed")] if image.endswith("/compressed") else image
        sibling = f"{dirname(base)}/camera_info".replace("//", "/")  # the image_transport convention
        if len(infos) > 1 and sibling in infos:
            infos = [sibling]
        if len(infos) != 1:
            raise _fail(bag, "no sensor_msgs/CameraInfo topic" if not infos else "camera_info",
                        "--camera-info-topic", infos)
        camera_info = infos[0]

    if sparse_points == NONE:
        sparse_points = None
    elif sparse_points is not None:
        sparse_points = _explicit(bag, sparse_points, "--sparse-points-topic", (m.POINTCLOUD2,))
    else:
        clouds = [t.name for t in topics if t.msgtype == m.POINTCLOUD2]
        if len(clouds) != 1:
            raise _fail(bag, "no sparse metric points (sensor_msgs/PointCloud2, e.g. a LiDAR) for the metric "
                        f"alignment (--sparse-points-topic {NONE} replays without them)" if not clouds
                        else "sparse points", "--sparse-points-topic", clouds)
        sparse_points = clouds[0]

    if gt_depth == NONE:
        gt_depth = None
    elif gt_depth is not None:
        gt_depth = _explicit(bag, gt_depth, "--gt-depth-topic", (m.IMAGE,))
        if _encoding(bag, gt_depth) not in DEPTH_ENCODINGS:
            raise BagError(f"--gt-depth-topic {gt_depth}: encoding {_encoding(bag, gt_depth)!r} is not a depth "
                           f"encoding ({', '.join(DEPTH_ENCODINGS)})")
    else:
        candidates = [t for t in depth_images if t != image and bag.msgtype(t) == m.IMAGE]
        if len(candidates) > 1:
            raise _fail(bag, "ground-truth depth", f"--gt-depth-topic (or --gt-depth-topic {NONE})", candidates)
        gt_depth = candidates[0] if candidates else None

    tf_static, tf = (name if any(t.name == name and t.msgtype == m.TF_MESSAGE for t in topics) else None
                     for name in ("/tf_static", "/tf"))
    return TopicPlan(image=image, image_compressed=bag.msgtype(image) == m.COMPRESSED_IMAGE,
                     camera_info=camera_info, sparse_points=sparse_points, gt_depth=gt_depth, tf_static=tf_static,
                     tf=tf)
