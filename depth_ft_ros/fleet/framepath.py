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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from depth_ft_ros.config import NodeConfig
from depth_ft_ros.enums import SparseInput
from depth_ft_ros.errors import InputError
from depth_ft_ros.fleet.settings import FleetSettings
from depth_ft_ros.frame.failure import FrameFailure
from depth_ft_ros.frame.processor import CameraFrame, FrameProcessor, FrameResult, Outputs
from depth_ft_ros.frame.stats import NodeStats
from depth_ft_ros.frame.sync import StampBuffer
from depth_ft_ros.geometry.rectify import needs_rectification
from depth_ft_ros.msgs import convert
from depth_ft_ros.msgs.frame_inputs import CameraInputs, StaticExtrinsics, stamp_to_ns
from depth_ft_ros.msgs.outputs import output_messages
from depth_ft_ros.replay import messages as m
from depth_ft_ros.replay.playback import lead_topics
from depth_ft_ros.replay.replay import static_extrinsics
from depth_ft_ros.replay.rosbag_io import BagError, BagReader
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


def plan_bag(bag: BagReader, settings: FleetSettings) -> BagPlan:
    """Topics and extrinsics of every camera; BagError naming what the bag lacks."""
    config = settings.config()
    flags = settings.topics
    cameras = list(config.cameras) or [""]
    plans: list[CameraPlan] = []
    if config.cameras and (flags.image or flags.camera_info):
        raise BagError("--image-topic / --camera-info-topic name one camera's topics; with several cameras each "
                       "camera C takes the bag topics with C in their name (/C/image_raw, /C/camera_info)")
    for camera in cameras:
        plan = choose_topics(bag, flags.image, flags.camera_info, flags.sparse_points, flags.gt_depth,
                             camera=camera, sparse_per_camera=config.sparse_per_camera)
        if config.sparse_input == "none" or config.alignment == "off":
            plan = dataclasses.replace(plan, sparse_points=None)
        found = static_extrinsics(bag, plan)
        own = settings.camera_params.get(camera, {})
        translation = own.get("static_translation", config.static_translation)
        rotation = own.get("static_rotation", config.static_rotation)
        pose, source = (found, "/tf_static") if found is not None else ((translation, rotation), "parameters")
        plans.append(CameraPlan(camera, plan, (list(pose[0]), list(pose[1])), source))
    if len({p.topics.image for p in plans}) != len(plans):
        raise BagError(f"cameras {cameras} do not each have an image topic of their own: "
                       f"{ {p.name: p.topics.image for p in plans} }")
    if all(p.topics.sparse_points is None for p in plans):
        config = dataclasses.replace(config, sparse_input=SparseInput.NONE)
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
    return stamp_to_ns(msg.header.stamp)


class InputCounts:
    """The bag's input faults, counted by kind with the first message of each (the node's Reporter logs them;
    a bag run reports them in its result)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def bad_input(self, kind: str, message: str, throttle_s: float = 0.0, throttle_key: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first.setdefault(kind, message)

    def note(self, key: str, message: str, throttle_s: float = 0.0) -> None:
        """Expected conditions (LiDAR points outside the view): not faults."""


def _msgtype(msg: Any) -> str:
    cls = type(msg)
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


def run_frames(bag: BagReader, plan: BagPlan, settings: FleetSettings, processor: FrameProcessor,
               report: InputCounts) -> Iterator[StepOutput]:
    """Every image of the bag through the frame path, in the bag's order; yields each frame's outcome as soon
    as its step is done (a bag is streamed: at most one step of frames is held). Input faults go to `report`."""
    config = plan.config
    # Every side message is in place before its image (lead_topics): nothing more can arrive while a frame waits.
    assemble_config = dataclasses.replace(config, sync_wait=0.0)
    shared = StampBuffer[Any](maxlen=10)  # one LiDAR seen by every camera: one buffer, as the node keeps
    stats = NodeStats()
    inputs: dict[str, CameraInputs] = {}
    sparse_owner: dict[str, list[str]] = {}
    for cam in plan.cameras:
        buffer = shared if not config.sparse_per_camera else None
        inputs[cam.name] = CameraInputs(cam.name, stats, report, sparse=buffer,
                                        extrinsics=StaticExtrinsics(*cam.extrinsics))
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
    pending: list[tuple[CameraFrame, int, Any, dict[str, float]]] = []

    def flush() -> Iterator[StepOutput]:
        if not pending:
            return
        frames = [f for f, _, _, _ in pending]
        for (frame, log_ns, gt_msg, timings_ms), result in zip(pending, processor(frames, config), strict=True):
            if isinstance(result, FrameFailure):
                yield StepOutput(result, frame, [], log_ns)
                continue
            result.timings_ms.update(timings_ms)  # the assembly's, as the node adds them
            inputs[result.camera_name].count_dropped_points(config, result)
            msgs = [(f"{namespace}/{topic}", _msgtype(msg), msg)
                    for topic, msg in output_messages(result, settings.wanted, config.publish_relative)]
            gt = None
            try:
                gt = _ground_truth(config, result, gt_msg)
            except InputError as exc:
                report.bad_input("bad_gt_depth", f"ground-truth depth refused: {exc}")
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
            inputs[info_of[topic]].on_camera_info(msg)
        elif topic in sparse_owner and topic not in images:
            owners = sparse_owner[topic]
            for name in owners[:1] if not config.sparse_per_camera else owners:
                inputs[name].on_sparse(msg)
        if topic not in images:
            continue
        camera = images[topic]
        stamp_ns = _stamp_ns(msg)
        if pending and (any(f.camera_name == camera for f, _, _, _ in pending)
                        or abs(stamp_ns - pending[0][0].stamp_ns) > tolerance_ns):
            yield from flush()
        timings_ms: dict[str, float] = {}
        try:
            frame = inputs[camera].assemble(assemble_config, msg, 0, wanted, timings_ms)
        except FrameFailure as failure:
            yield StepOutput(failure, None, [], log_ns)
            continue
        pending.append((frame, log_ns, ground_truth[camera].wait_nearest(stamp_ns, tolerance_ns, 0.0), timings_ms))
        if len(pending) == len(plan.cameras):
            yield from flush()
    yield from flush()
