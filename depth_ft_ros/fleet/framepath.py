"""A bag's messages through the node's own frame path, without DDS.

Topics are chosen as `replay` chooses them (replay/topics.py), per camera when the node serves several
(`cameras`: each camera's image and camera_info are those whose topic names contain the camera's name; one
PointCloud2 is the shared LiDAR unless sparse_per_camera). Messages are decoded with rclpy's own CDR
deserializer into sensor_msgs objects, so the node's converters run on them; CameraInputs pairs them as the
node does (sync_tolerance, static extrinsics from the bag's /tf_static as `replay` derives them), and side
messages are taken slightly ahead of the images exactly as a lossless `replay` sends them
(replay/playback.lead_topics). FrameProcessor runs each step (the frames of the cameras that fired together)
in stamp order, and output_messages builds what the node would publish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.errors import InputError

# The frame-path API (frame/processor.py FrameProcessor, msgs/frame_inputs.py, msgs/outputs.py).
from depth_ft_ros.fleet._interim import (
    CameraFrame,
    CameraInputs,
    FrameFailure,
    FrameProcessor,
    StaticExtrinsics,
    output_messages,
)
from depth_ft_ros.fleet.settings import FleetSettings
from depth_ft_ros.frame.processor import FrameResult, Outputs
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.geometry.rectify import needs_rectification
from depth_ft_ros.msgs import convert
from depth_ft_ros.replay import messages as m
from depth_ft_ros.replay.playback import lead_topics
from depth_ft_ros.replay.replay import static_extrinsics
from depth_ft_ros.replay.rosbag_io import BagError, BagReader, TopicInfo
from depth_ft_ros.replay.topics import TopicPlan, choose_topics

CLASSES = {m.IMAGE: Image, m.COMPRESSED_IMAGE: CompressedImage, m.CAMERA_INFO: CameraInfo, m.POINTCLOUD2: PointCloud2}
LEAD_MARGIN_S = 0.05  # what replay adds to sync_tolerance when it sends side messages ahead (replay/replay.py)

__all__ = ["BagPlan", "CameraFrame", "FrameFailure", "FrameProcessor", "FrameResult", "Outputs", "StepOutput",
           "plan_bag", "run_frames"]


@dataclass(frozen=True)
class CameraPlan:
    name: str  # "" for the single camera
    topics: TopicPlan
    extrinsics: tuple[list[float], list[float]]  # sparse frame -> camera optical frame (translation, rotation)
    extrinsics_source: str  # "/tf_static" or "parameters"


@dataclass(frozen=True)
class BagPlan:
    cameras: tuple[CameraPlan, ...]
    config: NodeConfig  # the run's parameters, adjusted to the bag (no sparse topic: sparse_input none)

    def image_topics(self) -> dict[str, str]:
        return {c.topics.image: c.name for c in self.cameras}

    def side_topics(self) -> set[str]:
        """camera_info, sparse points and ground-truth depth: taken ahead of the images, as replay sends them."""
        return {t for c in self.cameras for t in (c.topics.camera_info, c.topics.sparse_points, c.topics.gt_depth)
                if t}

    def describe(self) -> dict[str, Any]:
        return {c.name or "camera": {"image": c.topics.image, "camera_info": c.topics.camera_info,
                                     "sparse_points": c.topics.sparse_points, "extrinsics": c.extrinsics_source}
                for c in self.cameras}


class _CameraView:
    """The bag as one camera of several sees it: its own topics (names containing the camera's name) and the
    topics no camera claims (a shared LiDAR, /tf_static)."""

    def __init__(self, bag: BagReader, camera: str, cameras: list[str]) -> None:
        self._bag, self.path = bag, bag.path
        self._camera = camera
        self._others = [c for c in cameras if c != camera]

    def _belongs(self, topic: str) -> bool:
        parts = topic.strip("/").split("/")
        if self._camera in parts:
            return True
        return not any(other in parts for other in self._others)

    def topics(self) -> list[TopicInfo]:
        return [t for t in self._bag.topics() if self._belongs(t.name)]

    def describe_topics(self) -> str:
        return self._bag.describe_topics()

    def first(self, topic: str) -> Any:
        return self._bag.first(topic)

    def msgtype(self, topic: str) -> str:
        return self._bag.msgtype(topic)

    def messages(self, topics: list[str]) -> Iterator[tuple[str, str, int, bytes]]:
        return self._bag.messages(topics)


def plan_bag(bag: BagReader, settings: FleetSettings) -> BagPlan:
    """Topics and extrinsics of every camera; BagError naming what the bag lacks."""
    config = settings.config()
    flags = settings.topics
    cameras = list(config.cameras) or [""]
    plans: list[CameraPlan] = []
    for camera in cameras:
        view: Any = _CameraView(bag, camera, cameras) if camera else bag
        if camera and (flags.image or flags.camera_info):
            raise BagError("--image-topic / --camera-info-topic name one camera's topics: with several cameras "
                           "each camera's topics are those whose names contain the camera's name")
        try:
            plan = choose_topics(view, flags.image, flags.camera_info, flags.sparse_points, flags.gt_depth)
        except BagError as exc:
            raise BagError(f"camera {camera}: {exc}" if camera else str(exc)) from None
        if config.sparse_input == "none" or config.alignment == "off":
            plan = dataclasses.replace(plan, sparse_points=None)
        found = static_extrinsics(view, plan)
        own = settings.camera_params.get(camera, {})
        translation = own.get("static_translation", config.static_translation)
        rotation = own.get("static_rotation", config.static_rotation)
        pose, source = (found, "/tf_static") if found is not None else ((translation, rotation), "parameters")
        plans.append(CameraPlan(camera, plan, (list(pose[0]), list(pose[1])), source))
    if all(p.topics.sparse_points is None for p in plans):
        config = dataclasses.replace(config, sparse_input="none")
    return BagPlan(tuple(plans), config)


@dataclass
class StepOutput:
    """One frame's outcome: its result (or why it failed), its inputs and the messages to write."""

    result: FrameResult | FrameFailure
    frame: CameraFrame | None
    messages: list[tuple[str, str, Any]]  # (topic under the namespace, msgtype, sensor_msgs message)
    log_time_ns: int
    gt_depth_m: np.ndarray | None = None  # the bag's dense ground truth in the outputs' geometry, if any


def _ground_truth(config: NodeConfig, result: FrameResult, msg: Any) -> np.ndarray | None:
    """The ground-truth depth paired with a frame, when it lies on the outputs' pixel grid (outputs in the input's
    geometry, same size); None otherwise (or when the message is not a depth image: counted by the caller)."""
    if msg is None or result.depth_m is None:
        return None
    rectified = config.rectify_outputs and not config.image_rectified and needs_rectification(result.camera)
    depth = convert.depth_image_to_metres(msg)
    return depth if depth.shape == result.depth_m.shape and not rectified else None


def _stamp_ns(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _msgtype(msg: Any) -> str:
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def run_frames(bag: BagReader, plan: BagPlan, settings: FleetSettings, processor: Any,
               on_problem: Callable[[str, str], None] | None = None) -> Iterator[StepOutput]:
    """Every image of the bag through the frame path, in the bag's order; yields each frame's outcome as soon
    as its step is done (a bag is streamed: at most one step of frames is held)."""
    config = plan.config
    shared = StampBuffer[Any](maxlen=10)  # one LiDAR seen by every camera: one buffer, as the node keeps
    inputs: dict[str, Any] = {}
    sparse_owner: dict[str, list[str]] = {}
    for cam in plan.cameras:
        buffer = shared if not config.sparse_per_camera else None
        inputs[cam.name] = CameraInputs(cam.name, sparse=buffer, extrinsics=StaticExtrinsics(*cam.extrinsics))
        if on_problem is not None and hasattr(inputs[cam.name], "on_problem"):
            inputs[cam.name].on_problem = on_problem
        if cam.topics.sparse_points:
            sparse_owner.setdefault(cam.topics.sparse_points, []).append(cam.name)
    info_of = {c.topics.camera_info: c.name for c in plan.cameras}
    images = plan.image_topics()
    wanted = Outputs(normals=any(o.startswith("normals/") for o in settings.outputs) or
                     ("points" in settings.outputs and config.cloud_normals),
                     cloud="points" in settings.outputs, confidence="depth/confidence" in settings.outputs)
    namespace = "/" + settings.namespace

    gt_of = {c.topics.gt_depth: c.name for c in plan.cameras if c.topics.gt_depth}
    ground_truth = {c.name: StampBuffer[Any](maxlen=30) for c in plan.cameras}
    pending: list[tuple[CameraFrame, int, Any]] = []

    def flush() -> Iterator[StepOutput]:
        if not pending:
            return
        frames = [f for f, _, _ in pending]
        for (frame, log_ns, gt_msg), result in zip(pending, processor(frames), strict=True):
            if isinstance(result, FrameFailure):
                yield StepOutput(result, frame, [], log_ns)
                continue
            msgs = [(f"{namespace}/{topic}", _msgtype(msg), msg)
                    for topic, msg in output_messages(result, settings.wanted, config.publish_relative)]
            gt = None
            try:
                gt = _ground_truth(config, result, gt_msg)
            except InputError as exc:
                if on_problem is not None:
                    on_problem("bad_gt_depth", str(exc))
            yield StepOutput(result, frame, msgs, log_ns, gt)
        pending.clear()

    lead_ns = int((config.sync_tolerance + LEAD_MARGIN_S) * 1e9)
    topics = [*images, *plan.side_topics()]
    tolerance_ns = int(config.sync_tolerance * 1e9)
    for topic, msgtype, log_ns, data in lead_topics(bag.messages(topics), plan.side_topics(), lead_ns):
        cls = CLASSES.get(msgtype)
        if cls is None:
            raise BagError(f"{topic}: message type {msgtype} is not one the node reads")
        msg = deserialize_message(bytes(data), cls)
        if topic in gt_of and topic not in images:
            ground_truth[gt_of[topic]].add(_stamp_ns(msg), msg)
        if topic in info_of and topic not in images:
            inputs[info_of[topic]].add_camera_info(msg)
        elif topic in sparse_owner and topic not in images:
            owners = sparse_owner[topic]
            for name in owners[:1] if not config.sparse_per_camera else owners:
                inputs[name].add_sparse(msg)
        if topic not in images:
            continue
        camera = images[topic]
        stamp_ns = _stamp_ns(msg)
        if pending and (any(f.camera_name == camera for f, _, _ in pending)
                        or abs(stamp_ns - pending[0][0].stamp_ns) > tolerance_ns):
            yield from flush()
        try:
            frame = inputs[camera].assemble(msg, config, outputs=wanted)
        except FrameFailure as failure:
            yield StepOutput(failure, None, [], log_ns)
            continue
        pending.append((frame, log_ns, ground_truth[camera].wait_nearest(stamp_ns, tolerance_ns, 0.0)))
        if len(pending) == len(plan.cameras):
            yield from flush()
    yield from flush()
